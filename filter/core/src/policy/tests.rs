//! Table tests for classification, precedence, every condition and argument rule.

use serde_json::{json, Map, Value};

use super::*;
use crate::config::Config;
use crate::inspect::mcp::{parse_body, ParseOptions, ProtocolVersion};
use crate::tls::TlsFacts;
use crate::token::{Algorithm, Claims, VerifiedToken};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config::read::FromJson;

fn policy(v: Value) -> Policy {
    compile(RawPolicy::read(&v).unwrap()).unwrap()
}

fn connectivity(v: Value) -> Connectivity {
    compile_connectivity(RawP2p::read(&v).unwrap()).unwrap()
}

fn token(alg: Algorithm, scope: &str, extra: Value) -> VerifiedToken {
    let mut all = Map::new();
    all.insert("sub".into(), json!("alice"));
    if let Value::Object(m) = extra {
        all.extend(m);
    }
    VerifiedToken {
        alg,
        kid: Some("k1".into()),
        claims: Claims {
            iss: Some("https://issuer".into()),
            sub: Some("alice".into()),
            aud: vec!["mcp".into()],
            exp: 2_000_000_000,
            nbf: None,
            iat: None,
            jti: None,
            scope: scope.split_whitespace().map(str::to_owned).collect(),
            all,
        },
        digest: [0; 32],
    }
}

fn pq() -> TlsFacts {
    TlsFacts::new(Some("TLSv1.3".into()), Some("X25519MLKEM768".into()), None)
}

fn classical() -> TlsFacts {
    TlsFacts::new(Some("TLSv1.3".into()), Some("X25519".into()), None)
}

fn decide(
    p: &Policy,
    c: &Connectivity,
    body: &str,
    crypto: &TlsFacts,
    tok: Option<&VerifiedToken>,
) -> Decision {
    let i = parse_body(
        body.as_bytes(),
        ProtocolVersion::V2025_11_25,
        &ParseOptions::default(),
    )
    .unwrap();
    let f = Facts {
        crypto,
        token: tok,
        mtls: false,
        flagged: false,
        bound: false,
    };
    p.evaluate(c, &i.messages[0], &f)
}

const CALL_PY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_python","arguments":{"code":"1+1"}}}"#;
const CALL_ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

fn sample() -> Policy {
    policy(json!({
        "rules": [
            {"name": "calls", "effect": "allow", "match": {"methods": ["tools/call"]}, "when": {"authenticated": true}},
            {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_*"]},
             "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"], "scopes": ["tools:execute"]}},
            {"name": "no-admin", "effect": "deny", "match": {"tools": ["admin_*"]}}
        ]
    }))
}

#[test]
fn denies_run_python_over_x25519_and_allows_it_over_x25519mlkem768_with_ml_dsa_65() {
    let p = sample();
    let c = Connectivity::default();
    let t = token(Algorithm::MlDsa65, "tools:execute", json!({}));
    match decide(&p, &c, CALL_PY, &classical(), Some(&t)) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, DenyReason::RequirementNotMet);
            assert_eq!(d.rule.as_deref(), Some("python-needs-pq"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decide(&p, &c, CALL_PY, &pq(), Some(&t)),
        Decision::Allow {
            rule: "calls".into()
        }
    );
}

#[test]
fn requirement_on_token_algorithm_and_scope() {
    let p = sample();
    let c = Connectivity::default();
    let eddsa = token(Algorithm::EdDsa, "tools:execute", json!({}));
    assert!(
        matches!(decide(&p, &c, CALL_PY, &pq(), Some(&eddsa)), Decision::Deny(d) if d.reason == DenyReason::RequirementNotMet)
    );
    let no_scope = token(Algorithm::MlDsa65, "tools:read", json!({}));
    match decide(&p, &c, CALL_PY, &pq(), Some(&no_scope)) {
        Decision::Deny(d) => assert_eq!(d.missing_scope.as_deref(), Some("tools:execute")),
        other => panic!("{other:?}"),
    }
    // echo is not covered by the requirement
    assert!(matches!(
        decide(&p, &c, CALL_ECHO, &classical(), Some(&eddsa)),
        Decision::Allow { .. }
    ));
}

