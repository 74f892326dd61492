//! The audit trail end to end: logs written by [`Chain`], then each kind of
//! tampering, detected (or, where the module documentation says it cannot
//! be, shown to be undetectable).

use super::record::Line;
use super::*;
use crate::tls::TlsFacts;
use crate::token::{Algorithm, KeySet, PrivateKey};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// What Envoy writes before a Wasm log message.
const ENVOY: &str = "[2026-11-20 10:00:00.123][42][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log pqguard pqguard: ";

fn signer(byte: u8, kid: &str) -> CheckpointSigner {
    let key = PrivateKey::generate(Algorithm::MlDsa65, Some(kid.into()), &[byte; 64]).unwrap();
    CheckpointSigner::new(key).unwrap()
}

fn jwks(signers: &[&CheckpointSigner]) -> KeySet {
    KeySet::from_keys(signers.iter().map(|s| s.public_key().clone()).collect()).unwrap()
}

const POLICY: CheckpointPolicy = CheckpointPolicy {
    every_records: 4,
    interval_ms: 0,
};

fn decision(i: u64) -> DecisionRecord {
    let facts = TlsFacts::new(
        Some("TLSv1.3".into()),
        Some(
            if i.is_multiple_of(3) {
                "X25519"
            } else {
                "X25519MLKEM768"
            }
            .into(),
        ),
        Some("TLS_AES_256_GCM_SHA384".into()),
    );
    let mut d = DecisionRecord::new(&facts, None).with_request_id(Some(format!("req-{i}")));
    d.identity = Some(Identity {
        iss: Some("https://issuer.example".into()),
        sub: Some(if i.is_multiple_of(2) { "alice" } else { "bob" }.into()),
    });
    d.method = Some("tools/call".into());
    d.target = Some(TargetRef {
        kind: TargetKind::Tool,
        name: "echo".into(),
    });
    d.rpc_id = Some(RpcId::Integer(i as i64));
    d.body_sha3 = Some(sha3(format!("body {i}").as_bytes()));
    d.args = Some(format!("{{\"text\":\"hello {i}\"}}"));
    d.args_sha3 = d.args.as_deref().map(|a| sha3(a.as_bytes()));
    if i.is_multiple_of(5) {
        d.outcome = Outcome::Denied;
        d.reason = Some("forbidden".into());
        d.reason_code = Some("pqc_required".into());
    } else {
        d = d.with_upstream(Some(200), Some(3));
    }
    d
}

/// Writes a chain of `n` records after the genesis (record 7 an anomaly),
/// as Envoy log lines, with the timer ticking after every record.
fn write_chain(id: &str, s: &CheckpointSigner, n: u64) -> Vec<String> {
    let (mut chain, first) =
        Chain::new(id, b"{\"audit\":{}}", 100, 100, POLICY, s.clone()).unwrap();
    let mut lines = first;
    for i in 1..=n {
        let t = 100 + i;
        if i == 7 {
            lines.push(chain.append_anomaly(
                t,
                &AnomalyRecord::new("downgrade", "X25519 after X25519MLKEM768"),
            ));
        } else {
            lines.push(chain.append_decision(t, &decision(i)));
        }
        lines.extend(chain.tick(t));
    }
    lines.into_iter().map(|l| format!("{ENVOY}{l}")).collect()
}

struct Fixture {
    key: CheckpointSigner,
    keys: KeySet,
    /// `g cp0 d1 d2 d3 d4 cp4 d5 d6 a7 d8 cp8 d9 d10`
    lines: Vec<String>,
}

fn fixture() -> Fixture {
    let key = signer(1, "audit-1");
    let keys = jwks(&[&key]);
    let lines = write_chain("100-1", &key, 10);
    Fixture { key, keys, lines }
}

fn run(lines: &[String], keys: &KeySet) -> VerifyReport {
    let mut v = Verifier::new(keys);
    v.feed_log("envoy.log", &lines.join("\n"));
    v.finish()
}

fn parse(line: &str) -> Line {
    Line::parse(extract(line).unwrap()).unwrap()
}

/// Index of the record (`checkpoint: false`) or checkpoint with `seq`.
fn find(lines: &[String], seq: u64, checkpoint: bool) -> usize {
    lines
        .iter()
        .position(|l| match parse(l) {
            Line::Record(r) => !checkpoint && r.seq == seq,
            Line::Checkpoint(c) => checkpoint && c.seq == seq,
        })
        .unwrap()
}

