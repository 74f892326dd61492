use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seed() -> [u8; 64] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

fn secret(kid: &str, fill: u8) -> Secret {
    Secret {
        kid: kid.into(),
        bytes: vec![fill; 32],
    }
}

const TOKEN_DIGEST: Key32 = [9; 32];
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

fn random() -> [u8; BIND_RANDOM_LEN] {
    std::array::from_fn(|i| u8::try_from(200 - i).unwrap())
}

/// Known answers computed with kyber-py 1.2.0 (an independent, pure-Python
/// FIPS 203 implementation): `ML_KEM_768.key_derive(bytes(range(64)))` and
/// `_encaps_internal(ek, bytes(range(100, 132)))`.
#[test]
fn ml_kem_768_matches_an_independent_implementation() {
    let client = ClientKey::from_seed(&seed());
    let ek = client.encapsulation_key();
    assert_eq!(ek.len(), EK_LEN);
    assert_eq!(hex(&ek[..16]), "298aa10d423c8dda069d02bc59e6cdf0");
    assert_eq!(
        hex(&sha3(&ek)),
        "a24e16d8f8f9383a95b77050f4d9fd2f5733eec1d63ef3c23ebf9918173669a7"
    );
    let ek = EncapsulationKey::<MlKem768>::new(&Array::try_from(ek.as_slice()).unwrap()).unwrap();
    let m: [u8; 32] = std::array::from_fn(|i| u8::try_from(100 + i).unwrap());
    let (ct, ss) = ek.encapsulate_deterministic(&Array::from(m));
    assert_eq!(
        hex(&sha3(ct.as_slice())),
        "ce221a0989a8597aa562b69a8c235edc93ccf72fadc91d96785c9a09075e5cd1"
    );
    assert_eq!(
        hex(ss.as_slice()),
        "c5a74110c158acbaf9c01deb86fa6cc10c14533feda54bec1fdd000d61f07e4e"
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// FIPS 203 key generation against a published vector: Wycheproof
/// `mlkem_768_keygen_seed_test.json` (C2SP), tcId 1 ("official round 3
/// seeds 0"): from the 64-byte seed `d ‖ z`, the published `ek`, checked by
/// its first and last bytes and by `H(ek) = SHA3-256(ek)`, which the
/// published `dk` carries (`dk = dk_pke ‖ ek ‖ H(ek) ‖ z`).
#[test]
fn ml_kem_768_key_generation_matches_the_published_vector() {
    let seed: [u8; 64] = unhex(
        "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d\
         8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f",
    )
    .try_into()
    .unwrap();
    let ek = ClientKey::from_seed(&seed).encapsulation_key();
    assert_eq!(hex(&ek[..16]), "a8e651a1e685f22478a8954f007bc771");
    assert_eq!(hex(&ek[ek.len() - 15..]), "e8315f2af0d32f0017ae136e19f028");
    assert_eq!(
        hex(&sha3(&ek)),
        "f57262661358cde8d3ebf990e5fd1d5b896c992ccfaadb5256b68bbf5943b132"
    );
}

#[test]
fn a_binding_opens_only_with_the_clients_key_and_gives_the_key_the_filter_recomputes() {
    let s = secret("b1", 7);
    let client = ClientKey::from_seed(&seed());
    let issued = issue(
        &s,
        &client.encapsulation_key(),
        &TOKEN_DIGEST,
        2_000,
        &random(),
    )
    .unwrap();
    assert!(issued.id.starts_with("b1.2000."), "{}", issued.id);
    assert_eq!(issued.ciphertext.len(), CT_LEN);
    let key = client.open(&issued).unwrap();
    assert_eq!(key, binding_key(&s, &issued.id, &TOKEN_DIGEST));
    // Through its JSON form.
    let again = Issued::from_json(issued.to_json().as_bytes()).unwrap();
    assert_eq!(again, issued);
    // Another client key cannot open it.
    let mut other = seed();
    other[0] ^= 1;
    assert!(matches!(
        ClientKey::from_seed(&other).open(&issued),
        Err(BindError::BadAnswer(_))
    ));
    // A changed id (a later expiry, say) does not open either.
    let mut stretched = issued.clone();
    stretched.id = stretched.id.replacen("2000", "9999", 1);
    assert!(client.open(&stretched).is_err());
}

#[test]
fn a_malformed_encapsulation_key_is_refused() {
    let s = secret("b1", 7);
    let err = issue(&s, &[0; 100], &TOKEN_DIGEST, 2_000, &random()).unwrap_err();
    assert_eq!(err, BindError::BadKey("not 1184 bytes (ML-KEM-768)"));
    // Coefficients of 0xFFF are not below q = 3329: the FIPS 203 input check.
    let err = issue(&s, &[0xff; EK_LEN], &TOKEN_DIGEST, 2_000, &random()).unwrap_err();
    assert_eq!(err, BindError::BadKey("fails the FIPS 203 modulus check"));
}

#[test]
fn cnf_confirms_exactly_one_key() {
    let ek = ClientKey::from_seed(&seed()).encapsulation_key();
    let print = thumbprint(&ek);
    assert_eq!(confirm(&ek, Some(&print), false), Ok(()));
    let other = ClientKey::from_seed(&[3; 64]).encapsulation_key();
    assert_eq!(
        confirm(&other, Some(&print), true),
        Err(BindError::KeyNotConfirmed)
    );
    assert_eq!(confirm(&ek, None, true), Ok(()));
    assert_eq!(confirm(&ek, None, false), Err(BindError::UnconfirmedToken));
}

struct Bound {
    secrets: Vec<Secret>,
    id: String,
    key: Key32,
}

fn bound() -> Bound {
    let s = secret("b1", 7);
    let client = ClientKey::from_seed(&seed());
    let issued = issue(
        &s,
        &client.encapsulation_key(),
        &TOKEN_DIGEST,
        2_000,
        &random(),
    )
    .unwrap();
    let key = client.open(&issued).unwrap();
    Bound {
        secrets: vec![secret("b2", 8), s],
        id: issued.id,
        key,
    }
}

const HEADERS: BoundHeaders<'static> = BoundHeaders {
    authority: Some("edge.test:8443"),
    session_id: Some("s-1"),
    protocol_version: Some("2025-11-25"),
    mcp_method: None,
    mcp_name: None,
};

fn proof(b: &Bound, method: &str, path: &str, body: &[u8], ts: u64, nonce: &[u8]) -> String {
    proof_with(b, method, path, HEADERS, body, ts, nonce)
}

fn proof_with(
    b: &Bound,
    method: &str,
    path: &str,
    headers: BoundHeaders<'_>,
    body: &[u8],
    ts: u64,
    nonce: &[u8],
) -> String {
    let covered = Covered {
        method,
        path,
        headers,
        body_digest: &sha3(body),
        token_digest: &TOKEN_DIGEST,
    };
    Proof::new(&b.id, &b.key, &covered, ts, nonce).to_header()
}

fn check(
    b: &Bound,
    header: &str,
    method: &str,
    path: &str,
    body: &[u8],
    now: u64,
) -> Result<(), BindError> {
    check_with(b, header, method, path, HEADERS, body, now)
}

fn check_with(
    b: &Bound,
    header: &str,
    method: &str,
    path: &str,
    headers: BoundHeaders<'_>,
    body: &[u8],
    now: u64,
) -> Result<(), BindError> {
    Proof::parse(header)?.verify(
        &b.secrets,
        &Covered {
            method,
            path,
            headers,
            body_digest: &sha3(body),
            token_digest: &TOKEN_DIGEST,
        },
        &TOKEN_DIGEST,
        now,
        60,
    )
}

#[test]
fn the_authority_and_the_mcp_headers_are_under_the_mac() {
    let b = bound();
    let h = proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16]);
    let variants = [
        BoundHeaders {
            authority: Some("other.test:8443"),
            ..HEADERS
        },
        BoundHeaders {
            authority: None,
            ..HEADERS
        },
        BoundHeaders {
            session_id: Some("s-2"),
            ..HEADERS
        },
        BoundHeaders {
            session_id: None,
            ..HEADERS
        },
        BoundHeaders {
            protocol_version: Some("2025-06-18"),
            ..HEADERS
        },
        BoundHeaders {
            mcp_method: Some("tools/call"),
            ..HEADERS
        },
        BoundHeaders {
            mcp_name: Some("echo"),
            ..HEADERS
        },
        // An empty header is not an absent one.
        BoundHeaders {
            mcp_name: Some(""),
            ..HEADERS
        },
    ];
    for headers in variants {
        assert_eq!(
            check_with(&b, &h, "POST", "/mcp", headers, BODY, 1_000),
            Err(BindError::BadMac),
            "{headers:?}"
        );
    }
    assert_eq!(
        check_with(&b, &h, "POST", "/mcp", HEADERS, BODY, 1_000),
        Ok(())
    );
    // Values cannot slide from one header into the next.
    let split = BoundHeaders {
        authority: Some("a"),
        session_id: Some("bc"),
        ..HEADERS
    };
    let joined = BoundHeaders {
        authority: Some("ab"),
        session_id: Some("c"),
        ..HEADERS
    };
    let h = proof_with(&b, "POST", "/mcp", split, BODY, 1_000, &[5; 16]);
    assert_eq!(
        check_with(&b, &h, "POST", "/mcp", joined, BODY, 1_000),
        Err(BindError::BadMac)
    );
}

