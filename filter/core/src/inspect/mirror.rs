//! Protocol 2026-07-28 mirrors body fields into headers (`Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-*`) so intermediaries can route without parsing.
//! Whoever processes the body must refuse a header that disagrees with the
//! body (400, JSON-RPC -32020 `HeaderMismatch`): otherwise a router reading
//! headers and a server reading the body act on two different requests.
//!
//! pqguard checks the mirrors in every protocol version when they are
//! present (an older-version request carrying them is just as ambiguous),
//! and requires `Mcp-Method` and `Mcp-Name` in 2026-07-28.
//!
//! `Mcp-Param-{Name}` headers: here only each value's encoding is checked
//! (plain visible ASCII or a well-formed `=?base64?…?=` of UTF-8), for every
//! request. Their names come from `x-mcp-header` annotations in the tool's
//! `inputSchema`, which only `tools/list` reveals: [`crate::inspect::params`] matches
//! the values against the arguments once the schema is known.

use std::fmt;

use crate::inspect::mcp::{Message, MessageKind, ProtocolVersion, Target};

/// The mirrored headers of a request, copied from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorHeaders {
    /// `Mcp-Method`.
    pub method: Option<String>,
    /// `Mcp-Name`.
    pub name: Option<String>,
    /// Every `Mcp-Param-*` header: (name after the prefix, value).
    pub params: Vec<(String, String)>,
}

/// A mirrored header that is missing, malformed or disagrees with the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMismatch {
    /// The header concerned.
    pub header: String,
    /// What is wrong.
    pub problem: &'static str,
    /// The body lacks what the header mirrors (a 2026-07-28 request without
    /// `params._meta` protocol version): invalid params (-32602), not a
    /// header mismatch.
    pub missing_in_body: bool,
}

impl fmt::Display for HeaderMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "header mismatch: {} {}", self.header, self.problem)
    }
}

impl std::error::Error for HeaderMismatch {}

/// Checks the mirrored headers of a single-message request against its body.
///
/// `version` is the request's protocol version; `header_version` the raw
/// `MCP-Protocol-Version` header (for the `_meta` comparison).
pub fn check(
    version: ProtocolVersion,
    header_version: Option<&str>,
    headers: &MirrorHeaders,
    message: &Message<'_>,
) -> Result<(), HeaderMismatch> {
    let mismatch = |header: &str, problem| HeaderMismatch {
        header: header.to_owned(),
        problem,
        missing_in_body: false,
    };
    let modern = version >= ProtocolVersion::V2026_07_28;
    // `_meta` names the version in 2026-07-28; the header must agree.
    if let Some(meta) = message.meta_protocol_version.as_deref() {
        if header_version.map(str::trim) != Some(meta) {
            return Err(mismatch(
                "MCP-Protocol-Version",
                "does not match params._meta protocolVersion",
            ));
        }
    } else if modern && message.kind == MessageKind::Request {
        return Err(HeaderMismatch {
            missing_in_body: true,
            ..mismatch(
                "MCP-Protocol-Version",
                "has no params._meta protocolVersion to match",
            )
        });
    }
    match (&headers.method, message.method.as_deref()) {
        (Some(h), Some(m)) if h.as_str() == m => {}
        (Some(_), _) => return Err(mismatch("Mcp-Method", "does not match the body's method")),
        (None, _) if modern && message.kind == MessageKind::Request => {
            return Err(mismatch("Mcp-Method", "is required"))
        }
        (None, _) => {}
    }
    let body_name = match &message.target {
        Target::Tool(n) | Target::Prompt(n) => Some(n.as_ref()),
        // Mcp-Name mirrors the URI of resources/read only.
        Target::Resource(u) if message.method.as_deref() == Some("resources/read") => {
            Some(u.as_ref())
        }
        _ => None,
    };
    match (&headers.name, body_name) {
        (Some(h), Some(b)) => {
            let decoded = decode_value(h).ok_or_else(|| mismatch("Mcp-Name", "is malformed"))?;
            if decoded != b {
                return Err(mismatch("Mcp-Name", "does not match the body"));
            }
        }
        (Some(_), None) => {
            return Err(mismatch(
                "Mcp-Name",
                "is present but the body names nothing",
            ))
        }
        (None, Some(_)) if modern => return Err(mismatch("Mcp-Name", "is required")),
        (None, _) => {}
    }
    for (name, value) in &headers.params {
        if decode_value(value).is_none() {
            return Err(HeaderMismatch {
                header: format!("Mcp-Param-{name}"),
                problem: "is malformed",
                missing_in_body: false,
            });
        }
    }
    Ok(())
}

