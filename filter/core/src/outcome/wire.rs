//! The one place where a refusal becomes bytes on the wire: HTTP status,
//! headers and a JSON-RPC 2.0 error body that echoes the request id.

use crate::outcome::reject::{Reason, Rejection};

/// JSON-RPC 2.0: invalid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0: not a valid request object.
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC 2.0: method not found.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// MCP 2026-07-28: a mirrored header disagrees with the body.
pub const HEADER_MISMATCH: i32 = -32020;
/// JSON-RPC error code of a protocol version the server does not support
/// (MCP 2026-07-28 `UnsupportedProtocolVersion`).
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
/// JSON-RPC 2.0: invalid method parameters.
pub const INVALID_PARAMS: i32 = -32602;
/// pqguard: no valid token (HTTP 401).
pub const UNAUTHORIZED: i32 = -32001;
/// pqguard: denied by policy (HTTP 403).
pub const FORBIDDEN: i32 = -32003;
/// JSON-RPC 2.0: internal error.
pub const INTERNAL_ERROR: i32 = -32603;

/// A reply the filter sends itself instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (besides `:status`).
    pub headers: Vec<(&'static str, String)>,
    /// Response body (a JSON-RPC error object).
    pub body: String,
}

/// HTTP status, JSON-RPC code and client-facing message for a refusal class.
/// The message is generic on purpose: the detail goes to the log only.
pub fn classify(reason: Reason) -> (u16, i32, &'static str) {
    match reason {
        Reason::BodyTooLarge => (413, INVALID_REQUEST, "Request body too large"),
        Reason::UnsupportedMediaType => (415, INVALID_REQUEST, "Unsupported media type"),
        Reason::UnsupportedContentEncoding => {
            (415, INVALID_REQUEST, "Unsupported content encoding")
        }
        Reason::ParseError => (400, PARSE_ERROR, "Parse error"),
        Reason::InvalidRequest => (400, INVALID_REQUEST, "Invalid request"),
        Reason::InvalidParams => (400, INVALID_PARAMS, "Invalid params"),
        Reason::UnsupportedProtocolVersion => (
            400,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
        ),
        Reason::HeaderMismatch => (400, HEADER_MISMATCH, "Header mismatch"),
        Reason::MethodNotFound => (404, METHOD_NOT_FOUND, "Method not found"),
        Reason::MethodNotAllowed => (405, INVALID_REQUEST, "Method not allowed"),
        Reason::Unauthorized => (401, UNAUTHORIZED, "Unauthorized"),
        Reason::Forbidden => (403, FORBIDDEN, "Forbidden"),
        Reason::AuditUnavailable => (503, INTERNAL_ERROR, "Service unavailable"),
        Reason::HostError => (500, INTERNAL_ERROR, "Internal error"),
        Reason::BindingBusy => (503, INTERNAL_ERROR, "Service unavailable"),
        Reason::BindingQuota => (429, INTERNAL_ERROR, "Too many requests"),
    }
}

/// Builds the local reply for a refusal (no resource metadata URL).
pub fn local_reply(rejection: &Rejection) -> LocalReply {
    local_reply_with(rejection, None)
}

/// Builds the local reply for a refusal; `resource_metadata` is the RFC
/// 9728 metadata URL advertised in `WWW-Authenticate` on 401 and 403.
pub fn local_reply_with(rejection: &Rejection, resource_metadata: Option<&str>) -> LocalReply {
    let (status, code, message) = classify(rejection.reason);
    // `id` is raw JSON text that the strict scanner validated (a string with
    // quotes, or an integer), so it can be embedded as is.
    let id = rejection.id.as_deref().unwrap_or("null");
    let data = match (rejection.reason, rejection.scope.as_deref()) {
        (Reason::UnsupportedProtocolVersion, requested) => {
            let supported: Vec<&str> = crate::inspect::mcp::ProtocolVersion::ALL
                .iter()
                .map(|v| v.as_str())
                .collect();
            format!(
                r#","data":{}"#,
                serde_json::json!({"supported": supported, "requested": requested})
            )
        }
        _ => String::new(),
    };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":"{message}"{data}}}}}"#
    );
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    if rejection.reason == Reason::MethodNotAllowed {
        headers.push(("allow", "POST".to_owned()));
    }
    if let Some(seconds) = rejection.retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    let metadata = resource_metadata
        .map(|u| format!("resource_metadata=\"{}\", ", quote_safe(u)))
        .unwrap_or_default();
    match (rejection.reason, rejection.scope.as_deref()) {
        (Reason::Unauthorized, _) => headers.push((
            "www-authenticate",
            match rejection.binding {
                Some(hint) => {
                    format!("Bearer {metadata}error=\"invalid_token\", pqguard_binding=\"{hint}\"")
                }
                None => format!("Bearer {metadata}error=\"invalid_token\""),
            },
        )),
        (Reason::Forbidden, Some(scope)) => headers.push((
            "www-authenticate",
            format!(
                "Bearer {metadata}error=\"insufficient_scope\", scope=\"{}\"",
                quote_safe(scope)
            ),
        )),
        _ => {}
    }
    LocalReply {
        status,
        headers,
        body,
    }
}

