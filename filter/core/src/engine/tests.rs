//! Table tests of the engine: every request-path decision, fed as a host
//! would feed it, natively and in V8.

use serde_json::{json, Value};

use super::*;
use crate::audit::LINE_PREFIX;
use crate::inspect::tools::ToolsListAnswer;
use crate::outcome::log::REQUEST_MARKER;
use crate::token::{mint, Algorithm, KeySet, PrivateKey};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW_MS: u64 = 1_800_000_000_000;
const ISS: &str = "https://issuer.test";
const AUD: &str = "https://mcp.test/mcp";
const PQ: &str = "X25519MLKEM768";
const CLASSICAL: &str = "X25519";

fn key(alg: Algorithm, kid: &str) -> PrivateKey {
    PrivateKey::generate(alg, Some(kid.into()), &[7; 64]).unwrap()
}

fn token(k: &PrivateKey, sub: &str, scope: &str, exp_offset: i64) -> String {
    let now = (NOW_MS / 1000) as i64;
    let Value::Object(claims) = json!({
        "iss": ISS, "aud": AUD, "sub": sub, "scope": scope,
        "iat": now, "exp": now + exp_offset,
    }) else {
        unreachable!()
    };
    mint(k, &claims).unwrap()
}

fn jwks(keys: &[&PrivateKey]) -> Value {
    KeySet::from_keys(keys.iter().map(|k| k.public_key().clone()).collect())
        .unwrap()
        .to_jwks()
}

fn worker(config: Value, store: &dyn SharedStore) -> Worker {
    let mut out = Effects::new();
    Worker::start(
        config.to_string().as_bytes(),
        Some(NOW_MS),
        Some([1; 8]),
        store,
        &mut out,
    )
    .unwrap()
}

/// What a request came to, as a host would see it.
#[derive(Debug)]
struct Outcome {
    /// The local reply, if refused.
    reply: Option<(u16, Value)>,
    /// Its headers.
    reply_headers: Vec<(&'static str, String)>,
    /// Whether the request reached the upstream.
    forwarded: bool,
    /// Everything the engine asked for besides.
    out: Effects,
    exchange: Exchange,
}

impl Outcome {
    fn status(&self) -> Option<u16> {
        self.reply.as_ref().map(|(s, _)| *s)
    }

    fn error(&self) -> (Option<u16>, Value, Value) {
        let (status, body) = self.reply.clone().unwrap_or((0, Value::Null));
        (
            Some(status),
            body["error"]["code"].clone(),
            body["id"].clone(),
        )
    }

    fn record(&self) -> Value {
        let lines = self.out.lines_with(REQUEST_MARKER);
        serde_json::from_str(lines.last().copied().unwrap_or("null")).unwrap()
    }
}

/// A request as a client sends it.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    group: Option<&'static str>,
    now_ms: Option<u64>,
    authority: &'static str,
    /// The client certificate's SHA-256 (hex), as Envoy reports it (mTLS).
    peer_digest: Option<String>,
}

impl Req {
    fn post(body: &str) -> Self {
        Self {
            method: "POST",
            path: "/mcp",
            headers: vec![("content-type", "application/json".into())],
            body: Some(body.as_bytes().to_vec()),
            group: Some(PQ),
            now_ms: Some(NOW_MS),
            authority: "mcp.test",
            peer_digest: None,
        }
    }

    fn call(id: &str, tool: &str) -> Self {
        Self::post(
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
                .to_string(),
        )
    }

    fn get(path: &'static str) -> Self {
        Self {
            method: "GET",
            path,
            headers: Vec::new(),
            body: None,
            group: Some(PQ),
            now_ms: Some(NOW_MS),
            authority: "mcp.test",
            peer_digest: None,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn bearer(self, t: &str) -> Self {
        self.header("authorization", &format!("Bearer {t}"))
    }

    fn over(mut self, group: Option<&'static str>) -> Self {
        self.group = group;
        self
    }

    fn start(&self) -> RequestStart {
        let mut headers = vec![
            (":method".to_owned(), self.method.as_bytes().to_vec()),
            (":path".to_owned(), self.path.as_bytes().to_vec()),
            (":authority".to_owned(), self.authority.as_bytes().to_vec()),
        ];
        headers.extend(
            self.headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
        );
        RequestStart {
            headers: Ok(headers),
            end_of_stream: self.body.is_none(),
            now_ms: self.now_ms,
            connection: ConnectionFacts {
                tls_version: self.group.map(|_| "TLSv1.3".to_owned()),
                tls_group: self.group.map(str::to_owned),
                tls_cipher: self.group.map(|_| "TLS_AES_128_GCM_SHA256".to_owned()),
                mtls: self.peer_digest.is_some(),
                peer_certificate_digest: self.peer_digest.clone(),
            },
            request_id: Some("req-1".into()),
        }
    }
}

/// Drives one request through the engine as the shim does: head, then the
/// body in two chunks, reading it when asked.
fn send(w: &mut Worker, store: &dyn SharedStore, req: &Req) -> Outcome {
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let mut action = ex.request_head(w, store, req.start(), &mut out);
    let body = req.body.clone().unwrap_or_default();
    if action == Action::Pause && req.body.is_some() {
        let half = body.len() / 2;
        action = ex.request_body_progress(w, half, false, &mut out);
        if action == Action::Pause {
            action = ex.request_body_progress(w, body.len(), true, &mut out);
        }
    }
    if let Action::ReadRequestBody(n) = action {
        assert_eq!(n, body.len(), "the engine asks for the whole body");
        action = ex.request_body(w, store, Ok(&body[..n]), &mut out);
    }
    let mut reply_headers = Vec::new();
    let (reply, forwarded) = match action {
        Action::Reply(r) => {
            reply_headers = r.headers.clone();
            (
                Some((
                    r.status,
                    serde_json::from_str(&r.body).unwrap_or(Value::Null),
                )),
                false,
            )
        }
        Action::Continue => (None, true),
        Action::ContinueWithRequestHeader("accept-encoding", "identity") => (None, true),
        other => panic!("unexpected final action {other:?}"),
    };
    assert_eq!(forwarded, ex.forwarded());
    assert_eq!(!forwarded, ex.refused());
    Outcome {
        reply,
        reply_headers,
        forwarded,
        out,
        exchange: ex,
    }
}

/// Feeds a 200 JSON answer to a forwarded `tools/list` request's exchange;
/// returns the bytes the client gets (`None`: read, and passed unchanged).
/// Panics when the engine does not read the answer at all: a test of what
/// a caller sees must never pass on the path that skips reading.
fn answer(w: &mut Worker, store: &dyn SharedStore, o: &mut Outcome, body: &str) -> Option<Vec<u8>> {
    let start = ResponseStart {
        status: Some("200".into()),
        content_type: Some("application/json".into()),
        content_encoding: None,
        end_of_stream: false,
        now_ms: Some(NOW_MS + 5),
        cluster: None,
    };
    let action = o.exchange.response_head(w, start, &mut o.out);
    assert_eq!(
        action,
        Action::DropResponseHeaders(&["content-length"]),
        "the tools/list answer must be read"
    );
    let n = body.len();
    assert_eq!(
        o.exchange
            .response_body_progress(w, n / 2, false, &mut o.out),
        Action::Pause
    );
    let read = o.exchange.response_body_progress(w, n, true, &mut o.out);
    assert_eq!(read, Action::ReadResponseBody(n));
    match o
        .exchange
        .response_body(w, store, n, Ok(body.as_bytes()), &mut o.out)
    {
        Action::Continue => None,
        Action::ReplaceResponseBody { size, body } => {
            assert_eq!(size, n);
            o.exchange.replaced();
            Some(body)
        }
        other => panic!("unexpected {other:?}"),
    }
}

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":"l-1","result":{"tools":[
 {"name":"echo","inputSchema":{"type":"object"}},
 {"name":"run_python","inputSchema":{"type":"object","properties":{"code":{"type":"string"}}}}]}}"#;

fn tool_names(bytes: &[u8]) -> Vec<String> {
    let a = ToolsListAnswer::parse(bytes).unwrap();
    a.names().into_iter().map(str::to_owned).collect()
}

struct Policy {
    pq: PrivateKey,
    classical: PrivateKey,
    config: Value,
}

fn policy(block_downgrades: bool) -> Policy {
    let pq = key(Algorithm::MlDsa65, "k65");
    let classical = key(Algorithm::EdDsa, "ked");
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
        ],
        "arguments": [{"tool": "run_python", "reject_unknown": true,
                       "args": {"code": {"type": "string", "forbidden_substrings": ["import os"]}}}]}
    });
    Policy {
        pq,
        classical,
        config,
    }
}

// ---- head and body refusals ---------------------------------------------

#[test]
fn an_unknown_protocol_version_is_refused_with_the_request_id_and_what_is_supported() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let req = Req::post(r#"{"jsonrpc":"2.0","id":"u-1","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}"#)
        .header("mcp-protocol-version", "2099-01-01");
    let o = send(&mut w, &store, &req);
    assert!(!o.forwarded);
    assert_eq!(o.error(), (Some(400), json!(-32022), json!("u-1")));
    let (_, body) = o.reply.clone().unwrap();
    assert_eq!(body["error"]["data"]["requested"], "2099-01-01");
    let supported = body["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .clone();
    assert!(supported.contains(&json!("2026-07-28")) && supported.contains(&json!("2025-03-26")));
    assert_eq!(o.record()["reason"], "unsupported_protocol_version");
    // A body that is not even JSON still gets the refusal (without an id).
    let junk = Req::post("not json").header("mcp-protocol-version", "2099-01-01");
    assert_eq!(
        send(&mut w, &store, &junk).error(),
        (Some(400), json!(-32022), Value::Null)
    );
}

#[test]
fn refusals_decided_on_the_head_get_their_status_and_never_read_the_body() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let list = r#"{"jsonrpc":"2.0","id":"h-1","method":"tools/list"}"#;
    let cases: [(&str, Req, u16, i64, &str); 4] = [
        (
            "text/plain",
            Req {
                headers: vec![("content-type", "text/plain".into())],
                ..Req::post(list)
            },
            415,
            -32600,
            "unsupported_media_type",
        ),
        (
            "gzip",
            Req::post(list).header("content-encoding", "gzip"),
            415,
            -32600,
            "unsupported_content_encoding",
        ),
        (
            "repeated",
            Req::post(list)
                .header("mcp-method", "tools/list")
                .header("mcp-method", "tools/list"),
            400,
            -32600,
            "invalid_request",
        ),
        (
            "put",
            Req {
                method: "PUT",
                ..Req::post(list)
            },
            405,
            -32600,
            "method_not_allowed",
        ),
    ];
    for (name, req, status, code, reason) in cases {
        let o = send(&mut w, &store, &req);
        assert_eq!(
            o.error(),
            (Some(status), json!(code), Value::Null),
            "{name}"
        );
        let record = o.record();
        assert_eq!(record["reason"], reason, "{name}: {record}");
        assert_eq!(record["path"], "/mcp", "{name}: the record names the path");
        assert_eq!(o.out.counted("pqguard.rejected"), 1, "{name}");
    }
}

#[test]
fn refusals_decided_on_the_body_echo_the_request_id() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":"b-1","method":"admin/exec"}"#,
            404,
            -32601,
            json!("b-1"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"b-2","method":"tools/call","params":{}}"#,
            400,
            -32602,
            json!("b-2"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"b-3","method":"tools/list","method":"x"}"#,
            400,
            -32600,
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}x"#,
            400,
            -32700,
            Value::Null,
        ),
    ];
    for (body, status, code, id) in cases {
        let o = send(&mut w, &store, &Req::post(body));
        assert_eq!(o.error(), (Some(status), json!(code), id), "{body}");
    }
    let ok = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"b-4","method":"tools/list"}"#),
    );
    assert!(ok.forwarded);
    assert_eq!(ok.record()["outcome"], "forwarded");
    assert_eq!(ok.record()["method"], "tools/list");
}