#[test]
fn any_matching_deny_wins_over_allow() {
    let p = sample();
    let t = token(Algorithm::MlDsa65, "tools:execute", json!({}));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}"#;
    match decide(&p, &Connectivity::default(), body, &pq(), Some(&t)) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, DenyReason::DeniedByRule);
            assert_eq!(d.rule.as_deref(), Some("no-admin"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_is_deny() {
    let p = sample();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    match decide(&p, &Connectivity::default(), body, &pq(), None) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, DenyReason::NoAllowRule);
            assert_eq!(d.rule, None);
        }
        other => panic!("{other:?}"),
    }
    // An allow rule whose condition fails also ends in deny.
    assert!(
        matches!(decide(&p, &Connectivity::default(), CALL_ECHO, &pq(), None), Decision::Deny(d) if d.reason == DenyReason::NoAllowRule)
    );
}

#[test]
fn enforce_pqc_and_allowed_algos_gate_every_request() {
    let p = policy(json!({"rules": [{"name": "all", "effect": "allow"}]}));
    let seed = connectivity(json!({
        "enforce_pqc": true,
        "allowed_algos": ["ML-KEM-768", "ML-DSA-65"],
        "threat_detection": {"block_downgrade_attempts": true, "alert_on_latency_spike": true}
    }));
    assert!(seed.block_downgrade_attempts && seed.alert_on_latency_spike);
    let ml65 = token(Algorithm::MlDsa65, "", json!({}));
    let ml44 = token(Algorithm::MlDsa44, "", json!({}));
    assert!(matches!(
        decide(&p, &seed, CALL_ECHO, &pq(), Some(&ml65)),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&p, &seed, CALL_ECHO, &pq(), None),
        Decision::Allow { .. }
    ));
    assert!(
        matches!(decide(&p, &seed, CALL_ECHO, &classical(), Some(&ml65)), Decision::Deny(d) if d.reason == DenyReason::PqcRequired)
    );
    assert!(
        matches!(decide(&p, &seed, CALL_ECHO, &pq(), Some(&ml44)), Decision::Deny(d) if d.reason == DenyReason::AlgorithmNotAllowed)
    );
    let mlkem1024 = TlsFacts::new(Some("TLSv1.3".into()), Some("MLKEM1024".into()), None);
    assert!(
        matches!(decide(&p, &seed, CALL_ECHO, &mlkem1024, Some(&ml65)), Decision::Deny(d) if d.reason == DenyReason::AlgorithmNotAllowed)
    );
    // Missing facts count as the weakest (fail closed).
    assert!(
        matches!(decide(&p, &seed, CALL_ECHO, &TlsFacts::default(), Some(&ml65)), Decision::Deny(d) if d.reason == DenyReason::PqcRequired)
    );
}

#[test]
fn matches_on_resources_prompts_and_methods() {
    let p = policy(json!({"rules": [
        {"name": "records", "effect": "allow", "match": {"resources": ["records://"]}},
        {"name": "summaries", "effect": "allow", "match": {"prompts": ["summ*"]}},
        {"name": "list", "effect": "allow", "match": {"methods": ["tools/list"]}}
    ]}));
    let c = Connectivity::default();
    let read =
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"records://index"}}"#;
    let secret = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#;
    let prompt = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summarize"}}"#;
    let other = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"exfiltrate"}}"#;
    assert_eq!(
        decide(&p, &c, read, &pq(), None),
        Decision::Allow {
            rule: "records".into()
        }
    );
    assert!(matches!(
        decide(&p, &c, secret, &pq(), None),
        Decision::Deny(_)
    ));
    assert_eq!(
        decide(&p, &c, prompt, &pq(), None),
        Decision::Allow {
            rule: "summaries".into()
        }
    );
    assert!(matches!(
        decide(&p, &c, other, &pq(), None),
        Decision::Deny(_)
    ));
    assert!(matches!(
        decide(
            &p,
            &c,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &pq(),
            None
        ),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&p, &c, CALL_ECHO, &pq(), None),
        Decision::Deny(_)
    ));
}

