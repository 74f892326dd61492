//! MCP (JSON-RPC 2.0 over Streamable HTTP) request inspection.
//!
//! [`parse_body`] turns the bytes of a POST body into [`Inspected`]: one or
//! more [`Message`]s with what policy needs (kind, id, method, tool /
//! resource / prompt name, arguments span, protocol version from `_meta`).
//! Everything is validated by the strict scanner in [`crate::inspect::json`] first,
//! so the filter and the MCP server cannot read the body two ways.

use std::borrow::Cow;
use std::fmt;

use crate::inspect::json::{self, Document, JsonError, Kind, Node, ScanLimits};

/// MCP protocol versions that use Streamable HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// 2024-11-05: defined the HTTP+SSE transport, but SDKs still negotiate
    /// it over Streamable HTTP; handled like 2025-03-26.
    V2024_11_05,
    /// 2025-03-26: first Streamable HTTP version; JSON-RPC batches allowed.
    V2025_03_26,
    /// 2025-06-18: batches removed.
    V2025_06_18,
    /// 2025-11-25.
    V2025_11_25,
    /// 2026-07-28: stateless, `_meta` carries the version, mirrored headers.
    V2026_07_28,
}

impl ProtocolVersion {
    /// All supported versions, oldest first.
    pub const ALL: [ProtocolVersion; 5] = [
        Self::V2024_11_05,
        Self::V2025_03_26,
        Self::V2025_06_18,
        Self::V2025_11_25,
        Self::V2026_07_28,
    ];

    /// Parses the dated form used on the wire.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The dated form used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether JSON-RPC batches (top-level arrays) exist in this version.
    pub fn allows_batches(self) -> bool {
        self <= Self::V2025_03_26
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Methods a client may send to a server in protocol versions 2025-03-26
/// through 2025-11-25 (requests and notifications).
const CLIENT_METHODS_2025: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// Added in 2025-11-25 (tasks).
const CLIENT_METHODS_2025_11_25: &[&str] = &[
    "tasks/get",
    "tasks/result",
    "tasks/cancel",
    "tasks/list",
    "notifications/tasks/status",
];

/// Methods a client may send in 2026-07-28: no `initialize`, `ping`,
/// `logging/setLevel` or resource subscriptions; `server/discover` and
/// `subscriptions/listen` are new.
const CLIENT_METHODS_2026_07_28: &[&str] = &[
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "tasks/get",
    "tasks/result",
    "tasks/cancel",
    "tasks/list",
    "notifications/cancelled",
    "notifications/progress",
];

/// Whether `method` is defined for clients in `version`.
pub fn is_known_method(version: ProtocolVersion, method: &str) -> bool {
    match version {
        ProtocolVersion::V2026_07_28 => CLIENT_METHODS_2026_07_28.contains(&method),
        ProtocolVersion::V2025_11_25 => {
            CLIENT_METHODS_2025.contains(&method) || CLIENT_METHODS_2025_11_25.contains(&method)
        }
        ProtocolVersion::V2024_11_05
        | ProtocolVersion::V2025_03_26
        | ProtocolVersion::V2025_06_18 => CLIENT_METHODS_2025.contains(&method),
    }
}

/// The `_meta` key that carries the protocol version in 2026-07-28.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// What kind of JSON-RPC message a body element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result` or `error` (a client answering a server request).
    Response,
}

impl MessageKind {
    /// Lower-case name used in logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Notification => "notification",
            Self::Response => "response",
        }
    }
}