#[test]
fn a_body_growing_past_the_cap_is_refused_while_buffering() {
    let store = MemoryStore::new();
    let mut w = worker(json!({"limits": {"max_body_bytes": 64}}), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let req = Req::post("{}");
    assert_eq!(
        ex.request_head(&mut w, &store, req.start(), &mut out),
        Action::Pause
    );
    assert_eq!(
        ex.request_body_progress(&mut w, 64, false, &mut out),
        Action::Pause
    );
    let Action::Reply(reply) = ex.request_body_progress(&mut w, 65, false, &mut out) else {
        panic!("not refused")
    };
    assert_eq!(reply.status, 413);
    // Later chunks are held, never forwarded.
    assert_eq!(
        ex.request_body_progress(&mut w, 200, true, &mut out),
        Action::Pause
    );
    assert_eq!(ex.request_trailers(), Action::Pause);
}

#[test]
fn a_body_ended_by_trailers_is_inspected() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let body = br#"{"jsonrpc":"2.0","id":"t-1","method":"admin/exec"}"#;
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let req = Req::post("x");
    ex.request_head(&mut w, &store, req.start(), &mut out);
    assert_eq!(
        ex.request_body_progress(&mut w, body.len(), false, &mut out),
        Action::Pause
    );
    assert_eq!(ex.request_trailers(), Action::ReadRequestBody(body.len()));
    let Action::Reply(r) = ex.request_body(&mut w, &store, Ok(body), &mut out) else {
        panic!("not refused")
    };
    assert_eq!(r.status, 404);
}

#[test]
fn a_body_the_host_cannot_hand_over_is_refused() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    ex.request_head(&mut w, &store, Req::post("{}").start(), &mut out);
    ex.request_body_progress(&mut w, 2, true, &mut out);
    let Action::Reply(r) = ex.request_body(&mut w, &store, Err("short read".into()), &mut out)
    else {
        panic!("not refused")
    };
    assert_eq!(r.status, 500);
}

#[test]
fn headers_the_host_cannot_list_are_refused() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let start = RequestStart {
        headers: Err("BadArgument".into()),
        now_ms: Some(NOW_MS),
        ..RequestStart::default()
    };
    let Action::Reply(r) = ex.request_head(&mut w, &store, start, &mut out) else {
        panic!("not refused")
    };
    assert_eq!(r.status, 500);
}

#[test]
fn the_transport_gates_hold_without_a_policy_and_for_every_message_kind() {
    // Found by the second-host tests: `enforce_pqc` and `allowed_algos`
    // were applied only when a `policy` section was configured, and never
    // to a POST that carries only JSON-RPC responses.
    let store = MemoryStore::new();
    let list = r#"{"jsonrpc":"2.0","id":"g-1","method":"tools/list"}"#;
    let answer = r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#;
    for config in [
        json!({"p2p_connectivity": {"enforce_pqc": true}}),
        json!({"p2p_connectivity": {"allowed_algos": ["ML-KEM-768"]}}),
        json!({"p2p_connectivity": {"enforce_pqc": true}, "policy": {"rules": [
            {"name": "all", "effect": "allow"}]}}),
    ] {
        let mut w = worker(config.clone(), &store);
        for group in [None, Some(CLASSICAL)] {
            let o = send(&mut w, &store, &Req::post(list).over(group));
            assert_eq!(
                o.error(),
                (Some(403), json!(-32003), json!("g-1")),
                "{config} {group:?}"
            );
            let o = send(&mut w, &store, &Req::post(answer).over(group));
            assert_eq!(
                o.status(),
                Some(403),
                "a response to the server, {config} {group:?}"
            );
            let o = send(&mut w, &store, &Req::get("/mcp").over(group));
            assert_eq!(o.status(), Some(403), "a GET stream, {config} {group:?}");
        }
        assert!(send(&mut w, &store, &Req::post(list)).forwarded, "{config}");
        assert!(
            send(&mut w, &store, &Req::post(answer)).forwarded,
            "{config}"
        );
    }
}

#[test]
fn a_get_with_a_body_is_refused_and_an_empty_one_forwarded() {
    // Found by the engine_request fuzz target: a GET (no MCP message, so no
    // inspection) with a body was forwarded, body and all.
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    for (method, version) in [
        ("GET", "2025-11-25"),
        ("DELETE", "2025-06-18"),
        ("OPTIONS", "2026-07-28"),
    ] {
        let req = Req {
            method,
            body: Some(br#"{"jsonrpc":"2.0","id":"g","method":"tools/call","params":{"name":"run_python"}}"#.to_vec()),
            ..Req::get("/mcp").header("mcp-protocol-version", version)
        };
        let o = send(&mut w, &store, &req);
        assert_eq!(
            o.error(),
            (Some(400), json!(-32600), Value::Null),
            "{method}"
        );
        assert!(
            o.record()["detail"]
                .as_str()
                .unwrap_or("")
                .contains("with a body"),
            "{method}"
        );
        // Announced, but empty (an HTTP/2 client that ends the stream with an empty DATA frame).
        let mut ex = Exchange::new();
        let mut out = Effects::new();
        let start = RequestStart {
            end_of_stream: false,
            ..Req::get("/mcp")
                .header("mcp-protocol-version", version)
                .start()
        };
        let start = RequestStart {
            headers: Ok(start
                .headers
                .unwrap()
                .into_iter()
                .map(|(k, v)| {
                    if k == ":method" {
                        (k, method.as_bytes().to_vec())
                    } else {
                        (k, v)
                    }
                })
                .collect()),
            ..start
        };
        assert_eq!(
            ex.request_head(&mut w, &store, start, &mut out),
            Action::Pause,
            "{method}"
        );
        assert_eq!(
            ex.request_body_progress(&mut w, 0, true, &mut out),
            Action::ReadRequestBody(0)
        );
        assert_eq!(
            ex.request_body(&mut w, &store, Ok(b""), &mut out),
            Action::Continue,
            "{method}"
        );
    }
}

#[test]
fn get_streams_before_2026_are_forwarded_and_do_not_exist_after() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let old = Req::get("/mcp").header("mcp-protocol-version", "2025-11-25");
    assert!(send(&mut w, &store, &old).forwarded);
    let new = Req::get("/mcp").header("mcp-protocol-version", "2026-07-28");
    assert_eq!(send(&mut w, &store, &new).status(), Some(405));
}

// ---- the clock ----------------------------------------------------------

#[test]
fn without_a_host_clock_every_request_is_refused_and_an_expired_token_never_passes() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let expired = token(&p.pq, "alice", "tools:call", -3600);
    let req = Req::call("c-1", "echo").bearer(&expired);
    // With a clock, the expired token is refused as such.
    let with_clock = send(&mut w, &store, &req);
    assert_eq!(with_clock.status(), Some(401));
    assert_eq!(with_clock.record()["code"], json!(-32001));
    // Without one, the request is refused as a host failure: exp is never
    // compared with 0.
    let no_clock = send(
        &mut w,
        &store,
        &Req {
            now_ms: None,
            ..req.clone()
        },
    );
    assert_eq!(no_clock.error(), (Some(500), json!(-32603), Value::Null));
    assert_eq!(no_clock.record()["reason"], "host_error");
    let plain = send(
        &mut w,
        &store,
        &Req {
            now_ms: None,
            ..Req::post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        },
    );
    assert_eq!(plain.status(), Some(500));
}

#[test]
fn a_configuration_with_an_audit_trail_needs_the_clock_and_randomness() {
    let signing = key(Algorithm::MlDsa65, "audit-1").to_jwk();
    let config = json!({"audit": {"signing_key": signing}}).to_string();
    let store = MemoryStore::new();
    let mut out = Effects::new();
    let no_clock = Worker::start(config.as_bytes(), None, Some([1; 8]), &store, &mut out);
    assert!(no_clock.unwrap_err().contains("clock"));
    let no_rng = Worker::start(config.as_bytes(), Some(NOW_MS), None, &store, &mut out);
    assert!(no_rng.unwrap_err().contains("randomness"));
    assert!(Worker::start(
        config.as_bytes(),
        Some(NOW_MS),
        Some([1; 8]),
        &store,
        &mut out
    )
    .is_ok());
    assert!(Worker::start(
        b"{\"nope\":1}",
        Some(NOW_MS),
        Some([1; 8]),
        &store,
        &mut out
    )
    .is_err());
}

// ---- tokens -------------------------------------------------------------

#[test]
fn a_refusal_decided_on_the_token_waits_for_the_body_to_echo_the_id() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let req = Req::call("tok-1", "echo").bearer("not.a.token");
    // Held, not refused yet, and nothing forwarded.
    assert_eq!(
        ex.request_head(&mut w, &store, req.start(), &mut out),
        Action::Pause
    );
    let body = req.body.unwrap();
    assert_eq!(
        ex.request_body_progress(&mut w, body.len(), true, &mut out),
        Action::ReadRequestBody(body.len())
    );
    let Action::Reply(r) = ex.request_body(&mut w, &store, Ok(&body), &mut out) else {
        panic!("not refused")
    };
    assert_eq!(r.status, 401);
    let reply: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(reply["id"], "tok-1");
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "www-authenticate" && v.contains("invalid_token")),
        "{:?}",
        r.headers
    );
    // Without a body there is no id to wait for: refused on the head.
    let get = send(
        &mut w,
        &store,
        &Req::get("/mcp")
            .header("mcp-protocol-version", "2025-11-25")
            .bearer("x.y.z"),
    );
    assert_eq!(get.error(), (Some(401), json!(-32001), Value::Null));
}

#[test]
fn verified_tokens_are_cached_per_worker() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let first = send(&mut w, &store, &Req::call("c-1", "echo").bearer(&t));
    assert!(first.forwarded, "{:?}", first.reply);
    assert_eq!(first.out.counted("pqguard.token_cache.miss"), 1);
    assert_eq!(first.out.counted("pqguard.token_alg.ML-DSA-65"), 1);
    assert_eq!(
        first.exchange.token().map(|t| t.alg),
        Some(Algorithm::MlDsa65)
    );
    let second = send(&mut w, &store, &Req::call("c-2", "echo").bearer(&t));
    assert_eq!(second.out.counted("pqguard.token_cache.hit"), 1);
    let record = second.record();
    assert_eq!(
        (record["token_alg"].as_str(), record["subject"].as_str()),
        (Some("ML-DSA-65"), Some("alice"))
    );
}

#[test]
fn the_token_goes_on_unless_forward_token_is_false() {
    let mut p = policy(true);
    let store = MemoryStore::new();
    let t = token(&p.pq, "alice", "tools:call", 300);
    let default = send(
        &mut worker(p.config.clone(), &store),
        &store,
        &Req::call("c-1", "echo").bearer(&t),
    );
    assert!(default.forwarded);
    let none: &[&str] = &[];
    assert_eq!(
        default
            .exchange
            .request_headers_to_remove(&worker(p.config.clone(), &store))
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        none
    );
    p.config["auth"]["forward_token"] = json!(false);
    let mut w = worker(p.config.clone(), &store);
    let stripped = send(&mut w, &store, &Req::call("c-2", "echo").bearer(&t));
    assert!(stripped.forwarded, "{:?}", stripped.reply);
    assert_eq!(
        stripped
            .exchange
            .request_headers_to_remove(&w)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        &["authorization"]
    );
    // The decision is the same: the token was verified before it was dropped.
    assert_eq!(stripped.out.counted("pqguard.token_alg.ML-DSA-65"), 1);
    let anonymous = send(&mut w, &store, &Req::get("/.well-known/other"));
    assert_eq!(
        anonymous
            .exchange
            .request_headers_to_remove(&w)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        none
    );
}