#[test]
fn every_condition_can_fail() {
    let t = token(
        Algorithm::MlDsa65Ed25519,
        "a b",
        json!({"tools": ["echo"], "tier": "gold"}),
    );
    let tls12 = TlsFacts::new(Some("TLSv1.2".into()), Some("X25519".into()), None);
    let cases: Vec<(Value, TlsFacts, bool, bool, bool)> = vec![
        // (when, crypto, mtls, flagged, expected allow)
        (json!({"scopes": ["a", "b"]}), pq(), false, false, true),
        (json!({"scopes": ["c"]}), pq(), false, false, false),
        (
            json!({"claims": {"tier": "gold"}}),
            pq(),
            false,
            false,
            true,
        ),
        (
            json!({"claims": {"tier": "silver"}}),
            pq(),
            false,
            false,
            false,
        ),
        (
            json!({"claims": {"tools": "echo"}}),
            pq(),
            false,
            false,
            true,
        ),
        (
            json!({"claims": {"tools": "run_python"}}),
            pq(),
            false,
            false,
            false,
        ),
        (json!({"min_kex": "hybrid-pq"}), pq(), false, false, true),
        (json!({"min_kex": "pq"}), pq(), false, false, false),
        (
            json!({"groups": ["X25519MLKEM768"]}),
            pq(),
            false,
            false,
            true,
        ),
        (json!({"groups": ["MLKEM1024"]}), pq(), false, false, false),
        (
            json!({"min_tls_version": "TLSv1.3"}),
            tls12.clone(),
            false,
            false,
            false,
        ),
        (
            json!({"min_tls_version": "TLSv1.2"}),
            tls12,
            false,
            false,
            true,
        ),
        (
            json!({"token_algs": ["ML-DSA-65-Ed25519"]}),
            pq(),
            false,
            false,
            true,
        ),
        (
            json!({"token_algs": ["ML-DSA-87"]}),
            pq(),
            false,
            false,
            false,
        ),
        (
            json!({"min_token_class": "hybrid-pq"}),
            pq(),
            false,
            false,
            true,
        ),
        (json!({"min_token_class": "pq"}), pq(), false, false, false),
        (json!({"mtls": true}), pq(), true, false, true),
        (json!({"mtls": true}), pq(), false, false, false),
        (json!({"not_flagged": true}), pq(), false, false, true),
        (json!({"not_flagged": true}), pq(), false, true, false),
    ];
    for (when, crypto, mtls, flagged, want) in cases {
        let p = policy(json!({"rules": [{"name": "r", "effect": "allow", "when": when.clone()}]}));
        let i = parse_body(
            CALL_ECHO.as_bytes(),
            ProtocolVersion::V2025_11_25,
            &ParseOptions::default(),
        )
        .unwrap();
        let f = Facts {
            crypto: &crypto,
            token: Some(&t),
            mtls,
            flagged,
            bound: false,
        };
        let got = matches!(
            p.evaluate(&Connectivity::default(), &i.messages[0], &f),
            Decision::Allow { .. }
        );
        assert_eq!(got, want, "{when}");
    }
}

#[test]
fn refuses_invalid_policies_with_precise_messages() {
    let bad = [
        (
            json!({"rules": [{"name": "r", "effect": "maybe"}]}),
            "maybe",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "allow", "when": {"min_kex": "strong"}}]}),
            "min_kex",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "allow", "when": {"token_algs": ["RS256"]}}]}),
            "RS256",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "allow", "when": {"groups": ["X448MLKEM"]}}]}),
            "X448MLKEM",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "allow"}, {"name": "r", "effect": "deny"}]}),
            "unique",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "allow", "unknown": 1}]}),
            "unknown",
        ),
        (
            json!({"rules": [{"name": "r", "effect": "require"}]}),
            "needs a match",
        ),
        (json!({"pins": {"echo": "abc"}}), "pins.echo"),
    ];
    for (v, needle) in bad {
        let msg = match RawPolicy::read(&v) {
            Err(e) => e,
            Ok(raw) => compile(raw).unwrap_err().to_string(),
        };
        assert!(msg.contains(needle), "{v}: {msg}");
    }
    let e = compile_connectivity(RawP2p::read(&json!({"allowed_algos": ["ML-KEM-512"]})).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("ML-KEM-512"));
}

