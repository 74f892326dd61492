//! Every acceptance and rejection path, for every algorithm.

use serde_json::{json, Map, Value};

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";
const AUD: &str = "https://mcp.example/mcp";

fn private_key(alg: Algorithm, kid: &str, byte: u8) -> PrivateKey {
    PrivateKey::generate(alg, Some(kid.into()), &[byte; 64]).unwrap()
}

fn opts() -> ValidationOptions {
    ValidationOptions {
        issuers: Some(vec![ISS.into()]),
        audience: Some(AUD.into()),
        ..ValidationOptions::default()
    }
}

fn claims() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 300, "iat": NOW,
        "nbf": NOW - 10, "scope": "tools:call", "jti": "t-1", "tools": ["echo"]
    }) else {
        unreachable!()
    };
    m
}

fn header(alg: &str, kid: &str) -> String {
    json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()
}

struct Fixture {
    key: PrivateKey,
    keys: KeySet,
}

impl Fixture {
    fn new(alg: Algorithm) -> Self {
        let key = private_key(alg, "k1", 7);
        let keys = KeySet::from_keys(vec![key.public_key().clone()]).unwrap();
        Self { key, keys }
    }

    fn token_with(&self, header: &str, payload: &[u8]) -> String {
        sign_compact(&self.key, header, payload).unwrap()
    }

    fn token(&self, claims: &Map<String, Value>) -> String {
        mint(&self.key, claims).unwrap()
    }

    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        verify(token, &self.keys, &opts(), NOW)
    }
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[test]
fn round_trips_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let token = f.token(&claims());
        let v = f.verify(&token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.alg, alg);
        assert_eq!(v.class(), alg.class());
        assert_eq!(v.kid.as_deref(), Some("k1"));
        assert_eq!(v.claims.sub.as_deref(), Some("alice"));
        assert_eq!(v.claims.scope, ["tools:call"]);
        assert_eq!(v.claims.get("tools"), Some(&json!(["echo"])));
        assert_eq!(v.digest, token_digest(&token));
    }
}

#[test]
fn refuses_tampered_payload_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let mut s = segments(&f.token(&claims()));
        let mut forged = claims();
        forged.insert("sub".into(), json!("mallory"));
        s[1] = base64url_encode(Value::Object(forged).to_string().as_bytes());
        assert_eq!(
            f.verify(&s.join(".")),
            Err(TokenError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn refuses_tampered_signature_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let token = f.token(&claims());
        let mut s = segments(&token);
        let mut sig = base64url_decode(s[2].as_bytes()).unwrap();
        for position in [0, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[position] ^= 0x01;
            s[2] = base64url_encode(&bad);
            assert_eq!(
                f.verify(&s.join(".")),
                Err(TokenError::BadSignature),
                "{alg} byte {position}"
            );
        }
        // Truncated and extended signatures.
        sig.pop();
        s[2] = base64url_encode(&sig);
        assert!(f.verify(&s.join(".")).is_err(), "{alg} truncated");
        sig.extend_from_slice(&[0, 0]);
        s[2] = base64url_encode(&sig);
        assert!(f.verify(&s.join(".")).is_err(), "{alg} extended");
        s[2] = String::new();
        assert_eq!(
            f.verify(&s.join(".")),
            Err(TokenError::BadSignature),
            "{alg} empty"
        );
    }
}

#[test]
fn refuses_a_token_signed_by_another_key_with_the_same_kid() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let other = private_key(alg, "k1", 8);
        let token = mint(&other, &claims()).unwrap();
        assert_eq!(f.verify(&token), Err(TokenError::BadSignature), "{alg}");
    }
}

#[test]
fn refuses_expired_and_not_yet_valid_tokens_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let mut c = claims();
        c.insert("exp".into(), json!(NOW - 61));
        assert!(
            matches!(f.verify(&f.token(&c)), Err(TokenError::Expired { .. })),
            "{alg}"
        );
        let mut c = claims();
        c.insert("nbf".into(), json!(NOW + 61));
        assert!(
            matches!(f.verify(&f.token(&c)), Err(TokenError::NotYetValid { .. })),
            "{alg}"
        );
    }
}

#[test]
fn refuses_wrong_audience_and_issuer_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let mut c = claims();
        c.insert("aud".into(), json!(["https://other.example"]));
        assert_eq!(
            f.verify(&f.token(&c)),
            Err(TokenError::WrongAudience),
            "{alg}"
        );
        let mut c = claims();
        c.insert("iss".into(), json!("https://evil.example"));
        assert_eq!(
            f.verify(&f.token(&c)),
            Err(TokenError::WrongIssuer),
            "{alg}"
        );
    }
}

