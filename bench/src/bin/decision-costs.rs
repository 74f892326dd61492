//! `decision-costs`: what each per-request decision step of pqguard costs,
//! natively and (built for `wasm32-wasip1`, run with
//! `node bench/run-wasm.mjs --wasm target/wasm32-wasip1/release/decision-costs.wasm`)
//! as wasm in V8:
//!
//! - token verification per algorithm: a cache miss (`token::verify`, the
//!   signature checked) and a cache hit (`token::verify_cached` answering
//!   from a warm cache); decoding a key set (done once at configure time);
//! - policy evaluation with a realistic 50-rule policy (`Policy::evaluate`);
//! - the whole request path through the engine (`engine::Exchange`, head and
//!   body, a shared-data store in memory): what pqguard's own code costs per
//!   request, without the host calls, for `{}` and for a cached ML-DSA-65
//!   token with a policy;
//! - the audit trail: appending a decision record (what a request pays),
//!   and one record plus the timer's checkpoint (ML-DSA-65 signature over
//!   the chain head: what one timer tick pays when a checkpoint is due).
//!
//! Keys come from fixed seeds, so runs are comparable. Figures only: there
//! is no threshold here. See `bench/README.md`.

use std::process::ExitCode;
use std::time::Duration;

use pqguard_bench::timing::{measure, Plan};
use pqguard_core::audit::{Chain, CheckpointPolicy, CheckpointSigner, DecisionRecord};
use pqguard_core::engine::{Action, Effects, Exchange, MemoryStore, RequestStart, Worker};
use pqguard_core::inspect::mcp::{parse_body, ParseOptions, ProtocolVersion};
use pqguard_core::policy::{self, Connectivity, Facts};
use pqguard_core::tls::TlsFacts;
use pqguard_core::token::{self, Algorithm, KeySet, PrivateKey, TokenCache, ValidationOptions};
use serde_json::{json, Map, Value};

const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::MlDsa44,
    Algorithm::MlDsa65,
    Algorithm::MlDsa87,
    Algorithm::MlDsa65Ed25519,
    Algorithm::MlDsa65Es256,
    Algorithm::EdDsa,
    Algorithm::Es256,
];

const NOW: u64 = 1_800_000_000;

fn key(alg: Algorithm, kid: &str, fill: u8) -> Result<PrivateKey, String> {
    PrivateKey::generate(alg, Some(kid.into()), &[fill; 64]).map_err(|e| e.to_string())
}

fn claims() -> Map<String, Value> {
    let Value::Object(m) = json!({
        "iss": "https://issuer.example", "aud": "https://mcp.example/mcp", "sub": "alice",
        "scope": "tools:read tools:execute", "exp": NOW + 3600, "iat": NOW - 10
    }) else {
        return Map::new();
    };
    m
}

fn options() -> ValidationOptions {
    ValidationOptions {
        issuers: Some(vec!["https://issuer.example".into()]),
        audience: Some("https://mcp.example/mcp".into()),
        ..ValidationOptions::default()
    }
}

/// A policy of 50 rules of the kinds operators write.
fn fifty_rules() -> Result<policy::Policy, String> {
    let mut rules = vec![json!({"name": "handshake", "effect": "allow",
        "match": {"methods": ["initialize", "notifications/initialized", "ping", "tools/list"]}})];
    for i in 0..15 {
        rules.push(json!({"name": format!("deny-{i}"), "effect": "deny", "match": {"tools": [format!("admin_{i}_*")]}}));
    }
    for i in 0..15 {
        rules.push(json!({"name": format!("require-{i}"), "effect": "require", "match": {"tools": [format!("run_{i}*")]},
            "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65", "ML-DSA-87"], "scopes": ["tools:execute"]}}));
    }
    for i in 0..19 {
        rules.push(json!({"name": format!("allow-{i}"), "effect": "allow",
            "match": {"methods": ["tools/call"], "tools": [format!("tool_{i}"), format!("tool_{i}_*")]},
            "when": {"authenticated": true, "claims": {"tier": "gold"}}}));
    }
    rules.push(json!({"name": "calls", "effect": "allow", "match": {"methods": ["tools/call"]}, "when": {"authenticated": true}}));
    let raw = <policy::RawPolicy as pqguard_core::config::read::FromJson>::read(
        &json!({"rules": rules}),
    )?;
    policy::compile(raw).map_err(|e| e.to_string())
}

fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// One `tools/call` through the engine as the shim feeds it: head, body
/// progress, the body. Returns whether it was forwarded.
fn exchange(
    worker: &mut Worker,
    store: &MemoryStore,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> bool {
    exchange_at(worker, store, headers, body, NOW * 1000)
}

/// [`exchange`] at the time `now_ms`.
fn exchange_at(
    worker: &mut Worker,
    store: &MemoryStore,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    now_ms: u64,
) -> bool {
    let mut out = Effects::new();
    let mut ex = Exchange::new();
    let start = RequestStart {
        headers: Ok(headers.to_vec()),
        end_of_stream: false,
        now_ms: Some(now_ms),
        ..RequestStart::default()
    };
    ex.request_head(worker, store, start, &mut out);
    if let Action::ReadRequestBody(n) = ex.request_body_progress(worker, body.len(), true, &mut out)
    {
        ex.request_body(worker, store, Ok(&body[..n]), &mut out);
    }
    ex.forwarded()
}

/// The request path through the engine, for `{}` and for token + policy.
fn engine_costs(plan: Plan) -> Result<(), String> {
    let private = key(Algorithm::MlDsa65, "k1", 7)?;
    let token = token::mint(&private, &claims()).ok_or("mint failed")?;
    let full = json!({
        "auth": {"audience": "https://mcp.example/mcp", "issuers": ["https://issuer.example"],
                 "algorithms": ["ML-DSA-65"], "jwks": {"keys": [private.public_key().to_jwk()]}},
        "policy": {"rules": [
            {"name": "handshake", "effect": "allow", "match": {"methods": ["initialize", "tools/list"]},
             "when": {"authenticated": true}},
            {"name": "echo-for-alice", "effect": "allow", "match": {"tools": ["echo"]},
             "when": {"claims": {"sub": "alice"}}}]}
    });
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#;
    let mut headers: Vec<(String, Vec<u8>)> = [
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "127.0.0.1"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("content-length", "100"),
        ("user-agent", "wrk"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0f9d7c1e-4a8b-4c55-9d0e-7b1f2a3c4d5e"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
    .collect();
    for (label, config, logged) in [
        ("inspect", json!({}), true),
        ("inspect_quiet", json!({}), false),
        ("token_policy", full.clone(), true),
        ("token_policy_quiet", full, false),
    ] {
        let store = MemoryStore::new();
        let mut out = Effects::new();
        let bytes = config.to_string();
        let mut worker = Worker::start(
            bytes.as_bytes(),
            Some(NOW * 1000),
            Some([1; 8]),
            &store,
            &mut out,
        )?;
        worker.set_info_logged(logged);
        let mut h = headers.clone();
        if label.starts_with("token") {
            h.push((
                "authorization".into(),
                format!("Bearer {token}").into_bytes(),
            ));
        }
        if !exchange(&mut worker, &store, &h, body) {
            return Err(format!("engine_{label}: the request was not forwarded"));
        }
        let sample = measure(plan, || exchange(&mut worker, &store, &h, body));
        println!("engine_request_{label},,{:.2}", us(sample.median_ns()));
    }
    ticket_costs(plan, &private, &headers, body)?;
    headers.clear();
    Ok(())
}

/// A bound session's request through the engine: a session ticket and a
/// fresh proof per request instead of the token, with the same policy.
/// Reported: the whole request, and that minus the client's making of the
/// proof (measured alone).
fn ticket_costs(
    plan: Plan,
    private: &PrivateKey,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(), String> {
    use pqguard_core::bind::{self, BoundHeaders, ClientKey, Covered, Issued, Proof};
    let client = ClientKey::from_seed(&[3; 64]);
    let mut claims = claims();
    claims.insert(
        "cnf".into(),
        json!({ bind::CNF_MEMBER: bind::thumbprint(&client.encapsulation_key()) }),
    );
    let token = token::mint(private, &claims).ok_or("mint failed")?;
    let config = json!({
        "auth": {"audience": "https://mcp.example/mcp", "issuers": ["https://issuer.example"],
                 "algorithms": ["ML-DSA-65"], "jwks": {"keys": [private.public_key().to_jwk()]}},
        "binding": {"secrets": [{"kid": "b1", "secret": "YmVuY2ggYmluZGluZyBzZWNyZXQsIDMyIGJ5dGVzIG9yIG1vcmU"}],
                    "ticket_secrets": [{"kid": "t1", "secret": "YmVuY2ggdGlja2V0IHNlY3JldCwgMzIgYnl0ZXMgb3IgbW9yZQ"}],
                    "window_seconds": 30, "replay_per_binding": 1000000000},
        "policy": {"rules": [
            {"name": "echo-for-alice", "effect": "allow", "match": {"tools": ["echo"]},
             "when": {"claims": {"sub": "alice"}}}]}
    });
    let store = MemoryStore::new();
    let mut out = Effects::new();
    let mut worker = Worker::start(
        config.to_string().as_bytes(),
        Some(NOW * 1000),
        Some([1; 8]),
        &store,
        &mut out,
    )?;
    worker.set_info_logged(false);
    worker.seed_random(&[9; 32]);
    // Bind through the engine, as a client does once per session.
    let ek =
        serde_json::to_string(&json!({"ek": token::base64url_encode(&client.encapsulation_key())}))
            .map_err(|e| e.to_string())?;
    let mut bind_headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), b"POST".to_vec()),
        (":path".into(), bind::BIND_PATH.as_bytes().to_vec()),
        (":authority".into(), b"127.0.0.1".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        (
            "authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ),
    ];
    let mut ex = Exchange::new();
    let start = RequestStart {
        headers: Ok(bind_headers.clone()),
        end_of_stream: false,
        now_ms: Some(NOW * 1000),
        ..RequestStart::default()
    };
    ex.request_head(&mut worker, &store, start, &mut out);
    ex.request_body_progress(&mut worker, ek.len(), true, &mut out);
    let Action::Reply(reply) = ex.request_body(&mut worker, &store, Ok(ek.as_bytes()), &mut out)
    else {
        return Err("bind: no answer".into());
    };
    bind_headers.clear();
    let answer: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
    let ticket = answer["ticket"]
        .as_str()
        .ok_or("bind: no ticket")?
        .to_owned();
    let issued = Issued::from_json(reply.body.as_bytes()).map_err(|e| e.to_string())?;
    let key = client.open(&issued).map_err(|e| e.to_string())?;
    let ticket_digest = bind::sha3(ticket.as_bytes());
    let body_digest = bind::sha3(body);
    // One request a millisecond of engine time: proofs expire from the replay
    // set as they would at 1,000 requests a second (about 35,000 live).
    let mut counter = 0u64;
    let mut make = || {
        counter += 1;
        let now_ms = NOW * 1000 + counter;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        let covered = Covered {
            method: "POST",
            path: "/mcp",
            headers: BoundHeaders {
                authority: Some("127.0.0.1"),
                ..BoundHeaders::default()
            },
            body_digest: &body_digest,
            token_digest: &ticket_digest,
        };
        let mut h = headers.to_vec();
        h.push(("pqguard-ticket".into(), ticket.clone().into_bytes()));
        h.push((
            bind::PROOF_HEADER.into(),
            Proof::new(&issued.id, &key, &covered, now_ms / 1000, &nonce)
                .to_header()
                .into_bytes(),
        ));
        (h, now_ms)
    };
    let (h, at) = make();
    if !exchange_at(&mut worker, &store, &h, body, at) {
        return Err("engine_ticket: the request was not forwarded".into());
    }
    let whole = measure(plan, || {
        let (h, at) = make();
        exchange_at(&mut worker, &store, &h, body, at)
    });
    let proof_only = measure(plan, || !make().0.is_empty());
    println!(
        "engine_request_ticket_policy_quiet,,{:.2}",
        us(whole.median_ns() - proof_only.median_ns())
    );
    println!(
        "client_ticket_proof_and_headers,,{:.2}",
        us(proof_only.median_ns())
    );
    Ok(())
}

fn run() -> Result<(), String> {
    let plan = Plan {
        warmup: Duration::from_millis(150),
        batch: Duration::from_millis(50),
        batches: 7,
    };
    println!("operation,algorithm,median_us");
    engine_costs(plan)?;
    let opts = options();
    for alg in ALGORITHMS {
        let private = key(alg, "k1", 7)?;
        let jwks = json!({"keys": [private.public_key().to_jwk()]});
        let jwks_bytes = serde_json::to_vec(&jwks).map_err(|e| e.to_string())?;
        let decode = measure(plan, || KeySet::parse(&jwks_bytes).is_ok());
        println!(
            "key_set_decode,{},{:.1}",
            alg.name(),
            us(decode.median_ns())
        );
        let keys = KeySet::parse(&jwks_bytes).map_err(|e| e.to_string())?;
        let token = token::mint(&private, &claims()).ok_or("mint failed")?;
        token::verify(&token, &keys, &opts, NOW).map_err(|e| e.to_string())?;
        let miss = measure(plan, || token::verify(&token, &keys, &opts, NOW).is_ok());
        println!(
            "verify_cache_miss,{},{:.1}",
            alg.name(),
            us(miss.median_ns())
        );
        let mut cache = TokenCache::new(1024);
        token::verify_cached(&token, &keys, &opts, NOW, &mut cache).map_err(|e| e.to_string())?;
        let hit = measure(plan, || {
            token::verify_cached(&token, &keys, &opts, NOW, &mut cache)
                .map(|v| v.hit)
                .unwrap_or(false)
        });
        println!("verify_cache_hit,{},{:.2}", alg.name(), us(hit.median_ns()));
    }

    // Policy: the 50-rule policy deciding a tools/call that the last allow rule permits
    // (every rule is looked at), over hybrid PQ with an ML-DSA-65 token.
    let policy = fifty_rules()?;
    let private = key(Algorithm::MlDsa65, "k1", 7)?;
    let keys = KeySet::parse(
        &serde_json::to_vec(&json!({"keys": [private.public_key().to_jwk()]}))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let token = token::mint(&private, &claims()).ok_or("mint failed")?;
    let verified = token::verify(&token, &keys, &opts, NOW).map_err(|e| e.to_string())?;
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"x"}}}"#;
    let inspected = parse_body(body, ProtocolVersion::V2025_11_25, &ParseOptions::default())
        .map_err(|e| e.to_string())?;
    let message = inspected.messages.first().ok_or("no message")?;
    let crypto = TlsFacts::new(Some("TLSv1.3".into()), Some("X25519MLKEM768".into()), None);
    let facts = Facts {
        crypto: &crypto,
        token: Some(&verified),
        mtls: false,
        flagged: false,
        bound: false,
    };
    let connectivity = Connectivity::default();
    let eval = measure(plan, || policy.evaluate(&connectivity, message, &facts));
    println!("policy_evaluate_50_rules,,{:.2}", us(eval.median_ns()));

    // Audit: a decision record (the request path never signs), and a
    // record followed by the timer's checkpoint.
    let signer =
        CheckpointSigner::new(key(Algorithm::MlDsa65, "audit-1", 9)?).map_err(|e| e.to_string())?;
    let never = CheckpointPolicy {
        every_records: u64::MAX,
        interval_ms: 0,
    };
    let (mut chain, _) =
        Chain::new("bench-1", b"{}", NOW, NOW, never, signer.clone()).map_err(|e| e.to_string())?;
    let decision = DecisionRecord::new(&crypto, Some(&verified))
        .with_body(body)
        .with_inspected(&inspected, false);
    let mut t = NOW;
    let append = measure(plan, || {
        t += 1;
        chain.append_decision(t, &decision)
    });
    println!("audit_append_decision,,{:.2}", us(append.median_ns()));
    let every = CheckpointPolicy {
        every_records: 1,
        interval_ms: 0,
    };
    let (mut chain, _) =
        Chain::new("bench-2", b"{}", NOW, NOW, every, signer).map_err(|e| e.to_string())?;
    let checkpointed = measure(plan, || {
        t += 1;
        chain.append_decision(t, &decision);
        chain.tick(t)
    });
    println!(
        "audit_record_and_tick_checkpoint,ML-DSA-65,{:.1}",
        us(checkpointed.median_ns())
    );
    binding_costs(plan, &token)
}

/// ML-KEM bound sessions: issuing a binding (ML-KEM-768 encapsulation and
/// the key derivations), and checking a bound request's proof (MAC over a
/// 100-byte body, without the replay cache), next to the ML-DSA-65 verify
/// a signature per request would cost (`verify_cache_miss` above).
fn binding_costs(plan: Plan, token: &str) -> Result<(), String> {
    use pqguard_core::bind::{self, BoundHeaders, ClientKey, Covered, Proof, Secret};
    let secret = Secret {
        kid: "b1".into(),
        bytes: vec![7; 32],
    };
    let client = ClientKey::from_seed(&[3; 64]);
    let ek = client.encapsulation_key();
    let token_digest = token::token_digest(token);
    let random = [5u8; bind::BIND_RANDOM_LEN];
    let issued =
        bind::issue(&secret, &ek, &token_digest, NOW + 600, &random).map_err(|e| e.to_string())?;
    let issue = measure(plan, || {
        bind::issue(&secret, &ek, &token_digest, NOW + 600, &random).is_ok()
    });
    println!("binding_issue,ML-KEM-768,{:.1}", us(issue.median_ns()));
    let key = client.open(&issued).map_err(|e| e.to_string())?;
    let body = [b'x'; 100];
    let body_digest = bind::sha3(&body);
    let headers = BoundHeaders {
        authority: Some("mcp.example.com"),
        session_id: Some("3f6c1a0e-5b7d-4e2a-9c8b-2d1f0e9a7b6c"),
        protocol_version: Some("2025-11-25"),
        ..BoundHeaders::default()
    };
    let signed = Covered {
        method: "POST",
        path: "/mcp",
        headers,
        body_digest: &body_digest,
        token_digest: &token_digest,
    };
    let header = Proof::new(&issued.id, &key, &signed, NOW, &[1; 16]).to_header();
    let secrets = [secret];
    let check = measure(plan, || {
        let Ok(proof) = Proof::parse(&header) else {
            return false;
        };
        let covered = Covered {
            method: "POST",
            path: "/mcp",
            headers,
            body_digest: &bind::sha3(&body),
            token_digest: &token_digest,
        };
        proof
            .verify(&secrets, &covered, &token_digest, NOW, 60)
            .is_ok()
    });
    println!(
        "binding_proof_check,HMAC-SHA3-256,{:.2}",
        us(check.median_ns())
    );
    println!(
        "binding_proof_header_bytes,,{}",
        header.len() + "pqguard-binding: ".len()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decision-costs: {e}");
            ExitCode::FAILURE
        }
    }
}