#[test]
fn the_metadata_endpoint_is_served_by_the_filter() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let req = Req::get("/.well-known/oauth-protected-resource/mcp");
    let Action::Reply(r) = ex.request_head(&mut w, &store, req.start(), &mut out) else {
        panic!("not served")
    };
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["resource"], AUD);
    // Any other path under /.well-known is not the document.
    let other = send(
        &mut w,
        &store,
        &Req::get("/.well-known/oauth-protected-resourcex"),
    );
    assert_ne!(other.status(), Some(200));
}

// ---- policy -------------------------------------------------------------

#[test]
fn the_dangerous_tool_needs_a_hybrid_key_exchange_and_an_ml_dsa_token() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let ml_dsa = token(&p.pq, "alice", "tools:call", 300);
    let eddsa = token(&p.classical, "bob", "tools:call", 300);
    let code = |id: &str, code: &str| {
        Req::post(
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"run_python","arguments":{"code":code}}})
            .to_string(),
        )
    };
    let table = [
        ("pq+ml-dsa", code("p-1", "print(1)").bearer(&ml_dsa), None),
        (
            "classical kex",
            code("p-2", "print(1)")
                .bearer(&ml_dsa)
                .over(Some(CLASSICAL)),
            Some("requirement_not_met"),
        ),
        (
            "no tls facts",
            code("p-3", "print(1)").bearer(&eddsa).over(None),
            Some("requirement_not_met"),
        ),
        (
            "eddsa token",
            code("p-4", "print(1)").bearer(&eddsa),
            Some("requirement_not_met"),
        ),
        (
            "forbidden argument",
            code("p-5", "import os").bearer(&ml_dsa),
            Some("argument_rejected"),
        ),
        (
            "echo for eddsa",
            Req::call("p-6", "echo")
                .bearer(&eddsa)
                .over(Some(CLASSICAL)),
            None,
        ),
    ];
    for (name, req, denied) in table {
        let o = send(&mut w, &store, &req);
        match denied {
            None => assert!(o.forwarded, "{name}: {:?}", o.reply),
            Some(code) => {
                let (status, rpc, _) = o.error();
                assert_eq!((status, rpc), (Some(403), json!(-32003)), "{name}");
                assert_eq!(
                    o.record()["detail"].as_str().map(|_| ()),
                    Some(()),
                    "{name}"
                );
                assert_eq!(
                    o.out.counted(&format!("pqguard.denied.{code}")),
                    1,
                    "{name}: {:?}",
                    o.out.counts
                );
            }
        }
    }
}

/// What became of an answer a client gets.
#[derive(Debug, PartialEq)]
enum Answered {
    /// The engine let it through without reading it.
    Unread,
    /// Read, and passed unchanged.
    Unchanged,
    /// Replaced by these bytes.
    Replaced(Vec<u8>),
}

/// Feeds an answer with this status and content type, ended by the last
/// body chunk or (`trailers`) by response trailers, as the shim does.
fn answer_as(
    w: &mut Worker,
    store: &dyn SharedStore,
    o: &mut Outcome,
    status: &str,
    content_type: Option<&str>,
    body: &str,
    trailers: bool,
) -> Answered {
    let start = ResponseStart {
        status: Some(status.into()),
        content_type: content_type.map(str::to_owned),
        content_encoding: None,
        end_of_stream: false,
        now_ms: Some(NOW_MS + 5),
        cluster: None,
    };
    if o.exchange.response_head(w, start, &mut o.out) == Action::Continue {
        return Answered::Unread;
    }
    let n = body.len();
    let mut action = o
        .exchange
        .response_body_progress(w, n, !trailers, &mut o.out);
    if trailers {
        if let Action::ReplaceResponseBody { body, .. } = &action {
            assert!(body.is_empty(), "dropped as it arrives");
        } else {
            assert_eq!(action, Action::Pause, "held until the trailers");
        }
        action = o.exchange.response_trailers(w, &mut o.out);
    }
    if let Action::ReadResponseBody(size) = action {
        assert_eq!(size, n);
        action = o
            .exchange
            .response_body(w, store, n, Ok(body.as_bytes()), &mut o.out);
    }
    match action {
        Action::Continue => Answered::Unchanged,
        Action::ReplaceResponseBody { size, body } => {
            assert_eq!(size, n);
            Answered::Replaced(body)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn every_successful_tools_list_answer_is_read_whatever_its_status_content_type_or_trailers() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let list = r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#;
    let classical =
        |w: &mut Worker| send(w, &store, &Req::post(list).bearer(&t).over(Some(CLASSICAL)));
    // 203 and 299 are successes: read and filtered like 200.
    for status in ["200", "203", "299"] {
        let mut o = classical(&mut w);
        let got = answer_as(
            &mut w,
            &store,
            &mut o,
            status,
            Some("application/json"),
            TOOLS,
            false,
        );
        let Answered::Replaced(bytes) = got else {
            panic!("{status}: {got:?}");
        };
        assert_eq!(tool_names(&bytes), ["echo"], "{status}");
    }
    // Ended by trailers (HTTP/2): still read before anything is released.
    let mut o = classical(&mut w);
    let got = answer_as(
        &mut w,
        &store,
        &mut o,
        "200",
        Some("application/json"),
        TOOLS,
        true,
    );
    let Answered::Replaced(bytes) = got else {
        panic!("trailers: {got:?}");
    };
    assert_eq!(tool_names(&bytes), ["echo"]);
    // A content type pqguard cannot read, or none: replaced by an error,
    // never passed (the Python SDK parses application/json-x as JSON).
    for content_type in [Some("application/json-x"), Some("text/plain"), None] {
        for trailers in [false, true] {
            let mut o = classical(&mut w);
            let got = answer_as(&mut w, &store, &mut o, "200", content_type, TOOLS, trailers);
            let Answered::Replaced(bytes) = got else {
                panic!("{content_type:?}: {got:?}");
            };
            let error: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(error["id"], "l-1", "{content_type:?}");
            assert_eq!(error["error"]["code"], -32603);
        }
    }
    // Error statuses carry no result a client takes: passed unread.
    let mut o = classical(&mut w);
    let got = answer_as(
        &mut w,
        &store,
        &mut o,
        "500",
        Some("application/json"),
        TOOLS,
        false,
    );
    assert_eq!(got, Answered::Unread);
}

#[test]
fn a_token_that_cannot_be_removed_is_never_forwarded() {
    let p = policy(false);
    let mut config = p.config.clone();
    config["auth"]["forward_token"] = json!(false);
    let store = MemoryStore::new();
    let mut w = worker(config, &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let req = Req::call("rm-1", "echo").bearer(&t);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let head = ex.request_head(&mut w, &store, req.start(), &mut out);
    assert_eq!(head, Action::Pause, "held for the body");
    assert_eq!(
        ex.request_headers_to_remove(&w),
        [Some("authorization"), None, None]
    );
    let action = ex.header_removal_failed(&mut w, "authorization", "host said no", &mut out);
    let Action::Reply(reply) = action else {
        panic!("{action:?}");
    };
    assert_eq!(reply.status, 500);
    assert!(ex.refused() && !ex.forwarded());
    // The body that follows is not forwarded either.
    let body = req.body.clone().unwrap_or_default();
    assert_eq!(
        ex.request_body_progress(&mut w, body.len(), true, &mut out),
        Action::Pause
    );
}

#[test]
fn a_list_filtered_per_caller_is_never_left_for_a_shared_cache() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let list = r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#;
    let public = TOOLS.replacen(
        r#""result":{"#,
        r#""result":{"ttlMs":60000,"cacheScope":"public","#,
        1,
    );
    // The PQ caller sees every tool, but the answer is still its own.
    let mut pq = send(&mut w, &store, &Req::post(list).bearer(&t));
    let got = answer(&mut w, &store, &mut pq, &public).expect("marked private");
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["result"]["cacheScope"], "private");
    assert_eq!(v["result"]["ttlMs"], 60000);
    assert_eq!(tool_names(&got), ["echo", "run_python"]);
    // A filtered list says private even when the server said nothing.
    let mut classical = send(
        &mut w,
        &store,
        &Req::post(list).bearer(&t).over(Some(CLASSICAL)),
    );
    let got = answer(&mut w, &store, &mut classical, TOOLS).expect("filtered");
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["result"]["cacheScope"], "private");
    // An unfiltered answer that says nothing of caching passes as it is.
    let mut plain = send(&mut w, &store, &Req::post(list).bearer(&t));
    assert_eq!(answer(&mut w, &store, &mut plain, TOOLS), None);
}

#[test]
fn a_tools_list_in_a_batch_is_read_and_filtered_too() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let batch = r#"[{"jsonrpc":"2.0","id":"b-0","method":"tools/call","params":{"name":"echo","arguments":{}}},{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}]"#;
    let req = Req::post(batch)
        .bearer(&t)
        .header("mcp-protocol-version", "2025-03-26")
        .over(Some(CLASSICAL));
    let mut o = send(&mut w, &store, &req);
    assert!(o.forwarded, "{:?}", o.reply);
    let answer_batch = format!(r#"[{{"jsonrpc":"2.0","id":"b-0","result":{{}}}},{TOOLS}]"#);
    let got = answer(&mut w, &store, &mut o, &answer_batch).expect("filtered");
    let v: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v[0]["id"], "b-0", "the rest of the batch is kept");
    let names: Vec<&str> = v[1]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["echo"]);
    // Two lists in one batch: refused, never half read.
    let two = r#"[{"jsonrpc":"2.0","id":"l-1","method":"tools/list"},{"jsonrpc":"2.0","id":"l-2","method":"tools/list"}]"#;
    let req = Req::post(two)
        .bearer(&t)
        .header("mcp-protocol-version", "2025-03-26");
    assert_eq!(send(&mut w, &store, &req).status(), Some(400));
}

#[test]
fn tools_list_shows_each_caller_only_what_it_may_call() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let list = r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#;
    let mut pq = send(&mut w, &store, &Req::post(list).bearer(&t));
    assert_eq!(
        answer(&mut w, &store, &mut pq, TOOLS),
        None,
        "the PQ caller sees every tool"
    );
    let mut classical = send(
        &mut w,
        &store,
        &Req::post(list).bearer(&t).over(Some(CLASSICAL)),
    );
    let filtered = answer(&mut w, &store, &mut classical, TOOLS).expect("rewritten");
    assert_eq!(tool_names(&filtered), ["echo"]);
    assert_eq!(classical.out.counted("pqguard.tools_removed"), 1);
    let tools = classical.out.lines_with("pqguard.tools");
    assert!(
        tools.last().is_some_and(|l| l.contains("\"removed\":1")),
        "{tools:?}"
    );
}

#[test]
fn an_unreadable_tools_list_answer_is_replaced_by_an_error() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let mut o = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"l-9","method":"tools/list"}"#),
    );
    let body = answer(
        &mut w,
        &store,
        &mut o,
        r#"{"jsonrpc":"2.0","id":"l-9","result":{"tools":7}}"#,
    )
    .expect("replaced");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "l-9");
    assert_eq!(v["error"]["code"], -32603);
    // Whatever else the upstream sends is dropped.
    let more = o.exchange.response_body_progress(&w, 10, true, &mut o.out);
    assert_eq!(
        more,
        Action::ReplaceResponseBody {
            size: 10,
            body: Vec::new()
        }
    );
}