/// The object a method acts on, when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// No named target.
    None,
    /// `tools/call`: the tool name.
    Tool(Cow<'a, str>),
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`: the URI.
    Resource(Cow<'a, str>),
    /// `prompts/get`: the prompt name.
    Prompt(Cow<'a, str>),
}

/// One inspected JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Request, notification or response.
    pub kind: MessageKind,
    /// The raw JSON text of `id` (a string with its quotes, or an integer),
    /// ready to be echoed in an error reply.
    pub id: Option<&'a str>,
    /// The method (unescaped), absent for responses.
    pub method: Option<Cow<'a, str>>,
    /// The named tool, resource or prompt.
    pub target: Target<'a>,
    /// Span of `params.arguments` (tools/call, prompts/get), not copied.
    pub arguments: Option<Node>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, if present.
    pub meta_protocol_version: Option<Cow<'a, str>>,
    /// For `initialize`: the version the client asks for (`params.protocolVersion`).
    pub initialize_version: Option<Cow<'a, str>>,
}

impl<'a> Message<'a> {
    /// The tool name of a `tools/call`.
    pub fn tool(&self) -> Option<&str> {
        match &self.target {
            Target::Tool(t) => Some(t),
            _ => None,
        }
    }
}

/// A whole inspected POST body.
#[derive(Debug, Clone)]
pub struct Inspected<'a> {
    /// The validated document (for argument rules and rewriting).
    pub document: Document<'a>,
    /// The messages: one, or the elements of a batch in order.
    pub messages: Vec<Message<'a>>,
    /// True when the body was a JSON array (a JSON-RPC batch).
    pub batch: bool,
}

impl<'a> Inspected<'a> {
    /// The id to echo in an error reply: the single message's id, if any.
    pub fn reply_id(&self) -> Option<&'a str> {
        if self.batch {
            return None;
        }
        self.messages.first().and_then(|m| m.id)
    }
}

/// Why a body is not an acceptable MCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpError {
    /// Not JSON, or JSON refused by the strict scanner.
    Json(JsonError),
    /// Valid JSON that is not a valid JSON-RPC 2.0 message.
    InvalidRequest {
        /// What is wrong.
        reason: InvalidRequest,
        /// The id, when it could be read.
        id: Option<String>,
    },
    /// The method's parameters lack what the method requires.
    InvalidParams {
        /// The method.
        method: String,
        /// What is missing or has the wrong type.
        reason: &'static str,
        /// The id, when it could be read.
        id: Option<String>,
    },
    /// A JSON-RPC batch in a protocol version without batches, or while
    /// batches are disabled by configuration.
    BatchNotAllowed,
    /// An empty JSON-RPC batch (`[]`).
    EmptyBatch,
}

/// The ways a JSON value fails to be a JSON-RPC 2.0 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRequest {
    /// The message is not an object.
    NotAnObject,
    /// `jsonrpc` is missing or not exactly `"2.0"`.
    BadVersion,
    /// `id` is not a string or an integer.
    BadId,
    /// Neither `method` nor `result`/`error`.
    MissingMethod,
    /// `method` is not a string.
    BadMethod,
    /// `params` is neither an object nor an array.
    BadParams,
}

impl InvalidRequest {
    /// Short machine-readable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::BadVersion => "bad_jsonrpc_version",
            Self::BadId => "bad_id",
            Self::MissingMethod => "missing_method",
            Self::BadMethod => "bad_method",
            Self::BadParams => "bad_params",
        }
    }
}

impl McpError {
    /// The id to echo in the error reply, when it is known.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { id, .. } | Self::InvalidParams { id, .. } => id.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "{e}"),
            Self::InvalidRequest { reason, .. } => {
                write!(f, "invalid request: {}", reason.as_str())
            }
            Self::InvalidParams { method, reason, .. } => {
                write!(f, "invalid params for {method}: {reason}")
            }
            Self::BatchNotAllowed => f.write_str("JSON-RPC batch not allowed"),
            Self::EmptyBatch => f.write_str("empty JSON-RPC batch"),
        }
    }
}

impl std::error::Error for McpError {}

/// Options for [`parse_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Limits for the JSON scanner.
    pub scan: ScanLimits,
    /// Whether a top-level array is acceptable at all (also subject to the
    /// protocol version).
    pub allow_batches: bool,
    /// Maximum number of messages in one batch.
    pub max_batch_len: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            scan: ScanLimits::default(),
            allow_batches: true,
            max_batch_len: 32,
        }
    }
}

/// Parses and inspects one POST body.
///
/// `version` is the protocol version the request is known to speak (from the
/// `MCP-Protocol-Version` header; the spec says to assume 2025-03-26 when it
/// is absent). It decides whether a batch is acceptable.
pub fn parse_body<'a>(
    body: &'a [u8],
    version: ProtocolVersion,
    options: &ParseOptions,
) -> Result<Inspected<'a>, McpError> {
    let document = json::scan(body, options.scan).map_err(McpError::Json)?;
    let root = document.root();
    let (messages, batch) = match root.kind {
        Kind::Object => (vec![message(&document, root, version)?], false),
        Kind::Array => {
            if !options.allow_batches || !version.allows_batches() {
                return Err(McpError::BatchNotAllowed);
            }
            let elements: Vec<Node> = document.members(root).map(|m| m.value).collect();
            if elements.is_empty() {
                return Err(McpError::EmptyBatch);
            }
            if elements.len() > options.max_batch_len {
                return Err(McpError::BatchNotAllowed);
            }
            let messages = elements
                .into_iter()
                .map(|n| message(&document, n, version))
                .collect::<Result<Vec<_>, _>>()?;
            (messages, true)
        }
        _ => {
            return Err(McpError::InvalidRequest {
                reason: InvalidRequest::NotAnObject,
                id: None,
            })
        }
    };
    Ok(Inspected {
        document,
        messages,
        batch,
    })
}

