//! The working group's published examples for both composites,
//! draft-ietf-jose-pq-composite-sigs-05 (8 October 2026), Appendix A, run in
//! every test build.
//!
//! The examples' private keys are given by their seeds (ML-DSA seed all
//! zero; Ed25519 seed all zero; P-256 `d` = 1) and their payload by its text,
//! so pqguard rebuilds them. The published public keys and tokens are
//! third-party data and are not copied here: their SHA-256 digests are, with
//! the key ids (RFC 7638 thumbprints). ML-DSA signing (deterministic variant)
//! and Ed25519 are deterministic, so signing the published input with the
//! published key must give the published token byte for byte. The
//! ML-DSA-65-ES256 example's ECDSA nonce was random: there the ML-DSA
//! component must match byte for byte and our whole signature must verify.
//! With the example files themselves, `vectors.rs` (feature
//! `published-vectors`) also verifies the published tokens directly.

use sha2::{Digest, Sha256};

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The payload of every example.
const PAYLOAD: &str = "It's a dangerous business, Frodo, going out your door.";

struct Published {
    alg: Algorithm,
    /// The last 32 bytes of [`PrivateKey::generate`]'s entropy: the Ed25519
    /// seed or the P-256 scalar (the ML-DSA seed, the first 32, is zero).
    classical: [u8; 32],
    kid: &'static str,
    /// SHA-256 (hex) of the published JWK's `pub` member (base64url text).
    pub_sha256: &'static str,
    /// SHA-256 (hex) of the published compact JWS.
    jws_sha256: &'static str,
    /// SHA-256 (hex) of the ML-DSA-65 component of the published signature
    /// (its first 3309 bytes).
    ml_dsa_sig_sha256: &'static str,
}

const P256_D_ONE: [u8; 32] = {
    let mut d = [0; 32];
    d[31] = 1;
    d
};

const PUBLISHED: [Published; 2] = [
    Published {
        alg: Algorithm::MlDsa65Ed25519,
        classical: [0; 32],
        kid: "87Vn3JTmvTdxvpetv0rA5GwfoLnCkMxBDCJvYgFVuh4",
        pub_sha256: "7536d4c4eaf29915b5235b10e79beec9dcdd0627d775c7a7c083788c830fd099",
        jws_sha256: "eaf3e24c9c52a5cdfc8b60f99354bd18de14c6a3e0f6b6440240f1280f0b088e",
        ml_dsa_sig_sha256: "228138f1e7289126a3e18402736ef0d2d97b90b812af249b5dd5a61635bcaa62",
    },
    Published {
        alg: Algorithm::MlDsa65Es256,
        classical: P256_D_ONE,
        kid: "RKckYpZD-Fj494Q4vaeNmq6c3mqg_EhLkiUOo5mhNYE",
        pub_sha256: "86024fc0a9a805044ecbf17998aad4ba9a58b0796b6886bf12bcb983020bea39",
        jws_sha256: "dbf2842e78ea9e776082bd00a22d4241a7b05ba4a34ab8fbd4056e193687b615",
        ml_dsa_sig_sha256: "3901c0af2eaf25ef9aa49fc0812fe7bfec9f367166f4d5a65e09d768557aa12d",
    },
];

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rebuild(p: &Published) -> (PrivateKey, String) {
    let mut entropy = [0u8; 64];
    entropy[32..].copy_from_slice(&p.classical);
    let key = PrivateKey::generate(p.alg, Some(p.kid.to_owned()), &entropy).unwrap();
    let header = format!(r#"{{"alg":"{}","kid":"{}"}}"#, p.alg.name(), p.kid);
    let jws = sign_compact(&key, &header, PAYLOAD.as_bytes()).unwrap();
    (key, jws)
}

#[test]
fn the_published_composite_keys_are_rebuilt_from_their_seeds() {
    for p in &PUBLISHED {
        let (key, _) = rebuild(p);
        let jwk = key.public_key().to_jwk();
        assert_eq!(jwk["kty"], "AKP", "{}", p.alg);
        assert_eq!(jwk["alg"], p.alg.name());
        let public = jwk["pub"].as_str().unwrap();
        assert_eq!(sha256_hex(public.as_bytes()), p.pub_sha256, "{}", p.alg);
        assert_eq!(key.public_key().thumbprint(), p.kid, "{}", p.alg);
    }
}

#[test]
fn signing_the_published_input_gives_the_published_composite_signatures() {
    for p in &PUBLISHED {
        let (key, jws) = rebuild(p);
        let signature = base64url_decode(jws.rsplit('.').next().unwrap().as_bytes()).unwrap();
        assert_eq!(
            sha256_hex(&signature[..3309]),
            p.ml_dsa_sig_sha256,
            "{}: the ML-DSA component (label as context, M' as the draft builds it)",
            p.alg
        );
        if p.alg == Algorithm::MlDsa65Ed25519 {
            assert_eq!(sha256_hex(jws.as_bytes()), p.jws_sha256, "{}", p.alg);
        } else {
            // Random ECDSA nonce in the example: a DER Ecdsa-Sig-Value of ours.
            assert_ne!(sha256_hex(jws.as_bytes()), p.jws_sha256);
            let ecdsa = &signature[3309..];
            assert_eq!(ecdsa[0], 0x30, "DER SEQUENCE");
            assert_eq!(usize::from(ecdsa[1]) + 2, ecdsa.len());
        }
        let keys = KeySet::from_keys(vec![key.public_key().clone()]).unwrap();
        let verified = verify_compact(&jws, &keys, AlgorithmSet::all()).unwrap();
        assert_eq!(verified.header.alg, p.alg);
        assert_eq!(verified.payload, PAYLOAD.as_bytes());
        // One flipped bit in either component is refused.
        for at in [100, signature.len() - 1] {
            let mut bad = signature.clone();
            bad[at] ^= 1;
            let mut parts: Vec<&str> = jws.split('.').collect();
            let encoded = base64url_encode(&bad);
            parts[2] = &encoded;
            assert_eq!(
                verify_compact(&parts.join("."), &keys, AlgorithmSet::all()).unwrap_err(),
                TokenError::BadSignature,
                "{} bit at {at}",
                p.alg
            );
        }
    }
}
