//! `audit verify` and `audit report`: the filter's audit trail, checked and
//! summarised offline. Both read logs as Envoy writes them (any text; the
//! `pqguard.audit` lines are picked out) and as operators keep them (rotated
//! files in order, gzip-compressed, or stdin), line by line ([`crate::logs`]).

use std::fmt::Write as _;
use std::process::ExitCode;

use pqguard_core::audit::{Anchor, Inventory, Verifier, VerifyReport};
use pqguard_core::token::{KeyError, KeySet};

use crate::cli::{AuditReportArgs, AuditVerifyArgs};
use crate::{logs, output, read_input};

fn jwks(path: &str) -> Result<KeySet, String> {
    let bytes = read_input(Some(path))?;
    KeySet::parse(&bytes).map_err(|e| match e {
        KeyError::PrivateKeyMaterial { .. } => {
            format!("{path}: a private key; give the public JWKS (pqguard jwks {path} > jwks.json)")
        }
        e => format!("{path}: {e}"),
    })
}

/// `pqguard audit verify --jwks FILE [--anchor CHAIN:SEQ:HEAD]...
/// [--max-unverified N] [--json] [LOG...]`: checks every chain of the logs
/// (given in order: an older rotated file first; plain or gzip). Exit 0: no
/// tampering (records after each chain's last checkpoint are reported as
/// unverified); 1: tampering, naming the first bad record, a chain with more
/// than N unverified records (for closed logs, whose VMs wrote a last
/// checkpoint when they stopped: N = 0), or no audit line at all; 2: usage
/// or I/O error (a log that cannot be read to its end, a corrupt gzip
/// stream: no verdict).
pub fn verify(a: &AuditVerifyArgs) -> Result<ExitCode, String> {
    let keys = jwks(&a.jwks)?;
    let max_unverified = a.max_unverified;
    let anchors = a
        .anchor
        .iter()
        .map(|s| Anchor::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut verifier = Verifier::new(&keys).with_anchors(anchors);
    logs::for_each_line(&a.logs, |source, line, text| {
        verifier.feed_log_line(source, line, text);
    })?;
    let report = verifier.finish();
    let over = over_limit(&report, max_unverified);
    if a.json {
        let mut json = report.to_json();
        json["over_max_unverified"] = serde_json::json!(over);
        println!("{}", pretty(&json));
    } else {
        print!("{}", summary(&report));
        if let Some(max) = max_unverified.filter(|_| !over.is_empty()) {
            println!(
                "FAILED: {} chain(s) with more than {max} unverified record(s) (--max-unverified): {}",
                over.len(),
                over.join(", ")
            );
        }
    }
    let ok = report.is_intact() && report.audit_lines > 0 && over.is_empty();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The chains whose unverified tail is longer than `max`.
fn over_limit(report: &VerifyReport, max: Option<u64>) -> Vec<String> {
    let Some(max) = max else { return Vec::new() };
    report
        .chains
        .iter()
        .filter(|c| c.unverified > max)
        .map(|c| c.chain.clone())
        .collect()
}

/// The readable verification summary: one paragraph per chain, then the
/// verdict.
fn summary(report: &VerifyReport) -> String {
    let mut out = String::new();
    if report.audit_lines == 0 {
        out.push_str("no pqguard.audit lines found: nothing to verify\n");
        return out;
    }
    for c in &report.chains {
        let _ = write!(
            out,
            "chain {} (from {}): {} records, {} checkpoints",
            c.chain, c.first_line, c.records, c.checkpoints
        );
        if let Some(g) = &c.genesis {
            let _ = write!(out, ", key {}, pqguard {}", g.kid, g.version);
        }
        out.push('\n');
        match (&c.error, c.verified_through) {
            (Some(e), _) => {
                let _ = writeln!(out, "  TAMPERED: {e}");
                if c.unchecked > 0 {
                    let _ = writeln!(
                        out,
                        "  {} later lines of this chain not checked",
                        c.unchecked
                    );
                }
            }
            (None, None) => {
                let _ = writeln!(
                    out,
                    "  warning: no valid checkpoint: none of its {} records is verified",
                    c.unverified
                );
            }
            (None, Some(seq)) => {
                let _ = writeln!(
                    out,
                    "  verified through seq {seq}; {} unverified record(s) after it",
                    c.unverified
                );
            }
        }
        if c.checkpoint_due_at_end {
            let _ = writeln!(
                out,
                "  warning: the log ends {} record(s) after the last checkpoint, as many as the policy allows before one is due: it was cut, or is still being written",
                c.unverified
            );
        }
        if let (None, Some(anchor)) = (&c.error, c.anchor()) {
            let _ = writeln!(out, "  anchor {anchor}");
        }
    }
    let chainless = report.errors.iter().filter(|e| e.chain.is_none());
    for e in chainless {
        let _ = writeln!(out, "TAMPERED: {e}");
    }
    match report.first_error() {
        Some(first) => {
            let _ = writeln!(
                out,
                "\nTAMPERED: {} problem(s); the first: {first}",
                report.errors.len()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nintact: {} chain(s), {} records; {} verified by signed checkpoints, {} unverified (after the last checkpoint of their chain: anyone with write access to the log could have changed them)",
                report.chains.len(),
                report.records(),
                report.verified(),
                report.unverified()
            );
        }
    }
    out
}

/// `pqguard audit report [--json] [--html FILE [--force]] [LOG...]`: the
/// crypto inventory of the logs. It does not verify them: run `pqguard audit
/// verify` first. The page is written atomically, never over an existing
/// file without `--force`, never over an audit log (exit 3, before anything
/// is read).
pub fn report(a: &AuditReportArgs) -> Result<ExitCode, String> {
    if let Some(path) = &a.html {
        if let Err(e) = output::check_destination(path, a.force, &a.logs) {
            return e.report();
        }
    }
    let mut inventory = Inventory::new();
    logs::for_each_line(&a.logs, |_, _, text| {
        inventory.add_log_line(text);
    })?;
    if let Some(path) = &a.html {
        let page = inventory.to_html();
        if let Err(e) = output::write_atomic(path, page.as_bytes(), a.force, &a.logs) {
            return e.report();
        }
    }
    if a.json {
        println!("{}", pretty(&inventory.to_json()));
    } else {
        print!("{}", inventory.to_table());
    }
    Ok(ExitCode::SUCCESS)
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqguard_core::audit::{Chain, CheckpointPolicy, CheckpointSigner, DecisionRecord};
    use pqguard_core::tls::TlsFacts;
    use pqguard_core::token::{Algorithm, PrivateKey};

    fn log() -> (KeySet, String) {
        let key =
            PrivateKey::generate(Algorithm::MlDsa65, Some("audit-1".into()), &[7; 64]).unwrap();
        let keys = KeySet::from_keys(vec![key.public_key().clone()]).unwrap();
        let signer = CheckpointSigner::new(key).unwrap();
        let policy = CheckpointPolicy {
            every_records: 2,
            interval_ms: 0,
        };
        let (mut chain, mut lines) = Chain::new("9-1", b"{}", 9, 10, policy, signer).unwrap();
        let facts = TlsFacts::new(Some("TLSv1.3".into()), Some("X25519".into()), None);
        for t in 11..14 {
            lines.push(chain.append_decision(t, &DecisionRecord::new(&facts, None)));
            lines.extend(chain.tick(t));
        }
        let text = lines
            .iter()
            .map(|l| format!("[info][wasm] wasm log pqguard: {l}\n"))
            .collect();
        (keys, text)
    }

    fn run(keys: &KeySet, text: &str) -> VerifyReport {
        let mut v = Verifier::new(keys);
        v.feed_log("envoy.log", text);
        v.finish()
    }

    #[test]
    fn summary_of_an_intact_log_prints_the_anchor_and_the_unverified_tail() {
        let (keys, text) = log();
        let s = summary(&run(&keys, &text));
        assert!(
            s.contains("chain 9-1 (from envoy.log:1): 4 records, 2 checkpoints, key audit-1"),
            "{s}"
        );
        assert!(
            s.contains("verified through seq 2; 1 unverified record(s) after it"),
            "{s}"
        );
        assert!(s.contains("  anchor 9-1:2:"), "{s}");
        assert!(
            s.contains("\nintact: 1 chain(s), 4 records; 3 verified"),
            "{s}"
        );
    }

    #[test]
    fn summary_of_a_tampered_log_names_the_first_bad_record() {
        let (keys, text) = log();
        let edited = text.replacen("\"seq\":1,", "\"seq\":1, ", 1);
        let s = summary(&run(&keys, &edited));
        assert!(s.contains("TAMPERED: 1 problem(s); the first: chain 9-1 seq 1 (envoy.log:3): not a valid audit line"), "{s}");
        let s = summary(&run(&keys, ""));
        assert!(s.starts_with("no pqguard.audit lines found"), "{s}");
    }

    #[test]
    fn max_unverified_names_the_chains_over_the_limit() {
        let (keys, text) = log();
        let report = run(&keys, &text);
        assert_eq!(over_limit(&report, None), Vec::<String>::new());
        assert_eq!(over_limit(&report, Some(1)), Vec::<String>::new());
        assert_eq!(over_limit(&report, Some(0)), ["9-1"]);
    }
}