#[test]
fn a_pinned_tool_that_changed_is_hidden_and_refused_on_every_worker() {
    let p = policy(false);
    let mut config = p.config.clone();
    config["policy"]["pins"] = json!({"echo": "00".repeat(32)});
    let store = MemoryStore::new();
    let mut a = worker(config.clone(), &store);
    let mut b = worker(config, &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    let mut o = send(
        &mut a,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#).bearer(&t),
    );
    let filtered = answer(&mut a, &store, &mut o, TOOLS).expect("rewritten");
    assert_eq!(tool_names(&filtered), ["run_python"]);
    assert_eq!(o.out.counted("pqguard.pin_violations"), 1);
    assert_eq!(o.out.lines_with(ALERT_MARKER).len(), 1);
    // Another worker refuses a call to it.
    let call = send(&mut b, &store, &Req::call("c-1", "echo").bearer(&t));
    assert_eq!(call.status(), Some(403));
    assert_eq!(call.out.counted("pqguard.denied.pin_violation"), 1);
}

#[test]
fn mcp_param_headers_are_refused_on_anything_but_a_tools_call() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let req = Req::post(r#"{"jsonrpc":"2.0","id":"m-1","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .header("mcp-param-region", "eu");
    let o = send(&mut w, &store, &req);
    assert_eq!(o.error(), (Some(400), json!(-32020), json!("m-1")));
}

#[test]
fn the_2026_07_28_errors_are_the_ones_the_conformance_suite_expects() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;
    // The header, but no params._meta protocol version: invalid params.
    let no_meta = Req::post(r#"{"jsonrpc":"2.0","id":"v-1","method":"server/discover"}"#)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover");
    assert_eq!(
        send(&mut w, &store, &no_meta).error(),
        (Some(400), json!(-32602), json!("v-1"))
    );
    // A method removed in 2026-07-28: not found, whatever its old params.
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":"v-2","method":"{method}","params":{{{meta}}}}}"#);
        let req = Req::post(&body)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        assert_eq!(
            send(&mut w, &store, &req).error(),
            (Some(404), json!(-32601), json!("v-2")),
            "{method}"
        );
    }
    // Still read for their params in 2025-11-25.
    let old =
        Req::post(r#"{"jsonrpc":"2.0","id":"v-3","method":"resources/subscribe","params":{}}"#)
            .header("mcp-protocol-version", "2025-11-25");
    assert_eq!(
        send(&mut w, &store, &old).error(),
        (Some(400), json!(-32602), json!("v-3"))
    );
}

#[test]
fn mcp_param_headers_learnt_from_tools_list_are_matched_on_every_worker() {
    let store = MemoryStore::new();
    let mut a = worker(json!({}), &store);
    let mut b = worker(json!({}), &store);
    let list = r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let list = Req::post(list)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list");
    let mut o = send(&mut a, &store, &list);
    assert!(o.forwarded, "{:?}", o.reply);
    let tools = r#"{"jsonrpc":"2.0","id":"l-1","result":{"tools":[{"name":"weather","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}}"#;
    assert_eq!(answer(&mut a, &store, &mut o, tools), None);
    let call = |region: &str, header: &str| {
        Req::post(
            &json!({"jsonrpc":"2.0","id":"w-1","method":"tools/call",
            "params":{"name":"weather","arguments":{"region":region},
                      "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}})
            .to_string(),
        )
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "weather")
        .header("mcp-param-region", header)
    };
    let ok = send(&mut b, &store, &call("eu", "eu"));
    assert!(ok.forwarded, "{:?} {:?}", ok.reply, ok.out.logs);
    assert_eq!(send(&mut b, &store, &call("eu", "us")).status(), Some(400));
}

// ---- downgrades and flags across workers ---------------------------------

#[test]
fn a_downgrade_seen_by_another_worker_is_detected_and_blocked() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut a = worker(p.config.clone(), &store);
    let mut b = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    assert!(send(&mut a, &store, &Req::call("d-1", "echo").bearer(&t)).forwarded);
    let o = send(
        &mut b,
        &store,
        &Req::call("d-2", "echo").bearer(&t).over(Some(CLASSICAL)),
    );
    assert_eq!(o.error(), (Some(403), json!(-32003), json!("d-2")));
    assert_eq!(o.out.counted("pqguard.downgrade_attempts"), 1);
    let alert: Value = serde_json::from_str(o.out.lines_with(ALERT_MARKER)[0]).unwrap();
    assert_eq!(alert["kind"], "downgrade");
    assert_eq!(
        alert["detail"],
        "key exchange classical after hybrid-pq before"
    );
    // Another identity is not affected.
    let bob = token(&p.pq, "bob", "tools:call", 300);
    assert!(
        send(
            &mut b,
            &store,
            &Req::call("d-3", "echo").bearer(&bob).over(Some(CLASSICAL))
        )
        .forwarded
    );
}

/// A store that reads fine but never takes a write (every write loses the
/// compare-and-swap race).
struct Contended(MemoryStore);

impl SharedStore for Contended {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key)
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<bool, String> {
        Ok(false)
    }
    fn create(&self, _key: &str, _value: &[u8]) -> Result<bool, String> {
        Ok(false)
    }
}

/// A store whose writes fail outright.
struct Failing(MemoryStore);

impl SharedStore for Failing {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key)
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<bool, String> {
        Err("shared data unavailable".into())
    }
    fn create(&self, _key: &str, _value: &[u8]) -> Result<bool, String> {
        Err("shared data unavailable".into())
    }
}

#[test]
fn a_token_without_sub_is_still_tracked_for_downgrades() {
    let p = policy(true);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let now = (NOW_MS / 1000) as i64;
    let Value::Object(claims) = json!({
        "iss": ISS, "aud": AUD, "scope": "tools:call", "iat": now, "exp": now + 300,
    }) else {
        unreachable!()
    };
    let t = mint(&p.pq, &claims).unwrap();
    assert!(send(&mut w, &store, &Req::call("s-1", "echo").bearer(&t)).forwarded);
    let o = send(
        &mut w,
        &store,
        &Req::call("s-2", "echo").bearer(&t).over(Some(CLASSICAL)),
    );
    assert_eq!(o.status(), Some(403));
    assert_eq!(o.out.counted("pqguard.downgrade_attempts"), 1);
}

/// A store whose reads fail for identity keys (writes work), the way a
/// host's error once looked: `get` sees nothing, `read` says it failed.
struct Unreadable(MemoryStore);

impl SharedStore for Unreadable {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        if key.starts_with(crate::threat::SHARED_KEY_PREFIX) {
            return (None, None);
        }
        self.0.get(key)
    }
    fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        if key.starts_with(crate::threat::SHARED_KEY_PREFIX) {
            return Err("shared data unreadable".into());
        }
        Ok(self.0.get(key))
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        self.0.set(key, value, cas)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<bool, String> {
        self.0.create(key, value)
    }
}

#[test]
fn an_unreadable_identity_state_is_never_erased_and_counts_as_flagged() {
    let mut p = policy(true);
    p.config["policy"]["rules"][2]["when"]["not_flagged"] = json!(true);
    let memory = MemoryStore::new();
    let mut w = worker(p.config.clone(), &memory);
    let t = token(&p.pq, "alice", "tools:call", 300);
    // A downgrade flags alice.
    assert!(send(&mut w, &memory, &Req::call("f-1", "echo").bearer(&t)).forwarded);
    let classical = Req::call("f-2", "echo").bearer(&t).over(Some(CLASSICAL));
    assert_eq!(send(&mut w, &memory, &classical).status(), Some(403));
    let key = format!(
        "{}jwt:{}:{ISS}|alice",
        crate::threat::SHARED_KEY_PREFIX,
        ISS.len()
    );
    let flagged = memory.get(&key).0.expect("stored");
    // The store cannot be read: the request is refused as flagged, and the
    // stored flag is left as it was.
    let broken = Unreadable(memory);
    let o = send(&mut w, &broken, &Req::call("f-3", "echo").bearer(&t));
    assert_eq!(o.status(), Some(403), "{}", o.record());
    assert_eq!(broken.0.get(&key).0, Some(flagged));
}

#[test]
fn a_downgrade_is_detected_even_when_the_shared_state_cannot_be_written() {
    let p = policy(true);
    let memory = MemoryStore::new();
    let mut a = worker(p.config.clone(), &memory);
    let t = token(&p.pq, "alice", "tools:call", 300);
    assert!(send(&mut a, &memory, &Req::call("d-1", "echo").bearer(&t)).forwarded);
    let contended = Contended(memory);
    let o = send(
        &mut a,
        &contended,
        &Req::call("d-2", "echo").bearer(&t).over(Some(CLASSICAL)),
    );
    assert_eq!(
        o.status(),
        Some(403),
        "the downgrade is decided on the state read"
    );
    assert!(o.out.logs.iter().any(|(_, l)| l.contains("not stored")));
    let failing = Failing(contended.0);
    let o = send(
        &mut a,
        &failing,
        &Req::call("d-3", "echo").bearer(&t).over(Some(CLASSICAL)),
    );
    assert_eq!(o.status(), Some(403));
}

#[test]
fn repeated_denials_flag_the_identity_for_every_worker() {
    let p = policy(false);
    let mut config = p.config.clone();
    config["policy"]["flag_after_denials"] = json!(2);
    config["policy"]["rules"][2]["when"]["not_flagged"] = json!(true);
    let store = MemoryStore::new();
    let mut a = worker(config.clone(), &store);
    let mut b = worker(config, &store);
    let reader = token(&p.pq, "alice", "tools:read", 300);
    let caller = token(&p.pq, "alice", "tools:call", 300);
    let first = send(&mut a, &store, &Req::call("f-1", "echo").bearer(&reader));
    assert_eq!(first.status(), Some(403));
    assert!(
        first.out.lines_with(ALERT_MARKER).is_empty(),
        "one denial does not flag"
    );
    let second = send(&mut a, &store, &Req::call("f-2", "echo").bearer(&reader));
    assert_eq!(second.status(), Some(403));
    let alerts = second.out.lines_with(ALERT_MARKER);
    assert!(
        alerts
            .iter()
            .any(|l| l.contains("identity flagged after no_allow_rule")),
        "{alerts:?}"
    );
    // Flagged: a call the rules allow is now denied, on another worker.
    let echo = send(&mut b, &store, &Req::call("f-3", "echo").bearer(&caller));
    assert_eq!(echo.status(), Some(403));
    // Another identity is not flagged.
    let bob = token(&p.pq, "bob", "tools:call", 300);
    assert!(send(&mut b, &store, &Req::call("f-4", "echo").bearer(&bob)).forwarded);
}

#[test]
fn a_rejected_argument_flags_the_identity_at_once() {
    let p = policy(false);
    let store = MemoryStore::new();
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "carol", "tools:call", 300);
    let python = Req::post(
        &json!({"jsonrpc":"2.0","id":"g-1","method":"tools/call",
        "params":{"name":"run_python","arguments":{"code":"import os"}}})
        .to_string(),
    )
    .bearer(&t);
    let o = send(&mut w, &store, &python);
    assert_eq!(o.status(), Some(403));
    assert!(o
        .out
        .lines_with(ALERT_MARKER)
        .iter()
        .any(|l| l.contains("flagged after argument_rejected")));
}

// ---- audit --------------------------------------------------------------

fn audit_config(strict: bool) -> Value {
    json!({"audit": {"signing_key": key(Algorithm::MlDsa65, "audit-1").to_jwk(),
        "strict": strict,
        "collector": {"cluster": "audit", "authority": "audit.test", "path": "/ingest", "flush_ms": 100}}})
}