fn write(line: &Line) -> String {
    format!("{ENVOY}{LINE_PREFIX}{}", line.to_line())
}

/// What an attacker without the checkpoint key can do: rewrite the records,
/// fix every `seq`/`prev` link after its edits, and keep the old
/// checkpoints, or re-sign them with a key of its own.
fn relink(lines: &[String], resign: Option<&CheckpointSigner>) -> Vec<String> {
    let mut head = ZERO_DIGEST;
    let mut next = 0;
    lines
        .iter()
        .map(|l| {
            let mut line = parse(l);
            match &mut line {
                Line::Record(r) => {
                    r.seq = next;
                    r.prev = head;
                    head = digest(&r.to_line());
                    next += 1;
                }
                Line::Checkpoint(c) => {
                    if let Some(s) = resign {
                        c.seq = next - 1;
                        c.head = head;
                        c.count = next;
                        c.kid = s.kid().to_owned();
                        c.sig = s.sign(c.signed_bytes().as_bytes()).unwrap();
                    }
                }
            }
            write(&line)
        })
        .collect()
}

fn first_problem(report: VerifyReport) -> (Problem, Option<u64>, usize) {
    let t = report.first_error().expect("tampering detected");
    (
        t.problem.clone(),
        t.seq,
        t.at.as_ref().map_or(0, |a| a.line),
    )
}

#[test]
fn a_clean_log_verifies_with_its_unverified_tail_reported() {
    let f = fixture();
    assert_eq!(f.lines.len(), 14);
    let report = run(&f.lines, &f.keys);
    assert!(report.is_intact(), "{:?}", report.errors);
    assert_eq!(report.audit_lines, 14);
    let c = &report.chains[0];
    assert_eq!(c.chain, "100-1");
    assert_eq!((c.records, c.checkpoints), (11, 3));
    assert_eq!(c.verified_through, Some(8));
    assert_eq!(c.unverified, 2);
    assert!(!c.checkpoint_due_at_end);
    assert_eq!(report.verified(), 9);
    let anchor = c.anchor().unwrap();
    assert_eq!(anchor.seq, 8);
    assert_eq!(Anchor::parse(&anchor.to_string()).unwrap(), anchor);
    assert_eq!(report.to_json()["intact"], true);
}

#[test]
fn lines_are_found_among_other_log_lines() {
    let f = fixture();
    let mut lines = vec!["[info][main] starting Envoy".to_owned()];
    for l in &f.lines {
        lines.push(format!("{l}\r"));
        lines.push("[debug][http] [C1][S2] request end stream".to_owned());
    }
    let report = run(&lines, &f.keys);
    assert!(report.is_intact(), "{:?}", report.errors);
    assert_eq!(report.audit_lines, 14);
}

#[test]
fn interleaved_chains_of_several_vms_verify_separately() {
    let f = fixture();
    let other = write_chain("100-2", &f.key, 6);
    let mut mixed = Vec::new();
    let (mut a, mut b) = (f.lines.iter(), other.iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => mixed.extend(x.into_iter().chain(y).cloned()),
        }
    }
    let report = run(&mixed, &f.keys);
    assert!(report.is_intact(), "{:?}", report.errors);
    let ids: Vec<_> = report.chains.iter().map(|c| c.chain.as_str()).collect();
    assert_eq!(ids, ["100-1", "100-2"]);
    assert_eq!(report.chains[1].verified_through, Some(4));
    assert_eq!(report.chains[1].unverified, 2);
}

#[test]
fn an_edited_field_breaks_the_next_link() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let i = find(&lines, 2, false);
    lines[i] = lines[i].replace("\"decision\":\"allowed\"", "\"decision\":\"denied\"");
    assert_ne!(lines[i], f.lines[i]);
    let report = run(&lines, &f.keys);
    let (problem, seq, line) = first_problem(report.clone());
    assert_eq!(problem, Problem::BrokenLink);
    assert_eq!(
        (seq, line),
        (Some(3), i + 2),
        "names the record after the edit"
    );
    let t = report.first_error().unwrap();
    assert_eq!(t.chain.as_deref(), Some("100-1"));
    assert!(
        t.to_string().starts_with("chain 100-1 seq 3 (envoy.log:"),
        "{t}"
    );
}