#[test]
fn refuses_a_header_alg_that_differs_from_the_key_named_by_kid() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let payload = Value::Object(claims()).to_string();
        for other in Algorithm::ALL.into_iter().filter(|a| *a != alg) {
            // Signed with the right key, but the header claims another algorithm.
            let token = f.token_with(&header(other.name(), "k1"), payload.as_bytes());
            assert_eq!(
                f.verify(&token),
                Err(TokenError::AlgorithmMismatch {
                    header: other,
                    key: alg
                }),
                "{alg} as {other}"
            );
        }
    }
}

#[test]
fn refuses_alg_none_for_every_key_type() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let payload = base64url_encode(Value::Object(claims()).to_string().as_bytes());
        for none in ["none", "None", "NONE"] {
            let h = base64url_encode(json!({"alg": none, "kid": "k1"}).to_string().as_bytes());
            assert_eq!(
                f.verify(&format!("{h}.{payload}.")),
                Err(TokenError::AlgNone)
            );
        }
        // A `none` header spliced onto a valid signature.
        let s = segments(&f.token(&claims()));
        let h = base64url_encode(br#"{"alg":"none"}"#);
        assert_eq!(
            f.verify(&format!("{h}.{}.{}", s[1], s[2])),
            Err(TokenError::AlgNone)
        );
    }
}

#[test]
fn refuses_oversized_tokens_before_parsing() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let token = f.token(&claims());
        let mut o = opts();
        o.max_token_bytes = token.len() - 1;
        assert_eq!(
            verify(&token, &f.keys, &o, NOW),
            Err(TokenError::TooLarge {
                len: token.len(),
                limit: token.len() - 1
            })
        );
        o.max_token_bytes = token.len();
        assert!(verify(&token, &f.keys, &o, NOW).is_ok());
    }
    // The default cap refuses a 17 KiB token of garbage without looking at it.
    let f = Fixture::new(Algorithm::EdDsa);
    assert!(matches!(
        f.verify(&"a".repeat(17 * 1024)),
        Err(TokenError::TooLarge { .. })
    ));
}

#[test]
fn refuses_malformed_base64url_in_each_segment_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let token = f.token(&claims());
        let s = segments(&token);
        for (i, part) in [(0, Part::Header), (1, Part::Claims), (2, Part::Signature)] {
            for corrupt in [
                format!("{}=", s[i]),
                format!("{}+", &s[i][..s[i].len() - 1]),
                format!("{} ", s[i]),
                format!("{}A", s[i])
                    .chars()
                    .take(s[i].len() / 4 * 4 + 1)
                    .collect(),
            ] {
                let mut t = s.clone();
                t[i] = corrupt;
                let e = f.verify(&t.join(".")).unwrap_err();
                assert!(
                    matches!(e, TokenError::Malformed { part: p, .. } if p == part),
                    "{alg} segment {i}: {e}"
                );
            }
        }
        for bad in [
            String::new(),
            s[..2].join("."),
            format!("{token}.x"),
            format!("{token}."),
        ] {
            assert!(
                matches!(
                    f.verify(&bad),
                    Err(TokenError::Malformed {
                        part: Part::Token,
                        ..
                    })
                ),
                "{alg}: {bad:.20}"
            );
        }
    }
}

#[test]
fn refuses_duplicate_keys_in_header_and_claims_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let payload = Value::Object(claims()).to_string();
        let h = format!(r#"{{"alg":"{0}","kid":"k1","alg":"{0}"}}"#, alg.name());
        assert_eq!(
            f.verify(&f.token_with(&h, payload.as_bytes())),
            Err(TokenError::DuplicateKey { part: Part::Header }),
            "{alg}"
        );
        let h = format!(r#"{{"alg":"{}","kid":"k1","k\u0069d":"k1"}}"#, alg.name());
        assert_eq!(
            f.verify(&f.token_with(&h, payload.as_bytes())),
            Err(TokenError::DuplicateKey { part: Part::Header }),
            "{alg} escaped"
        );
        let dup = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"sub":"alice","sub":"root"}}"#,
            NOW + 300
        );
        assert_eq!(
            f.verify(&f.token_with(&header(alg.name(), "k1"), dup.as_bytes())),
            Err(TokenError::DuplicateKey { part: Part::Claims }),
            "{alg} claims"
        );
    }
}