#[test]
fn every_decision_is_audited_and_shipped_in_order() {
    let store = MemoryStore::new();
    let mut w = worker(audit_config(false), &store);
    let refused = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"a-1","method":"admin/exec"}"#),
    );
    // The first record starts the chain: its genesis, the checkpoint
    // signing it, then the record.
    let records = refused.out.lines_with(LINE_PREFIX.trim_end());
    assert_eq!(records.len(), 3, "{:?}", refused.out.logs);
    assert!(
        records[0].contains("\"kind\":\"genesis\""),
        "{}",
        records[0]
    );
    assert!(
        records[1].contains("\"kind\":\"checkpoint\""),
        "{}",
        records[1]
    );
    assert!(
        records[2].contains("\"decision\":\"rejected\""),
        "{}",
        records[2]
    );
    let mut forwarded = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"a-2","method":"tools/list"}"#),
    );
    assert!(
        forwarded.out.lines_with(LINE_PREFIX.trim_end()).is_empty(),
        "written when the answer starts"
    );
    answer(
        &mut w,
        &store,
        &mut forwarded,
        r#"{"jsonrpc":"2.0","id":"a-2","result":{"tools":[]}}"#,
    );
    let line = forwarded.out.lines_with(LINE_PREFIX.trim_end());
    assert_eq!(line.len(), 1);
    assert!(line[0].contains("\"upstream_status\":200"), "{}", line[0]);
    // The timer ships genesis, checkpoint and both records in one batch.
    let mut out = Effects::new();
    let calls = w.tick(NOW_MS + 1000, &store, &mut out);
    let call = calls
        .iter()
        .find(|c| c.kind == CallKind::AuditBatch)
        .expect("a batch");
    let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
    assert!(body.lines().count() >= 4, "{body}");
    w.dispatched(CallKind::AuditBatch, Ok(9), NOW_MS + 1000, &mut out);
    let ok = CallAnswer {
        status: Some("200".into()),
        ..CallAnswer::default()
    };
    assert!(w.answered(9, &ok, NOW_MS + 1100, &store, &mut out));
    assert_eq!(
        out.counted("pqguard.audit.shipped"),
        i64::try_from(body.lines().count()).unwrap()
    );
}

#[test]
fn a_worker_that_goes_ships_everything_queued_in_one_last_call_tried_once() {
    let store = MemoryStore::new();
    let mut w = worker(audit_config(false), &store);
    let refused = Req::post(r#"{"jsonrpc":"2.0","id":"z-1","method":"admin/exec"}"#);
    for _ in 0..3 {
        assert_eq!(send(&mut w, &store, &refused).status(), Some(404));
    }
    let mut out = Effects::new();
    w.stop(NOW_MS + 10, &mut out);
    let logged = out.lines_with(LINE_PREFIX.trim_end()).len();
    assert_eq!(logged, 1, "the stop signs the tail: {:?}", out.logs);
    // Genesis, its checkpoint, three records and the last checkpoint: all in one call.
    let call = w.last_audit_call().expect("a last call");
    let body = String::from_utf8(call.body.clone().unwrap()).unwrap();
    assert_eq!(body.lines().count(), 6, "{body}");
    assert!(body
        .lines()
        .last()
        .unwrap()
        .contains("\"kind\":\"checkpoint\""));
    assert!(w.audit_in_flight());
    assert!(
        w.last_audit_call().is_none(),
        "nothing more while it is out"
    );
    w.dispatched(CallKind::AuditBatch, Ok(5), NOW_MS + 10, &mut out);
    let refused_by_collector = CallAnswer {
        status: Some("503".into()),
        ..CallAnswer::default()
    };
    w.answered(5, &refused_by_collector, NOW_MS + 20, &store, &mut out);
    assert!(!w.audit_in_flight());
    assert_eq!(out.counted("pqguard.audit.ship_failed"), 1);
}

#[test]
fn a_worker_that_decides_nothing_writes_no_audit_line() {
    // Envoy checks a configuration in a root context of its own that never
    // gets a timer: lines it wrote could never be shipped or signed.
    let store = MemoryStore::new();
    let mut out = Effects::new();
    let mut w = Worker::start(
        audit_config(false).to_string().as_bytes(),
        Some(NOW_MS),
        Some([1; 8]),
        &store,
        &mut out,
    )
    .unwrap();
    assert!(out.lines_with(LINE_PREFIX.trim_end()).is_empty());
    let calls = w.tick(NOW_MS + 60_000, &store, &mut out);
    assert!(calls.is_empty(), "nothing to ship: {calls:?}");
    w.stop(NOW_MS + 61_000, &mut out);
    assert!(
        out.lines_with(LINE_PREFIX.trim_end()).is_empty(),
        "{:?}",
        out.logs
    );
}

#[test]
fn strict_audit_refuses_while_the_collector_fails_and_recovers_after() {
    let store = MemoryStore::new();
    let mut w = worker(audit_config(true), &store);
    let ping = Req::post(r#"{"jsonrpc":"2.0","id":"s-1","method":"ping"}"#);
    assert!(send(&mut w, &store, &ping).forwarded);
    let unknown = Req::post(r#"{"jsonrpc":"2.0","id":"s-0","method":"admin/exec"}"#);
    assert_eq!(send(&mut w, &store, &unknown).status(), Some(404));
    let mut out = Effects::new();
    let calls = w.tick(NOW_MS + 1000, &store, &mut out);
    assert_eq!(calls.len(), 1);
    let failed_batch = calls[0].body.clone().unwrap();
    w.dispatched(
        CallKind::AuditBatch,
        Err("no cluster".into()),
        NOW_MS + 1000,
        &mut out,
    );
    assert_eq!(out.counted("pqguard.audit.ship_failed"), 1);
    let o = send(&mut w, &store, &ping);
    assert_eq!(o.error(), (Some(503), json!(-32603), Value::Null));
    // The retry succeeds: requests pass again, nothing was lost.
    let mut out = Effects::new();
    let calls = w.tick(NOW_MS + 60_000, &store, &mut out);
    let body = calls[0].body.clone().unwrap();
    w.dispatched(CallKind::AuditBatch, Ok(3), NOW_MS + 60_000, &mut out);
    let ok = CallAnswer {
        status: Some("204".into()),
        ..CallAnswer::default()
    };
    w.answered(3, &ok, NOW_MS + 60_100, &store, &mut out);
    assert!(
        body.starts_with(&failed_batch),
        "the failed batch is sent again, first"
    );
    assert!(send(&mut w, &store, &ping).forwarded);
}

// ---- remote key sets ----------------------------------------------------

#[test]
fn the_remote_key_set_is_fetched_with_back_off_and_shared_with_new_workers() {
    let k = key(Algorithm::MlDsa65, "k65");
    let config = json!({"auth": {"audience": AUD, "issuers": [ISS],
        "remote_jwks": {"cluster": "jwks", "authority": "issuer.test", "path": "/jwks", "refresh_seconds": 60}}});
    let store = MemoryStore::new();
    let mut w = worker(config.clone(), &store);
    assert_eq!(
        w.tick_period_ms(),
        Some(FAST_TICK_MS),
        "polls fast until it has keys"
    );
    let t = token(&k, "alice", "tools:call", 300);
    let early = send(&mut w, &store, &Req::call("j-1", "echo").bearer(&t));
    assert_eq!(early.status(), Some(401));
    assert!(early.record()["detail"]
        .as_str()
        .unwrap_or("")
        .contains("no key set"));
    // A failed fetch backs off 2 s, then 4 s.
    let mut out = Effects::new();
    let calls = w.tick(NOW_MS, &store, &mut out);
    assert_eq!(calls.iter().filter(|c| c.kind == CallKind::Jwks).count(), 1);
    w.dispatched(CallKind::Jwks, Ok(1), NOW_MS, &mut out);
    let down = CallAnswer {
        status: Some("503".into()),
        ..CallAnswer::default()
    };
    assert!(w.answered(1, &down, NOW_MS, &store, &mut out));
    assert_eq!(out.counted("pqguard.jwks.fetch_failed"), 1);
    assert!(w.tick(NOW_MS + 1_999, &store, &mut out).is_empty());
    assert_eq!(w.tick(NOW_MS + 2_000, &store, &mut out).len(), 1);
    w.dispatched(
        CallKind::Jwks,
        Err("no cluster".into()),
        NOW_MS + 2_000,
        &mut out,
    );
    assert!(w.tick(NOW_MS + 5_999, &store, &mut out).is_empty());
    assert_eq!(w.tick(NOW_MS + 6_000, &store, &mut out).len(), 1);
    // A good answer installs the keys and publishes them.
    w.dispatched(CallKind::Jwks, Ok(2), NOW_MS + 6_000, &mut out);
    let good = CallAnswer {
        status: Some("200".into()),
        cache_control: Some("max-age=30".into()),
        body: jwks(&[&k]).to_string().into_bytes(),
    };
    assert!(w.answered(2, &good, NOW_MS + 6_000, &store, &mut out));
    assert_eq!(w.tick_period_ms(), Some(TICK_MS));
    assert!(send(&mut w, &store, &Req::call("j-2", "echo").bearer(&t)).forwarded);
    // Max-age shortened the refresh to 30 s.
    assert!(w.tick(NOW_MS + 35_999, &store, &mut out).is_empty());
    assert_eq!(w.tick(NOW_MS + 36_000, &store, &mut out).len(), 1);
    // A bad key set never replaces the good one.
    w.dispatched(CallKind::Jwks, Ok(3), NOW_MS + 36_000, &mut out);
    let bad = CallAnswer {
        status: Some("200".into()),
        body: b"{\"keys\":7}".to_vec(),
        ..CallAnswer::default()
    };
    w.answered(3, &bad, NOW_MS + 36_000, &store, &mut out);
    assert_eq!(out.counted("pqguard.jwks.rejected"), 1);
    assert!(send(&mut w, &store, &Req::call("j-3", "echo").bearer(&t)).forwarded);
    // A new worker takes the shared key set at start.
    let mut fresh = worker(config, &store);
    assert_eq!(fresh.tick_period_ms(), Some(TICK_MS));
    assert!(send(&mut fresh, &store, &Req::call("j-4", "echo").bearer(&t)).forwarded);
}

#[test]
fn a_schedule_backs_off_within_its_bounds() {
    let mut s = JwksSchedule::new();
    assert!(s.due(0));
    assert_eq!(s.failed(0, 300), 2_000);
    assert_eq!(s.failed(0, 300), 4_000);
    for _ in 0..20 {
        s.failed(0, 300);
    }
    assert_eq!(s.failed(0, 300), 256_000);
    assert_eq!(s.failed(0, 10), 10_000, "never beyond the refresh interval");
    s.succeeded(0, 300);
    assert_eq!(s.failures(), 0);
    assert!(!s.due(299_999));
    assert!(s.due(300_000));
}

// ---- cost: what is not done ---------------------------------------------

#[test]
fn without_info_logging_no_request_line_is_built_and_decisions_are_unchanged() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    w.set_info_logged(false);
    let ok = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"q-1","method":"tools/list"}"#),
    );
    assert!(ok.forwarded);
    assert!(ok.out.lines_with(REQUEST_MARKER).is_empty());
    assert_eq!(ok.out.counted("pqguard.allowed"), 1);
    let refused = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"q-2","method":"admin/exec"}"#),
    );
    assert_eq!(refused.error(), (Some(404), json!(-32601), json!("q-2")));
    assert!(refused.out.lines_with(REQUEST_MARKER).is_empty());
    // Warnings still go out.
    w.set_info_logged(true);
    let again = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"q-3","method":"tools/list"}"#),
    );
    assert_eq!(again.out.lines_with(REQUEST_MARKER).len(), 1);
}