#[test]
fn the_seed_block_loads_verbatim_in_the_plugin_configuration() {
    let c = Config::from_json(
        br#"{"p2p_connectivity":{"enforce_pqc":true,"allowed_algos":["ML-KEM-768","ML-DSA-65"],
             "threat_detection":{"block_downgrade_attempts":true,"alert_on_latency_spike":true}}}"#,
    )
    .unwrap();
    assert!(c.connectivity.enforce_pqc);
    assert_eq!(
        c.connectivity.allowed_token_algs,
        vec!["ML-DSA-65".to_owned()]
    );
    assert!(c
        .connectivity
        .allowed_groups
        .contains(&"X25519MLKEM768".to_owned()));
}

mod arguments {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn check(rules: Value, body: &str) -> Result<(), args::ArgViolation> {
        let p = policy(json!({"arguments": [rules]}));
        let i = parse_body(
            body.as_bytes(),
            ProtocolVersion::V2025_11_25,
            &ParseOptions::default(),
        )
        .unwrap();
        let m = &i.messages[0];
        p.arguments_for(m.tool().unwrap())
            .unwrap()
            .check(&i.document, m.arguments)
    }

    fn call(args: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"run_python","arguments":{args}}}}}"#
        )
    }

    #[test]
    fn type_length_values_substrings_patterns_and_unknowns() {
        let rules = json!({"tool": "run_python", "reject_unknown": true, "args": {
            "code": {"type": "string", "required": true, "max_length": 20, "forbidden_substrings": ["import os"], "forbidden_patterns": ["*rm -rf*"]},
            "mode": {"allowed_values": ["fast", "safe"]},
            "n": {"type": "integer"},
            "opts": {"type": "object", "forbidden_substrings": ["secret"]}
        }});
        assert!(check(
            rules.clone(),
            &call(r#"{"code":"1+1","mode":"safe","n":3}"#)
        )
        .is_ok());
        let refused = [
            (r#"{"code":1}"#, "code"),
            (r#"{"code":"x = 1 + 1 + 1 + 1 + 1 + 1"}"#, "code"),
            (r#"{"code":"IMPORT OS"}"#, "code"),
            (r#"{"code":"\u0069mport os"}"#, "code"),
            (r#"{"code":"x; rm -rf /"}"#, "code"),
            (r#"{"code":"1","mode":"turbo"}"#, "mode"),
            (r#"{"code":"1","n":1.5}"#, "n"),
            (r#"{"code":"1","other":true}"#, "other"),
            (r#"{"mode":"safe"}"#, "code"),
            (r#"{"code":"1","opts":{"k":["a","my SECRET"]}}"#, "opts"),
            (r#"{"code":"1","opts":{"secret":1}}"#, "opts"),
        ];
        for (args, arg) in refused {
            let v = check(rules.clone(), &call(args)).unwrap_err();
            assert_eq!(v.arg, arg, "{args}: {v}");
        }
    }

    #[test]
    fn unknown_arguments_pass_unless_rejected() {
        let rules = json!({"tool": "run_python", "args": {"code": {"type": "string"}}});
        assert!(check(rules, &call(r#"{"code":"1","extra":2}"#)).is_ok());
    }

    #[test]
    fn case_sensitive_matching_when_configured() {
        let rules = json!({"tool": "run_python", "args": {"code": {"forbidden_substrings": ["Secret"], "case_sensitive": true}}});
        assert!(check(rules.clone(), &call(r#"{"code":"secret"}"#)).is_ok());
        assert!(check(rules, &call(r#"{"code":"Secret"}"#)).is_err());
    }
}
