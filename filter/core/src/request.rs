//! One HTTP request as the filter sees it: the head checks done before any
//! body byte is buffered, and the body inspection at end of stream.

use crate::config::Config;
use crate::mcp::{self, Inspected, ProtocolVersion};
use crate::reject::{Reason, Rejection};

/// The parts of the request head pqguard uses, copied out of the host once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// HTTP method (`:method`).
    pub http_method: String,
    /// Request path (`:path`).
    pub path: String,
    /// `Content-Type`, if present.
    pub content_type: Option<String>,
    /// `Content-Encoding`, if present.
    pub content_encoding: Option<String>,
    /// `Content-Length` parsed, if present and numeric.
    pub content_length: Option<u64>,
    /// `MCP-Protocol-Version`, if present.
    pub protocol_version: Option<String>,
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
    /// The protocol version the request speaks. The header is authoritative;
    /// without it the spec says to assume 2025-03-26.
    pub fn protocol_version(&self) -> Result<ProtocolVersion, Rejection> {
        match self.protocol_version.as_deref() {
            None => Ok(ProtocolVersion::V2025_03_26),
            Some(v) => ProtocolVersion::parse(v.trim()).ok_or_else(|| {
                Rejection::new(
                    Reason::UnsupportedProtocolVersion,
                    format!("MCP-Protocol-Version {v:?} is not supported"),
                )
            }),
        }
    }
}

/// Checks the head of a request. POST bodies must be JSON in UTF-8, not
/// compressed, and no larger than the cap (when the length is announced).
pub fn check_head(config: &Config, head: &RequestHead) -> HeadVerdict {
    if !head.http_method.eq_ignore_ascii_case("POST") {
        return HeadVerdict::Forward;
    }
    if let Err(r) = head.protocol_version() {
        return HeadVerdict::Reject(r);
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

/// Inspects a complete POST body.
pub fn inspect_body<'a>(
    config: &Config,
    head: &RequestHead,
    body: &'a [u8],
) -> Result<Inspected<'a>, Rejection> {
    check_body_size(config, body.len() as u64)?;
    let version = head.protocol_version()?;
    Ok(mcp::parse_body(body, version, &config.parse)?)
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
        RequestHead {
            http_method: "POST".into(),
            path: "/mcp".into(),
            content_type: Some("application/json".into()),
            ..RequestHead::default()
        }
    }

    fn reason(v: HeadVerdict) -> Reason {
        match v {
            HeadVerdict::Reject(r) => r.reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
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
}