/// Counts the writes that reach a memory store.
struct Counting(MemoryStore, std::cell::Cell<u32>);

impl SharedStore for Counting {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        self.1.set(self.1.get() + 1);
        self.0.set(key, value, cas)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<bool, String> {
        self.1.set(self.1.get() + 1);
        self.0.create(key, value)
    }
}

#[test]
fn an_identity_whose_state_does_not_change_costs_no_shared_write() {
    let p = policy(true);
    let store = Counting(MemoryStore::new(), std::cell::Cell::new(0));
    let mut w = worker(p.config.clone(), &store);
    let t = token(&p.pq, "alice", "tools:call", 300);
    assert!(send(&mut w, &store, &Req::call("w-1", "echo").bearer(&t)).forwarded);
    assert_eq!(
        store.1.get(),
        1,
        "the first request records the key exchange"
    );
    for i in 0..5 {
        assert!(
            send(
                &mut w,
                &store,
                &Req::call(&format!("w-{i}"), "echo").bearer(&t)
            )
            .forwarded
        );
    }
    assert_eq!(
        store.1.get(),
        1,
        "same identity, same key exchange: nothing to write"
    );
    let o = send(
        &mut w,
        &store,
        &Req::call("w-9", "echo").bearer(&t).over(Some(CLASSICAL)),
    );
    assert_eq!(o.status(), Some(403));
    assert_eq!(store.1.get(), 2, "the downgrade flags the identity");
}

// ---- compressed answers ----------------------------------------------------

#[test]
fn a_tools_list_request_asks_for_an_uncompressed_answer_and_other_requests_do_not() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let mut ex = Exchange::new();
    let mut out = Effects::new();
    let req = Req::post(r#"{"jsonrpc":"2.0","id":"z-1","method":"tools/list"}"#)
        .header("accept-encoding", "gzip");
    ex.request_head(&mut w, &store, req.start(), &mut out);
    let body = req.body.unwrap();
    ex.request_body_progress(&mut w, body.len(), true, &mut out);
    assert_eq!(
        ex.request_body(&mut w, &store, Ok(&body), &mut out),
        Action::ContinueWithRequestHeader("accept-encoding", "identity")
    );
    let mut call = Exchange::new();
    let req = Req::call("z-2", "echo").header("accept-encoding", "gzip");
    call.request_head(&mut w, &store, req.start(), &mut out);
    let body = req.body.unwrap();
    call.request_body_progress(&mut w, body.len(), true, &mut out);
    assert_eq!(
        call.request_body(&mut w, &store, Ok(&body), &mut out),
        Action::Continue
    );
}

#[test]
fn a_tools_list_answer_compressed_anyway_is_refused_without_being_buffered() {
    let store = MemoryStore::new();
    let mut w = worker(json!({}), &store);
    let mut o = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"z-3","method":"tools/list"}"#),
    );
    let start = ResponseStart {
        status: Some("200".into()),
        content_type: Some("application/json".into()),
        content_encoding: Some("gzip".into()),
        ..ResponseStart::default()
    };
    assert_eq!(
        o.exchange.response_head(&mut w, start, &mut o.out),
        Action::DropResponseHeaders(&["content-length", "content-encoding"])
    );
    // Compressed bytes are dropped as they come, never buffered.
    assert_eq!(
        o.exchange
            .response_body_progress(&w, 100, false, &mut o.out),
        Action::ReplaceResponseBody {
            size: 100,
            body: Vec::new()
        }
    );
    let Action::ReplaceResponseBody { body, .. } =
        o.exchange.response_body_progress(&w, 40, true, &mut o.out)
    else {
        panic!("not replaced")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("z-3"), json!(-32603))
    );
    assert!(
        o.out
            .logs
            .iter()
            .any(|(_, l)| l.contains("content-encoding gzip")),
        "{:?}",
        o.out.logs
    );
    // An identity answer is read as before.
    let mut plain = send(
        &mut w,
        &store,
        &Req::post(r#"{"jsonrpc":"2.0","id":"l-1","method":"tools/list"}"#),
    );
    assert_eq!(answer(&mut w, &store, &mut plain, TOOLS), None);
}

// ---- ML-KEM bound sessions ----------------------------------------------

mod binding {
    use super::*;
    use crate::bind::{
        self, BoundHeaders, ClientKey, Covered, Issued, Proof, BIND_PATH, PROOF_HEADER,
    };
    use crate::token::base64url_encode;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECRET: &str = "c2VjcmV0LW9mLWF0LWxlYXN0LXRoaXJ0eS10d28tYnl0ZXMh";

    struct Setup {
        pq: PrivateKey,
        config: Value,
    }

    fn setup(extra_rules: Value) -> Setup {
        let pq = key(Algorithm::MlDsa65, "k65");
        let mut rules = vec![json!({"name": "callers", "effect": "allow",
            "match": {"methods": ["tools/call", "tools/list"]}, "when": {"authenticated": true}})];
        if let Value::Array(more) = extra_rules {
            rules.extend(more);
        }
        let config = json!({
            "auth": {"audience": AUD, "issuers": [ISS], "jwks": jwks(&[&pq])},
            "binding": {"secrets": [{"kid": "b1", "secret": SECRET}], "ttl_seconds": 600,
                        "window_seconds": 30},
            "policy": {"rules": rules},
        });
        Setup { pq, config }
    }

    /// The client key most tests bind with, and a token confirmed for it.
    fn mine() -> ClientKey {
        ClientKey::from_seed(&[8; 64])
    }

    fn confirmed(k: &PrivateKey, client: &ClientKey) -> String {
        let print = bind::thumbprint(&client.encapsulation_key());
        token_with(k, json!({"cnf": {"mlkem#S3-256": print}}))
    }

    fn bound_worker(config: &Value, store: &dyn SharedStore) -> Worker {
        let mut w = worker(config.clone(), store);
        assert!(w.wants_random());
        w.seed_random(&[4; 32]);
        assert!(!w.wants_random());
        w
    }