/// Drops characters that cannot appear in an RFC 7235 quoted-string as we
/// emit it (quotes, backslashes, controls).
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
        .collect()
}

/// The body that replaces an answer pqguard refused to pass (for example a
/// `tools/list` answer it could not read): a JSON-RPC internal error for
/// the request `id` (raw JSON text), as JSON or as one event-stream event.
pub fn answer_error_body(id: &str, event_stream: bool) -> Vec<u8> {
    let json = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{INTERNAL_ERROR},"message":"Internal error"}}}}"#
    );
    if event_stream {
        format!("event: message\ndata: {json}\n\n").into_bytes()
    } else {
        json.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parse_errors_are_400_with_null_id() {
        let r = local_reply(&Rejection::new(Reason::ParseError, "unexpected end"));
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["id"].is_null());
        assert_eq!(v["error"]["code"], -32700);
        assert!(!r.body.contains("unexpected end"), "detail must not leak");
    }

    #[test]
    fn echoes_string_and_integer_ids() {
        let mut rej = Rejection::new(Reason::InvalidParams, "x");
        rej.id = Some("\"a\\\"b\"".into());
        let v: serde_json::Value = serde_json::from_str(&local_reply(&rej).body).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["error"]["code"], -32602);
        rej.id = Some("42".into());
        let v: serde_json::Value = serde_json::from_str(&local_reply(&rej).body).unwrap();
        assert_eq!(v["id"], 42);
    }

    #[test]
    fn refused_answers_become_internal_errors_in_either_format() {
        let v: serde_json::Value =
            serde_json::from_slice(&answer_error_body("\"a\"", false)).unwrap();
        assert_eq!(v["id"], "a");
        assert_eq!(v["error"]["code"], -32603);
        let sse = String::from_utf8(answer_error_body("4", true)).unwrap();
        assert!(
            sse.starts_with("event: message\ndata: {") && sse.ends_with("}\n\n"),
            "{sse}"
        );
    }

    #[test]
    fn unauthorized_and_insufficient_scope_carry_challenges() {
        let r = local_reply_with(
            &Rejection::new(Reason::Unauthorized, "expired"),
            Some("https://mcp.example/.well-known/oauth-protected-resource"),
        );
        assert_eq!(r.status, 401);
        let www = r
            .headers
            .iter()
            .find(|(k, _)| *k == "www-authenticate")
            .unwrap();
        assert_eq!(www.1, "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource\", error=\"invalid_token\"");
        assert!(!r.body.contains("expired"));
        let mut f = Rejection::new(Reason::Forbidden, "rule x");
        f.scope = Some("tools:execute".into());
        f.id = Some("7".into());
        let r = local_reply(&f);
        assert_eq!(r.status, 403);
        let www = r
            .headers
            .iter()
            .find(|(k, _)| *k == "www-authenticate")
            .unwrap();
        assert_eq!(
            www.1,
            "Bearer error=\"insufficient_scope\", scope=\"tools:execute\""
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (v["id"].as_i64(), v["error"]["code"].as_i64()),
            (Some(7), Some(-32003))
        );
        let plain = local_reply(&Rejection::new(Reason::Forbidden, "rule x"));
        assert!(plain.headers.iter().all(|(k, _)| *k != "www-authenticate"));
    }

    #[test]
    fn statuses_match_the_refusal_class() {
        assert_eq!(classify(Reason::BodyTooLarge).0, 413);
        assert_eq!(classify(Reason::UnsupportedMediaType).0, 415);
        assert_eq!(classify(Reason::UnsupportedContentEncoding).0, 415);
        assert_eq!(
            classify(Reason::InvalidRequest),
            (400, -32600, "Invalid request")
        );
    }
}