#[test]
fn an_edited_record_just_before_a_checkpoint_fails_the_checkpoint() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let i = find(&lines, 4, false);
    lines[i] = lines[i].replace("\"sub\":\"alice\"", "\"sub\":\"carol\"");
    let (problem, seq, _) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        problem,
        Problem::CheckpointMismatch {
            seq: 4,
            chain_seq: Some(4)
        }
    );
    assert_eq!(seq, Some(4));
}

#[test]
fn edited_arguments_are_caught_at_the_record_itself() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let i = find(&lines, 9, false);
    lines[i] = lines[i].replace("hello 9", "hello 0");
    let (problem, seq, line) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        (problem, seq, line),
        (Problem::ArgumentsDigest, Some(9), i + 1)
    );
}

#[test]
fn a_non_canonical_edit_is_refused_on_its_own() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let i = find(&lines, 10, false);
    lines[i] = lines[i].replacen("\"seq\":10,", "\"seq\":10, ", 1);
    let (problem, seq, line) = first_problem(run(&lines, &f.keys));
    assert_eq!(problem, Problem::Malformed(LineError::NotCanonical));
    assert_eq!((seq, line), (Some(10), i + 1));
}

#[test]
fn a_deleted_record_leaves_a_gap() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(find(&lines, 5, false));
    let (problem, seq, _) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        problem,
        Problem::Sequence {
            expected: 5,
            found: 6
        }
    );
    assert_eq!(seq, Some(6));
    assert!(problem.to_string().contains("1 record(s) missing"));
}

#[test]
fn a_deleted_record_with_the_chain_relinked_fails_the_covering_checkpoint() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(find(&lines, 5, false));
    let lines = relink(&lines, None);
    let (problem, seq, _) = first_problem(run(&lines, &f.keys));
    // The old checkpoint for seq 8 now sits after the new seq 7.
    assert_eq!(
        problem,
        Problem::CheckpointMismatch {
            seq: 8,
            chain_seq: Some(7)
        }
    );
    assert_eq!(seq, Some(8));
}

#[test]
fn two_swapped_records_break_the_sequence() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let (a, b) = (find(&lines, 2, false), find(&lines, 3, false));
    lines.swap(a, b);
    let (problem, seq, line) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        problem,
        Problem::Sequence {
            expected: 2,
            found: 3
        }
    );
    assert_eq!((seq, line), (Some(3), a + 1));
    // Swapped and relinked: the checkpoint over them no longer matches.
    let (problem, _, _) = first_problem(run(&relink(&lines, None), &f.keys));
    assert!(matches!(
        problem,
        Problem::CheckpointMismatch { seq: 4, .. }
    ));
}

#[test]
fn truncation_leaves_a_valid_prefix_but_not_an_anchor() {
    let f = fixture();
    let full = run(&f.lines, &f.keys);
    let anchor = full.chains[0].anchor().unwrap();
    // Cut after the last checkpoint: only unverified records are lost.
    let cut = &f.lines[..find(&f.lines, 8, true) + 1];
    let report = run(cut, &f.keys);
    assert!(report.is_intact());
    assert_eq!(report.chains[0].unverified, 0);
    // Cut before it: still a valid (shorter) log on its own ...
    let cut = &f.lines[..find(&f.lines, 6, false) + 1];
    let report = run(cut, &f.keys);
    assert!(report.is_intact());
    assert_eq!(report.chains[0].verified_through, Some(4));
    // ... but not against the anchor of an earlier verification.
    let mut v = Verifier::new(&f.keys).with_anchors([anchor.clone()]);
    v.feed_log("envoy.log", &cut.join("\n"));
    let report = v.finish();
    let t = report.first_error().unwrap();
    assert_eq!(
        t.problem,
        Problem::AnchorNotReached {
            seq: 8,
            last_seq: Some(6)
        }
    );
    assert!(t.at.is_none());
    // The whole chain gone: only the anchor tells.
    let mut v = Verifier::new(&f.keys).with_anchors([anchor.clone()]);
    v.feed_log("envoy.log", "");
    let report = v.finish();
    assert_eq!(
        report.first_error().unwrap().problem,
        Problem::AnchorNotReached {
            seq: 8,
            last_seq: None
        }
    );
    // The full log still reaches the anchor.
    let mut v = Verifier::new(&f.keys).with_anchors([anchor]);
    v.feed_log("envoy.log", &f.lines.join("\n"));
    assert!(v.finish().is_intact());
}

