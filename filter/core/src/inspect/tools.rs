//! `tools/list` answers: the tools they offer, a digest of each tool
//! definition (for pinning against "rug pulls"), and rewriting the answer so
//! a caller sees only the tools it may call.
//!
//! The digest of a tool is SHA3-256 over the canonical JSON of the members
//! that define its behaviour: `name`, `title`, `description`, `inputSchema`,
//! `outputSchema` and `annotations` (those present). Canonical JSON here
//! means: object keys sorted by their UTF-8 bytes, no insignificant
//! whitespace, strings escaped as serde_json escapes them, numbers as
//! serde_json prints them. Other tools reproduce the digest with, for
//! example, Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)` for integer-only schemas.

use crate::text::quote_into;
use std::fmt;

use serde_json::Value;
use sha3::{Digest, Sha3_256};

use crate::inspect::json::{self, ScanLimits};

/// The members of a tool definition covered by its digest.
pub const DIGEST_MEMBERS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// One tool offered by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    /// The tool's name.
    pub name: String,
    /// SHA3-256 of its canonical definition.
    pub digest: [u8; 32],
}

impl ToolInfo {
    /// The digest as lower-case hex.
    pub fn digest_hex(&self) -> String {
        hex(&self.digest)
    }
}

/// Why a `tools/list` answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolsError {
    /// The message is not strict JSON.
    Json(json::JsonError),
    /// The message is JSON but not a `tools/list` result.
    NotToolsList(&'static str),
}

impl fmt::Display for ToolsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "tools/list answer: {e}"),
            Self::NotToolsList(why) => write!(f, "not a tools/list answer: {why}"),
        }
    }
}

impl std::error::Error for ToolsError {}

/// A parsed JSON-RPC message that answers `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolsListAnswer {
    message: Value,
}

impl ToolsListAnswer {
    /// Parses one JSON-RPC message. Error responses are accepted (they
    /// carry no tools); a result must have a `tools` array of objects with
    /// string names. Duplicate keys are refused, as in requests.
    pub fn parse(bytes: &[u8]) -> Result<Self, ToolsError> {
        json::scan(bytes, ScanLimits { max_depth: 128 }).map_err(ToolsError::Json)?;
        let message: Value = serde_json::from_slice(bytes)
            .map_err(|_| ToolsError::NotToolsList("not valid JSON"))?;
        if message.get("error").is_some() {
            return Ok(Self { message });
        }
        let tools = message
            .get("result")
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
            .ok_or(ToolsError::NotToolsList("result.tools is not an array"))?;
        if !tools
            .iter()
            .all(|t| t.get("name").and_then(Value::as_str).is_some())
        {
            return Err(ToolsError::NotToolsList("a tool has no string name"));
        }
        Ok(Self { message })
    }

    /// The tools offered, in order, with their digests.
    pub fn tools(&self) -> Vec<ToolInfo> {
        self.tool_values()
            .map(|t| ToolInfo {
                name: t
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                digest: tool_digest(t),
            })
            .collect()
    }

    /// The `Mcp-Param-*` headers each tool declares (its `x-mcp-header`
    /// annotations), or why they are invalid, in order.
    pub fn param_headers(
        &self,
    ) -> Vec<(
        String,
        Result<crate::inspect::params::ParamHeaders, crate::inspect::params::InvalidAnnotation>,
    )> {
        self.tool_values()
            .map(|t| {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                let read =
                    crate::inspect::params::ParamHeaders::from_input_schema(t.get("inputSchema"));
                (name.to_owned(), read)
            })
            .collect()
    }

    /// The names of the tools offered, in order (no digests computed).
    pub fn names(&self) -> Vec<&str> {
        self.tool_values()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect()
    }

    fn tool_values(&self) -> impl Iterator<Item = &Value> {
        self.message
            .get("result")
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    /// Removes the tools for which `keep` is false; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&ToolInfo) -> bool) -> usize {
        let Some(tools) = self
            .message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return 0;
        };
        let before = tools.len();
        tools.retain(|t| {
            keep(&ToolInfo {
                name: t
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                digest: tool_digest(t),
            })
        });
        before - tools.len()
    }

    /// Marks the result `cacheScope: "private"` (MCP 2026-07-28): an answer
    /// filtered per caller must not be kept by a shared cache and served to
    /// another caller. Returns whether it changed. With `only_if_present`,
    /// a result that says nothing of caching is left as it is.
    pub fn mark_private(&mut self, only_if_present: bool) -> bool {
        let Some(result) = self
            .message
            .get_mut("result")
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        match result.get("cacheScope") {
            Some(Value::String(s)) if s == "private" => false,
            None if only_if_present => false,
            _ => {
                result.insert("cacheScope".into(), Value::from("private"));
                true
            }
        }
    }

    /// The (possibly rewritten) message.
    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The (possibly rewritten) message as compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.message).unwrap_or_default()
    }
}

