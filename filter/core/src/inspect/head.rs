//! One HTTP request as the filter sees it: the head checks done before any
//! body byte is buffered, and the body inspection at end of stream.

use crate::config::Config;
use crate::inspect::mcp::{self, Inspected, MessageKind, ProtocolVersion, Target};
use crate::inspect::mirror::{self, MirrorHeaders};
use crate::inspect::params::{self, CallCheck, KnownSchema};
use crate::outcome::reject::{Reason, Rejection};

/// Headers that must appear at most once: a second copy is a classic way to
/// make two components read one request two ways.
const SINGLE_HEADERS: [&str; 13] = [
    ":method",
    ":path",
    ":authority",
    "content-type",
    "content-encoding",
    "content-length",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "mcp-session-id",
    "authorization",
    crate::bind::PROOF_HEADER,
    crate::ticket::TICKET_HEADER,
];

/// The parts of the request head pqguard uses, copied out of the host once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP method (`:method`).
    pub http_method: String,
    /// Request path (`:path`).
    pub path: String,
    /// `:authority` (HTTP/1.1 `Host`), if present.
    pub authority: Option<String>,
    /// `Content-Type`, if present.
    pub content_type: Option<String>,
    /// `Content-Encoding`, if present.
    pub content_encoding: Option<String>,
    /// `Content-Length` parsed, if present and numeric.
    pub content_length: Option<u64>,
    /// `MCP-Protocol-Version`, if present.
    pub protocol_version: Option<String>,
    /// `Authorization` (the bearer token; never logged).
    pub authorization: Option<String>,
    /// `PQGuard-Binding` (an ML-KEM binding proof), raw.
    pub binding: Option<String>,
    /// `PQGuard-Ticket` (a session ticket standing for the token), raw.
    pub ticket: Option<String>,
    /// `Mcp-Session-Id` (2025-03-26 to 2025-11-25; ignored in 2026-07-28).
    pub session_id: Option<String>,
    /// `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` (2026-07-28 mirrors).
    pub mirrors: MirrorHeaders,
    /// Whether a body follows the head (the host says so; for HTTP/1.1 and
    /// HTTP/2 alike). Set by the shim; `false` by default.
    pub has_body: bool,
}

/// What to do after the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadVerdict {
    /// No body to inspect (GET, DELETE, ...): continue.
    Forward,
    /// Hold the request and inspect its body at end of stream.
    InspectBody,
    /// Refuse now, before buffering anything.
    Reject(Rejection),
}

impl RequestHead {
    /// A head for a JSON POST to `path` (what MCP clients send), for tools
    /// and tests that inspect a body outside Envoy.
    pub fn post_json(path: &str) -> Self {
        Self {
            http_method: "POST".into(),
            path: path.into(),
            content_type: Some("application/json".into()),
            ..Self::default()
        }
    }

    /// Builds the head from every request header, as the host lists them
    /// (lower-case names, pseudo-headers included). Refuses a repeated
    /// header among those pqguard reads and values that are not UTF-8.
    pub fn from_headers<'h>(
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> Result<Self, Rejection> {
        let mut head = RequestHead::default();
        let mut seen = [false; SINGLE_HEADERS.len()];
        for (name, value) in headers {
            let name_lc;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                name_lc = name.to_ascii_lowercase();
                name_lc.as_str()
            } else {
                name
            };
            let param = name.strip_prefix("mcp-param-");
            let slot = SINGLE_HEADERS.iter().position(|h| *h == name);
            if slot.is_none() && param.is_none() {
                continue;
            }
            if let Some(i) = slot {
                if seen.get(i).copied().unwrap_or(false) {
                    return Err(Rejection::new(
                        Reason::InvalidRequest,
                        format!("header {name} appears more than once"),
                    ));
                }
                if let Some(flag) = seen.get_mut(i) {
                    *flag = true;
                }
            }
            let value = std::str::from_utf8(value)
                .map_err(|_| {
                    Rejection::new(
                        Reason::InvalidRequest,
                        format!("header {name} is not UTF-8"),
                    )
                })?
                .to_owned();
            match name {
                ":method" => head.http_method = value,
                ":path" => head.path = value,
                ":authority" => head.authority = Some(value),
                "content-type" => head.content_type = Some(value),
                "content-encoding" => head.content_encoding = Some(value),
                "content-length" => {
                    head.content_length = Some(value.trim().parse().map_err(|_| {
                        Rejection::new(Reason::InvalidRequest, "content-length is not a number")
                    })?)
                }
                "mcp-protocol-version" => head.protocol_version = Some(value),
                "mcp-method" => head.mirrors.method = Some(value),
                "mcp-name" => head.mirrors.name = Some(value),
                "mcp-session-id" => head.session_id = Some(value),
                "authorization" => head.authorization = Some(value),
                crate::bind::PROOF_HEADER => head.binding = Some(value),
                crate::ticket::TICKET_HEADER => head.ticket = Some(value),
                _ => {
                    if let Some(p) = param {
                        if head.mirrors.params.iter().any(|(n, _)| n == p) {
                            return Err(Rejection::new(
                                Reason::InvalidRequest,
                                format!("header {name} appears more than once"),
                            ));
                        }
                        head.mirrors.params.push((p.to_owned(), value));
                    }
                }
            }
        }
        Ok(head)
    }

    /// The protocol version the request speaks. The header is authoritative;
    /// without it the spec says to assume 2025-03-26.
    pub fn protocol_version(&self) -> Result<ProtocolVersion, Rejection> {
        match self.protocol_version.as_deref() {
            None => Ok(ProtocolVersion::V2025_03_26),
            Some(v) => ProtocolVersion::parse(v.trim()).ok_or_else(|| {
                let mut r = Rejection::new(
                    Reason::UnsupportedProtocolVersion,
                    format!("MCP-Protocol-Version {v:?} is not supported"),
                );
                r.scope = Some(v.trim().to_owned());
                r
            }),
        }
    }
}