#[test]
fn an_anchor_catches_a_rewrite_of_the_unverified_tail() {
    let f = fixture();
    let head = digest(extract(&f.lines[find(&f.lines, 10, false)]).unwrap());
    let anchor = Anchor {
        chain: "100-1".into(),
        seq: 10,
        head,
    };
    let mut lines = f.lines.clone();
    let i = find(&lines, 10, false);
    lines[i] = lines[i].replace("\"decision\":\"denied\"", "\"decision\":\"allowed\"");
    assert_ne!(lines[i], f.lines[i]);
    // Without the anchor, the last record can be rewritten undetected:
    // it is reported as unverified.
    let report = run(&lines, &f.keys);
    assert!(report.is_intact());
    assert_eq!(report.unverified(), 2);
    let mut v = Verifier::new(&f.keys).with_anchors([anchor]);
    v.feed_log("envoy.log", &lines.join("\n"));
    let report = v.finish();
    let (problem, seq, _) = first_problem(report);
    assert_eq!(
        (problem, seq),
        (Problem::AnchorMismatch { seq: 10 }, Some(10))
    );
}

#[test]
fn a_log_cut_between_a_record_and_its_checkpoint_is_flagged() {
    let f = fixture();
    let cut = &f.lines[..find(&f.lines, 8, true)];
    let report = run(cut, &f.keys);
    assert!(report.is_intact());
    assert!(report.chains[0].checkpoint_due_at_end);
    assert_eq!(report.chains[0].unverified, 4);
}

#[test]
fn a_record_spliced_from_another_chain_is_detected() {
    let f = fixture();
    let other = write_chain("100-2", &f.key, 6);
    // Copied as is: it belongs to chain 100-2, where its seq repeats.
    let mut lines = f.lines.clone();
    lines.extend(other.iter().take(8).cloned());
    lines.insert(lines.len() - 2, other[find(&other, 3, false)].clone());
    let report = run(&lines, &f.keys);
    let t = report.first_error().unwrap();
    assert_eq!(t.chain.as_deref(), Some("100-2"));
    assert_eq!(
        t.problem,
        Problem::Sequence {
            expected: 5,
            found: 3
        }
    );
    assert!(
        report.chains[0].error.is_none(),
        "chain 100-1 is unaffected"
    );
    // Relabelled to fit chain 100-1 at its seq 5: the link does not match.
    let mut lines = f.lines.clone();
    let mut foreign = parse(&other[find(&other, 5, false)]);
    if let Line::Record(r) = &mut foreign {
        r.chain = "100-1".into();
    }
    let i = find(&lines, 5, false);
    lines[i] = write(&foreign);
    let (problem, seq, line) = first_problem(run(&lines, &f.keys));
    assert_eq!((problem, seq, line), (Problem::BrokenLink, Some(5), i + 1));
}

#[test]
fn a_forged_checkpoint_does_not_verify() {
    let f = fixture();
    let i = find(&f.lines, 8, true);
    let Line::Checkpoint(mut cp) = parse(&f.lines[i]) else {
        unreachable!()
    };
    // The signature edited.
    let mut lines = f.lines.clone();
    let mut bad = cp.clone();
    bad.sig[100] ^= 1;
    lines[i] = write(&Line::Checkpoint(bad));
    let (problem, seq, line) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        (problem, seq, line),
        (Problem::BadSignature, Some(8), i + 1)
    );
    // The head edited to cover an edited record.
    cp.head[0] ^= 1;
    lines[i] = write(&Line::Checkpoint(cp));
    assert_eq!(first_problem(run(&lines, &f.keys)).0, Problem::BadSignature);
    // A checkpoint moved up, before the record it covers.
    let mut lines = f.lines.clone();
    let moved = lines.remove(find(&lines, 4, true));
    lines.insert(find(&lines, 4, false), moved);
    assert_eq!(
        first_problem(run(&lines, &f.keys)).0,
        Problem::CheckpointMismatch {
            seq: 4,
            chain_seq: Some(3)
        }
    );
}