/// Decodes a mirrored header value: plain visible ASCII (with inner spaces
/// and tabs), or `=?base64?…?=` holding UTF-8. `None` when malformed.
pub fn decode_value(value: &str) -> Option<String> {
    if let Some(inner) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        return String::from_utf8(base64_decode(inner)?).ok();
    }
    let ok = value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b));
    let trimmed = value.trim_matches(|c| c == ' ' || c == '\t');
    (ok && trimmed.len() == value.len()).then(|| value.to_owned())
}

/// Standard base64 (RFC 4648 §4) with padding; `None` when malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.chunks(4);
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut n = 0u32;
        for &c in chunk.iter().take(4 - pad) {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(three.get(..3 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::mcp::{parse_body, ParseOptions};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Seattle"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    fn run(
        body: &str,
        version_header: Option<&str>,
        headers: MirrorHeaders,
    ) -> Result<(), HeaderMismatch> {
        let v = version_header
            .and_then(ProtocolVersion::parse)
            .unwrap_or(ProtocolVersion::V2025_03_26);
        let i = parse_body(body.as_bytes(), v, &ParseOptions::default()).unwrap();
        check(v, version_header, &headers, &i.messages[0])
    }

    fn mirrors(method: Option<&str>, name: Option<&str>) -> MirrorHeaders {
        MirrorHeaders {
            method: method.map(str::to_owned),
            name: name.map(str::to_owned),
            params: Vec::new(),
        }
    }

    #[test]
    fn accepts_matching_mirrors_in_2026_07_28() {
        run(
            CALL,
            Some("2026-07-28"),
            mirrors(Some("tools/call"), Some("get_weather")),
        )
        .unwrap();
        // base64 form of the name
        run(
            CALL,
            Some("2026-07-28"),
            mirrors(Some("tools/call"), Some("=?base64?Z2V0X3dlYXRoZXI=?=")),
        )
        .unwrap();
    }

    #[test]
    fn refuses_mismatched_or_missing_mirrors_in_2026_07_28() {
        let v = Some("2026-07-28");
        let cases = [
            (
                mirrors(Some("tools/list"), Some("get_weather")),
                "Mcp-Method",
            ),
            (mirrors(None, Some("get_weather")), "Mcp-Method"),
            (mirrors(Some("tools/call"), Some("run_python")), "Mcp-Name"),
            (mirrors(Some("tools/call"), None), "Mcp-Name"),
            (
                mirrors(Some("tools/call"), Some("=?base64?cnVuX3B5dGhvbg==?=")),
                "Mcp-Name",
            ),
            (
                mirrors(Some("tools/call"), Some("=?base64?!!!?=")),
                "Mcp-Name",
            ),
            (
                mirrors(Some("Tools/Call"), Some("get_weather")),
                "Mcp-Method",
            ),
        ];
        for (h, header) in cases {
            let e = run(CALL, v, h.clone()).unwrap_err();
            assert_eq!(e.header, header, "{h:?}");
        }
    }

    #[test]
    fn refuses_a_protocol_version_header_that_disagrees_with_meta() {
        let e = run(
            CALL,
            Some("2025-11-25"),
            mirrors(Some("tools/call"), Some("get_weather")),
        )
        .unwrap_err();
        assert_eq!(e.header, "MCP-Protocol-Version");
        let no_meta = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let e = run(
            no_meta,
            Some("2026-07-28"),
            mirrors(Some("tools/list"), None),
        )
        .unwrap_err();
        assert_eq!(e.header, "MCP-Protocol-Version");
    }

    #[test]
    fn older_versions_need_no_mirrors_but_present_ones_must_match() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
        run(body, Some("2025-06-18"), mirrors(None, None)).unwrap();
        run(
            body,
            Some("2025-06-18"),
            mirrors(Some("tools/call"), Some("echo")),
        )
        .unwrap();
        assert!(run(
            body,
            Some("2025-06-18"),
            mirrors(Some("tools/call"), Some("run_python"))
        )
        .is_err());
    }

    #[test]
    fn validates_param_header_encoding() {
        let mut h = mirrors(Some("tools/call"), Some("get_weather"));
        h.params.push(("Region".into(), "us-west1".into()));
        h.params
            .push(("Greeting".into(), "=?base64?SGVsbG8sIOS4lueVjA==?=".into()));
        run(CALL, Some("2026-07-28"), h.clone()).unwrap();
        h.params.push(("Text".into(), " padded ".into()));
        assert_eq!(
            run(CALL, Some("2026-07-28"), h).unwrap_err().header,
            "Mcp-Param-Text"
        );
    }

    #[test]
    fn decodes_base64_per_rfc_4648() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(
            decode_value("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "Zm9"] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }
}
