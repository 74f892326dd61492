//! The token front end: compact JWS parsing, header, key selection, signature and claims, for a
//! key set of every algorithm. Never panics; nothing but the tokens these keys signed verifies.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqguard_core::token::{self, Algorithm, KeySet, PrivateKey, TokenCache, ValidationOptions};

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let public = Algorithm::ALL
            .iter()
            .enumerate()
            .map(|(i, alg)| {
                let key = PrivateKey::generate(*alg, Some(format!("k{i}")), &[7; 64]).expect("a key from a fixed seed");
                key.public_key().clone()
            })
            .collect();
        KeySet::from_keys(public).expect("a key set")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = ValidationOptions::default();
    let plain = token::verify(text, keys(), &opts, 1_800_000_000);
    let mut cache = TokenCache::new(4);
    let cached = token::verify_cached(text, keys(), &opts, 1_800_000_000, &mut cache);
    assert_eq!(plain.is_ok(), cached.is_ok(), "the cache answers like a verification");
});