#[test]
fn a_checkpoint_re_signed_with_another_key_is_refused() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let i = find(&lines, 4, false);
    lines[i] = lines[i].replace("\"decision\":\"allowed\"", "\"decision\":\"denied\"");
    // An attacker key with the same kid: the signature fails under the real key.
    let impostor = signer(9, "audit-1");
    let forged = relink(&lines, Some(&impostor));
    let (problem, seq, _) = first_problem(run(&forged, &f.keys));
    assert_eq!((problem, seq), (Problem::BadSignature, Some(0)));
    // A key of its own kid: not the key the genesis names.
    let own = signer(9, "attacker");
    let forged = relink(&lines, Some(&own));
    assert_eq!(
        first_problem(run(&forged, &f.keys)).0,
        Problem::CheckpointKid {
            expected: "audit-1".into(),
            found: "attacker".into()
        }
    );
    // Even a key the JWKS trusts (an older, rotated key) is refused for
    // this chain, because the genesis names another kid.
    let old = signer(3, "audit-0");
    let keys = jwks(&[&old, &f.key]);
    let forged = relink(&lines, Some(&old));
    assert!(matches!(
        first_problem(run(&forged, &keys)).0,
        Problem::CheckpointKid { .. }
    ));
    // Genesis rewritten to name the attacker's key too: the JWKS lacks it.
    let mut rewritten = forged.clone();
    let mut g = parse(&rewritten[0]);
    if let Line::Record(AuditRecord {
        body: RecordBody::Genesis(genesis),
        ..
    }) = &mut g
    {
        genesis.kid = "attacker".into();
    }
    rewritten[0] = write(&g);
    let forged = relink(&rewritten, Some(&own));
    assert_eq!(
        first_problem(run(&forged, &f.keys)).0,
        Problem::UnknownKey("attacker".into())
    );
    // Verified against a JWKS without the right key: refused too.
    let (problem, _, _) = first_problem(run(&f.lines, &jwks(&[&old])));
    assert_eq!(problem, Problem::UnknownKey("audit-1".into()));
}

#[test]
fn a_deleted_checkpoint_hides_nothing_a_later_one_covers() {
    let f = fixture();
    // The checkpoint after seq 4 deleted: the one after seq 8 still covers
    // records 0 to 8, through the chain.
    let mut lines = f.lines.clone();
    lines.remove(find(&lines, 4, true));
    let report = run(&lines, &f.keys);
    assert!(report.is_intact(), "{:?}", report.errors);
    assert_eq!(report.chains[0].verified_through, Some(8));
    assert_eq!(report.chains[0].checkpoints, 2);
    // Every checkpoint after the genesis one deleted: nothing is lost
    // silently: the records are reported unverified, and the summary says
    // the policy made a checkpoint due.
    lines.remove(find(&lines, 8, true));
    let report = run(&lines, &f.keys);
    assert!(report.is_intact());
    assert_eq!(report.unverified(), 10);
    assert!(report.chains[0].checkpoint_due_at_end);
    // Editing those records is then not detected from the log alone (the
    // module documentation says so): the same holds for any unsigned tail.
    let i = find(&lines, 2, false);
    lines[i] = lines[i].replace("\"sub\":\"alice\"", "\"sub\":\"carol\"");
    let report = run(&relink(&lines, None), &f.keys);
    assert!(report.is_intact());
    assert_eq!(report.unverified(), 10);
}

#[test]
fn the_time_rule_makes_the_timer_sign() {
    let key = signer(4, "t");
    let policy = CheckpointPolicy {
        every_records: 1000,
        interval_ms: 50,
    };
    let (mut chain, mut lines) = Chain::new("t-1", b"", 0, 0, policy, key.clone()).unwrap();
    for t in [10, 30, 60, 70, 200, 210] {
        lines.push(chain.append_decision(t, &decision(t)));
        lines.extend(chain.tick(t));
    }
    lines.extend(chain.tick(400));
    assert_eq!(
        lines.len(),
        2 + 6 + 3,
        "checkpoints at the ticks of t=60, t=200 and t=400"
    );
    let keys = jwks(&[&key]);
    let report = run(&lines, &keys);
    assert!(report.is_intact(), "{:?}", report.errors);
    assert_eq!(report.unverified(), 0);
    assert!(!report.chains[0].checkpoint_due_at_end);
    // Only the last checkpoint cut: the record at t=210 came 10 ms after
    // the checkpoint at t=200, so the log itself shows nothing overdue.
    let report = run(&lines[..lines.len() - 1], &keys);
    assert!(report.is_intact());
    assert!(!report.chains[0].checkpoint_due_at_end);
    // The last two cut: records span 150 ms after the checkpoint at t=60.
    let mut cut = lines[..lines.len() - 1].to_vec();
    cut.remove(find(&cut, 5, true));
    let report = run(&cut, &keys);
    assert!(report.is_intact());
    assert_eq!(report.unverified(), 3);
    assert!(report.chains[0].checkpoint_due_at_end);
}