/// Checks the head of a request. POST bodies must be JSON in UTF-8, not
/// compressed, and no larger than the cap (when the length is announced).
pub fn check_head(config: &Config, head: &RequestHead) -> HeadVerdict {
    let version = match head.protocol_version() {
        Ok(v) => v,
        Err(r) => return HeadVerdict::Reject(r),
    };
    match head.http_method.as_str() {
        "POST" => {}
        // Server streams and session ends exist up to 2025-11-25;
        // 2026-07-28 has neither.
        "GET" | "DELETE" if version < ProtocolVersion::V2026_07_28 => return HeadVerdict::Forward,
        // CORS preflight carries no MCP message.
        "OPTIONS" => return HeadVerdict::Forward,
        other => {
            return HeadVerdict::Reject(Rejection::new(
                Reason::MethodNotAllowed,
                format!("HTTP {other} is not an MCP request in {version}"),
            ))
        }
    }
    if let Some(enc) = head.content_encoding.as_deref() {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return HeadVerdict::Reject(Rejection::new(
                Reason::UnsupportedContentEncoding,
                format!("content-encoding {enc:?}"),
            ));
        }
    }
    if !is_json_utf8(head.content_type.as_deref()) {
        return HeadVerdict::Reject(Rejection::new(
            Reason::UnsupportedMediaType,
            format!(
                "content-type {:?}",
                head.content_type.as_deref().unwrap_or("")
            ),
        ));
    }
    if let Some(len) = head.content_length {
        if len > config.max_body_bytes {
            return HeadVerdict::Reject(body_too_large(config, len));
        }
    }
    HeadVerdict::InspectBody
}

/// Refuses a body that has grown past the cap; call it on every body chunk
/// so nothing beyond the cap is buffered.
pub fn check_body_size(config: &Config, size: u64) -> Result<(), Rejection> {
    if size > config.max_body_bytes {
        return Err(body_too_large(config, size));
    }
    Ok(())
}

/// Inspects a complete POST body: [`parse_body`] then [`validate`].
pub fn inspect_body<'a>(
    config: &Config,
    head: &RequestHead,
    body: &'a [u8],
) -> Result<Inspected<'a>, Rejection> {
    let inspected = parse_body(config, head, body)?;
    validate(config, head, &inspected)?;
    Ok(inspected)
}

/// Parses a complete POST body into its messages (size cap, strict JSON,
/// JSON-RPC envelope, batch rules).
pub fn parse_body<'a>(
    config: &Config,
    head: &RequestHead,
    body: &'a [u8],
) -> Result<Inspected<'a>, Rejection> {
    check_body_size(config, body.len() as u64)?;
    let version = head.protocol_version()?;
    Ok(mcp::parse_body(body, version, &config.parse)?)
}

