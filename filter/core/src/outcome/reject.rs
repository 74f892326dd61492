//! Why a request is refused: one typed value that the wire mapping in
//! [`crate::outcome::wire`] turns into an HTTP status and a JSON-RPC error, and whose
//! detail goes to the log only.

use std::fmt;

use crate::inspect::json::JsonError;
use crate::inspect::mcp::McpError;

/// The class of a refusal. Each class has one HTTP status and one JSON-RPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The body is larger than the configured cap (413).
    BodyTooLarge,
    /// `Content-Type` is not JSON, or names a charset other than UTF-8 (415).
    UnsupportedMediaType,
    /// A `Content-Encoding` other than identity: a compressed body would be
    /// a blind spot (415).
    UnsupportedContentEncoding,
    /// The body is not JSON (400, -32700).
    ParseError,
    /// JSON, but not an acceptable JSON-RPC message: duplicate keys, too deep,
    /// bad envelope, forbidden batch (400, -32600).
    InvalidRequest,
    /// The method's params lack what it requires (400, -32602).
    InvalidParams,
    /// The `MCP-Protocol-Version` header names a version pqguard does not
    /// know (400, -32022 `UnsupportedProtocolVersion` with
    /// `data: {supported, requested}`).
    UnsupportedProtocolVersion,
    /// A 2026-07-28 mirrored header (`Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`, `MCP-Protocol-Version`) is missing, malformed or
    /// disagrees with the body (400, -32020 `HeaderMismatch`).
    HeaderMismatch,
    /// A method the protocol version does not define and the configuration
    /// does not allow (404, -32601).
    MethodNotFound,
    /// An HTTP method the protocol version does not use, e.g. GET in
    /// 2026-07-28 (405).
    MethodNotAllowed,
    /// No token, or a token that failed verification (401,
    /// `WWW-Authenticate: Bearer error="invalid_token"`). The precise
    /// token error goes to the detail only.
    Unauthorized,
    /// Policy denied the request (403; `insufficient_scope` when a scope
    /// is what is missing).
    Forbidden,
    /// Strict audit mode and the audit collector is failing or its queue
    /// is full: an unrecorded request must not happen (503).
    AuditUnavailable,
    /// The host failed to hand over something the decision needs (the body,
    /// a property): refuse rather than forward uninspected (500, -32603).
    HostError,
    /// The replay set of binding proofs is full of live proofs: refuse
    /// rather than forget one (503 with `Retry-After`).
    BindingBusy,
    /// One binding has too many live proofs (429 with `Retry-After`).
    BindingQuota,
}

impl Reason {
    /// Stable snake_case name for logs, metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedContentEncoding => "unsupported_content_encoding",
            Self::ParseError => "parse_error",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidParams => "invalid_params",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::HeaderMismatch => "header_mismatch",
            Self::MethodNotFound => "method_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::AuditUnavailable => "audit_unavailable",
            Self::HostError => "host_error",
            Self::BindingBusy => "binding_busy",
            Self::BindingQuota => "binding_quota",
        }
    }
}

/// A refused request: the class, the JSON-RPC id to echo when known, and a
/// precise detail for the log (never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The class of refusal.
    pub reason: Reason,
    /// Raw JSON text of the request id (`"abc"` with quotes, or `7`).
    pub id: Option<String>,
    /// What exactly was wrong, for operators.
    pub detail: String,
    /// For [`Reason::Forbidden`]: the scope whose absence caused it; for
    /// [`Reason::UnsupportedProtocolVersion`]: the version the request named
    /// (both go to the client: `WWW-Authenticate`, the error's `data`).
    pub scope: Option<String>,
    /// Finer reason code for logs and metrics (e.g. the token error or the
    /// policy deny reason), when there is one.
    pub code: Option<&'static str>,
    /// For a refused ML-KEM binding: what the client should do
    /// (`pqguard_binding` in `WWW-Authenticate`: `rebind`, `clock_skew`,
    /// `invalid_binding`).
    pub binding: Option<&'static str>,
    /// Seconds for `Retry-After` (503 and 429 answers).
    pub retry_after: Option<u16>,
}

impl Rejection {
    /// A refusal with no known id.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            id: None,
            detail: detail.into(),
            scope: None,
            code: None,
            binding: None,
            retry_after: None,
        }
    }
}

impl Rejection {
    /// The same refusal, echoing `id` (raw JSON text).
    pub fn with_id(mut self, id: Option<&str>) -> Self {
        self.id = id.map(str::to_owned);
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for Rejection {}

impl From<McpError> for Rejection {
    fn from(e: McpError) -> Self {
        let reason = match &e {
            McpError::Json(j) if j.is_syntax_error() => Reason::ParseError,
            McpError::Json(_) => Reason::InvalidRequest,
            McpError::InvalidRequest { .. } | McpError::BatchNotAllowed | McpError::EmptyBatch => {
                Reason::InvalidRequest
            }
            McpError::InvalidParams { .. } => Reason::InvalidParams,
            // McpError is non_exhaustive within the crate too: refuse anything new.
            #[allow(unreachable_patterns)]
            _ => Reason::InvalidRequest,
        };
        Self {
            reason,
            id: e.id().map(str::to_owned),
            detail: e.to_string(),
            scope: None,
            code: None,
            binding: None,
            retry_after: None,
        }
    }
}

impl From<JsonError> for Rejection {
    fn from(e: JsonError) -> Self {
        McpError::Json(e).into()
    }
}