#[test]
fn a_log_starting_mid_chain_or_with_a_second_genesis_is_refused() {
    let f = fixture();
    let (problem, seq, _) = first_problem(run(&f.lines[2..], &f.keys));
    assert_eq!(problem, Problem::MissingGenesis { found_seq: 1 });
    assert_eq!(seq, Some(1));
    let mut lines = f.lines.clone();
    lines.insert(5, f.lines[0].clone());
    assert!(matches!(
        first_problem(run(&lines, &f.keys)).0,
        Problem::Sequence { found: 0, .. }
    ));
    let mut lines = f.lines.clone();
    lines.remove(0);
    assert_eq!(
        first_problem(run(&lines, &f.keys)).0,
        Problem::CheckpointWithoutGenesis
    );
}

#[test]
fn a_garbled_line_is_reported_even_without_a_chain() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.insert(3, format!("{ENVOY}{LINE_PREFIX}{{\"v\":1,garbage"));
    let report = run(&lines, &f.keys);
    let t = report.first_error().unwrap();
    assert_eq!(t.chain, None);
    assert_eq!(t.at.as_ref().map(|a| a.line), Some(4));
    assert!(matches!(t.problem, Problem::Malformed(LineError::Json(_))));
    assert!(report.chains[0].error.is_none());
}

#[test]
fn a_chain_stops_being_checked_at_its_first_problem() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(find(&lines, 2, false));
    lines.remove(find(&lines, 6, false));
    let report = run(&lines, &f.keys);
    assert_eq!(report.errors.len(), 1, "one problem per chain");
    let c = &report.chains[0];
    assert_eq!(c.unchecked, 8);
    assert_eq!(c.records, 2);
    assert_eq!(c.verified_through, Some(0));
    let j = report.to_json();
    assert_eq!(j["intact"], false);
    assert_eq!(j["errors"][0]["problem"], "sequence");
    assert_eq!(j["errors"][0]["seq"], 3);
}

#[test]
fn the_inventory_reads_what_the_chain_wrote() {
    let f = fixture();
    let mut inv = Inventory::new();
    inv.add_log(&f.lines.join("\n"));
    assert_eq!(inv.decisions, 9);
    let bob = &inv.identities["https://issuer.example|bob"];
    assert!(bob.classical.contains(&"kex:X25519".to_owned()));
    let alice = &inv.identities["https://issuer.example|alice"];
    assert_eq!(alice.refusals.values().sum::<u64>(), 1);
    assert_eq!(
        inv.identities[offline::inventory::ANONYMOUS].anomalies["downgrade"],
        1
    );
}

#[test]
fn line_at_a_time_reading_matches_the_whole_text() {
    let f = fixture();
    let mut lines = vec!["[info][main] starting".to_owned()];
    for l in &f.lines {
        lines.push(l.clone());
        lines.push("[debug][http] request end stream".to_owned());
    }
    let at = 1 + 2 * find(&f.lines, 5, false);
    let tampered = lines[at].replacen("\"seq\":5,", "\"seq\":5, ", 1);
    for lines in [lines.clone(), {
        let mut l = lines.clone();
        l[at] = tampered.clone();
        l
    }] {
        let mut whole = Verifier::new(&f.keys);
        whole.feed_log("envoy.log", &lines.join("\n"));
        let mut one_by_one = Verifier::new(&f.keys);
        let mut inv = Inventory::new();
        let mut audit = 0;
        for (i, l) in lines.iter().enumerate() {
            audit += usize::from(one_by_one.feed_log_line("envoy.log", i + 1, l));
            assert_eq!(inv.add_log_line(l), extract(l).is_some());
        }
        assert_eq!(audit, f.lines.len());
        assert_eq!(one_by_one.finish(), whole.finish());
        let mut inv_whole = Inventory::new();
        inv_whole.add_log(&lines.join("\n"));
        assert_eq!(inv, inv_whole);
    }
}

