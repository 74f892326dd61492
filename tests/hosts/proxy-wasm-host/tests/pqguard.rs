//! `pqguard.wasm`, as built for Envoy, in a second proxy-wasm host.
//!
//! Each test asserts what the client gets and what the upstream sees, from
//! the host's side of the ABI: local replies, forwarded headers and bodies,
//! rewritten answers, HTTP calls on the timer, shared data between workers
//! and the audit log the guest wrote.

use pqguard_core::audit;
use pqguard_core::token::{mint, Algorithm, KeySet, PrivateKey};
use pqguard_host_tests::{Fleet, Outcome, Request, Response, StartError, Worker};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test";
const AUD: &str = "https://mcp.test/mcp";
const PQ: &str = "X25519MLKEM768";
const CLASSICAL: &str = "X25519";
const LIST: &str = r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#;
const TOOLS: &str = r#"{"jsonrpc":"2.0","id":"l-1","result":{"tools":[
 {"name":"echo","inputSchema":{"type":"object"}},
 {"name":"run_python","inputSchema":{"type":"object","properties":{"code":{"type":"string"}}}}]}}"#;

fn key(alg: Algorithm, kid: &str, seed: u8) -> PrivateKey {
    PrivateKey::generate(alg, Some(kid.into()), &[seed; 64]).expect("key")
}

fn now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(d.as_secs()).expect("seconds")
}

fn token(k: &PrivateKey, sub: &str, scope: &str, exp_offset: i64) -> String {
    let Value::Object(claims) = json!({
        "iss": ISS, "aud": AUD, "sub": sub, "scope": scope,
        "iat": now() - 10, "exp": now() + exp_offset,
    }) else {
        unreachable!("an object literal")
    };
    mint(k, &claims).expect("mint")
}

fn jwks(keys: &[&PrivateKey]) -> Value {
    KeySet::from_keys(keys.iter().map(|k| k.public_key().clone()).collect())
        .expect("key set")
        .to_jwks()
}

fn call(id: &str, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"code": "print(1)"}}})
    .to_string()
}

fn echo_upstream(_: &[(String, String)], _: &[u8]) -> Response {
    Response::json(r#"{"jsonrpc":"2.0","id":"x","result":{}}"#)
}

fn unreachable_upstream(_: &[(String, String)], _: &[u8]) -> Response {
    panic!("the filter forwarded a request it had to refuse")
}

fn start(fleet: &Fleet, config: &Value) -> Worker {
    match fleet.worker(&config.to_string()) {
        Ok(w) => w,
        Err(e) => panic!("{e:?}: {:#?}", fleet.logs.all()),
    }
}

/// Asserts a local JSON-RPC error reply: status, code, echoed id.
fn assert_refused(o: &Outcome, status: u32, code: i64, id: &Value) -> Value {
    assert!(o.local && o.upstream.is_none(), "forwarded: {o:?}");
    assert_eq!(o.client.status, status, "{o:?}");
    assert_eq!(o.client.header("content-type"), Some("application/json"));
    let body = o.client.json_body();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(&body["id"], id, "{body}");
    body
}

/// The `pqguard.request` records logged so far, parsed.
fn request_records(fleet: &Fleet) -> Vec<Value> {
    fleet
        .logs
        .all()
        .iter()
        .filter_map(|l| l.strip_prefix("pqguard.request "))
        .map(|j| serde_json::from_str(j).expect("a request record is JSON"))
        .collect()
}

// ---- configuration -------------------------------------------------------

#[test]
fn a_valid_configuration_serves_and_an_invalid_one_is_refused_with_its_reason() {
    let fleet = Fleet::load();
    let mut w = start(&fleet, &json!({"limits": {"max_body_bytes": 4096}}));
    let o = w
        .exchange(Request::mcp(LIST), |_, _| Response::json(TOOLS))
        .expect("host");
    assert!(!o.local);

    for (config, names) in [
        (json!({"colour": "blue"}), "colour"),
        (
            json!({"limits": {"max_body_bytes": "big"}}),
            "\"big\", expected u64",
        ),
        (
            json!({"policy": {"rules": [{"name": "r", "effect": "allow", "when": {"min_kex": "quantum"}}]}}),
            "quantum",
        ),
    ] {
        let fleet = Fleet::load();
        match fleet.worker(&config.to_string()) {
            Err(StartError::Refused) => {}
            Err(StartError::Host(e)) => panic!("{config}: host failure {e}"),
            Ok(_) => panic!("{config}: accepted"),
        }
        let logs = fleet.logs.all();
        assert!(
            logs.iter().any(|l| l.contains(names)),
            "{config}: no log line names {names:?}: {logs:#?}"
        );
    }
}

// ---- inspection ----------------------------------------------------------

#[test]
fn a_tools_list_is_forwarded_unchanged_with_an_uncompressed_answer_asked_for() {
    let fleet = Fleet::load();
    let mut w = start(&fleet, &json!({}));
    let o = w
        .exchange(
            Request::mcp(LIST).header("accept-encoding", "gzip, br"),
            |_, _| Response::json(TOOLS),
        )
        .expect("host");
    assert!(!o.local, "{o:?}");
    let forwarded = o.upstream.as_ref().expect("forwarded");
    assert_eq!(forwarded.body, LIST.as_bytes());
    assert_eq!(o.upstream_header("accept-encoding"), Some("identity"));
    assert_eq!(o.client.status, 200);
    assert_eq!(
        o.client.json_body(),
        serde_json::from_str::<Value>(TOOLS).expect("json")
    );
    let records = request_records(&fleet);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["method"], "tools/list");
    assert_eq!(records[0]["outcome"], "forwarded");
}