    fn token_with(k: &PrivateKey, extra: Value) -> String {
        let now = (NOW_MS / 1000) as i64;
        let mut claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "scope": "tools:call",
                                "iat": now, "exp": now + 300});
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        mint(k, &claims).unwrap()
    }

    fn bind_request(token: &str, ek: &[u8]) -> Req {
        Req {
            path: BIND_PATH,
            ..Req::post(&json!({"ek": base64url_encode(ek)}).to_string())
        }
        .bearer(token)
    }

    /// Binds and opens the answer: (binding id, key).
    fn bind_now(
        w: &mut Worker,
        store: &dyn SharedStore,
        token: &str,
        client: &ClientKey,
    ) -> (String, [u8; 32]) {
        // As the shim does after every binding: fresh host entropy.
        if w.wants_random() {
            w.seed_random(&[5; 32]);
        }
        let o = send(w, store, &bind_request(token, &client.encapsulation_key()));
        let (status, body) = o.reply.clone().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(o.out.counted("pqguard.binding.issued") == 1);
        let issued = Issued::from_json(body.to_string().as_bytes()).unwrap();
        (issued.id.clone(), client.open(&issued).unwrap())
    }

    fn proven(req: Req, token: &str, id: &str, key: &[u8; 32], ts: u64, nonce: u8) -> Req {
        let proof = proof_for(&req, req.authority, token, id, key, ts, nonce);
        req.header(PROOF_HEADER, &proof.to_header())
    }

    /// The proof of `req` as a client sends it, for `authority`.
    fn proof_for(
        req: &Req,
        authority: &str,
        token: &str,
        id: &str,
        key: &[u8; 32],
        ts: u64,
        nonce: u8,
    ) -> Proof {
        let body = req.body.clone().unwrap_or_default();
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let covered = Covered {
            method: req.method,
            path: req.path,
            headers: BoundHeaders {
                authority: Some(authority),
                session_id: header("mcp-session-id"),
                protocol_version: header("mcp-protocol-version"),
                mcp_method: header("mcp-method"),
                mcp_name: header("mcp-name"),
            },
            body_digest: &bind::sha3(&body),
            token_digest: &crate::token::token_digest(token),
        };
        Proof::new(id, key, &covered, ts, &[nonce; 16])
    }

    fn challenge(o: &Outcome) -> String {
        o.reply_headers
            .iter()
            .find(|(k, _)| *k == "www-authenticate")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    const NOW_S: u64 = NOW_MS / 1000;

    #[test]
    fn a_bound_request_passes_and_a_replayed_or_altered_one_gets_401() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (id, key) = bind_now(&mut w, &store, &token, &client);
        assert!(id.starts_with("b1."), "{id}");
        let call = || Req::call("c-1", "echo").bearer(&token);
        let ok = send(&mut w, &store, &proven(call(), &token, &id, &key, NOW_S, 1));
        assert!(ok.forwarded, "{:?}", ok.reply);
        // The proof is pqguard's: it never reaches the MCP server.
        assert!(ok
            .exchange
            .request_headers_to_remove(&w)
            .contains(&Some(PROOF_HEADER)));
        // The same proof again: a replay.
        let again = send(&mut w, &store, &proven(call(), &token, &id, &key, NOW_S, 1));
        assert_eq!(again.error(), (Some(401), json!(-32001), json!("c-1")));
        assert!(
            challenge(&again).contains("pqguard_binding=\"invalid_binding\""),
            "{}",
            challenge(&again)
        );
        assert_eq!(again.record()["reason_code"], "binding_replayed");
        // A proof for another body.
        let mut other = proven(call(), &token, &id, &key, NOW_S, 2);
        other.body = Req::call("c-1", "run_python").body;
        let o = send(&mut w, &store, &other);
        assert_eq!(o.status(), Some(401));
        assert_eq!(o.record()["reason_code"], "binding_bad_mac");
        // The right key, but a clock 40 s off (window 30 s).
        let skewed = send(
            &mut w,
            &store,
            &proven(call(), &token, &id, &key, NOW_S - 40, 3),
        );
        assert_eq!(skewed.status(), Some(401));
        assert!(challenge(&skewed).contains("pqguard_binding=\"clock_skew\""));
        // A stolen token with a guessed key: no.
        let guessed = send(
            &mut w,
            &store,
            &proven(call(), &token, &id, &[0; 32], NOW_S, 4),
        );
        assert_eq!(guessed.status(), Some(401));
        // A proof made in advance (10 s ahead; 5 s of skew allowed).
        let ahead = send(
            &mut w,
            &store,
            &proven(call(), &token, &id, &key, NOW_S + 10, 6),
        );
        assert_eq!(ahead.status(), Some(401));
        assert_eq!(ahead.record()["reason_code"], "binding_outside_window");
        // Another Envoy with the same secret (its own shared data)
        // recomputes the key.
        let elsewhere = MemoryStore::new();
        let mut other_envoy = bound_worker(&s.config, &elsewhere);
        let there = send(
            &mut other_envoy,
            &elsewhere,
            &proven(call(), &token, &id, &key, NOW_S, 5),
        );
        assert!(there.forwarded, "{:?}", there.reply);
    }

    const TICKET_SECRET: &str = "dGlja2V0LXNlY3JldC1vZi1hdC1sZWFzdC10aGlydHktdHdvIQ";

    fn with_tickets(config: &Value, kids: &[&str]) -> Value {
        let mut c = config.clone();
        c["binding"]["ticket_secrets"] = json!(kids
            .iter()
            .map(|k| json!({"kid": k, "secret": TICKET_SECRET}))
            .collect::<Vec<_>>());
        c["auth"]["forward_payload_header"] = json!("x-jwt-payload");
        c
    }

    /// Binds and returns (binding id, key, ticket).
    fn bind_ticket(
        w: &mut Worker,
        store: &dyn SharedStore,
        token: &str,
        client: &ClientKey,
    ) -> (String, [u8; 32], String) {
        if w.wants_random() {
            w.seed_random(&[5; 32]);
        }
        let o = send(w, store, &bind_request(token, &client.encapsulation_key()));
        let (status, body) = o.reply.clone().unwrap();
        assert_eq!(status, 200, "{body}");
        let ticket = body["ticket"].as_str().expect("a ticket").to_owned();
        let issued = Issued::from_json(body.to_string().as_bytes()).unwrap();
        (issued.id.clone(), client.open(&issued).unwrap(), ticket)
    }

    #[test]
    fn a_session_ticket_stands_for_the_token_only_with_a_proof_of_its_binding() {
        let s = setup(json!([
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": true, "scopes": ["tools:call"]}}
        ]));
        let config = with_tickets(&s.config, &["t1"]);
        let store = MemoryStore::new();
        let mut w = bound_worker(&config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (id, key, ticket) = bind_ticket(&mut w, &store, &token, &client);
        assert!(
            ticket.starts_with("t1.") && ticket.len() < 1200,
            "{}",
            ticket.len()
        );
        assert!(!ticket.contains("alice"), "sealed, not only signed");
        let call = || Req::call("t-1", "run_python").header("pqguard-ticket", &ticket);
        // The ticket and a proof over it (the MAC covers the ticket's digest).
        let ok = send(
            &mut w,
            &store,
            &proven(call(), &ticket, &id, &key, NOW_S, 1),
        );
        assert!(ok.forwarded, "{:?} {}", ok.reply, ok.record());
        assert_eq!(ok.record()["subject"], "alice");
        assert!(ok
            .exchange
            .request_headers_to_remove(&w)
            .contains(&Some("pqguard-ticket")));
        let (name, payload) = ok.exchange.request_payload_header(&w).unwrap();
        assert_eq!(name, "x-jwt-payload");
        let claims: Value = serde_json::from_slice(
            &crate::token::base64url_decode(payload.unwrap().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (claims["sub"].as_str(), claims["iss"].as_str()),
            (Some("alice"), Some(ISS))
        );
        // Opened once per worker.
        let again = send(
            &mut w,
            &store,
            &proven(call(), &ticket, &id, &key, NOW_S, 2),
        );
        assert!(again.forwarded);
        assert_eq!(again.out.counted("pqguard.ticket_cache.hit"), 1);
        // The same request replayed, here or on another worker: refused.
        let replay = proven(call(), &ticket, &id, &key, NOW_S, 3);
        assert!(send(&mut w, &store, &replay).forwarded);
        let mut other = bound_worker(&config, &store);
        let o = send(&mut other, &store, &replay);
        assert_eq!(o.record()["reason_code"], "binding_replayed");
        // Without a proof.
        let bare = send(&mut w, &store, &call());
        assert_eq!(bare.status(), Some(401));
        assert_eq!(bare.record()["reason_code"], "binding_ticket");
        // With a proof made for the token, not the ticket.
        let token_proof = proof_for(&call(), "mcp.test", &token, &id, &key, NOW_S, 4);
        let o = send(
            &mut w,
            &store,
            &call().header(PROOF_HEADER, &token_proof.to_header()),
        );
        assert_eq!(o.record()["reason_code"], "binding_bad_mac");
        // With the token too.
        let both = proven(call().bearer(&token), &ticket, &id, &key, NOW_S, 5);
        assert_eq!(send(&mut w, &store, &both).status(), Some(401));
        // Altered.
        let mut altered = ticket.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let req = Req::call("t-2", "echo").header("pqguard-ticket", &altered);
        let o = send(&mut w, &store, &proven(req, &altered, &id, &key, NOW_S, 6));
        assert_eq!(o.status(), Some(401));
        assert_eq!(o.record()["reason_code"], "binding_ticket");
    }

    #[test]
    fn a_ticket_is_refused_for_another_binding_a_retired_secret_or_a_key_gone() {
        let s = setup(json!([]));
        let config = with_tickets(&s.config, &["t1"]);
        let store = MemoryStore::new();
        let mut w = bound_worker(&config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (_, _, ticket_a) = bind_ticket(&mut w, &store, &token, &client);
        let (id_b, key_b, _) = bind_ticket(&mut w, &store, &token, &client);
        let call = |t: &str| Req::call("t-3", "echo").header("pqguard-ticket", t);
        // Ticket of binding A with a proof of binding B.
        let o = send(
            &mut w,
            &store,
            &proven(call(&ticket_a), &ticket_a, &id_b, &key_b, NOW_S, 1),
        );
        assert_eq!(o.status(), Some(401));
        assert_eq!(o.record()["reason_code"], "binding_ticket");
        let (id, key, ticket) = bind_ticket(&mut w, &store, &token, &client);
        // The ticket secret retired: bind again.
        let retired = with_tickets(&s.config, &["t2"]);
        let mut r = bound_worker(&retired, &store);
        let o = send(
            &mut r,
            &store,
            &proven(call(&ticket), &ticket, &id, &key, NOW_S, 2),
        );
        assert_eq!(o.status(), Some(401));
        assert!(
            challenge(&o).contains("pqguard_binding=\"rebind\""),
            "{}",
            challenge(&o)
        );
        // The key that verified the token left the key set: bind again (and
        // the token itself no longer verifies).
        let other = super::key(Algorithm::MlDsa65, "k65-next");
        let mut rotated = config.clone();
        rotated["auth"]["jwks"] = jwks(&[&other]);
        let mut k = bound_worker(&rotated, &store);
        let o = send(
            &mut k,
            &store,
            &proven(call(&ticket), &ticket, &id, &key, NOW_S, 3),
        );
        assert_eq!(o.status(), Some(401));
        assert!(challenge(&o).contains("pqguard_binding=\"rebind\""));
        assert!(o.record()["detail"]
            .as_str()
            .unwrap_or("")
            .contains("left the key set"));
        // The issuer no longer accepted.
        let mut moved = config.clone();
        moved["auth"]["issuers"] = json!(["https://another-issuer.test"]);
        let mut m = bound_worker(&moved, &store);
        let o = send(
            &mut m,
            &store,
            &proven(call(&ticket), &ticket, &id, &key, NOW_S, 4),
        );
        assert_eq!(o.status(), Some(401));
        // Without ticket secrets a ticket is not accepted at all.
        let mut plain = bound_worker(&s.config, &store);
        let o = send(
            &mut plain,
            &store,
            &proven(call(&ticket), &ticket, &id, &key, NOW_S, 5),
        );
        assert_eq!(o.record()["reason_code"], "binding_ticket");
        // After the binding's expiry: bind again.
        let late = Req {
            now_ms: Some((NOW_S + 301) * 1000),
            ..call(&ticket)
        };
        let o = send(
            &mut w,
            &store,
            &proven(late, &ticket, &id, &key, NOW_S + 301, 6),
        );
        assert_eq!(o.status(), Some(401));
    }

    #[test]
    fn a_proof_replayed_to_another_worker_of_the_same_envoy_is_refused() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut first = bound_worker(&s.config, &store);
        let mut second = bound_worker(&s.config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (id, key) = bind_now(&mut first, &store, &token, &client);
        let req = proven(
            Req::call("r-1", "echo").bearer(&token),
            &token,
            &id,
            &key,
            NOW_S,
            1,
        );
        assert!(send(&mut first, &store, &req).forwarded);
        let replayed = send(&mut second, &store, &req);
        assert_eq!(replayed.status(), Some(401));
        assert_eq!(replayed.record()["reason_code"], "binding_replayed");
        // With replay_scope: worker, each worker keeps its own set (a host
        // without shared data): the same replay passes there.
        let mut config = s.config.clone();
        config["binding"]["replay_scope"] = json!("worker");
        let mut a = bound_worker(&config, &store);
        let mut b = bound_worker(&config, &store);
        let req = proven(
            Req::call("r-2", "echo").bearer(&token),
            &token,
            &id,
            &key,
            NOW_S,
            2,
        );
        assert!(send(&mut a, &store, &req).forwarded);
        assert_eq!(send(&mut a, &store, &req).status(), Some(401));
        assert!(send(&mut b, &store, &req).forwarded);
    }

    #[test]
    fn a_captured_request_cannot_go_to_another_host_or_session() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (id, key) = bind_now(&mut w, &store, &token, &client);
        let call = || {
            Req::call("h-1", "echo")
                .bearer(&token)
                .header("mcp-session-id", "session-a")
                .header("mcp-protocol-version", "2025-11-25")
        };
        let proof = proof_for(&call(), "mcp.test", &token, &id, &key, NOW_S, 1).to_header();
        let other_host = Req {
            authority: "other.test",
            ..call()
        }
        .header(PROOF_HEADER, &proof);
        let o = send(&mut w, &store, &other_host);
        assert_eq!(o.status(), Some(401));
        assert_eq!(o.record()["reason_code"], "binding_bad_mac");
        let mut other_session = call().header(PROOF_HEADER, &proof);
        for h in &mut other_session.headers {
            if h.0 == "mcp-session-id" {
                h.1 = "session-b".into();
            }
        }
        assert_eq!(send(&mut w, &store, &other_session).status(), Some(401));
        assert!(send(&mut w, &store, &call().header(PROOF_HEADER, &proof)).forwarded);
    }

    #[test]
    fn a_full_replay_set_answers_503_and_a_flooding_binding_429() {
        let s = setup(json!([]));
        let mut config = s.config.clone();
        // One live proof per bucket, three per binding.
        config["binding"]["replay_capacity"] = json!(1);
        config["binding"]["replay_per_binding"] = json!(3);
        let store = MemoryStore::new();
        let mut w = bound_worker(&config, &store);
        let client = mine();
        let token = confirmed(&s.pq, &client);
        let (id, key) = bind_now(&mut w, &store, &token, &client);
        let call = || Req::call("f-1", "echo").bearer(&token);
        // Nonces of 16 equal bytes give 256 proofs per time; two of them
        // sharing one of 4096 buckets is likely, not certain: vary the time.
        let bucket = |nonce: u8, ts: u64| {
            crate::engine::shared::replay_bucket(&bind::replay_key(&proof_for(
                &call(),
                "mcp.test",
                &token,
                &id,
                &key,
                ts,
                nonce,
            )))
        };
        let Some((ts, one, twin, buckets)) = (0..5).find_map(|back| {
            let ts = NOW_S - back;
            let buckets: Vec<usize> = (0..=255u8).map(|n| bucket(n, ts)).collect();
            (0..=255u8)
                .flat_map(|a| (a + 1..=255).map(move |b| (a, b)))
                .find(|&(a, b)| buckets[usize::from(a)] == buckets[usize::from(b)])
                .map(|(a, b)| (ts, a, b, buckets))
        }) else {
            panic!("no two proofs share a bucket");
        };
        let first = buckets[usize::from(one)];
        assert!(send(&mut w, &store, &proven(call(), &token, &id, &key, ts, one)).forwarded);
        let busy = send(&mut w, &store, &proven(call(), &token, &id, &key, ts, twin));
        assert_eq!(busy.status(), Some(503));
        assert_eq!(busy.record()["reason_code"], "binding_busy");
        let retry = |o: &Outcome| {
            o.reply_headers
                .iter()
                .find(|(k, _)| *k == "retry-after")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(retry(&busy).as_deref(), Some("1"));
        // Busy counted against the quota (it passed the MAC): one more fits.
        let other = (0..=255u8)
            .find(|n| buckets[usize::from(*n)] != first)
            .unwrap_or(0);
        assert!(
            send(
                &mut w,
                &store,
                &proven(call(), &token, &id, &key, ts, other)
            )
            .forwarded
        );
        let fourth = (0..=255u8)
            .find(|n| ![first, buckets[usize::from(other)]].contains(&buckets[usize::from(*n)]))
            .unwrap_or(0);
        let flood = send(
            &mut w,
            &store,
            &proven(call(), &token, &id, &key, ts, fourth),
        );
        assert_eq!(flood.status(), Some(429));
        assert_eq!(flood.record()["reason_code"], "binding_quota");
        assert_eq!(retry(&flood).as_deref(), Some("35"));
    }

    #[test]
    fn an_expired_binding_asks_the_client_to_bind_again() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let token = confirmed(&s.pq, &mine());
        let (id, key) = bind_now(&mut w, &store, &token, &mine());
        let (_, exp) = Proof::id_parts(&id).unwrap();
        assert_eq!(exp, NOW_S + 300, "never beyond the token's exp (ttl 600)");
        // The token itself has expired too by then: use a longer one.
        let print = bind::thumbprint(&mine().encapsulation_key());
        let long = token_with(
            &s.pq,
            json!({"exp": NOW_S + 3600, "cnf": {"mlkem#S3-256": print}}),
        );
        let (id, key2) = bind_now(&mut w, &store, &long, &ClientKey::from_seed(&[8; 64]));
        let (_, exp) = Proof::id_parts(&id).unwrap();
        let late = Req {
            now_ms: Some((exp + 1) * 1000),
            ..Req::call("e-1", "echo").bearer(&long)
        };
        let o = send(&mut w, &store, &proven(late, &long, &id, &key2, exp + 1, 1));
        assert_eq!(o.status(), Some(401));
        assert!(
            challenge(&o).contains("pqguard_binding=\"rebind\""),
            "{}",
            challenge(&o)
        );
        assert_ne!(key, key2, "another token, another key");
    }

    #[test]
    fn a_token_confirmed_for_a_key_binds_that_key_only_and_needs_a_proof() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let mine = ClientKey::from_seed(&[8; 64]);
        let print = bind::thumbprint(&mine.encapsulation_key());
        let token = token_with(&s.pq, json!({"cnf": {"mlkem#S3-256": print}}));
        let thief = ClientKey::from_seed(&[9; 64]);
        let o = send(
            &mut w,
            &store,
            &bind_request(&token, &thief.encapsulation_key()),
        );
        assert_eq!(o.status(), Some(403));
        assert_eq!(o.record()["reason_code"], "binding_key_not_confirmed");
        // Without a proof the confirmed token is refused.
        let bare = send(&mut w, &store, &Req::call("n-1", "echo").bearer(&token));
        assert_eq!(bare.status(), Some(401));
        assert!(challenge(&bare).contains("pqguard_binding=\"rebind\""));
        let (id, key) = bind_now(&mut w, &store, &token, &mine);
        let ok = send(
            &mut w,
            &store,
            &proven(
                Req::call("n-2", "echo").bearer(&token),
                &token,
                &id,
                &key,
                NOW_S,
                1,
            ),
        );
        assert!(ok.forwarded, "{:?}", ok.reply);
    }

    #[test]
    fn a_rule_can_demand_binding_and_binding_is_not_a_post_quantum_transport() {
        let s = setup(json!([
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": true}},
            {"name": "python-pq", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"min_kex": "hybrid-pq"}}
        ]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let token = confirmed(&s.pq, &mine());
        let (id, key) = bind_now(&mut w, &store, &token, &mine());
        let python = || Req::call("p-1", "run_python").bearer(&token);
        // The confirmed token without a proof: bind and prove (401).
        let unbound = send(&mut w, &store, &python());
        assert_eq!(unbound.status(), Some(401));
        assert_eq!(unbound.record()["reason_code"], "binding_required");
        let bound = send(
            &mut w,
            &store,
            &proven(python(), &token, &id, &key, NOW_S, 1),
        );
        assert!(bound.forwarded, "{:?}", bound.reply);
        // Bound, but over a classical handshake: min_kex still fails.
        let classical = send(
            &mut w,
            &store,
            &proven(python().over(Some(CLASSICAL)), &token, &id, &key, NOW_S, 2),
        );
        assert_eq!(classical.status(), Some(403));
        // echo needs neither (with a proof: the token is confirmed).
        let echo = proven(
            Req::call("p-2", "echo").bearer(&token),
            &token,
            &id,
            &key,
            NOW_S,
            3,
        );
        assert!(send(&mut w, &store, &echo).forwarded);
    }

    #[test]
    fn a_thief_who_binds_a_copied_token_to_a_key_of_their_own_is_not_bound() {
        let s = setup(json!([
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": true}}
        ]));
        let store = MemoryStore::new();
        // A token without cnf, copied from its owner.
        let copied = token_with(&s.pq, json!({}));
        let thief = ClientKey::from_seed(&[9; 64]);
        // By default only confirmed tokens bind.
        let mut w = bound_worker(&s.config, &store);
        w.seed_random(&[6; 32]);
        let o = send(
            &mut w,
            &store,
            &bind_request(&copied, &thief.encapsulation_key()),
        );
        assert_eq!(o.status(), Some(403));
        assert_eq!(o.record()["reason_code"], "binding_unconfirmed_token");
        // With allow_unconfirmed_tokens the thief's proofs are checked (the
        // request cannot be altered or replayed) but never make it bound.
        let mut config = s.config.clone();
        config["binding"]["allow_unconfirmed_tokens"] = json!(true);
        let mut w = bound_worker(&config, &store);
        let (id, key) = bind_now(&mut w, &store, &copied, &thief);
        let python = proven(
            Req::call("t-1", "run_python").bearer(&copied),
            &copied,
            &id,
            &key,
            NOW_S,
            1,
        );
        let o = send(&mut w, &store, &python);
        assert_eq!(o.status(), Some(403));
        assert_eq!(o.record()["reason_code"], "requirement_not_met");
    }

    #[test]
    fn confirmations_pqguard_cannot_check_are_refused_never_taken_as_bearer() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut without_binding = s.config.clone();
        if let Some(c) = without_binding.as_object_mut() {
            c.remove("binding");
        }
        for config in [&s.config, &without_binding] {
            let mut w = worker(config.clone(), &store);
            for cnf in [
                json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
                json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}),
                json!({"something": "else"}),
            ] {
                let token = token_with(&s.pq, json!({ "cnf": cnf }));
                let o = send(&mut w, &store, &Req::call("j-1", "echo").bearer(&token));
                assert_eq!(o.status(), Some(401), "{cnf}");
                assert_eq!(o.record()["reason_code"], "cnf_unsupported", "{cnf}");
            }
        }
        // An ML-KEM confirmation where no binding is configured: unchecked, refused.
        let mut w = worker(without_binding.clone(), &store);
        let token = confirmed(&s.pq, &mine());
        let o = send(&mut w, &store, &Req::call("j-2", "echo").bearer(&token));
        assert_eq!(o.status(), Some(401));
        assert_eq!(o.record()["reason_code"], "cnf_unsupported");
    }

    #[test]
    fn a_certificate_bound_token_passes_only_with_its_certificate_and_is_bound() {
        let s = setup(json!([
            {"name": "python-bound", "effect": "require", "match": {"tools": ["run_python"]},
             "when": {"bound": true}}
        ]));
        let store = MemoryStore::new();
        let mut w = worker(s.config.clone(), &store);
        let digest = [0x5a_u8; 32];
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let token = token_with(
            &s.pq,
            json!({"cnf": {"x5t#S256": base64url_encode(&digest)}}),
        );
        let python = || Req::call("x-1", "run_python").bearer(&token);
        let with_cert = Req {
            peer_digest: Some(hex),
            ..python()
        };
        assert!(send(&mut w, &store, &with_cert).forwarded);
        let no_cert = send(&mut w, &store, &python());
        assert_eq!(no_cert.status(), Some(401));
        assert_eq!(no_cert.record()["reason_code"], "cnf_certificate_mismatch");
        let other = Req {
            peer_digest: Some("00".repeat(32)),
            ..python()
        };
        assert_eq!(send(&mut w, &store, &other).status(), Some(401));
    }

    #[test]
    fn rules_can_demand_a_binding_for_get_and_delete() {
        let s = setup(json!([
            {"name": "stream-bound", "effect": "require", "match": {"http_methods": ["GET", "DELETE"]},
             "when": {"bound": true}}
        ]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let token = confirmed(&s.pq, &mine());
        let (id, key) = bind_now(&mut w, &store, &token, &mine());
        let mut config_no_rule = s.config.clone();
        if let Some(rules) = config_no_rule["policy"]["rules"].as_array_mut() {
            rules.truncate(1);
        }
        for method in ["GET", "DELETE"] {
            let req = || Req {
                method,
                ..Req::get("/mcp").header("mcp-session-id", "s-1")
            };
            // The confirmed token needs a proof anyway (require_for_cnf).
            let bare = send(&mut w, &store, &req().bearer(&token));
            assert_eq!(bare.status(), Some(401), "{method}");
            let bound = proven(
                req().bearer(&token),
                &token,
                &id,
                &key,
                NOW_S,
                method.len() as u8,
            );
            let o = send(&mut w, &store, &bound);
            assert!(o.forwarded, "{method}: {:?} {}", o.reply, o.record());
        }
        // An unconfirmed token on the stream: the rule refuses it.
        let plain = token_with(&s.pq, json!({}));
        let o = send(&mut w, &store, &Req::get("/mcp").bearer(&plain));
        assert_eq!(o.status(), Some(403));
        assert_eq!(o.record()["reason_code"], "requirement_not_met");
        // Without a rule naming GET, GET is governed by the transport gates only.
        let mut w = worker(config_no_rule, &store);
        assert!(send(&mut w, &store, &Req::get("/mcp").bearer(&plain)).forwarded);
    }

    #[test]
    fn bind_requests_are_checked_before_anything_is_issued() {
        let s = setup(json!([]));
        let store = MemoryStore::new();
        let mut w = bound_worker(&s.config, &store);
        let token = confirmed(&s.pq, &mine());
        let ek = mine().encapsulation_key();
        // No token.
        let anonymous = Req {
            path: BIND_PATH,
            ..Req::post(&json!({"ek": base64url_encode(&ek)}).to_string())
        };
        assert_eq!(send(&mut w, &store, &anonymous).status(), Some(401));
        // Not POST.
        let get = Req::get(BIND_PATH).bearer(&token);
        assert_eq!(send(&mut w, &store, &get).status(), Some(405));
        // A short key, and a body that is not the bind request.
        assert_eq!(
            send(&mut w, &store, &bind_request(&token, &ek[..100])).status(),
            Some(400)
        );
        let junk = Req {
            path: BIND_PATH,
            ..Req::post("[1,2]")
        }
        .bearer(&token);
        assert_eq!(send(&mut w, &store, &junk).status(), Some(400));
        // Without randomness from the host: refused, never a predictable binding.
        let mut unseeded = worker(s.config.clone(), &store);
        assert_eq!(
            send(&mut unseeded, &store, &bind_request(&token, &ek)).status(),
            Some(500)
        );
        // Two bindings of the same key and token differ.
        let client = mine();
        let (a, _) = bind_now(&mut w, &store, &token, &client);
        let (b, _) = bind_now(&mut w, &store, &token, &client);
        assert_ne!(a, b);
        // Every binding needs fresh host entropy: without it, refused.
        let (_, _) = bind_now(&mut w, &store, &token, &client);
        assert!(w.wants_random());
        assert_eq!(
            send(&mut w, &store, &bind_request(&token, &ek)).status(),
            Some(500)
        );
    }
}