/// A small deterministic generator for the randomized tampering test.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn a_repeated_checkpoint_line_is_reported() {
    let f = fixture();
    let mut lines = f.lines.clone();
    let cp = find(&lines, 4, true);
    lines.insert(cp + 1, lines[cp].clone());
    let (problem, seq, _) = first_problem(run(&lines, &f.keys));
    assert_eq!(
        (problem, seq),
        (Problem::RepeatedCheckpoint { seq: 4 }, Some(4))
    );
    // The genesis checkpoint repeated too.
    let mut lines = f.lines.clone();
    lines.insert(2, lines[1].clone());
    assert_eq!(
        first_problem(run(&lines, &f.keys)).0.code(),
        "repeated_checkpoint"
    );
}

#[test]
fn two_hundred_random_tamperings_of_a_closed_log_are_all_caught() {
    // A closed log: every record covered by a checkpoint (what a stopped VM leaves).
    let key = signer(1, "audit-1");
    let keys = jwks(&[&key]);
    let (mut chain, first) =
        Chain::new("100-7", b"{\"audit\":{}}", 100, 100, POLICY, key.clone()).unwrap();
    let mut clean = first;
    for i in 1..=12 {
        clean.push(chain.append_decision(100 + i, &decision(i)));
        clean.extend(chain.tick(100 + i));
    }
    clean.extend(chain.checkpoint(200));
    let clean: Vec<String> = clean.into_iter().map(|l| format!("{ENVOY}{l}")).collect();
    let caught = |lines: &[String]| {
        let report = run(lines, &keys);
        !report.is_intact()
            || report.chains.iter().any(|c| c.unverified > 0)
            || report.audit_lines == 0
    };
    assert!(
        !caught(&clean),
        "the clean log verifies with nothing unverified"
    );
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut kinds = [0usize; 4];
    // Deleting a checkpoint in the middle of a chain hides nothing (a later
    // one covers every record): such rounds are checked for exactly that
    // and counted apart from the tamperings that must be caught.
    let (mut harmless, mut caught_rounds) = (0usize, 0usize);
    for round in 0..200 {
        let mut lines = clean.clone();
        let i = rng.below(lines.len());
        let kind = rng.below(4);
        kinds[kind] += 1;
        let what = match kind {
            0 => {
                // Change one byte of the JSON (keeping it printable).
                let start = lines[i].find(LINE_PREFIX).unwrap() + LINE_PREFIX.len();
                let mut bytes = lines[i].clone().into_bytes();
                let at = start + rng.below(bytes.len() - start);
                let old = bytes[at];
                let mut new = b'!' + (rng.below(94) as u8);
                if new == old {
                    new = if old == b'0' { b'1' } else { b'0' };
                }
                bytes[at] = new;
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
                format!("byte {at} of line {i}")
            }
            1 => {
                let removed = lines.remove(i);
                let middle_checkpoint =
                    i + 1 < clean.len() && matches!(parse(&removed), Line::Checkpoint(_));
                if middle_checkpoint {
                    // Documented: a later checkpoint still covers every record,
                    // so this deletion hides nothing. Check exactly that.
                    let report = run(&lines, &keys);
                    assert!(report.is_intact(), "round {round}");
                    assert_eq!(report.chains[0].unverified, 0, "round {round}");
                    assert_eq!(report.records(), 13, "round {round}");
                    harmless += 1;
                    continue;
                }
                format!("deleted line {i}")
            }
            2 => {
                let j = (i + 1 + rng.below(lines.len() - 1)) % lines.len();
                lines.swap(i, j);
                format!("swapped lines {i} and {j}")
            }
            _ => {
                let copy = lines[i].clone();
                let at = rng.below(lines.len() + 1);
                lines.insert(at, copy);
                format!("line {i} repeated at {at}")
            }
        };
        assert!(caught(&lines), "round {round}: {what} went unnoticed");
        caught_rounds += 1;
    }
    assert!(kinds.iter().all(|&k| k > 20), "{kinds:?}");
    assert_eq!(caught_rounds + harmless, 200);
    // Two checkpoints of 28 lines can be deleted harmlessly; most rounds tamper.
    assert!(
        caught_rounds >= 180,
        "{caught_rounds} caught, {harmless} harmless"
    );
}