#[test]
fn the_refusal_table_gets_its_status_and_json_rpc_error_and_nothing_is_forwarded() {
    let fleet = Fleet::load();
    let mut w = start(&fleet, &json!({"limits": {"max_body_bytes": 2048}}));
    let null = Value::Null;
    // (case, request, status, JSON-RPC code, id the error carries, reason)
    let cases: Vec<(&str, Request, u32, i64, Value, &str)> = vec![
        (
            "text/plain",
            Request::mcp(LIST)
                .without("content-type")
                .header("content-type", "text/plain"),
            415,
            -32600,
            null.clone(),
            "unsupported_media_type",
        ),
        (
            "no content type",
            Request::mcp(LIST).without("content-type"),
            415,
            -32600,
            null.clone(),
            "unsupported_media_type",
        ),
        (
            "gzip request",
            Request::mcp(LIST).header("content-encoding", "gzip"),
            415,
            -32600,
            null.clone(),
            "unsupported_content_encoding",
        ),
        (
            // MCP 2026-07-28's UnsupportedProtocolVersion, with the request's id.
            "unknown version",
            Request::mcp(LIST).header("mcp-protocol-version", "1999-01-01"),
            400,
            -32022,
            json!("l-1"),
            "unsupported_protocol_version",
        ),
        (
            "repeated mcp-method",
            Request::mcp(LIST)
                .header("mcp-method", "tools/list")
                .header("mcp-method", "tools/list"),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "invalid json",
            Request::mcp(r#"{"jsonrpc":"2.0","id":"b-1","method":"tools/list",}"#),
            400,
            -32700,
            null.clone(),
            "parse_error",
        ),
        (
            "two objects",
            Request::mcp(&format!("{LIST}{LIST}")),
            400,
            -32700,
            null.clone(),
            "parse_error",
        ),
        (
            "duplicate key",
            Request::mcp(
                r#"{"jsonrpc":"2.0","id":"b-1","method":"tools/list","method":"tools/call"}"#,
            ),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "escaped duplicate",
            Request::mcp(
                r#"{"jsonrpc":"2.0","id":"b-1","method":"tools/call","params":{"name":"echo","n\u0061me":"run_python"}}"#,
            ),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "nesting 65",
            Request::mcp(&format!(
                r#"{{"jsonrpc":"2.0","id":"b-1","method":"tools/call","params":{{"name":"echo","arguments":{{"a":{}1{}}}}}}}"#,
                "[".repeat(63),
                "]".repeat(63)
            )),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "float id",
            Request::mcp(r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "jsonrpc 1.0",
            Request::mcp(r#"{"jsonrpc":"1.0","id":"b-2","method":"tools/list"}"#),
            400,
            -32600,
            json!("b-2"),
            "invalid_request",
        ),
        (
            "unknown method",
            Request::mcp(r#"{"jsonrpc":"2.0","id":"b-3","method":"admin/exec"}"#),
            404,
            -32601,
            json!("b-3"),
            "method_not_found",
        ),
        (
            "call without name",
            Request::mcp(
                r#"{"jsonrpc":"2.0","id":"b-4","method":"tools/call","params":{"arguments":{}}}"#,
            ),
            400,
            -32602,
            json!("b-4"),
            "invalid_params",
        ),
        (
            "batch in 2025-11-25",
            Request::mcp(&format!("[{LIST},{LIST}]")).header("mcp-protocol-version", "2025-11-25"),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
        (
            "over the body cap",
            Request::mcp(&call("b-5", &"x".repeat(4096))),
            413,
            -32600,
            null.clone(),
            "body_too_large",
        ),
        (
            "GET with a body",
            Request::mcp(LIST)
                .without(":method")
                .header(":method", "GET"),
            400,
            -32600,
            null.clone(),
            "invalid_request",
        ),
    ];
    let mut reasons = Vec::new();
    for (case, request, status, code, id, reason) in cases {
        let o = w.exchange(request, unreachable_upstream).expect(case);
        let body = assert_refused(&o, status, code, &id);
        assert!(body["error"]["message"].is_string(), "{case}: {body}");
        reasons.push((case, status, reason));
    }
    // Each refusal logged its own record: same status, and the reason.
    let records = request_records(&fleet);
    assert_eq!(records.len(), reasons.len(), "one record per refusal");
    for (record, (case, status, reason)) in records.iter().zip(reasons) {
        assert_eq!(record["outcome"], "rejected", "{case}: {record}");
        assert_eq!(record["status"], status, "{case}: {record}");
        assert_eq!(record["reason"], reason, "{case}: {record}");
    }
    assert!(!w.is_poisoned(), "no trap on hostile input");
}

// ---- tokens and policy ---------------------------------------------------

struct Setup {
    pq: PrivateKey,
    classical: PrivateKey,
    config: Value,
}

fn setup(block_downgrades: bool) -> Setup {
    let pq = key(Algorithm::MlDsa65, "k65", 1);
    let classical = key(Algorithm::EdDsa, "ked", 2);
    let config = json!({
        "auth": {"audience": AUD, "issuers": [ISS], "jwks": jwks(&[&pq, &classical]),
                 "resource_metadata": {"resource": AUD, "authorization_servers": [ISS]}},
        "p2p_connectivity": {"threat_detection": {"block_downgrade_attempts": block_downgrades}},
        "policy": {"rules": [
            {"name": "session", "effect": "allow", "match": {"methods": ["initialize", "tools/list"]},
             "when": {"authenticated": true}},
            {"name": "python-needs-pq", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"min_kex": "hybrid-pq", "token_algs": ["ML-DSA-65"]}},
            {"name": "callers", "effect": "allow", "match": {"methods": ["tools/call"]},
             "when": {"scopes": ["tools:call"]}},
        ]}
    });
    Setup {
        pq,
        classical,
        config,
    }
}

fn bearer(request: Request, token: &str) -> Request {
    request.header("authorization", &format!("Bearer {token}"))
}

#[test]
fn a_valid_token_passes_and_missing_expired_forged_or_foreign_ones_get_401() {
    let s = setup(false);
    let fleet = Fleet::load();
    let mut w = start(&fleet, &s.config);
    let good = token(&s.pq, "alice", "tools:call", 300);
    let o = w
        .exchange(
            bearer(Request::mcp(&call("t-1", "echo")), &good).over_tls(PQ),
            echo_upstream,
        )
        .expect("host");
    assert!(!o.local, "{o:?}");
    assert_eq!(
        o.upstream_header("authorization"),
        Some(format!("Bearer {good}").as_str()),
        "the token goes on to the server"
    );

    let stranger = key(Algorithm::MlDsa65, "k65", 9); // same kid, other key: a forgery
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 8.., "AAAAAAAA");
    let cases = [
        ("missing", None),
        ("expired", Some(token(&s.pq, "alice", "tools:call", -120))),
        ("forged", Some(token(&stranger, "alice", "tools:call", 300))),
        ("tampered signature", Some(tampered)),
        ("not a JWS", Some("abc.def".to_owned())),
    ];
    for (case, t) in cases {
        let request = Request::mcp(&call("t-2", "echo")).over_tls(PQ);
        let request = match &t {
            Some(t) => bearer(request, t),
            None => request,
        };
        let o = w.exchange(request, unreachable_upstream).expect(case);
        assert_refused(&o, 401, -32001, &json!("t-2"));
        let challenge = o.client.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge:?}");
        if t.is_some() {
            assert!(challenge.contains("invalid_token"), "{case}: {challenge:?}");
        }
    }
}

#[test]
fn with_forward_token_false_the_token_stops_at_the_filter() {
    let mut s = setup(false);
    s.config["auth"]["forward_token"] = json!(false);
    let fleet = Fleet::load();
    let mut w = start(&fleet, &s.config);
    let good = token(&s.pq, "alice", "tools:call", 300);
    let o = w
        .exchange(
            bearer(Request::mcp(&call("f-1", "echo")), &good).over_tls(PQ),
            echo_upstream,
        )
        .expect("host");
    assert!(!o.local, "{o:?}");
    assert_eq!(o.upstream_header("authorization"), None, "{o:?}");
    // Still checked before it is dropped: a forged token is refused.
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 8.., "AAAAAAAA");
    let o = w
        .exchange(
            bearer(Request::mcp(&call("f-2", "echo")), &tampered).over_tls(PQ),
            unreachable_upstream,
        )
        .expect("host");
    assert_refused(&o, 401, -32001, &json!("f-2"));
}

#[test]
fn the_pq_rule_passes_over_a_hybrid_handshake_and_refuses_classical_or_unknown_transport() {
    let s = setup(false);
    let fleet = Fleet::load();
    let mut w = start(&fleet, &s.config);
    let t = token(&s.pq, "alice", "tools:call", 300);
    let python = |id: &str| bearer(Request::mcp(&call(id, "run_python")), &t);

    let o = w
        .exchange(python("p-1").over_tls(PQ), echo_upstream)
        .expect("host");
    assert!(
        !o.local,
        "hybrid PQ handshake and an ML-DSA-65 token: {o:?}"
    );

    let o = w
        .exchange(python("p-2").over_tls(CLASSICAL), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("p-2"));

    // This host offers no filter state at all: the key exchange is
    // unknown, which counts as the weakest class, never as "allow".
    let o = w
        .exchange(python("p-3"), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("p-3"));
    // The same request with only the TLS version known is no better.
    let o = w
        .exchange(
            python("p-4").property(&["connection", "tls_version"], "TLSv1.3"),
            unreachable_upstream,
        )
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("p-4"));

    // A classical token over a PQ handshake fails the token_algs condition.
    let ed = token(&s.classical, "carol", "tools:call", 300);
    let o = w
        .exchange(
            bearer(Request::mcp(&call("p-5", "run_python")), &ed).over_tls(PQ),
            unreachable_upstream,
        )
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("p-5"));
    // A tool without the PQ rule is fine for the same caller without facts.
    let o = w
        .exchange(
            bearer(Request::mcp(&call("p-6", "echo")), &ed),
            echo_upstream,
        )
        .expect("host");
    assert!(!o.local, "{o:?}");

    let records = request_records(&fleet);
    let unknown = records
        .iter()
        .find(|r| r["id"] == "p-3")
        .expect("record of p-3");
    assert_eq!(unknown["kex_class"], "none", "{unknown}");
    assert_eq!(unknown["outcome"], "rejected", "{unknown}");
}

