//! Published example vectors, produced by other implementations:
//! - ML-DSA-44/65/87: the RFC 9964 examples (all-zero seed), as kept in the
//!   cose-wg/draft-ietf-cose-dilithium repository.
//! - ML-DSA-65-Ed25519 and ML-DSA-65-ES256: draft-ietf-jose-pq-composite-sigs-05,
//!   Appendix A.1 (ML-DSA seed all zero; Ed25519 seed all zero; P-256 `d` = 1).
//!
//! The vectors are third-party data and are not part of this repository:
//! the check is opt-in, built with the `published-vectors` feature and
//! `PQGUARD_VECTORS_DIR` naming a directory holding `ml-dsa-44.json`,
//! `ml-dsa-65.json`, `ml-dsa-87.json`, `ml-dsa-65-ed25519.json` and
//! `ml-dsa-65-es256.json` (each `{"jwk": <private JWK>, "jws": <compact JWS>}`):
//! `PQGUARD_VECTORS_DIR=/path cargo test -p pqguard-core --features published-vectors vectors`.
//!
//! Each vector's payload is a plain string, not a claims set, so these tests
//! drive the JWS layer ([`verify_compact`]) directly.

use serde_json::Value;

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

struct Vector {
    alg: Algorithm,
    text: &'static str,
}

const VECTORS: [Vector; 5] = [
    Vector {
        alg: Algorithm::MlDsa44,
        text: include_str!(concat!(env!("PQGUARD_VECTORS_DIR"), "/ml-dsa-44.json")),
    },
    Vector {
        alg: Algorithm::MlDsa65,
        text: include_str!(concat!(env!("PQGUARD_VECTORS_DIR"), "/ml-dsa-65.json")),
    },
    Vector {
        alg: Algorithm::MlDsa87,
        text: include_str!(concat!(env!("PQGUARD_VECTORS_DIR"), "/ml-dsa-87.json")),
    },
    Vector {
        alg: Algorithm::MlDsa65Ed25519,
        text: include_str!(concat!(
            env!("PQGUARD_VECTORS_DIR"),
            "/ml-dsa-65-ed25519.json"
        )),
    },
    Vector {
        alg: Algorithm::MlDsa65Es256,
        text: include_str!(concat!(
            env!("PQGUARD_VECTORS_DIR"),
            "/ml-dsa-65-es256.json"
        )),
    },
];

struct Loaded {
    alg: Algorithm,
    private_jwk: Value,
    public_jwk: Value,
    jws: String,
}

fn load(v: &Vector) -> Loaded {
    let doc: Value = serde_json::from_str(v.text).unwrap();
    let private_jwk = doc["jwk"].clone();
    let mut public_jwk = private_jwk.clone();
    public_jwk.as_object_mut().unwrap().remove("priv");
    Loaded {
        alg: v.alg,
        private_jwk,
        public_jwk,
        jws: doc["jws"].as_str().unwrap().to_owned(),
    }
}

fn payload_ok(payload: &[u8]) -> bool {
    // "It's a dangerous business, Frodo, going out your door." (the ML-DSA
    // examples use a typographic apostrophe).
    let text = std::str::from_utf8(payload).unwrap();
    text.starts_with("It") && text.ends_with("going out your door.")
}

#[test]
fn published_vectors_verify() {
    for v in VECTORS.iter().map(load) {
        let keys = KeySet::parse(v.public_jwk.to_string().as_bytes()).unwrap();
        let jws = verify_compact(&v.jws, &keys, AlgorithmSet::all())
            .unwrap_or_else(|e| panic!("{}: {e}", v.alg));
        assert_eq!(jws.header.alg, v.alg);
        assert!(payload_ok(&jws.payload), "{}", v.alg);
    }
}

#[test]
fn published_private_keys_derive_the_published_public_keys_and_thumbprints() {
    for v in VECTORS.iter().map(load) {
        let key = PrivateKey::parse(v.private_jwk.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", v.alg));
        assert_eq!(
            key.public_key().to_jwk()["pub"],
            v.public_jwk["pub"],
            "{}",
            v.alg
        );
        assert_eq!(
            Some(key.public_key().thumbprint().as_str()),
            v.public_jwk["kid"].as_str(),
            "{}",
            v.alg
        );
        // Our own signature over the same input verifies under the published key.
        let s: Vec<&str> = v.jws.split('.').collect();
        let header = String::from_utf8(base64url_decode(s[0].as_bytes()).unwrap()).unwrap();
        let payload = base64url_decode(s[1].as_bytes()).unwrap();
        let ours = sign_compact(&key, &header, &payload).unwrap();
        let keys = KeySet::parse(v.public_jwk.to_string().as_bytes()).unwrap();
        assert!(verify_compact(&ours, &keys, AlgorithmSet::all()).is_ok());
    }
}

#[test]
fn published_vectors_fail_when_altered() {
    for v in VECTORS.iter().map(load) {
        let keys = KeySet::parse(v.public_jwk.to_string().as_bytes()).unwrap();
        let mut s: Vec<String> = v.jws.split('.').map(str::to_owned).collect();
        let mut sig = base64url_decode(s[2].as_bytes()).unwrap();
        // Last byte: for composites, inside the classical component.
        *sig.last_mut().unwrap() ^= 1;
        s[2] = base64url_encode(&sig);
        assert_eq!(
            verify_compact(&s.join("."), &keys, AlgorithmSet::all()).unwrap_err(),
            TokenError::BadSignature,
            "{}",
            v.alg
        );
    }
}

/// The published signatures were made with deterministic ML-DSA (and
/// Ed25519, deterministic by design): signing the same input must give the
/// same bytes. ECDSA nonces were random there, so for ML-DSA-65-ES256 only
/// the ML-DSA component can match.
#[test]
fn signing_reproduces_the_published_signatures() {
    for v in VECTORS.iter().map(load) {
        let key = PrivateKey::parse(v.private_jwk.to_string().as_bytes()).unwrap();
        let s: Vec<&str> = v.jws.split('.').collect();
        let header = String::from_utf8(base64url_decode(s[0].as_bytes()).unwrap()).unwrap();
        let payload = base64url_decode(s[1].as_bytes()).unwrap();
        let ours = sign_compact(&key, &header, &payload).unwrap();
        let ours = base64url_decode(ours.rsplit('.').next().unwrap().as_bytes()).unwrap();
        let theirs = base64url_decode(s[2].as_bytes()).unwrap();
        if v.alg == Algorithm::MlDsa65Es256 {
            assert_eq!(ours[..3309], theirs[..3309], "{}", v.alg);
        } else {
            assert_eq!(ours, theirs, "{}", v.alg);
        }
    }
}
