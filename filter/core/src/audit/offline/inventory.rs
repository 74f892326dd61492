//! The crypto inventory: per caller, which key exchanges, ciphers and token
//! algorithms its requests used, and what was refused and why. It answers
//! "which of our MCP clients still use classical cryptography?".
//!
//! Built from decision and anomaly records; it does not verify the log
//! (run [`super::verify`] for that). A caller is identified by its token's
//! `iss|sub`; requests without a verified token are `anonymous`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::audit::record::{DecisionRecord, Line, Outcome, RecordBody};
use crate::audit::{audit_lines, extract, AnomalyRecord};
use crate::token::SignatureClass;

/// The inventory key of requests without a verified token.
pub const ANONYMOUS: &str = "anonymous";

/// What one caller used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityUsage {
    /// Requests (decision records).
    pub requests: u64,
    /// Allowed requests.
    pub allowed: u64,
    /// Denied requests (authentication or policy).
    pub denied: u64,
    /// Rejected requests (unacceptable input).
    pub rejected: u64,
    /// Refusals by `decision/reason/reason_code`.
    pub refusals: BTreeMap<String, u64>,
    /// Key-exchange groups (`none` when the host reported none).
    pub groups: BTreeMap<String, u64>,
    /// Key-exchange classes as the filter computed them.
    pub kex_classes: BTreeMap<String, u64>,
    /// Cipher suites (`none` when the host reported none).
    pub ciphers: BTreeMap<String, u64>,
    /// TLS versions (`none` when the host reported none).
    pub tls_versions: BTreeMap<String, u64>,
    /// Token algorithms (`none` for requests without a verified token).
    pub token_algs: BTreeMap<String, u64>,
    /// Anomalies by kind.
    pub anomalies: BTreeMap<String, u64>,
    /// Classical (or no) cryptography this caller used: `kex:<group>` for a
    /// key exchange of class `classical` or `none`, `token:<alg>` for a
    /// classical token algorithm. Empty: everything it did was post-quantum
    /// or hybrid.
    pub classical: Vec<String>,
    /// Earliest record time (ms since the epoch).
    pub first_ms: Option<u64>,
    /// Latest record time.
    pub last_ms: Option<u64>,
}

impl IdentityUsage {
    fn seen(&mut self, time_ms: u64) {
        self.first_ms = Some(self.first_ms.map_or(time_ms, |t| t.min(time_ms)));
        self.last_ms = Some(self.last_ms.map_or(time_ms, |t| t.max(time_ms)));
    }

    fn flag(&mut self, what: String) {
        if !self.classical.contains(&what) {
            self.classical.push(what);
        }
    }

    fn add(&mut self, d: &DecisionRecord, time_ms: u64) {
        fn bump(map: &mut BTreeMap<String, u64>, key: Option<&str>) {
            *map.entry(key.unwrap_or("none").to_owned()).or_default() += 1;
        }
        self.seen(time_ms);
        self.requests += 1;
        match d.outcome {
            Outcome::Allowed => self.allowed += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::Rejected => self.rejected += 1,
        }
        if d.outcome != Outcome::Allowed {
            let key = format!(
                "{}/{}/{}",
                d.outcome.as_str(),
                d.reason.as_deref().unwrap_or("-"),
                d.reason_code.as_deref().unwrap_or("-")
            );
            *self.refusals.entry(key).or_default() += 1;
        }
        let c = &d.crypto;
        bump(&mut self.groups, c.tls_group.as_deref());
        bump(&mut self.kex_classes, Some(&c.kex_class));
        bump(&mut self.ciphers, c.tls_cipher.as_deref());
        bump(&mut self.tls_versions, c.tls_version.as_deref());
        bump(&mut self.token_algs, c.token_alg.as_deref());
        if matches!(c.kex_class.as_str(), "classical" | "none") {
            self.flag(format!("kex:{}", c.tls_group.as_deref().unwrap_or("none")));
        }
        if let (Some(alg), Some(SignatureClass::Classical)) = (&c.token_alg, c.token_class()) {
            self.flag(format!("token:{alg}"));
        }
    }

    fn add_anomaly(&mut self, a: &AnomalyRecord, time_ms: u64) {
        self.seen(time_ms);
        *self.anomalies.entry(a.anomaly.clone()).or_default() += 1;
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "allowed": self.allowed,
            "denied": self.denied,
            "rejected": self.rejected,
            "refusals": self.refusals,
            "groups": self.groups,
            "kex_classes": self.kex_classes,
            "ciphers": self.ciphers,
            "tls_versions": self.tls_versions,
            "token_algs": self.token_algs,
            "anomalies": self.anomalies,
            "classical": self.classical,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
        })
    }
}