#[test]
fn format_1_proofs_are_refused_by_name() {
    let b = bound();
    let h = proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16]);
    let v1 = h.replacen("v=2, ", "", 1);
    assert!(
        matches!(Proof::parse(&v1), Err(BindError::Malformed(why)) if why.contains("format 1"))
    );
    let v3 = h.replacen("v=2", "v=3", 1);
    assert_eq!(
        Proof::parse(&v3),
        Err(BindError::Malformed("unknown proof format (v)"))
    );
}

#[test]
fn a_proof_holds_for_its_request_only() {
    let b = bound();
    let h = proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16]);
    assert_eq!(check(&b, &h, "POST", "/mcp", BODY, 1_010), Ok(()));
    for (method, path, body) in [
        ("GET", "/mcp", BODY),
        ("POST", "/mcp?x=1", BODY),
        ("POST", "/mcp", &BODY[1..]),
    ] {
        assert_eq!(
            check(&b, &h, method, path, body, 1_010),
            Err(BindError::BadMac),
            "{method} {path}"
        );
    }
    // Another token (same binding id): another key.
    let parsed = Proof::parse(&h).unwrap();
    assert_eq!(
        parsed.verify(
            &b.secrets,
            &Covered {
                method: "POST",
                path: "/mcp",
                headers: HEADERS,
                body_digest: &sha3(BODY),
                token_digest: &[1; 32],
            },
            &[1; 32],
            1_010,
            60
        ),
        Err(BindError::BadMac)
    );
}

