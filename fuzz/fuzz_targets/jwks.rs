//! JWK / JWKS parsing (as fetched from the network): never panics; a set that parses round-trips
//! through its public JWKS to the same key set id.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::token::KeySet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::parse(data) {
        let again = KeySet::parse(set.to_jwks().to_string().as_bytes()).expect("its own JWKS parses");
        assert_eq!(set.keys().len(), again.keys().len());
    }
});