/// Checks parsed messages against the request head and the protocol:
/// header mirrors, known methods, no client responses in 2026-07-28.
pub fn validate(
    config: &Config,
    head: &RequestHead,
    inspected: &Inspected<'_>,
) -> Result<(), Rejection> {
    let version = head.protocol_version()?;
    for message in &inspected.messages {
        mirror::check(
            version,
            head.protocol_version.as_deref(),
            &head.mirrors,
            message,
        )
        .map_err(|m| {
            let reason = if m.missing_in_body {
                Reason::InvalidParams
            } else {
                Reason::HeaderMismatch
            };
            Rejection::new(reason, m.to_string()).with_id(message.id)
        })?;
        match (message.kind, message.method.as_deref()) {
            (MessageKind::Response, _) if version >= ProtocolVersion::V2026_07_28 => {
                return Err(Rejection::new(
                    Reason::InvalidRequest,
                    format!("clients send no JSON-RPC responses in {version}"),
                )
                .with_id(message.id));
            }
            (_, Some(method)) if !config.method_allowed(version, method) => {
                return Err(Rejection::new(
                    Reason::MethodNotFound,
                    format!("method {method:?} is not defined in {version} and not allowed by configuration"),
                )
                .with_id(message.id));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the `Mcp-Param-*` headers of every `tools/call` against what
/// `lookup` knows of the tool (learnt from `tools/list` answers, see
/// [`crate::inspect::params`]). Returns how many calls went unchecked because their
/// tool's schema is unknown and the configuration forwards them.
pub fn check_param_headers(
    config: &Config,
    head: &RequestHead,
    inspected: &Inspected<'_>,
    lookup: impl Fn(&str) -> KnownSchema,
) -> Result<u32, Rejection> {
    let version = head.protocol_version()?;
    let mut unchecked = 0;
    for message in &inspected.messages {
        let (Some("tools/call"), Target::Tool(tool)) = (message.method.as_deref(), &message.target)
        else {
            if !head.mirrors.params.is_empty() {
                // A router would act on values no argument carries.
                return Err(Rejection::new(
                    Reason::HeaderMismatch,
                    "header mismatch: Mcp-Param-* headers on a message that is not a tools/call",
                )
                .with_id(message.id));
            }
            continue;
        };
        if inspected.batch && !head.mirrors.params.is_empty() {
            return Err(Rejection::new(
                Reason::HeaderMismatch,
                "header mismatch: Mcp-Param-* headers on a batch (whose call would they mirror?)",
            )
            .with_id(message.id));
        }
        let outcome = params::check_call(
            &lookup(tool),
            config.unknown_tool_schema,
            &head.mirrors.params,
            &inspected.document,
            message.arguments,
            version >= ProtocolVersion::V2026_07_28,
        )
        .map_err(|m| Rejection::new(Reason::HeaderMismatch, m.to_string()).with_id(message.id))?;
        if outcome == CallCheck::Unchecked {
            unchecked += 1;
        }
    }
    Ok(unchecked)
}

fn body_too_large(config: &Config, size: u64) -> Rejection {
    Rejection::new(
        Reason::BodyTooLarge,
        format!(
            "body of {size} bytes exceeds the cap of {}",
            config.max_body_bytes
        ),
    )
}

/// `application/json`, optionally with `charset=utf-8`; any other charset is refused.
fn is_json_utf8(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| {
        let Some((k, v)) = p.split_once('=') else {
            return p.trim().is_empty();
        };
        !k.trim().eq_ignore_ascii_case("charset")
            || v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn post() -> RequestHead {
        RequestHead::post_json("/mcp")
    }

    fn reason(v: HeadVerdict) -> Reason {
        match v {
            HeadVerdict::Reject(r) => r.reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn param_headers_of_tools_calls_are_checked_against_the_known_schema() {
        let c = Config::default();
        let mut head = post();
        head.protocol_version = Some("2025-06-18".into());
        head.mirrors.params = vec![("region".into(), "eu".into())];
        let body = br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"q","arguments":{"region":"us"}}}"#;
        let inspected = parse_body(&c, &head, body).unwrap();
        let schema = serde_json::json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}}});
        let known = params::ParamHeaders::from_input_schema(Some(&schema)).unwrap();
        let r = check_param_headers(&c, &head, &inspected, |tool| {
            assert_eq!(tool, "q");
            KnownSchema::Known(known.clone())
        })
        .unwrap_err();
        assert_eq!(r.reason, Reason::HeaderMismatch);
        assert_eq!(r.id.as_deref(), Some("\"c-1\""));
        // Unknown schema: forwarded and counted (the default), or refused.
        assert_eq!(
            check_param_headers(&c, &head, &inspected, |_| KnownSchema::Unknown),
            Ok(1)
        );
        let refuse = Config::from_json(br#"{"mcp":{"unknown_tool_schema":"refuse"}}"#).unwrap();
        assert!(check_param_headers(&refuse, &head, &inspected, |_| KnownSchema::Unknown).is_err());
        head.mirrors.params = vec![("region".into(), "us".into())];
        assert_eq!(
            check_param_headers(&c, &head, &inspected, |_| KnownSchema::Known(known.clone())),
            Ok(0)
        );
        // On anything but a single tools/call, Mcp-Param-* headers mirror nothing.
        let list = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let inspected = parse_body(&c, &head, list).unwrap();
        let r = check_param_headers(&c, &head, &inspected, |_| KnownSchema::Unknown).unwrap_err();
        assert_eq!(
            (r.reason, r.id.as_deref()),
            (Reason::HeaderMismatch, Some("2"))
        );
        let batch = br#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"q","arguments":{"region":"us"}}}]"#;
        head.protocol_version = Some("2025-03-26".into());
        let inspected = parse_body(&c, &head, batch).unwrap();
        assert!(
            check_param_headers(&c, &head, &inspected, |_| KnownSchema::Known(known.clone()))
                .is_err()
        );
        head.mirrors.params.clear();
        assert_eq!(
            check_param_headers(&c, &head, &inspected, |_| KnownSchema::Known(known.clone())),
            Ok(0)
        );
    }

    #[test]
    fn post_with_json_is_inspected_and_get_is_forwarded() {
        let c = Config::default();
        assert_eq!(check_head(&c, &post()), HeadVerdict::InspectBody);
        let get = RequestHead {
            http_method: "GET".into(),
            ..post()
        };
        assert_eq!(check_head(&c, &get), HeadVerdict::Forward);
        let charset = RequestHead {
            content_type: Some("Application/JSON; charset=\"UTF-8\"".into()),
            ..post()
        };
        assert_eq!(check_head(&c, &charset), HeadVerdict::InspectBody);
    }

    #[test]
    fn refuses_non_json_content_types() {
        let c = Config::default();
        for ct in [
            None,
            Some("text/plain"),
            Some("application/json-seq"),
            Some("application/json; charset=utf-16"),
        ] {
            let head = RequestHead {
                content_type: ct.map(str::to_owned),
                ..post()
            };
            assert_eq!(
                reason(check_head(&c, &head)),
                Reason::UnsupportedMediaType,
                "{ct:?}"
            );
        }
    }

    #[test]
    fn refuses_compressed_bodies() {
        let c = Config::default();
        let head = RequestHead {
            content_encoding: Some("gzip".into()),
            ..post()
        };
        assert_eq!(
            reason(check_head(&c, &head)),
            Reason::UnsupportedContentEncoding
        );
        let identity = RequestHead {
            content_encoding: Some("identity".into()),
            ..post()
        };
        assert_eq!(check_head(&c, &identity), HeadVerdict::InspectBody);
    }

    #[test]
    fn refuses_announced_and_actual_oversized_bodies() {
        let c = Config {
            max_body_bytes: 10,
            ..Config::default()
        };
        let head = RequestHead {
            content_length: Some(11),
            ..post()
        };
        assert_eq!(reason(check_head(&c, &head)), Reason::BodyTooLarge);
        assert!(check_body_size(&c, 10).is_ok());
        assert_eq!(
            check_body_size(&c, 11).unwrap_err().reason,
            Reason::BodyTooLarge
        );
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(
            inspect_body(&c, &post(), body).unwrap_err().reason,
            Reason::BodyTooLarge
        );
    }

    #[test]
    fn unknown_protocol_version_is_refused() {
        let c = Config::default();
        let head = RequestHead {
            protocol_version: Some("1999-01-01".into()),
            ..post()
        };
        assert_eq!(
            reason(check_head(&c, &head)),
            Reason::UnsupportedProtocolVersion
        );
    }

    #[test]
    fn malformed_body_is_a_parse_error_and_duplicates_are_invalid_requests() {
        let c = Config::default();
        let r = inspect_body(&c, &post(), br#"{"jsonrpc":"2.0","id":7,"method":"#).unwrap_err();
        assert_eq!(r.reason, Reason::ParseError);
        let r = inspect_body(
            &c,
            &post(),
            br#"{"jsonrpc":"2.0","id":7,"method":"a","method":"b"}"#,
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::InvalidRequest);
    }

    #[test]
    fn invalid_params_echo_the_id() {
        let c = Config::default();
        let r = inspect_body(
            &c,
            &post(),
            br#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{}}"#,
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::InvalidParams);
        assert_eq!(r.id.as_deref(), Some("\"q\""));
    }

    #[test]
    fn builds_the_head_from_host_headers() {
        let h: Vec<(&str, &[u8])> = vec![
            (":method", b"POST"),
            (":path", b"/mcp"),
            ("Content-Type", b"application/json"),
            ("content-length", b"42"),
            ("mcp-protocol-version", b"2026-07-28"),
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"echo"),
            ("mcp-param-region", b"eu"),
            ("x-other", b"\xff"),
        ];
        let head = RequestHead::from_headers(h).unwrap();
        assert_eq!(head.http_method, "POST");
        assert_eq!(head.content_type.as_deref(), Some("application/json"));
        assert_eq!(head.content_length, Some(42));
        assert_eq!(head.mirrors.method.as_deref(), Some("tools/call"));
        assert_eq!(
            head.mirrors.params,
            vec![("region".to_owned(), "eu".to_owned())]
        );
    }

    #[test]
    fn refuses_repeated_security_relevant_headers() {
        for name in [
            "content-type",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "mcp-param-x",
            "content-length",
        ] {
            let h: Vec<(&str, &[u8])> = vec![(":method", b"POST"), (name, b"1"), (name, b"1")];
            let r = RequestHead::from_headers(h).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidRequest, "{name}");
        }
        let non_utf8: Vec<(&str, &[u8])> = vec![("mcp-name", b"\xff")];
        assert!(RequestHead::from_headers(non_utf8).is_err());
        let bad_len: Vec<(&str, &[u8])> = vec![("content-length", b"12x")];
        assert!(RequestHead::from_headers(bad_len).is_err());
    }

    #[test]
    fn get_and_delete_exist_only_before_2026_07_28() {
        let c = Config::default();
        for m in ["GET", "DELETE"] {
            let old = RequestHead {
                http_method: m.into(),
                protocol_version: Some("2025-11-25".into()),
                ..post()
            };
            assert_eq!(check_head(&c, &old), HeadVerdict::Forward);
            let none = RequestHead {
                http_method: m.into(),
                ..post()
            };
            assert_eq!(check_head(&c, &none), HeadVerdict::Forward);
            let new = RequestHead {
                http_method: m.into(),
                protocol_version: Some("2026-07-28".into()),
                ..post()
            };
            assert_eq!(reason(check_head(&c, &new)), Reason::MethodNotAllowed);
        }
        let put = RequestHead {
            http_method: "PUT".into(),
            ..post()
        };
        assert_eq!(reason(check_head(&c, &put)), Reason::MethodNotAllowed);
    }

    #[test]
    fn unknown_methods_are_refused_with_the_id() {
        let c = Config::default();
        let r = inspect_body(
            &c,
            &post(),
            br#"{"jsonrpc":"2.0","id":5,"method":"admin/exec"}"#,
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::MethodNotFound);
        assert_eq!(r.id.as_deref(), Some("5"));
        // Methods of a later version are unknown in an earlier one.
        let r = inspect_body(
            &c,
            &post(),
            br#"{"jsonrpc":"2.0","id":5,"method":"server/discover"}"#,
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::MethodNotFound);
    }

    #[test]
    fn a_batch_hiding_a_forbidden_method_is_refused_whole() {
        let c = Config::default();
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"admin/exec"}]"#;
        assert_eq!(
            inspect_body(&c, &post(), body).unwrap_err().reason,
            Reason::MethodNotFound
        );
    }

    #[test]
    fn mirrored_headers_must_match_the_body_in_2026_07_28() {
        let c = Config::default();
        let body = br#"{"jsonrpc":"2.0","id":"m","method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let mut head = RequestHead {
            protocol_version: Some("2026-07-28".into()),
            ..post()
        };
        head.mirrors.method = Some("tools/call".into());
        head.mirrors.name = Some("echo".into());
        inspect_body(&c, &head, body).unwrap();
        head.mirrors.name = Some("run_python".into());
        let r = inspect_body(&c, &head, body).unwrap_err();
        assert_eq!(r.reason, Reason::HeaderMismatch);
        assert_eq!(r.id.as_deref(), Some("\"m\""));
    }

    #[test]
    fn clients_send_no_responses_in_2026_07_28() {
        let c = Config::default();
        let head = RequestHead {
            protocol_version: Some("2026-07-28".into()),
            ..post()
        };
        let r = inspect_body(&c, &head, br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidRequest);
        inspect_body(&c, &post(), br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
    }
}
