//! One request through the whole engine, as the shim feeds it: the first bytes choose the head
//! (protocol version, mirrored headers, a bearer token), the rest is the body. Nothing that is not
//! JSON is ever forwarded, a refusal is always a well-formed JSON-RPC error, and nothing panics.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pqguard_core::engine::{Action, ConnectionFacts, Effects, Exchange, MemoryStore, RequestStart, Worker};

const NOW_MS: u64 = 1_800_000_000_000;
const VERSIONS: [&str; 6] = ["", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
const METHODS: [&str; 5] = ["", "tools/call", "tools/list", "initialize", "resources/read"];

fn config() -> &'static str {
    static CONFIG: OnceLock<String> = OnceLock::new();
    CONFIG.get_or_init(|| {
        serde_json::json!({
            "policy": {"rules": [
                {"name": "all", "effect": "allow", "match": {}},
                {"name": "py", "effect": "require", "match": {"tools": ["run_python"]}, "when": {"min_kex": "hybrid-pq"}}],
                "arguments": [{"tool": "run_python", "reject_unknown": true,
                               "args": {"code": {"type": "string", "max_length": 64}}}]}
        })
        .to_string()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let store = MemoryStore::new();
    let mut out = Effects::new();
    let Ok(mut worker) = Worker::start(config().as_bytes(), Some(NOW_MS), Some([0; 8]), &store, &mut out) else {
        panic!("the fixed configuration is valid")
    };
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (":method".into(), if selector & 0x80 == 0 { b"POST".to_vec() } else { b"GET".to_vec() }),
        (":path".into(), b"/mcp".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
    ];
    let version = VERSIONS[usize::from(selector & 7) % VERSIONS.len()];
    if !version.is_empty() {
        headers.push(("mcp-protocol-version".into(), version.as_bytes().to_vec()));
    }
    let method = METHODS[usize::from((selector >> 3) & 7) % METHODS.len()];
    if !method.is_empty() {
        headers.push(("mcp-method".into(), method.as_bytes().to_vec()));
    }
    if selector & 0x40 != 0 {
        headers.push(("mcp-param-region".into(), b"eu".to_vec()));
    }
    let start = RequestStart {
        headers: Ok(headers),
        end_of_stream: body.is_empty(),
        now_ms: Some(NOW_MS),
        connection: ConnectionFacts {
            tls_version: Some("TLSv1.3".into()),
            tls_group: Some(if selector & 0x20 == 0 { "X25519MLKEM768" } else { "X25519" }.into()),
            ..ConnectionFacts::default()
        },
        ..RequestStart::default()
    };
    let mut ex = Exchange::new();
    let mut action = ex.request_head(&mut worker, &store, start, &mut out);
    if action == Action::Pause {
        action = ex.request_body_progress(&mut worker, body.len(), true, &mut out);
    }
    if let Action::ReadRequestBody(n) = action {
        action = ex.request_body(&mut worker, &store, Ok(&body[..n]), &mut out);
    }
    match action {
        Action::Continue | Action::ContinueWithRequestHeader(..) => {
            if !body.is_empty() {
                assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "forwarded a body that is not JSON");
            }
        }
        Action::Reply(reply) => {
            let v: serde_json::Value = serde_json::from_str(&reply.body).expect("a refusal is JSON");
            assert_eq!(v["jsonrpc"], "2.0");
            assert!(v["error"]["code"].is_i64());
            assert!(reply.status >= 400 || reply.status == 200);
        }
        other => panic!("unexpected final action {other:?}"),
    }
});
