//! Audit lines and logs, as an auditor's verifier reads them: never panics; a line that parses is
//! exactly its canonical form (re-serialising it gives the same text).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqguard_core::audit::{Line, Verifier};
use pqguard_core::token::{Algorithm, KeySet, PrivateKey};

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = PrivateKey::generate(Algorithm::MlDsa65, Some("audit-1".into()), &[1; 64]).expect("a key");
        KeySet::from_keys(vec![key.public_key().clone()]).expect("a key set")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(first) = text.lines().next() {
        if let Ok(line) = Line::parse(first) {
            assert_eq!(line.to_line(), first, "a parsed line is canonical");
        }
    }
    let mut v = Verifier::new(keys());
    v.feed_log("fuzz.log", &text);
    let _ = v.finish();
});