#[test]
fn time_expiry_and_secrets_are_checked() {
    let b = bound();
    let h = proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16]);
    assert_eq!(
        check(&b, &h, "POST", "/mcp", BODY, 1_061),
        Err(BindError::OutsideWindow)
    );
    // From the future: a few seconds of skew, never proofs made in advance.
    assert_eq!(check(&b, &h, "POST", "/mcp", BODY, 995), Ok(()));
    assert_eq!(
        check(&b, &h, "POST", "/mcp", BODY, 994),
        Err(BindError::OutsideWindow)
    );
    assert_eq!(
        check(&b, &h, "POST", "/mcp", BODY, 939),
        Err(BindError::OutsideWindow)
    );
    let late = proof(&b, "POST", "/mcp", BODY, 2_001, &[5; 16]);
    assert_eq!(
        check(&b, &late, "POST", "/mcp", BODY, 2_001),
        Err(BindError::Expired)
    );
    assert_eq!(BindError::Expired.hint(), "rebind");
    assert_eq!(BindError::OutsideWindow.hint(), "clock_skew");
    // The secret retired: the binding is unknown, bind again.
    let retired = Bound {
        secrets: vec![secret("b2", 8)],
        ..bound()
    };
    assert_eq!(
        check(&retired, &h, "POST", "/mcp", BODY, 1_000),
        Err(BindError::UnknownSecret)
    );
    // A secret with the right id but other bytes: the MAC fails.
    let replaced = Bound {
        secrets: vec![secret("b1", 1)],
        ..bound()
    };
    assert_eq!(
        check(&replaced, &h, "POST", "/mcp", BODY, 1_000),
        Err(BindError::BadMac)
    );
}