/// The crypto inventory of one or more logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Per caller (`iss|sub`, or [`ANONYMOUS`]).
    pub identities: BTreeMap<String, IdentityUsage>,
    /// DecisionRecord records read.
    pub decisions: u64,
    /// Audit lines that could not be read (not counted; `verify` says why).
    pub unreadable: u64,
    /// Decisions per minute (start of the minute, ms) by key-exchange class.
    pub timeline: BTreeMap<u64, BTreeMap<String, u64>>,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every decision and anomaly record of a log (the whole text at
    /// once; [`Inventory::add_log_line`] reads a large file line by line).
    pub fn add_log(&mut self, log: &str) {
        for (_, json) in audit_lines(log) {
            self.add_line(json);
        }
    }

    /// Adds one line of a log as read (without its line ending): an audit
    /// line's record is counted, any other line ignored. Returns whether it
    /// was an audit line.
    pub fn add_log_line(&mut self, log_line: &str) -> bool {
        let Some(json) = extract(log_line) else {
            return false;
        };
        self.add_line(json);
        true
    }

    /// Adds one audit line (the JSON after the prefix).
    pub fn add_line(&mut self, json: &str) {
        let Ok(line) = Line::parse(json) else {
            self.unreadable += 1;
            return;
        };
        let Line::Record(r) = line else {
            return;
        };
        let key = |identity: &Option<crate::audit::Identity>| {
            identity
                .as_ref()
                .map_or_else(|| ANONYMOUS.to_owned(), crate::audit::Identity::label)
        };
        match &r.body {
            RecordBody::DecisionRecord(d) => {
                self.decisions += 1;
                *self
                    .timeline
                    .entry(r.time_ms / 60_000 * 60_000)
                    .or_default()
                    .entry(d.crypto.kex_class.clone())
                    .or_default() += 1;
                self.identities
                    .entry(key(&d.identity))
                    .or_default()
                    .add(d, r.time_ms);
            }
            RecordBody::AnomalyRecord(a) => self
                .identities
                .entry(key(&a.identity))
                .or_default()
                .add_anomaly(a, r.time_ms),
            RecordBody::Genesis(_) => {}
        }
    }

    /// Callers that used classical (or no) cryptography, with what they used.
    pub fn classical(&self) -> impl Iterator<Item = (&str, &IdentityUsage)> {
        self.identities
            .iter()
            .filter(|(_, u)| !u.classical.is_empty())
            .map(|(k, u)| (k.as_str(), u))
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        let identities: serde_json::Map<String, Value> = self
            .identities
            .iter()
            .map(|(k, u)| (k.clone(), u.to_json()))
            .collect();
        json!({
            "decisions": self.decisions,
            "unreadable": self.unreadable,
            "identities": identities,
            "classical": self.classical().map(|(k, _)| k).collect::<Vec<_>>(),
        })
    }

    /// A readable table: one row per caller, then who still uses classical
    /// cryptography, then the refusals.
    pub fn to_table(&self) -> String {
        fn counts(map: &BTreeMap<String, u64>) -> String {
            let mut v: Vec<_> = map.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
        let header = [
            "IDENTITY",
            "REQUESTS",
            "DENIED",
            "REJECTED",
            "KEY EXCHANGE",
            "CIPHER",
            "TOKEN",
            "CLASSICAL",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
        for (id, u) in &self.identities {
            rows.push([
                id.clone(),
                u.requests.to_string(),
                u.denied.to_string(),
                u.rejected.to_string(),
                counts(&u.groups),
                counts(&u.ciphers),
                counts(&u.token_algs),
                if u.classical.is_empty() {
                    "no".to_owned()
                } else {
                    format!("YES: {}", u.classical.join(", "))
                },
            ]);
        }
        let mut widths = [0usize; 8];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} decision records, {} callers{}",
            self.decisions,
            self.identities.len(),
            if self.unreadable > 0 {
                format!(", {} unreadable audit lines skipped", self.unreadable)
            } else {
                String::new()
            }
        );
        out.push('\n');
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out.push('\n');
        let classical: Vec<_> = self.classical().collect();
        if classical.is_empty() {
            out.push_str("No caller used classical cryptography.\n");
        } else {
            out.push_str("Still using classical cryptography:\n");
            for (id, u) in classical {
                let _ = writeln!(out, "  {id}: {}", u.classical.join(", "));
            }
        }
        let refusals: Vec<_> = self
            .identities
            .iter()
            .flat_map(|(id, u)| u.refusals.iter().map(move |(r, n)| (id, r, n)))
            .collect();
        if !refusals.is_empty() {
            out.push_str("\nRefusals (decision/reason/code):\n");
            for (id, r, n) in refusals {
                let _ = writeln!(out, "  {id}: {r} x{n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditRecord, CryptoContext, Identity};
    use crate::audit::{LINE_PREFIX, ZERO_DIGEST};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn decision(sub: Option<&str>, group: &str, class: &str, alg: Option<&str>) -> DecisionRecord {
        let mut d = DecisionRecord::new(&Default::default(), None);
        d.identity = sub.map(|s| Identity {
            iss: Some("https://issuer.example".into()),
            sub: Some(s.into()),
        });
        d.crypto = CryptoContext {
            tls_version: Some("TLSv1.3".into()),
            tls_group: Some(group.into()),
            tls_cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            kex_class: class.into(),
            token_alg: alg.map(str::to_owned),
            token_kid: None,
        };
        d
    }

    fn log(decisions: &[DecisionRecord]) -> String {
        decisions
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let r = AuditRecord {
                    chain: "c".into(),
                    seq: i as u64 + 1,
                    prev: ZERO_DIGEST,
                    time_ms: 100 + i as u64,
                    body: RecordBody::DecisionRecord(Box::new(d.clone())),
                };
                format!("[info][wasm] {LINE_PREFIX}{}\n", r.to_line())
            })
            .collect()
    }

    #[test]
    fn flags_callers_using_classical_key_exchange_or_tokens() {
        let mut denied = decision(Some("bob"), "X25519", "classical", Some("EdDSA"));
        denied.outcome = Outcome::Denied;
        denied.reason = Some("forbidden".into());
        denied.reason_code = Some("pqc_required".into());
        let text = log(&[
            decision(
                Some("alice"),
                "X25519MLKEM768",
                "hybrid-pq",
                Some("ML-DSA-65"),
            ),
            decision(
                Some("alice"),
                "X25519MLKEM768",
                "hybrid-pq",
                Some("ML-DSA-65"),
            ),
            decision(Some("bob"), "X25519MLKEM768", "hybrid-pq", Some("EdDSA")),
            denied,
            decision(None, "X25519MLKEM768", "hybrid-pq", None),
        ]);
        let mut inv = Inventory::new();
        inv.add_log(&text);
        inv.add_line("{not json");
        assert_eq!(inv.decisions, 5);
        assert_eq!(inv.unreadable, 1);
        let alice = &inv.identities["https://issuer.example|alice"];
        assert_eq!(alice.requests, 2);
        assert!(alice.classical.is_empty());
        let bob = &inv.identities["https://issuer.example|bob"];
        assert_eq!((bob.requests, bob.denied), (2, 1));
        assert_eq!(bob.classical, ["token:EdDSA", "kex:X25519"]);
        assert_eq!(bob.refusals["denied/forbidden/pqc_required"], 1);
        assert_eq!(bob.groups["X25519"], 1);
        let anon = &inv.identities[ANONYMOUS];
        assert_eq!(anon.token_algs["none"], 1);
        assert!(
            anon.classical.is_empty(),
            "no token is not a classical token"
        );
        let names: Vec<_> = inv.classical().map(|(k, _)| k).collect();
        assert_eq!(names, ["https://issuer.example|bob"]);
        let table = inv.to_table();
        assert!(table.contains("YES: token:EdDSA, kex:X25519"), "{table}");
        assert!(
            table.contains("Still using classical cryptography:"),
            "{table}"
        );
        let j = inv.to_json();
        assert_eq!(j["classical"], json!(["https://issuer.example|bob"]));
        assert_eq!(
            j["identities"]["https://issuer.example|alice"]["groups"]["X25519MLKEM768"],
            2
        );
    }

    #[test]
    fn plaintext_counts_as_classical_and_anomalies_are_counted() {
        let mut plain = DecisionRecord::new(&Default::default(), None);
        plain.crypto.kex_class = "none".into();
        let mut inv = Inventory::new();
        inv.add_log(&log(&[plain]));
        let anomaly = AuditRecord {
            chain: "c".into(),
            seq: 9,
            prev: ZERO_DIGEST,
            time_ms: 1,
            body: RecordBody::AnomalyRecord(AnomalyRecord::new("downgrade", "x")),
        };
        inv.add_line(&anomaly.to_line());
        let anon = &inv.identities[ANONYMOUS];
        assert_eq!(anon.classical, ["kex:none"]);
        assert_eq!(anon.anomalies["downgrade"], 1);
        assert_eq!((anon.first_ms, anon.last_ms), (Some(1), Some(100)));
    }
}