#[test]
fn each_caller_sees_only_the_tools_it_may_call_in_a_tools_list_answer() {
    let s = setup(false);
    let fleet = Fleet::load();
    let mut w = start(&fleet, &s.config);
    let t = token(&s.pq, "alice", "tools:call", 300);
    let names = |o: &Outcome| -> Vec<String> {
        o.client.json_body()["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let pq = w
        .exchange(bearer(Request::mcp(LIST), &t).over_tls(PQ), |_, _| {
            Response::json(TOOLS)
        })
        .expect("host");
    assert_eq!(names(&pq), ["echo", "run_python"]);
    let classical = w
        .exchange(
            bearer(Request::mcp(LIST), &t).over_tls(CLASSICAL),
            |_, _| Response::json(TOOLS),
        )
        .expect("host");
    assert_eq!(
        names(&classical),
        ["echo"],
        "run_python is hidden from a classical handshake"
    );
    assert_eq!(
        classical.client.header("content-length"),
        None,
        "the old length is dropped"
    );
    let unknown = w
        .exchange(bearer(Request::mcp(LIST), &t), |_, _| Response::json(TOOLS))
        .expect("host");
    assert_eq!(
        names(&unknown),
        ["echo"],
        "and from a host that gives no TLS facts"
    );
}

#[test]
fn a_downgrade_seen_by_another_worker_is_blocked_through_the_hosts_shared_data() {
    let s = setup(true);
    let fleet = Fleet::load();
    let mut a = start(&fleet, &s.config);
    let mut b = start(&fleet, &s.config);
    let t = token(&s.pq, "alice", "tools:call", 300);
    let o = a
        .exchange(
            bearer(Request::mcp(&call("d-1", "echo")), &t).over_tls(PQ),
            echo_upstream,
        )
        .expect("host");
    assert!(!o.local, "{o:?}");
    let o = b
        .exchange(
            bearer(Request::mcp(&call("d-2", "echo")), &t).over_tls(CLASSICAL),
            unreachable_upstream,
        )
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("d-2"));
    let alerts: Vec<Value> = fleet
        .logs
        .all()
        .iter()
        .filter_map(|l| l.strip_prefix("pqguard.alert "))
        .map(|j| serde_json::from_str(j).expect("an alert is JSON"))
        .collect();
    assert!(
        alerts.iter().any(|a| a["kind"] == "downgrade"),
        "{alerts:?}"
    );
    // Another identity on the classical worker is not affected.
    let bob = token(&s.pq, "bob", "tools:call", 300);
    let o = b
        .exchange(
            bearer(Request::mcp(&call("d-3", "echo")), &bob).over_tls(CLASSICAL),
            echo_upstream,
        )
        .expect("host");
    assert!(!o.local, "{o:?}");
}

// ---- timers, HTTP calls, audit -------------------------------------------

#[test]
fn keys_fetched_over_an_http_call_on_the_timer_admit_tokens_and_a_failed_fetch_admits_none() {
    let pq = key(Algorithm::MlDsa65, "remote-65", 3);
    let config = json!({"auth": {"audience": AUD, "issuers": [ISS],
        "remote_jwks": {"cluster": "jwks", "authority": "issuer.test", "path": "/jwks.json"}}});
    let fleet = Fleet::load();
    let mut w = start(&fleet, &config);
    let t = token(&pq, "alice", "tools:call", 300);
    let request = |id: &str| bearer(Request::mcp(&call(id, "echo")), &t).over_tls(PQ);

    // No key yet: the token's key is unknown, 401, never forwarded.
    let o = w
        .exchange(request("j-1"), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 401, -32001, &json!("j-1"));

    assert!(w.tick_period().is_some(), "the filter asks for a timer");
    w.tick().expect("tick");
    let calls = fleet.outbox.take();
    let fetch = calls
        .iter()
        .find(|c| c.upstream == "jwks")
        .unwrap_or_else(|| panic!("{calls:?}"));
    assert_eq!(fetch.header(":method"), Some("GET"));
    assert_eq!(fetch.header(":path"), Some("/jwks.json"));
    assert_eq!(fetch.header(":authority"), Some("issuer.test"));

    // The fetch fails: still no key, still refused.
    w.answer(fetch, None).expect("deliver failure");
    let o = w
        .exchange(request("j-2"), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 401, -32001, &json!("j-2"));

    // Retry (after the back-off) and answer with the key set.
    let mut retried = None;
    for _ in 0..64 {
        fleet.clock.set(u64::try_from(now()).expect("now") + 3600);
        w.tick().expect("tick");
        if let Some(call) = fleet
            .outbox
            .take()
            .into_iter()
            .find(|c| c.upstream == "jwks")
        {
            retried = Some(call);
            break;
        }
    }
    fleet.clock.set(0);
    let fetch = retried.expect("the fetch is retried on a later tick");
    w.answer(&fetch, Some(Response::json(&jwks(&[&pq]).to_string())))
        .expect("deliver key set");
    let o = w.exchange(request("j-3"), echo_upstream).expect("host");
    assert!(!o.local, "a token of the fetched key passes: {o:?}");
}

#[test]
fn the_audit_trail_written_in_this_host_verifies_with_every_request_in_it() {
    let signer = key(Algorithm::MlDsa65, "audit-1", 5);
    let fleet = Fleet::load();
    let mut w = start(
        &fleet,
        &json!({"audit": {"signing_key": signer.to_jwk(), "checkpoint_every": 3}}),
    );
    let mut sent = 0;
    for i in 0..7 {
        let body = if i % 2 == 0 {
            LIST.to_owned()
        } else {
            r#"{"jsonrpc":"2.0","id":"a","method":"admin/exec"}"#.to_owned()
        };
        w.exchange(Request::mcp(&body), |_, _| Response::json(TOOLS))
            .expect("host");
        sent += 1;
    }
    w.tick().expect("tick writes a checkpoint over the head");
    let log = fleet.logs.all().join("\n");
    let keys = KeySet::parse(jwks(&[&signer]).to_string().as_bytes()).expect("keys");
    let report = audit::verify(&log, &keys);
    assert!(report.is_intact(), "{:?}", report.first_error());
    // The genesis record opens the chain; then one record per request.
    assert_eq!(report.records(), sent + 1, "one audit record per request");
    assert_eq!(
        report.unverified(),
        0,
        "every record is under a signed checkpoint"
    );

    // One edited record breaks the chain.
    let edited = log.replacen("admin/exec", "admin/exed", 1);
    assert_ne!(edited, log);
    assert!(!audit::verify(&edited, &keys).is_intact());
}

#[test]
fn enforce_pqc_refuses_every_request_a_host_gives_no_tls_facts_for() {
    let fleet = Fleet::load();
    let mut w = start(&fleet, &json!({"p2p_connectivity": {"enforce_pqc": true}}));
    let o = w
        .exchange(Request::mcp(LIST), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("l-1"));
    let o = w
        .exchange(Request::mcp(LIST).over_tls(CLASSICAL), unreachable_upstream)
        .expect("host");
    assert_refused(&o, 403, -32003, &json!("l-1"));
    let o = w
        .exchange(Request::mcp(LIST).over_tls(PQ), |_, _| {
            Response::json(TOOLS)
        })
        .expect("host");
    assert!(!o.local, "{o:?}");
}