#[test]
fn malformed_headers_are_refused_with_a_reason() {
    let b = bound();
    let good = proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16]);
    let cases = [
        ("", "expected name=value pairs"),
        ("v=2, id=a.1.x, ts=1", "no nonce"),
        (
            "v=2, id=a.1.x, id=a.1.x, ts=1, nonce=AAAAAAAAAAAAAAAAAAAAAA, mac=x",
            "a member appears twice",
        ),
        (
            "v=2, id=a.1.x, ts=-1, nonce=AAAAAAAAAAAAAAAAAAAAAA, mac=x",
            "bad ts",
        ),
        (
            "v=2, id=a.1.x, ts=1, nonce=AAAA, mac=x",
            "nonce must be 16 to 64 bytes",
        ),
        (
            "v=2, id=a.1.x, ts=1, nonce=AAAAAAAAAAAAAAAAAAAAAA, mac=AAAA",
            "mac must be 32 bytes",
        ),
        ("colour=blue", "unknown member"),
    ];
    for (header, why) in cases {
        assert_eq!(
            Proof::parse(header),
            Err(BindError::Malformed(why)),
            "{header}"
        );
    }
    let no_exp = good.replacen("b1.2000.", "b1.", 1);
    assert_eq!(
        check(&b, &no_exp, "POST", "/mcp", BODY, 1_000),
        Err(BindError::Malformed("binding id is not kid.exp.random"))
    );
}

#[test]
fn the_replay_cache_refuses_a_second_use_and_forgets_after_the_window() {
    let b = bound();
    let p = Proof::parse(&proof(&b, "POST", "/mcp", BODY, 1_000, &[5; 16])).unwrap();
    let mut cache = ReplayCache::new(2);
    let until = replay_until(1_000, 60);
    assert_eq!(cache.remember(&replay_key(&p), until, 1_000), Ok(()));
    assert_eq!(
        cache.remember(&replay_key(&p), until, 1_030),
        Err(BindError::Replayed)
    );
    let q = Proof::parse(&proof(&b, "POST", "/mcp", BODY, 1_000, &[6; 16])).unwrap();
    assert_eq!(cache.remember(&replay_key(&q), until, 1_000), Ok(()));
    // Full of live proofs: refuse rather than forget one.
    let r = Proof::parse(&proof(&b, "POST", "/mcp", BODY, 1_000, &[7; 16])).unwrap();
    assert_ne!(replay_key(&r), replay_key(&q));
    assert_eq!(
        cache.remember(&replay_key(&r), until, 1_001),
        Err(BindError::Busy)
    );
    // After the window the old entries go.
    assert_eq!(cache.remember(&replay_key(&r), 1_121, 1_061), Ok(()));
    assert_eq!(cache.len(), 1);
}

#[test]
fn one_binding_cannot_take_more_than_its_quota() {
    let mut quota = BindingQuota::new(3, 65);
    for _ in 0..3 {
        assert_eq!(quota.take("b1.2000.x", 1_000), Ok(()));
    }
    assert_eq!(quota.take("b1.2000.x", 1_010), Err(BindError::Quota));
    assert_eq!(quota.retry_after("b1.2000.x", 1_010), 55);
    // Other bindings are not affected; the window turns.
    assert_eq!(quota.take("b1.2000.y", 1_010), Ok(()));
    assert_eq!(quota.take("b1.2000.x", 1_065), Ok(()));
}