fn message<'a>(
    doc: &Document<'a>,
    obj: Node,
    version: ProtocolVersion,
) -> Result<Message<'a>, McpError> {
    let invalid = |reason, id: Option<&str>| McpError::InvalidRequest {
        reason,
        id: id.map(str::to_owned),
    };
    if obj.kind != Kind::Object {
        return Err(invalid(InvalidRequest::NotAnObject, None));
    }
    let mut jsonrpc = None;
    let mut id = None;
    let mut method = None;
    let mut params = None;
    let mut has_result = false;
    for m in doc.members(obj) {
        match m.key.as_deref() {
            Some("jsonrpc") => jsonrpc = Some(m.value),
            Some("id") => id = Some(m.value),
            Some("method") => method = Some(m.value),
            Some("params") => params = Some(m.value),
            Some("result" | "error") => has_result = true,
            _ => {}
        }
    }
    // The id first, so that every later error can echo it.
    let id_text = match id {
        None => None,
        Some(n) if matches!(n.kind, Kind::String | Kind::Integer) => Some(doc.raw(n)),
        Some(_) => return Err(invalid(InvalidRequest::BadId, None)),
    };
    let version_ok = jsonrpc.and_then(|n| doc.string(n)).as_deref() == Some("2.0");
    if !version_ok {
        return Err(invalid(InvalidRequest::BadVersion, id_text));
    }
    let Some(method_node) = method else {
        if has_result && id_text.is_some() {
            return Ok(Message {
                kind: MessageKind::Response,
                id: id_text,
                method: None,
                target: Target::None,
                arguments: None,
                meta_protocol_version: None,
                initialize_version: None,
            });
        }
        return Err(invalid(InvalidRequest::MissingMethod, id_text));
    };
    let method = doc
        .string(method_node)
        .ok_or_else(|| invalid(InvalidRequest::BadMethod, id_text))?;
    let params = match params {
        None => None,
        Some(p) if p.kind == Kind::Object => Some(p),
        Some(p) if p.kind == Kind::Array => None,
        Some(_) => return Err(invalid(InvalidRequest::BadParams, id_text)),
    };
    let params_error = |reason: &'static str| McpError::InvalidParams {
        method: method.to_string(),
        reason,
        id: id_text.map(str::to_owned),
    };
    let required_string = |key: &'static str, reason: &'static str| {
        params
            .and_then(|p| doc.get(p, key))
            .and_then(|n| doc.string(n))
            .ok_or_else(|| params_error(reason))
    };
    let target = match method.as_ref() {
        "tools/call" => Target::Tool(required_string("name", "params.name must be a string")?),
        "prompts/get" => Target::Prompt(required_string("name", "params.name must be a string")?),
        // A method the version does not define (resources/subscribe in
        // 2026-07-28) is not read for its old params: whether it exists at
        // all is decided first (404, -32601) by `head::validate`.
        "resources/read" | "resources/subscribe" | "resources/unsubscribe"
            if is_known_method(version, &method) =>
        {
            Target::Resource(required_string("uri", "params.uri must be a string")?)
        }
        _ => Target::None,
    };
    let arguments = match params.and_then(|p| doc.get(p, "arguments")) {
        None => None,
        Some(a) if a.kind == Kind::Object => Some(a),
        Some(_) if matches!(target, Target::Tool(_) | Target::Prompt(_)) => {
            return Err(params_error("params.arguments must be an object"))
        }
        Some(a) => Some(a),
    };
    let meta_protocol_version = params
        .and_then(|p| doc.get(p, "_meta"))
        .and_then(|m| doc.get(m, META_PROTOCOL_VERSION))
        .and_then(|v| doc.string(v));
    let initialize_version = if method == "initialize" {
        params
            .and_then(|p| doc.get(p, "protocolVersion"))
            .and_then(|v| doc.string(v))
    } else {
        None
    };
    Ok(Message {
        kind: if id_text.is_some() {
            MessageKind::Request
        } else {
            MessageKind::Notification
        },
        id: id_text,
        method: Some(method),
        target,
        arguments,
        meta_protocol_version,
        initialize_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn parse(body: &str) -> Result<Inspected<'_>, McpError> {
        parse_body(
            body.as_bytes(),
            ProtocolVersion::V2025_11_25,
            &ParseOptions::default(),
        )
    }

    #[test]
    fn extracts_tool_name_and_id_from_tools_call() {
        let i = parse(r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"run_python","arguments":{"code":"print(1)"}}}"#).unwrap();
        let m = &i.messages[0];
        assert_eq!(m.kind, MessageKind::Request);
        assert_eq!(m.id, Some("\"a-1\""));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.tool(), Some("run_python"));
        let args = m.arguments.unwrap();
        assert_eq!(i.document.raw(args), r#"{"code":"print(1)"}"#);
    }

    #[test]
    fn compares_names_after_unescaping() {
        let i = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"run_\u0070ython"}}"#).unwrap();
        assert_eq!(i.messages[0].method.as_deref(), Some("tools/call"));
        assert_eq!(i.messages[0].tool(), Some("run_python"));
    }

    #[test]
    fn extracts_resource_uri_and_prompt_name() {
        let r = parse(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"records://index"}}"#).unwrap();
        assert_eq!(
            r.messages[0].target,
            Target::Resource("records://index".into())
        );
        let p = parse(r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summarize","arguments":{"topic":"x"}}}"#).unwrap();
        assert_eq!(p.messages[0].target, Target::Prompt("summarize".into()));
    }

    #[test]
    fn classifies_notifications_and_responses() {
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.messages[0].kind, MessageKind::Notification);
        assert_eq!(n.reply_id(), None);
        let r = parse(r#"{"jsonrpc":"2.0","id":9,"result":{}}"#).unwrap();
        assert_eq!(r.messages[0].kind, MessageKind::Response);
    }

    #[test]
    fn reads_the_version_an_initialize_asks_for() {
        let i = parse(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#).unwrap();
        assert_eq!(
            i.messages[0].initialize_version.as_deref(),
            Some("2025-06-18")
        );
    }

    #[test]
    fn reads_protocol_version_from_meta() {
        let i = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        assert_eq!(
            i.messages[0].meta_protocol_version.as_deref(),
            Some("2026-07-28")
        );
    }

    #[test]
    fn rejects_invalid_envelopes_echoing_the_id() {
        let cases = [
            (
                r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#,
                InvalidRequest::BadVersion,
                Some("5"),
            ),
            (
                r#"{"id":5,"method":"ping"}"#,
                InvalidRequest::BadVersion,
                Some("5"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"x"}"#,
                InvalidRequest::MissingMethod,
                Some("\"x\""),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                InvalidRequest::BadId,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                InvalidRequest::BadId,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                InvalidRequest::BadId,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                InvalidRequest::BadMethod,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
                InvalidRequest::BadParams,
                Some("1"),
            ),
            (r#""just a string""#, InvalidRequest::NotAnObject, None),
        ];
        for (body, want, id) in cases {
            match parse(body) {
                Err(McpError::InvalidRequest { reason, id: got }) => {
                    assert_eq!(reason, want, "{body}");
                    assert_eq!(got.as_deref(), id, "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_tools_call_without_a_string_name() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":"x"}}"#,
        ] {
            assert!(
                matches!(parse(body), Err(McpError::InvalidParams { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn inspects_every_element_of_a_batch_in_2025_03_26() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_python"}}]"#;
        let i = parse_body(
            body.as_bytes(),
            ProtocolVersion::V2025_03_26,
            &ParseOptions::default(),
        )
        .unwrap();
        assert!(i.batch);
        let tools: Vec<_> = i.messages.iter().map(|m| m.tool().unwrap()).collect();
        assert_eq!(tools, vec!["echo", "run_python"]);
    }

    #[test]
    fn rejects_batches_where_the_version_removed_them() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
        for v in [
            ProtocolVersion::V2025_06_18,
            ProtocolVersion::V2025_11_25,
            ProtocolVersion::V2026_07_28,
        ] {
            assert_eq!(
                parse_body(body, v, &ParseOptions::default()).unwrap_err(),
                McpError::BatchNotAllowed
            );
        }
        let off = ParseOptions {
            allow_batches: false,
            ..ParseOptions::default()
        };
        assert_eq!(
            parse_body(body, ProtocolVersion::V2025_03_26, &off).unwrap_err(),
            McpError::BatchNotAllowed
        );
        assert_eq!(
            parse_body(
                b"[]",
                ProtocolVersion::V2025_03_26,
                &ParseOptions::default()
            )
            .unwrap_err(),
            McpError::EmptyBatch
        );
    }

    #[test]
    fn one_bad_batch_element_rejects_the_batch() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#;
        assert!(parse_body(body, ProtocolVersion::V2025_03_26, &ParseOptions::default()).is_err());
    }

    #[test]
    fn knows_which_methods_each_version_defines() {
        use ProtocolVersion::*;
        assert!(is_known_method(V2025_03_26, "initialize"));
        assert!(!is_known_method(V2026_07_28, "initialize"));
        assert!(is_known_method(V2026_07_28, "server/discover"));
        assert!(!is_known_method(V2025_11_25, "server/discover"));
        assert!(is_known_method(V2025_11_25, "tasks/get"));
        assert!(!is_known_method(V2025_06_18, "tasks/get"));
        assert!(!is_known_method(V2026_07_28, "ping"));
        assert!(!is_known_method(V2025_11_25, "Tools/List"));
        assert!(!is_known_method(V2025_11_25, "sampling/createMessage"));
    }

    #[test]
    fn parses_protocol_versions() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::parse("2024-10-07"), None);
        assert!(ProtocolVersion::V2024_11_05.allows_batches());
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.allows_batches());
    }
}