/// SHA3-256 of a tool definition's canonical form (see the module docs).
pub fn tool_digest(tool: &Value) -> [u8; 32] {
    let mut canonical = String::new();
    canonical.push('{');
    let mut first = true;
    let mut members: Vec<&str> = DIGEST_MEMBERS
        .iter()
        .copied()
        .filter(|k| tool.get(k).is_some())
        .collect();
    members.sort_unstable();
    for key in members {
        if let Some(v) = tool.get(key) {
            if !first {
                canonical.push(',');
            }
            first = false;
            quote_into(&mut canonical, key);
            canonical.push(':');
            write_canonical(&mut canonical, v);
        }
    }
    canonical.push('}');
    Sha3_256::digest(canonical.as_bytes()).into()
}

/// Writes `v` as canonical JSON (sorted keys, compact).
pub fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            // `&str`, not `&String`: the same sort instantiation as the
            // other sorts of the filter (about 8 KB of module each).
            let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote_into(out, k);
                out.push(':');
                if let Some(inner) = map.get(k) {
                    write_canonical(out, inner);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::String(s) => quote_into(out, s),
        other => out.push_str(&other.to_string()),
    }
}

pub use crate::text::hex;

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
        {"name":"echo","description":"Echo text","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}},
        {"name":"run_python","description":"Run code","inputSchema":{"type":"object"},"annotations":{"destructiveHint":true}}
    ],"nextCursor":"c"}}"#;

    #[test]
    fn lists_tools_with_digests() {
        let a = ToolsListAnswer::parse(ANSWER.as_bytes()).unwrap();
        let tools = a.tools();
        assert_eq!(
            tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["echo", "run_python"]
        );
        assert_ne!(tools[0].digest, tools[1].digest);
        assert_eq!(tools[0].digest_hex().len(), 64);
    }

    #[test]
    fn digest_ignores_key_order_and_whitespace_but_not_content() {
        let a: Value = serde_json::from_str(
            r#"{"name":"t","description":"d","inputSchema":{"b":1,"a":[1,2]}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(r#"{ "inputSchema" : {"a":[1,2],"b":1}, "description":"d", "name":"t", "_meta":{"x":1} }"#).unwrap();
        assert_eq!(tool_digest(&a), tool_digest(&b));
        let c: Value = serde_json::from_str(
            r#"{"name":"t","description":"d!","inputSchema":{"b":1,"a":[1,2]}}"#,
        )
        .unwrap();
        assert_ne!(tool_digest(&a), tool_digest(&c));
    }

    #[test]
    fn digest_matches_an_independent_canonical_form() {
        // The canonical text, built by hand, hashed with SHA3-256.
        let t: Value = serde_json::from_str(
            r#"{"name":"echo","inputSchema":{"type":"object"},"description":"Échо"}"#,
        )
        .unwrap();
        let canonical = r#"{"description":"Échо","inputSchema":{"type":"object"},"name":"echo"}"#;
        let want: [u8; 32] = Sha3_256::digest(canonical.as_bytes()).into();
        assert_eq!(tool_digest(&t), want);
    }

    #[test]
    fn sha3_256_known_answer() {
        // FIPS 202 test vector: SHA3-256("abc").
        assert_eq!(
            hex(&Sha3_256::digest(b"abc")),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
    }

    #[test]
    fn retain_removes_tools_and_keeps_the_rest_of_the_message() {
        let mut a = ToolsListAnswer::parse(ANSWER.as_bytes()).unwrap();
        assert_eq!(a.retain(|t| t.name != "run_python"), 1);
        assert_eq!(a.names(), vec!["echo"]);
        let v: Value = serde_json::from_slice(&a.to_bytes()).unwrap();
        assert_eq!(v["id"], 2);
        assert_eq!(v["result"]["nextCursor"], "c");
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v["result"]["tools"][0]["name"], "echo");
    }

    #[test]
    fn refuses_malformed_answers() {
        assert!(ToolsListAnswer::parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_err());
        assert!(ToolsListAnswer::parse(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"x":1}]}}"#
        )
        .is_err());
        assert!(ToolsListAnswer::parse(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[]}}"#
        )
        .is_err());
        assert!(ToolsListAnswer::parse(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#
        )
        .is_ok());
    }
}