fn claims(cnf: serde_json::Value) -> crate::token::Claims {
    let mut all = serde_json::Map::new();
    if !cnf.is_null() {
        all.insert("cnf".into(), cnf);
    }
    crate::token::Claims {
        iss: None,
        sub: None,
        aud: Vec::new(),
        exp: 2_000,
        nbf: None,
        iat: None,
        jti: None,
        scope: Vec::new(),
        all,
    }
}

#[test]
fn confirmations_this_filter_cannot_check_are_refused() {
    use serde_json::json;
    assert_eq!(confirmation(&claims(serde_json::Value::Null)), Ok(None));
    let ok = confirmation(&claims(json!({"mlkem#S3-256": "abc"})))
        .unwrap()
        .unwrap();
    assert_eq!(ok.mlkem.as_deref(), Some("abc"));
    let both = confirmation(&claims(json!({"mlkem#S3-256": "abc", "x5t#S256": "def"})))
        .unwrap()
        .unwrap();
    assert_eq!(
        (both.mlkem.is_some(), both.x5t.as_deref()),
        (true, Some("def"))
    );
    for cnf in [
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        json!({"jwk": {"kty": "OKP"}}),
        json!({"jku": "https://x"}),
        json!({"kid": "k"}),
        json!({"x5t#S1": "a"}),
        json!({"mlkem#S3-256": "abc", "jkt": "x"}),
        json!({"mlkem#S3-256": 5}),
        json!({"mlkem#S3-256": ""}),
        json!({}),
        json!("mlkem"),
        json!(["x"]),
    ] {
        let refused = confirmation(&claims(cnf.clone()));
        assert!(
            matches!(refused, Err(BindError::UnsupportedConfirmation(_))),
            "{cnf}: {refused:?}"
        );
        assert_eq!(refused.unwrap_err().code(), "cnf_unsupported");
    }
}

#[test]
fn a_certificate_bound_token_needs_that_certificate() {
    let digest = [0xab_u8; 32];
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let x5t = base64url_encode(&digest);
    assert_eq!(confirm_certificate(&x5t, Some(&hex)), Ok(()));
    assert_eq!(confirm_certificate(&x5t, Some(&hex.to_uppercase())), Ok(()));
    assert_eq!(
        confirm_certificate(&x5t, None),
        Err(BindError::CertificateMismatch)
    );
    let other: String = "cd".repeat(32);
    assert_eq!(
        confirm_certificate(&x5t, Some(&other)),
        Err(BindError::CertificateMismatch)
    );
    assert_eq!(
        confirm_certificate(&x5t, Some("zz")),
        Err(BindError::CertificateMismatch)
    );
}

#[test]
fn reseeding_changes_what_the_drbg_draws() {
    let mut a = Drbg::new(&[1; 32]);
    let mut b = Drbg::new(&[1; 32]);
    b.reseed(&[9; 32]);
    let (mut x, mut y) = ([0u8; 48], [0u8; 48]);
    a.fill(&mut x);
    b.fill(&mut y);
    assert_ne!(x, y);
}

#[test]
fn the_drbg_is_deterministic_per_seed_and_never_repeats_a_block() {
    let mut a = Drbg::new(&[1; 32]);
    let mut b = Drbg::new(&[1; 32]);
    let mut c = Drbg::new(&[2; 32]);
    let (mut x, mut y, mut z) = ([0u8; 48], [0u8; 48], [0u8; 48]);
    a.fill(&mut x);
    b.fill(&mut y);
    c.fill(&mut z);
    assert_eq!(x, y);
    assert_ne!(x, z);
    let mut next = [0u8; 48];
    a.fill(&mut next);
    assert_ne!(x, next);
    assert_ne!(x[..32], x[16..48]);
}
