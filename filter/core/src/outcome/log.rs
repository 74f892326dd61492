//! The structured record written for every request (one log line).
//!
//! The shim writes `pqguard.request ` followed by [`RequestRecord::to_json`];
//! tests and log pipelines find the marker and parse the JSON after it.

use serde::Serialize;

use crate::inspect::head::RequestHead;
use crate::inspect::mcp::{Inspected, Message, Target};
use crate::outcome::reject::Rejection;
use crate::outcome::wire;
use crate::tls::TlsFacts;

/// Marker that starts every request log line.
pub const REQUEST_MARKER: &str = "pqguard.request";
/// Marker of the line listing the tools (and their digests) of a `tools/list` answer.
pub const TOOLS_MARKER: &str = "pqguard.tools";
/// Marker of the line logged when a VM starts with a configuration.
pub const START_MARKER: &str = "pqguard.start";

/// What the filter saw of one MCP message.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MessageSummary {
    /// `request`, `notification` or `response` (absent when no body was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// The JSON-RPC id as a JSON value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool of a `tools/call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The resource URI of `resources/read` and subscriptions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The prompt of `prompts/get`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The version an `initialize` asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialize_version: Option<String>,
}

impl MessageSummary {
    /// Summarises one inspected message.
    pub fn of(m: &Message<'_>) -> Self {
        let (tool, resource, prompt) = match &m.target {
            Target::Tool(t) => (Some(t.to_string()), None, None),
            Target::Resource(r) => (None, Some(r.to_string()), None),
            Target::Prompt(p) => (None, None, Some(p.to_string())),
            Target::None => (None, None, None),
        };
        Self {
            kind: Some(m.kind.as_str()),
            id: m.id.and_then(json_id),
            method: m.method.as_deref().map(str::to_owned),
            tool,
            resource,
            prompt,
            initialize_version: m.initialize_version.as_deref().map(str::to_owned),
        }
    }
}

/// One request's record.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub http_method: String,
    /// HTTP path.
    pub path: String,
    /// `MCP-Protocol-Version` header, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The single message (flattened), or the first message of a batch.
    #[serde(flatten)]
    pub message: MessageSummary,
    /// Every message of a batch, in order (absent for single messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<Vec<MessageSummary>>,
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Negotiated key-exchange group.
    pub tls_group: Option<String>,
    /// Negotiated cipher suite.
    pub tls_cipher: Option<String>,
    /// Key-exchange class computed from the group.
    pub kex_class: &'static str,
    /// Algorithm of the verified token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_alg: Option<&'static str>,
    /// `kid` of the key that verified the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_kid: Option<String>,
    /// `iss` of the verified token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `sub` of the verified token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `forwarded` or `rejected`.
    pub outcome: &'static str,
    /// HTTP status of the local reply (rejections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// JSON-RPC error code of the local reply (rejections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Refusal class (rejections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Finer refusal code: the token error or the policy deny reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'static str>,
    /// Precise refusal detail (rejections only; never sent to the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl RequestRecord {
    /// A record with the head and crypto facts filled in.
    pub fn new(head: &RequestHead, facts: &TlsFacts) -> Self {
        Self {
            http_method: head.http_method.clone(),
            path: head.path.clone(),
            protocol_version: head.protocol_version.clone(),
            tls_version: facts.tls_version.clone(),
            tls_group: facts.tls_group.clone(),
            tls_cipher: facts.tls_cipher.clone(),
            kex_class: facts.kex_class().as_str(),
            outcome: "forwarded",
            ..Self::default()
        }
    }

    /// Adds what the body inspection found.
    pub fn with_inspected(mut self, inspected: &Inspected<'_>) -> Self {
        let summaries: Vec<MessageSummary> =
            inspected.messages.iter().map(MessageSummary::of).collect();
        if let Some(first) = summaries.first() {
            self.message = first.clone();
        }
        if inspected.batch {
            self.batch = Some(summaries);
        }
        self
    }

    /// Marks the record as refused.
    pub fn with_rejection(mut self, rejection: &Rejection) -> Self {
        let (status, code, _) = wire::classify(rejection.reason);
        self.outcome = "rejected";
        self.status = Some(status);
        self.code = Some(code);
        self.reason = Some(rejection.reason.as_str());
        self.reason_code = rejection.code;
        self.detail = Some(rejection.detail.clone());
        if self.message.id.is_none() {
            self.message.id = rejection.id.as_deref().and_then(json_id);
        }
        self
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

pub use crate::text::json_string;

fn json_id(raw: &str) -> Option<serde_json::Value> {
    serde_json::from_str(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::inspect::head::inspect_body;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn head() -> RequestHead {
        RequestHead::post_json("/mcp")
    }

    #[test]
    fn records_method_tool_and_crypto_facts() {
        let body =
            br#"{"jsonrpc":"2.0","id":"pq-1","method":"tools/call","params":{"name":"echo"}}"#;
        let i = inspect_body(&Config::default(), &head(), body).unwrap();
        let facts = TlsFacts::new(Some("TLSv1.3".into()), Some("X25519MLKEM768".into()), None);
        let line = RequestRecord::new(&head(), &facts)
            .with_inspected(&i)
            .to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["tool"], "echo");
        assert_eq!(v["id"], "pq-1");
        assert_eq!(v["tls_group"], "X25519MLKEM768");
        assert_eq!(v["kex_class"], "hybrid-pq");
        assert_eq!(v["outcome"], "forwarded");
        assert!(v.get("batch").is_none());
    }

    #[test]
    fn records_rejections_with_status_code_and_detail() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}"#;
        let r = inspect_body(&Config::default(), &head(), body).unwrap_err();
        let line = RequestRecord::new(&head(), &TlsFacts::default())
            .with_rejection(&r)
            .to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["outcome"], "rejected");
        assert_eq!(v["status"], 400);
        assert_eq!(v["code"], -32602);
        assert_eq!(v["id"], 3);
        assert_eq!(v["kex_class"], "none");
    }
}