#[test]
fn refuses_any_crit_for_every_algorithm() {
    for alg in Algorithm::ALL {
        let f = Fixture::new(alg);
        let payload = Value::Object(claims()).to_string();
        for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
            let h = json!({"alg": alg.name(), "kid": "k1", "crit": crit, "exp": 1, "b64": true});
            assert_eq!(
                f.verify(&f.token_with(&h.to_string(), payload.as_bytes())),
                Err(TokenError::UnknownCrit),
                "{alg}"
            );
        }
    }
}

#[test]
fn checks_typ_case_insensitively() {
    let f = Fixture::new(Algorithm::EdDsa);
    let payload = Value::Object(claims()).to_string();
    for typ in ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"] {
        let h = json!({"alg": "EdDSA", "kid": "k1", "typ": typ}).to_string();
        assert!(
            f.verify(&f.token_with(&h, payload.as_bytes())).is_ok(),
            "{typ}"
        );
    }
    for typ in ["JOSE", "dpop+jwt", "secevent+jwt"] {
        let h = json!({"alg": "EdDSA", "kid": "k1", "typ": typ}).to_string();
        assert_eq!(
            f.verify(&f.token_with(&h, payload.as_bytes())),
            Err(TokenError::UnsupportedType),
            "{typ}"
        );
    }
    let h = json!({"alg": "EdDSA", "kid": "k1"}).to_string();
    assert!(f.verify(&f.token_with(&h, payload.as_bytes())).is_ok());
}

#[test]
fn selects_keys_by_kid_and_requires_kid_when_ambiguous() {
    let a = private_key(Algorithm::MlDsa44, "a", 1);
    let b = private_key(Algorithm::MlDsa44, "b", 2);
    let c = private_key(Algorithm::EdDsa, "c", 3);
    let keys = KeySet::from_keys(vec![
        a.public_key().clone(),
        b.public_key().clone(),
        c.public_key().clone(),
    ])
    .unwrap();
    let payload = Value::Object(claims()).to_string();
    let check = |t: &str| verify(t, &keys, &opts(), NOW);
    // By kid: each key verifies its own tokens.
    assert_eq!(
        check(&mint(&b, &claims()).unwrap()).unwrap().kid.as_deref(),
        Some("b")
    );
    // No kid, two ML-DSA-44 keys: ambiguous even though one would verify.
    let no_kid = sign_compact(&a, r#"{"alg":"ML-DSA-44"}"#, payload.as_bytes()).unwrap();
    assert_eq!(check(&no_kid), Err(TokenError::AmbiguousKey));
    // No kid, exactly one EdDSA key: accepted.
    let only = sign_compact(&c, r#"{"alg":"EdDSA"}"#, payload.as_bytes()).unwrap();
    assert_eq!(check(&only).unwrap().kid.as_deref(), Some("c"));
    // No kid, no key of that algorithm.
    let es = private_key(Algorithm::Es256, "e", 4);
    let none = sign_compact(&es, r#"{"alg":"ES256"}"#, payload.as_bytes()).unwrap();
    assert_eq!(check(&none), Err(TokenError::NoMatchingKey));
    // Unknown kid.
    let unknown = sign_compact(&a, r#"{"alg":"ML-DSA-44","kid":"zz"}"#, payload.as_bytes());
    assert_eq!(check(&unknown.unwrap()), Err(TokenError::UnknownKid));
}

#[test]
fn refuses_unsupported_and_unaccepted_algorithms() {
    let f = Fixture::new(Algorithm::EdDsa);
    let payload = Value::Object(claims()).to_string();
    for alg in ["HS256", "RS256", "Ed25519", "ML-DSA-65-Ed448", "ml-dsa-65"] {
        let t = f.token_with(&header(alg, "k1"), payload.as_bytes());
        assert_eq!(f.verify(&t), Err(TokenError::UnsupportedAlgorithm), "{alg}");
    }
    let mut o = opts();
    o.algorithms = AlgorithmSet::at_least(SignatureClass::HybridPq);
    let t = f.token(&claims());
    assert_eq!(
        verify(&t, &f.keys, &o, NOW),
        Err(TokenError::AlgorithmNotAccepted {
            alg: Algorithm::EdDsa
        })
    );
    for h in [
        r#"{"kid":"k1"}"#,
        r#"{"alg":7}"#,
        r#"{"alg":"EdDSA","kid":1}"#,
    ] {
        assert!(matches!(
            f.verify(&f.token_with(h, payload.as_bytes())),
            Err(TokenError::Malformed {
                part: Part::Header,
                ..
            })
        ));
    }
}

#[test]
fn cache_answers_repeat_tokens_and_refuses_the_same_things() {
    let f = Fixture::new(Algorithm::MlDsa65);
    let mut cache = TokenCache::new(16);
    let token = f.token(&claims());
    let first = verify_cached(&token, &f.keys, &opts(), NOW, &mut cache).unwrap();
    assert!(!first.hit);
    let second = verify_cached(&token, &f.keys, &opts(), NOW + 1, &mut cache).unwrap();
    assert!(second.hit);
    assert_eq!(second.token.claims, first.token.claims);
    // Past exp: a miss, then the full check refuses it.
    assert!(matches!(
        verify_cached(&token, &f.keys, &opts(), NOW + 400, &mut cache),
        Err(TokenError::Expired { .. })
    ));
    // Refused tokens are never cached.
    let mut s = segments(&token);
    s[1] = base64url_encode(br#"{"aud":"x","exp":1}"#);
    let bad = s.join(".");
    for _ in 0..2 {
        assert_eq!(
            verify_cached(&bad, &f.keys, &opts(), NOW, &mut cache).map(|v| v.hit),
            Err(TokenError::BadSignature)
        );
    }
    // Cached again (a miss at a time before exp) ...
    assert!(
        !verify_cached(&token, &f.keys, &opts(), NOW + 2, &mut cache)
            .unwrap()
            .hit
    );
    // ... then a rotated key set empties the cache: the token is checked again.
    let rotated = private_key(Algorithm::MlDsa65, "k2", 9);
    let keys2 =
        KeySet::from_keys(vec![f.keys.keys()[0].clone(), rotated.public_key().clone()]).unwrap();
    let again = verify_cached(&token, &keys2, &opts(), NOW + 3, &mut cache).unwrap();
    assert!(!again.hit);
    let stats = cache.stats();
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.flushes, 1);
}

#[test]
fn rotation_accepts_old_and_new_tokens_while_both_keys_are_published() {
    let old = private_key(Algorithm::MlDsa65, "2026-01", 1);
    let new = private_key(Algorithm::MlDsa65Ed25519, "2026-02", 2);
    let both = KeySet::from_keys(vec![old.public_key().clone(), new.public_key().clone()]).unwrap();
    let only_new = KeySet::from_keys(vec![new.public_key().clone()]).unwrap();
    let t_old = mint(&old, &claims()).unwrap();
    let t_new = mint(&new, &claims()).unwrap();
    assert!(verify(&t_old, &both, &opts(), NOW).is_ok());
    assert!(verify(&t_new, &both, &opts(), NOW).is_ok());
    assert_eq!(
        verify(&t_old, &only_new, &opts(), NOW),
        Err(TokenError::UnknownKid)
    );
    assert!(verify(&t_new, &only_new, &opts(), NOW).is_ok());
}

#[test]
fn error_names_are_stable_snake_case() {
    let all = [
        TokenError::TooLarge { len: 1, limit: 0 },
        TokenError::Malformed {
            part: Part::Token,
            detail: "x",
        },
        TokenError::DuplicateKey { part: Part::Header },
        TokenError::AlgNone,
        TokenError::UnsupportedAlgorithm,
        TokenError::AlgorithmNotAccepted {
            alg: Algorithm::EdDsa,
        },
        TokenError::AlgorithmMismatch {
            header: Algorithm::EdDsa,
            key: Algorithm::Es256,
        },
        TokenError::UnknownKid,
        TokenError::AmbiguousKey,
        TokenError::NoMatchingKey,
        TokenError::UnknownCrit,
        TokenError::UnsupportedType,
        TokenError::BadSignature,
        TokenError::Expired { exp: 1, now: 2 },
        TokenError::NotYetValid { nbf: 2, now: 1 },
        TokenError::IssuedInFuture { iat: 2, now: 1 },
        TokenError::WrongAudience,
        TokenError::WrongIssuer,
        TokenError::MissingClaim { claim: "exp" },
        TokenError::InvalidClaim { claim: "exp" },
    ];
    let mut names: Vec<_> = all.iter().map(TokenError::as_str).collect();
    assert!(names
        .iter()
        .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len());
    assert_eq!(
        TokenError::Expired { exp: 5, now: 9 }.to_string(),
        "expired: exp 5, now 9"
    );
}
