//! One request and its answer, as a sans-IO state machine.
//!
//! The shim feeds host events in order and carries out the [`Action`] each
//! returns; side effects (counters, log lines, audit records) go into an
//! [`Effects`]. Nothing here calls the host.
//!
//! ```text
//! request head ──▶ Reply | Continue | Pause ──▶ body progress ──▶ ReadRequestBody(n)
//!                                                                  │ shim reads n bytes
//!                                                                  ▼
//!                                     request_body(bytes) ──▶ Reply | Continue
//! response head ──▶ Continue | DropResponseHeaders
//! response body ──▶ Continue | Pause | ReadResponseBody(n) ──▶ response_body(bytes)
//!                                                              ──▶ Continue | ReplaceResponseBody
//! log (end) ──▶ the audit record of a forwarded request whose answer never started
//! ```
//!
//! Order of the checks on the head: the host clock, strict audit, the RFC
//! 9728 metadata endpoint, the bearer token, downgrade detection, then the
//! head rules. A refusal decided on the head of a POST with a body waits
//! for the body so the JSON-RPC error can echo the request id; nothing is
//! forwarded meanwhile.

use std::sync::Arc;

use crate::audit;
use crate::auth::{self, RESOURCE_METADATA_PATH};
use crate::config::RequestLog;
use crate::inspect::head::{self, HeadVerdict, RequestHead};
use crate::inspect::mcp::{Inspected, Message, MessageKind, Target};
use crate::inspect::params::KnownSchema;
use crate::inspect::response::{ResponseFormat, ToolsListBody};
use crate::outcome::log::{json_string, RequestRecord, REQUEST_MARKER, TOOLS_MARKER};
use crate::outcome::reject::{Reason, Rejection};
use crate::outcome::wire::{self, LocalReply};
use crate::policy::{Decision, Denial, DenyReason, Facts, Policy};
use crate::threat;
use crate::tls::TlsFacts;
use crate::token::{self, VerifiedToken};

use super::connections::ConnectionFacts;
use super::effects::{metric_part, Effects, Level};
use super::shared::{self, SharedStore};
use super::worker::Worker;

mod binding;

/// Marker of alert lines (downgrade, pin violation, latency spike, flagging).
pub const ALERT_MARKER: &str = "pqguard.alert";

/// What the host must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let the request (or answer) go on.
    Continue,
    /// Hold it: more is needed before deciding.
    Pause,
    /// Read the first `n` bytes of the buffered request body and hand them
    /// to [`Exchange::request_body`].
    ReadRequestBody(usize),
    /// Send this local reply; nothing reaches the upstream (the host then
    /// holds the request).
    Reply(LocalReply),
    /// Set this request header (replacing any value), then let the request
    /// go on: `accept-encoding: identity` on requests whose answer pqguard
    /// must read.
    ContinueWithRequestHeader(&'static str, &'static str),
    /// Remove these response headers (the answer may be rewritten, or
    /// replaced by an error), then continue.
    DropResponseHeaders(&'static [&'static str]),
    /// The answer will be replaced by a JSON-RPC error: remove
    /// `content-length` and `content-encoding`, set `content-type` to this
    /// value, then continue.
    ReplaceResponseContentType(&'static str),
    /// Read the first `n` bytes of the buffered response body and hand them
    /// to [`Exchange::response_body`].
    ReadResponseBody(usize),
    /// Replace the first `size` bytes of the buffered response body with
    /// `body`, then continue.
    ReplaceResponseBody {
        /// Bytes to replace.
        size: usize,
        /// The new body.
        body: Vec<u8>,
    },
}

/// The host facts of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStart {
    /// Every request header (lower-case names, pseudo-headers included),
    /// or the host's error when it could not list them.
    pub headers: Result<Vec<(String, Vec<u8>)>, String>,
    /// Whether the head ends the request (no body follows).
    pub end_of_stream: bool,
    /// The host clock, ms since the Unix epoch; `None` when the host could
    /// not tell (the request is then refused: no time, no token check).
    pub now_ms: Option<u64>,
    /// The downstream connection's TLS facts.
    pub connection: ConnectionFacts,
    /// The host's request id (`x-request-id`), for audit records; read only
    /// when [`Worker::wants_request_id`].
    pub request_id: Option<String>,
}

impl Default for RequestStart {
    /// No headers, no time, no TLS: every test and tool sets what it needs.
    fn default() -> Self {
        Self {
            headers: Ok(Vec::new()),
            end_of_stream: false,
            now_ms: None,
            connection: ConnectionFacts::default(),
            request_id: None,
        }
    }
}

/// The host facts of a response head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseStart {
    /// `:status`.
    pub status: Option<String>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// `content-encoding` (read with `content-type`).
    pub content_encoding: Option<String>,
    /// Whether the head ends the response.
    pub end_of_stream: bool,
    /// The host clock, ms since the Unix epoch.
    pub now_ms: Option<u64>,
    /// The upstream cluster the request was routed to.
    pub cluster: Option<String>,
}

/// Which response facts the exchange needs (each costs a host call).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseWants {
    /// `:status`.
    pub status: bool,
    /// `content-type` and `content-encoding`.
    pub content_type: bool,
    /// The upstream cluster name.
    pub cluster: bool,
    /// The host clock.
    pub time: bool,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request head.
    Head,
    /// Holding the request while its body arrives.
    Buffering,
    /// Forwarded; later callbacks only let it stand.
    Forwarded,
    /// A local reply was sent; nothing may reach upstream.
    Refused,
}

/// What the response path does with the answer to this request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Stream it through untouched.
    PassThrough,
    /// The request was `tools/list` with this raw id: read the answer.
    ToolsList(String),
    /// Reading the `tools/list` answer: its format and the id.
    Buffering(ResponseFormat, String),
    /// The answer came compressed although identity was asked for: it is
    /// dropped as it arrives and replaced by an error at its end (format,
    /// raw id, why).
    Encoded(ResponseFormat, String, String),
    /// The answer was refused: drop whatever else the upstream sends.
    Discard,
}

/// One request and its answer.
#[derive(Debug)]
pub struct Exchange {
    phase: Phase,
    head: RequestHead,
    verdict: HeadVerdict,
    facts: TlsFacts,
    token: Option<Arc<VerifiedToken>>,
    identity: Option<String>,
    mtls: bool,
    flagged: bool,
    body_size: usize,
    answer: Answer,
    started_ms: u64,
    now_ms: u64,
    request_id: Option<String>,
    /// A refusal decided on the head (token, downgrade) that waits for the
    /// body so the JSON-RPC error can echo the request id.
    pending: Option<Rejection>,
    /// A request that carries no MCP message (GET stream, DELETE, OPTIONS)
    /// but announced a body: held until the body shows it is empty.
    bodyless: bool,
    /// The audit record of this request, written once its outcome is known
    /// (refusals at once; forwarded requests when the answer starts).
    audit: Option<audit::DecisionRecord>,
    /// A request for the ML-KEM bind endpoint.
    bind_endpoint: bool,
    /// The request's binding proof, read on the head, checked with the body.
    proof: Option<crate::bind::Proof>,
    /// The request was proven by the key its token confirms (`cnf`).
    bound: bool,
    /// How it was proven, when it was.
    proven: Option<crate::bind::Mechanism>,
    /// Response bytes buffered so far (for an answer ended by trailers).
    response_size: usize,
    /// The session ticket that stood for the token: its digest (what the
    /// proof's MAC covers), its binding id and key.
    ticket: Option<super::worker::OpenedTicket>,
    /// The token's `cnf` names an ML-KEM key.
    confirmed_mlkem: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Self::new()
    }
}

impl Worker {
    /// Whether requests need the host's request id (audit records).
    pub fn wants_request_id(&self) -> bool {
        self.config().audit.is_some()
    }
}

impl Exchange {
    /// A request whose head has not arrived yet.
    pub fn new() -> Self {
        Self {
            phase: Phase::Head,
            head: RequestHead::default(),
            verdict: HeadVerdict::Forward,
            facts: TlsFacts::default(),
            token: None,
            identity: None,
            mtls: false,
            flagged: false,
            body_size: 0,
            answer: Answer::PassThrough,
            started_ms: 0,
            now_ms: 0,
            request_id: None,
            pending: None,
            bodyless: false,
            audit: None,
            bind_endpoint: false,
            proof: None,
            bound: false,
            proven: None,
            confirmed_mlkem: false,
            response_size: 0,
            ticket: None,
        }
    }

    /// The request head as copied from the host.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The verified token of this request, if any.
    pub fn token(&self) -> Option<&VerifiedToken> {
        self.token.as_deref()
    }

    /// Whether the request was refused with a local reply.
    pub fn refused(&self) -> bool {
        self.phase == Phase::Refused
    }

    /// Whether the request was let through to the upstream.
    pub fn forwarded(&self) -> bool {
        self.phase == Phase::Forwarded
    }

    // ---- request ------------------------------------------------------

    /// Request headers the shim removes before the request goes on; asked
    /// right after [`Exchange::request_head`]. `authorization` when the
    /// `auth` section has `forward_token: false` (the engine keeps its own
    /// copy, and a refused request is never forwarded anyway); the binding
    /// proof and the session ticket always (they are pqguard's, not the MCP
    /// server's).
    /// Absent entries are `None` (a fixed array: nothing is allocated).
    pub fn request_headers_to_remove(&self, w: &Worker) -> [Option<&'static str>; 3] {
        let strip = w.config().auth.as_ref().is_some_and(|a| !a.forward_token)
            && self.head.authorization.is_some();
        [
            strip.then_some("authorization"),
            self.head
                .binding
                .is_some()
                .then_some(crate::bind::PROOF_HEADER),
            self.head
                .ticket
                .is_some()
                .then_some(crate::ticket::TICKET_HEADER),
        ]
    }

    /// The claims header to set before the request goes on (`auth.
    /// forward_payload_header`), asked right after
    /// [`Exchange::request_head`]: its name and the base64url claims JSON of
    /// the verified token or ticket, or `None` to remove whatever the client
    /// sent under that name (no verified claims).
    pub fn request_payload_header<'w>(&self, w: &'w Worker) -> Option<(&'w str, Option<String>)> {
        let name = w
            .config()
            .auth
            .as_ref()?
            .forward_payload_header
            .as_deref()?;
        let value = self
            .token
            .as_deref()
            .map(|t| crate::token::base64url_encode(t.claims.to_json().as_bytes()));
        Some((name, value))
    }

    /// The host could not remove a header listed by
    /// [`Exchange::request_headers_to_remove`] (the token under
    /// `forward_token: false`, or the binding proof): the request is refused
    /// (500) rather than forwarded with it.
    pub fn header_removal_failed(
        &mut self,
        w: &mut Worker,
        name: &str,
        error: &str,
        out: &mut Effects,
    ) -> Action {
        if self.phase == Phase::Refused {
            return Action::Pause;
        }
        self.pending = None;
        let r = Rejection::new(
            Reason::HostError,
            format!("could not remove request header {name}: {error}"),
        );
        self.refuse(w, out, r)
    }

    /// The request head arrived.
    pub fn request_head(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        start: RequestStart,
        out: &mut Effects,
    ) -> Action {
        self.started_ms = start.now_ms.unwrap_or(0);
        self.now_ms = self.started_ms;
        let connection = start.connection;
        self.facts = TlsFacts::new(
            connection.tls_version,
            connection.tls_group,
            connection.tls_cipher,
        );
        self.mtls = connection.mtls;
        let connection_digest = connection
            .peer_certificate_digest
            .clone()
            .filter(|_| connection.mtls);
        self.request_id = start.request_id;
        self.count_inventory(w, out);
        let headers = match start.headers {
            Ok(h) => h,
            Err(e) => {
                return self.refuse(
                    w,
                    out,
                    Rejection::new(Reason::HostError, format!("request headers: {e}")),
                )
            }
        };
        match RequestHead::from_headers(headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()))) {
            Ok(head) => self.head = head,
            Err(rejection) => {
                // The record still names the method and path.
                let pseudo = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                self.head.http_method = pseudo(":method");
                self.head.path = pseudo(":path");
                return self.refuse(w, out, rejection);
            }
        }
        self.head.has_body = !start.end_of_stream;
        if start.now_ms.is_none() {
            // Without a clock no token expiry can be checked: fail closed.
            return self.refuse(
                w,
                out,
                Rejection::new(Reason::HostError, "the host clock is unavailable"),
            );
        }
        if w.audit_blocks() {
            return self.refuse(
                w,
                out,
                Rejection::new(
                    Reason::AuditUnavailable,
                    "strict audit: the collector is failing or its queue is full",
                ),
            );
        }
        if let Some(reply) = self.metadata_reply(w) {
            self.phase = Phase::Refused;
            return Action::Reply(reply);
        }
        self.bind_endpoint = self.is_bind_request(w);
        self.verdict = if self.bind_endpoint {
            // Not an MCP message: the bind body is read by `serve_bind`.
            HeadVerdict::InspectBody
        } else {
            head::check_head(w.config(), &self.head)
        };
        let early = self
            .authenticate(w, store, out)
            .and_then(|()| self.check_downgrade(w, store, connection.peer_certificate_digest, out))
            .and_then(|()| self.binding_head(w, connection_digest.as_deref()));
        if let Err(rejection) = early {
            if self.verdict == HeadVerdict::InspectBody && !start.end_of_stream {
                // Hold the request and read the body for its id; nothing is forwarded.
                self.pending = Some(rejection);
                self.phase = Phase::Buffering;
                return Action::Pause;
            }
            return self.refuse(w, out, rejection);
        }
        match self.verdict.clone() {
            HeadVerdict::Forward => {
                // No MCP message to decide on (GET stream, DELETE), but the
                // transport gates still apply.
                if let Some(d) = w.config().connectivity.gate(&self.policy_facts()) {
                    let mut r = Rejection::new(Reason::Forbidden, d.detail);
                    r.code = Some(d.reason.as_str());
                    return self.refuse(w, out, r);
                }
                if self.head.has_body {
                    // These methods carry no MCP message: a body would reach
                    // the server uninspected. Hold it; only an empty one passes.
                    self.bodyless = true;
                    self.phase = Phase::Buffering;
                    return Action::Pause;
                }
                if let Err(rejection) = self
                    .check_proof(w, store, b"")
                    .and_then(|()| self.http_policy(w))
                {
                    return self.refuse(w, out, rejection);
                }
                self.forward(w, out, Self::record)
            }
            HeadVerdict::Reject(rejection)
                if rejection.reason == Reason::UnsupportedProtocolVersion
                    && self.head.http_method == "POST"
                    && !start.end_of_stream =>
            {
                // The answer names the request's id: read the body first
                // (nothing is forwarded meanwhile).
                self.pending = Some(rejection);
                self.phase = Phase::Buffering;
                Action::Pause
            }
            HeadVerdict::Reject(rejection) => self.refuse(w, out, rejection),
            HeadVerdict::InspectBody => {
                self.phase = Phase::Buffering;
                if start.end_of_stream {
                    Action::ReadRequestBody(0)
                } else {
                    Action::Pause
                }
            }
        }
    }

    /// Body bytes arrived: `body_size` is the total buffered so far.
    pub fn request_body_progress(
        &mut self,
        w: &mut Worker,
        body_size: usize,
        end_of_stream: bool,
        out: &mut Effects,
    ) -> Action {
        match self.phase {
            Phase::Buffering => {}
            Phase::Refused => return Action::Pause,
            Phase::Head | Phase::Forwarded => return Action::Continue,
        }
        self.body_size = body_size;
        if let Err(rejection) = head::check_body_size(w.config(), body_size as u64) {
            // A refusal decided on the head takes precedence.
            let rejection = self.pending.take().unwrap_or(rejection);
            return self.refuse(w, out, rejection);
        }
        if end_of_stream {
            Action::ReadRequestBody(body_size)
        } else {
            Action::Pause
        }
    }

    /// Trailers arrived: over HTTP/2 a body followed by trailers may never
    /// report its end in the body callback, so the trailers end it.
    pub fn request_trailers(&mut self) -> Action {
        match self.phase {
            Phase::Buffering => Action::ReadRequestBody(self.body_size),
            Phase::Refused => Action::Pause,
            Phase::Head | Phase::Forwarded => Action::Continue,
        }
    }

    /// The complete body, as asked for by [`Action::ReadRequestBody`] (or
    /// the host's error reading it): inspect, check, decide.
    pub fn request_body(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        body: Result<&[u8], String>,
        out: &mut Effects,
    ) -> Action {
        if self.phase != Phase::Buffering {
            return if self.phase == Phase::Refused {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                let r = Rejection::new(Reason::HostError, format!("body: {e}"));
                return self.refuse(w, out, r);
            }
        };
        if self.bind_endpoint && self.pending.is_none() {
            return self.serve_bind(w, out, body);
        }
        if self.bodyless {
            if body.is_empty() {
                if let Err(rejection) = self
                    .check_proof(w, store, body)
                    .and_then(|()| self.http_policy(w))
                {
                    return self.refuse(w, out, rejection);
                }
                return self.forward(w, out, Self::record);
            }
            let r = Rejection::new(
                Reason::InvalidRequest,
                format!(
                    "HTTP {} with a body of {} bytes (it would reach the server uninspected)",
                    self.head.http_method,
                    body.len()
                ),
            );
            return self.refuse(w, out, r);
        }
        let parsed = match head::parse_body(w.config(), &self.head, body) {
            // A version pqguard does not know: read the body as the newest
            // one does, only for the id the refusal echoes.
            Err(r) if r.reason == Reason::UnsupportedProtocolVersion && self.pending.is_some() => {
                crate::inspect::mcp::parse_body(
                    body,
                    crate::inspect::mcp::ProtocolVersion::V2026_07_28,
                    &w.config().parse,
                )
                .map_err(Rejection::from)
            }
            other => other,
        };
        if let Some(settings) = &w.config().audit {
            let mut d = self.audit_base().with_body(body);
            if let Ok(inspected) = &parsed {
                d = d.with_inspected(inspected, settings.include_arguments);
            }
            self.audit = Some(d);
        }
        if let Some(pending) = self.pending.take() {
            // Refused on the head: the body only supplies the id to echo.
            return match parsed {
                Ok(inspected) => {
                    let id = if inspected.batch {
                        None
                    } else {
                        inspected.messages.first().and_then(|m| m.id)
                    };
                    let record = self.record().with_inspected(&inspected);
                    self.refuse_with(w, out, record, pending.with_id(id))
                }
                Err(_) => self.refuse(w, out, pending),
            };
        }
        let inspected = match parsed {
            Ok(i) => i,
            Err(rejection) => return self.refuse(w, out, rejection),
        };
        let verdict = head::validate(w.config(), &self.head, &inspected)
            .and_then(|()| {
                let id = if inspected.batch {
                    None
                } else {
                    inspected.messages.first().and_then(|m| m.id)
                };
                self.check_proof(w, store, body).map_err(|r| r.with_id(id))
            })
            .and_then(|()| self.check_param_headers(w, store, &inspected, out))
            .and_then(|()| self.apply_policy(w, store, &inspected, out));
        if let Err(rejection) = verdict {
            let record = self.record().with_inspected(&inspected);
            return self.refuse_with(w, out, record, rejection);
        }
        // The answer to a tools/list is read, alone or in a batch
        // (2025-03-26): one per request, so that no list passes unread.
        let mut lists = inspected
            .messages
            .iter()
            .filter(|m| m.method.as_deref() == Some("tools/list"))
            .filter_map(|m| m.id);
        if let Some(id) = lists.next() {
            if lists.next().is_some() {
                let r = Rejection::new(
                    Reason::InvalidRequest,
                    "a batch with more than one tools/list (each answer is read and filtered: send them apart)",
                );
                let record = self.record().with_inspected(&inspected);
                return self.refuse_with(w, out, record, r);
            }
            self.answer = Answer::ToolsList(id.to_owned());
        }
        let action = self.forward(w, out, |me| me.record().with_inspected(&inspected));
        if matches!(self.answer, Answer::ToolsList(_)) {
            // The answer will be read: ask for it uncompressed (clients such as
            // httpx send `accept-encoding: gzip` by default).
            return Action::ContinueWithRequestHeader("accept-encoding", "identity");
        }
        action
    }

    // ---- response -----------------------------------------------------

    /// Which response facts [`Exchange::response_head`] needs.
    pub fn response_wants(&self, w: &Worker) -> ResponseWants {
        let forwarded = self.phase == Phase::Forwarded;
        let tools = matches!(self.answer, Answer::ToolsList(_));
        ResponseWants {
            status: (forwarded && w.config().audit.is_some()) || tools,
            content_type: tools,
            cluster: forwarded && w.config().connectivity.alert_on_latency_spike,
            time: forwarded
                && (w.config().audit.is_some() || w.config().connectivity.alert_on_latency_spike),
        }
    }

    /// The response head arrived (with the facts [`Exchange::response_wants`] asked for).
    pub fn response_head(
        &mut self,
        w: &mut Worker,
        start: ResponseStart,
        out: &mut Effects,
    ) -> Action {
        if let Some(now) = start.now_ms {
            self.now_ms = now;
        }
        if self.phase == Phase::Forwarded && w.config().audit.is_some() {
            let status = start.status.as_deref().and_then(|s| s.parse().ok());
            self.write_audit(w, out, status);
        }
        if self.phase == Phase::Forwarded && w.config().connectivity.alert_on_latency_spike {
            if let (Some(cluster), Some(now)) = (start.cluster.as_deref(), start.now_ms) {
                let ms = now.saturating_sub(self.started_ms) as f64;
                if let Some(baseline) = w.observe_latency(cluster, ms) {
                    out.count("pqguard.latency_alerts", 1);
                    self.alert(
                        w,
                        out,
                        "latency_spike",
                        &format!(
                            "cluster {cluster}: {ms:.0} ms against a baseline of {baseline:.1} ms"
                        ),
                    );
                }
            }
        }
        let Answer::ToolsList(id) = &self.answer else {
            return Action::Continue;
        };
        let format = start
            .content_type
            .as_deref()
            .and_then(ResponseFormat::of_content_type);
        let encoding = start
            .content_encoding
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        // A client takes tools from any successful answer (2xx, whatever the
        // code), so every one is read; error statuses carry no result a
        // client uses. An unknown status is read too (fail closed).
        let success = start
            .status
            .as_deref()
            .and_then(|s| s.trim().parse::<u16>().ok())
            .is_none_or(|s| (200..300).contains(&s));
        if start.end_of_stream || !success {
            self.answer = Answer::PassThrough;
            return Action::Continue;
        }
        match (format, encoding) {
            (None, _) => {
                // Clients parse answers they are not sure of (the Python SDK
                // reads `application/json-x` as JSON): what pqguard cannot
                // read, it does not pass.
                let why = format!(
                    "the server answered with content-type {:?}, which pqguard cannot read",
                    start.content_type.as_deref().unwrap_or("")
                );
                self.answer = Answer::Encoded(ResponseFormat::Json, id.clone(), why);
                Action::ReplaceResponseContentType("application/json")
            }
            (Some(format), Some(encoding)) => {
                // pqguard asked for identity; decompressing would cost code and
                // memory on every worker, so a server that compresses anyway
                // gets its answer refused (fail closed), with a clear reason.
                let why = format!(
                    "the server compressed it (content-encoding {encoding}) although pqguard asked for identity"
                );
                self.answer = Answer::Encoded(format, id.clone(), why);
                Action::DropResponseHeaders(&["content-length", "content-encoding"])
            }
            (Some(format), None) => {
                // The answer may be rewritten, so its length is not known yet.
                self.answer = Answer::Buffering(format, id.clone());
                Action::DropResponseHeaders(&["content-length"])
            }
        }
    }

    /// Response trailers arrived: over HTTP/2 an answer followed by
    /// trailers never reports its end in the body callback, so the trailers
    /// end it. A held answer is read (or refused) now, never released
    /// unread.
    pub fn response_trailers(&mut self, w: &Worker, out: &mut Effects) -> Action {
        let size = self.response_size;
        self.response_body_progress(w, size, true, out)
    }

    /// Response bytes arrived: `body_size` is the total buffered so far.
    pub fn response_body_progress(
        &mut self,
        w: &Worker,
        body_size: usize,
        end_of_stream: bool,
        out: &mut Effects,
    ) -> Action {
        self.response_size = body_size;
        match &self.answer {
            Answer::Discard => Action::ReplaceResponseBody {
                size: body_size,
                body: Vec::new(),
            },
            Answer::Buffering(format, id) => {
                let (format, id) = (*format, id.clone());
                if body_size as u64 > w.config().max_response_bytes {
                    return self.fail_answer(
                        format,
                        &id,
                        body_size,
                        "answer exceeds the response cap",
                        out,
                    );
                }
                if end_of_stream {
                    Action::ReadResponseBody(body_size)
                } else {
                    Action::Pause
                }
            }
            Answer::Encoded(format, id, why) if end_of_stream => {
                let (format, id, why) = (*format, id.clone(), why.clone());
                self.fail_answer(format, &id, body_size, &why, out)
            }
            Answer::Encoded(..) => Action::ReplaceResponseBody {
                size: body_size,
                body: Vec::new(),
            },
            Answer::PassThrough | Answer::ToolsList(_) => Action::Continue,
        }
    }

    /// The complete `tools/list` answer, as asked for by
    /// [`Action::ReadResponseBody`]: learn its `Mcp-Param-*` annotations,
    /// check pins, and filter it to what this caller may call.
    pub fn response_body(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        body_size: usize,
        body: Result<&[u8], String>,
        out: &mut Effects,
    ) -> Action {
        let Answer::Buffering(format, id) = &self.answer else {
            return Action::Continue;
        };
        let (format, id) = (*format, id.clone());
        let body = match body {
            Ok(b) => b,
            Err(e) => return self.fail_answer(format, &id, body_size, &e, out),
        };
        let cap = usize::try_from(w.config().max_response_bytes).unwrap_or(usize::MAX);
        let mut parsed = match ToolsListBody::parse(format, body, &id, cap) {
            Ok(p) => p,
            Err(e) => return self.fail_answer(format, &id, body_size, &e.to_string(), out),
        };
        let logged = w.logs_info();
        let offered: Vec<String> = parsed
            .answer
            .tools()
            .iter()
            .filter(|_| logged)
            .map(|t| {
                format!(
                    "{{\"name\":{},\"digest\":\"{}\"}}",
                    json_string(&t.name),
                    t.digest_hex()
                )
            })
            .collect();
        let invalid = learn_param_headers(store, &parsed, out);
        let removed = self.filter_tools(w, store, &mut parsed, &invalid, out);
        if logged {
            let kept: Vec<String> = parsed.answer.names().into_iter().map(json_string).collect();
            out.log(
            Level::Info,
            format!(
                "{TOOLS_MARKER} {{\"id\":{id},\"tools\":[{}],\"visible\":[{}],\"removed\":{removed}}}",
                offered.join(","),
                kept.join(",")
            ),
        );
        }
        self.answer = Answer::PassThrough;
        // Under a policy every list is this caller's: a filtered one, or one
        // the server marked for shared caches, goes out marked private.
        let private = w.config().policy.is_some() && parsed.answer.mark_private(removed == 0);
        if removed > 0 || private {
            // If this replacement fails, `replace_failed` refuses the answer.
            self.answer = Answer::Buffering(format, id);
            return Action::ReplaceResponseBody {
                size: body_size,
                body: parsed.to_bytes(),
            };
        }
        Action::Continue
    }

    /// The host could not carry out a [`Action::ReplaceResponseBody`].
    /// A filtered list that could not be written is replaced by an error
    /// (fail closed); a failed error replacement is only logged.
    pub fn replace_failed(&mut self, body_size: usize, error: &str, out: &mut Effects) -> Action {
        out.log(Level::Error, format!("pqguard: {error}"));
        match &self.answer {
            Answer::Buffering(format, id) => {
                let (format, id) = (*format, id.clone());
                self.fail_answer(format, &id, body_size, error, out)
            }
            _ => Action::Continue,
        }
    }

    /// A filtered answer was written: nothing more to do with this answer.
    pub fn replaced(&mut self) {
        if matches!(self.answer, Answer::Buffering(..)) {
            self.answer = Answer::PassThrough;
        }
    }

    /// Whether [`Exchange::finish`] has an audit record to write (and so
    /// needs the time).
    pub fn finish_wants_time(&self) -> bool {
        self.audit.is_some()
    }

    /// The exchange ends (the host's log callback): a forwarded request
    /// whose answer never started (reset, timeout) gets its audit record.
    pub fn finish(&mut self, w: &mut Worker, now_ms: Option<u64>, out: &mut Effects) {
        if let Some(now) = now_ms {
            self.now_ms = now;
        }
        self.write_audit(w, out, None);
    }

    // ---- checks -------------------------------------------------------

    fn count_inventory(&self, w: &mut Worker, out: &mut Effects) {
        out.count("pqguard.requests", 1);
        let group = self.facts.tls_group.as_deref().unwrap_or("none");
        out.count(format!("pqguard.kex.{}", metric_part(group)), 1);
        let cipher = self.facts.tls_cipher.as_deref().unwrap_or("none");
        out.count(format!("pqguard.cipher.{}", metric_part(cipher)), 1);
        if self.facts.tls_group.is_none() {
            w.note_missing_group(out);
        }
    }

    /// Serves the RFC 9728 metadata document, when configured.
    fn metadata_reply(&self, w: &Worker) -> Option<LocalReply> {
        let doc = w.config().auth.as_ref()?.resource_metadata.as_ref()?;
        let path = self.head.path.split('?').next().unwrap_or("");
        let is_metadata = path == RESOURCE_METADATA_PATH
            || path
                .strip_prefix(RESOURCE_METADATA_PATH)
                .is_some_and(|rest| rest.starts_with('/'));
        (is_metadata && self.head.http_method == "GET").then(|| LocalReply {
            status: 200,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", "max-age=300".to_owned()),
            ],
            body: doc.clone(),
        })
    }

    /// Verifies the bearer token, if any. `Err` is the refusal to send.
    fn authenticate(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        out: &mut Effects,
    ) -> Result<(), Rejection> {
        let Some(auth_config) = w.config().auth.as_ref() else {
            return Ok(());
        };
        let required = auth_config.required;
        if self.head.ticket.is_some() {
            return self.authenticate_ticket(w, store, out);
        }
        let token = self
            .head
            .authorization
            .as_deref()
            .and_then(auth::bearer_token);
        let Some(token) = token else {
            if required || self.head.authorization.is_some() {
                let mut r = Rejection::new(Reason::Unauthorized, "no bearer token");
                r.code = Some("missing_token");
                return Err(r);
            }
            return Ok(());
        };
        if w.keys().is_none() {
            // Another worker may have fetched the key set already.
            w.adopt_shared_keys(store, out);
        }
        let Some(keys) = w.keys().cloned() else {
            let mut r = Rejection::new(Reason::Unauthorized, "no key set available yet");
            r.code = Some("no_keys");
            return Err(r);
        };
        let now = self.started_ms / 1000;
        let options = match w.config().auth.as_ref() {
            Some(a) => a.options.clone(),
            None => return Ok(()),
        };
        match token::verify_cached(token, &keys, &options, now, &mut w.cache) {
            Ok(v) => {
                out.count(
                    if v.hit {
                        "pqguard.token_cache.hit"
                    } else {
                        "pqguard.token_cache.miss"
                    },
                    1,
                );
                out.count(
                    format!("pqguard.token_alg.{}", metric_part(v.token.alg.name())),
                    1,
                );
                self.token = Some(v.token);
                Ok(())
            }
            Err(e) => {
                let mut r = Rejection::new(Reason::Unauthorized, e.to_string());
                r.code = Some(e.as_str());
                Err(r)
            }
        }
    }

    /// Remembers the strongest key exchange of this identity across every
    /// worker; a weaker one later is a downgrade. Also reads whether the
    /// identity is flagged.
    fn check_downgrade(
        &mut self,
        w: &mut Worker,
        store: &dyn SharedStore,
        peer_certificate_digest: Option<String>,
        out: &mut Effects,
    ) -> Result<(), Rejection> {
        let peer = peer_certificate_digest.filter(|_| self.mtls);
        self.identity = threat::identity_key(self.token.as_deref(), peer.as_deref());
        let Some(key) = self.identity.clone() else {
            return Ok(());
        };
        let class = self.facts.kex_class();
        let now = self.started_ms / 1000;
        let flag_seconds = w.config().policy.as_ref().map_or(600, |p| p.flag_seconds);
        let mut before = None;
        let update = shared::update_identity(store, &key, |s| {
            before = s.strongest;
            let downgrade = s.observe_kex(class);
            if downgrade {
                s.flag(now, flag_seconds);
            }
            downgrade
        });
        if !update.stored {
            out.log(
                Level::Warn,
                "pqguard: identity state not stored (shared data failing or contended); decided on the state read",
            );
        }
        // A state that cannot be read may hide a flag: fail closed, the
        // identity counts as flagged for this request.
        self.flagged = update.unreadable || update.state.is_flagged(now);
        if update.unreadable {
            out.log(
                Level::Warn,
                "pqguard: identity state unreadable (shared data failing); the identity counts as flagged",
            );
        }
        if !update.out {
            return Ok(());
        }
        out.count("pqguard.downgrade_attempts", 1);
        let strongest = before.map_or("none", |c| c.as_str());
        self.alert(
            w,
            out,
            "downgrade",
            &format!("key exchange {} after {strongest} before", class.as_str()),
        );
        if w.config().connectivity.block_downgrade_attempts {
            let mut r = Rejection::new(
                Reason::Forbidden,
                format!(
                    "downgrade: key exchange {} after {strongest}",
                    class.as_str()
                ),
            );
            r.code = Some(DenyReason::Downgrade.as_str());
            return Err(r);
        }
        Ok(())
    }

    /// `Mcp-Param-*` headers of `tools/call` against the tool schemas
    /// learnt from `tools/list` answers (shared by every worker).
    fn check_param_headers(
        &self,
        w: &Worker,
        store: &dyn SharedStore,
        inspected: &Inspected<'_>,
        out: &mut Effects,
    ) -> Result<(), Rejection> {
        let unchecked = head::check_param_headers(w.config(), &self.head, inspected, |t| {
            shared::known_schema(store, t)
        })?;
        if unchecked > 0 {
            out.count("pqguard.param_headers.unchecked", i64::from(unchecked));
        }
        Ok(())
    }

    /// What policy decides on for this request.
    fn policy_facts(&self) -> Facts<'_> {
        Facts {
            crypto: &self.facts,
            token: self.token.as_deref(),
            mtls: self.mtls,
            flagged: self.flagged,
            bound: self.bound,
        }
    }

    /// Policy, pins and argument rules for every message (a batch is
    /// allowed only if every element is).
    fn apply_policy(
        &self,
        w: &mut Worker,
        store: &dyn SharedStore,
        inspected: &Inspected<'_>,
        out: &mut Effects,
    ) -> Result<(), Rejection> {
        let config = w.config();
        let facts = self.policy_facts();
        // The transport gates hold for every HTTP request that carries a
        // message, whatever it carries (responses to the server included),
        // with or without a policy.
        if let Some(d) = config.connectivity.gate(&facts) {
            let first = inspected
                .messages
                .iter()
                .find(|m| m.kind != MessageKind::Response)
                .or(inspected.messages.first());
            if let Some(m) = first {
                return Err(self.denied(w, store, d, m, out));
            }
        }
        let Some(policy) = &config.policy else {
            return Ok(());
        };
        for m in &inspected.messages {
            if m.kind == MessageKind::Response {
                continue;
            }
            let denial = match policy.evaluate(&config.connectivity, m, &facts) {
                Decision::Deny(d) => Some(d),
                Decision::Allow { .. } => after_allow(store, policy, inspected, m),
            };
            if let Some(d) = denial {
                return Err(self.denied(w, store, d, m, out));
            }
        }
        Ok(())
    }

    /// The policy for a request that carries no MCP message (`GET`,
    /// `DELETE`): the rules whose `http_methods` name its method.
    fn http_policy(&self, w: &Worker) -> Result<(), Rejection> {
        let Some(policy) = w.config().policy.as_ref() else {
            return Ok(());
        };
        match policy.evaluate_http(&self.head.http_method, &self.policy_facts()) {
            None | Some(Decision::Allow { .. }) => Ok(()),
            Some(Decision::Deny(d)) => {
                let mut r = Rejection::new(Reason::Forbidden, d.detail);
                r.scope = d.missing_scope;
                r.code = Some(d.reason.as_str());
                Err(r)
            }
        }
    }

    /// Turns a policy denial into a refusal; counts it against the identity.
    fn denied(
        &self,
        w: &mut Worker,
        store: &dyn SharedStore,
        d: Denial,
        m: &Message<'_>,
        out: &mut Effects,
    ) -> Rejection {
        // The detail already names the deciding rule.
        let mut r = Rejection::new(Reason::Forbidden, d.detail.clone()).with_id(m.id);
        r.scope = d.missing_scope.clone();
        r.code = Some(d.reason.as_str());
        let (Some(key), Some(policy)) = (&self.identity, &w.config().policy) else {
            return r;
        };
        let now = self.started_ms / 1000;
        let anomaly = matches!(
            d.reason,
            DenyReason::ArgumentRejected | DenyReason::PinViolation
        );
        let (flag_seconds, after) = (policy.flag_seconds, policy.flag_after_denials);
        let update = shared::update_identity(store, key, |s| {
            if anomaly && !s.is_flagged(now) {
                s.flag(now, flag_seconds);
                return true;
            }
            s.record_denial(now, flag_seconds, after, flag_seconds)
        });
        if update.out {
            self.alert(
                w,
                out,
                "flagged",
                &format!("identity flagged after {}", d.reason.as_str()),
            );
        }
        r
    }

    /// Filters a complete `tools/list` answer: tools with invalid
    /// `x-mcp-header` annotations are removed, so are pinned tools whose
    /// definition changed (and remembered), and every tool this caller may
    /// not call.
    fn filter_tools(
        &self,
        w: &mut Worker,
        store: &dyn SharedStore,
        parsed: &mut ToolsListBody,
        invalid: &[String],
        out: &mut Effects,
    ) -> usize {
        let config = w.config();
        let policy = config.policy.as_ref();
        if policy.is_none() && invalid.is_empty() {
            return 0;
        }
        let facts = self.policy_facts();
        let mut violations = Vec::new();
        let mut store_errors = Vec::new();
        let removed = parsed.answer.retain(|tool| {
            if invalid.contains(&tool.name) {
                return false;
            }
            let Some(policy) = policy else { return true };
            if let Some(pinned) = policy.pins.get(&tool.name) {
                if *pinned != tool.digest {
                    violations.push((tool.name.clone(), tool.digest_hex()));
                    return false;
                }
                if let Err(e) = shared::set_pin_state(store, &tool.name, b"ok") {
                    store_errors.push(e);
                }
            }
            let call = Message {
                kind: MessageKind::Request,
                id: None,
                method: Some("tools/call".into()),
                target: Target::Tool(tool.name.as_str().into()),
                arguments: None,
                meta_protocol_version: None,
                initialize_version: None,
            };
            matches!(
                policy.evaluate(&config.connectivity, &call, &facts),
                Decision::Allow { .. }
            )
        });
        for e in store_errors {
            out.log(Level::Error, format!("pqguard: {e}"));
        }
        for (name, digest) in violations {
            if let Err(e) = shared::set_pin_state(store, &name, digest.as_bytes()) {
                out.log(Level::Error, format!("pqguard: {e}"));
            }
            out.count("pqguard.pin_violations", 1);
            self.alert(
                w,
                out,
                "pin_violation",
                &format!("tool {name:?} definition digest {digest} differs from its pin"),
            );
        }
        out.count(
            "pqguard.tools_removed",
            i64::try_from(removed).unwrap_or(i64::MAX),
        );
        removed
    }

    // ---- outcomes -----------------------------------------------------

    /// A fresh audit record with this request's crypto facts and identity.
    fn audit_base(&self) -> audit::DecisionRecord {
        audit::DecisionRecord::new(&self.facts, self.token.as_deref())
            .with_request_id(self.request_id.clone())
    }

    /// Writes this request's audit record, once.
    fn write_audit(&mut self, w: &mut Worker, out: &mut Effects, status: Option<u16>) {
        if let Some(d) = self.audit.take() {
            let latency = self.now_ms.saturating_sub(self.started_ms);
            w.audit_decision(self.now_ms, &d.with_upstream(status, Some(latency)), out);
        }
    }

    /// The `pqguard.request` record of this request, before inspection.
    fn record(&self) -> RequestRecord {
        let mut r = RequestRecord::new(&self.head, &self.facts);
        if let Some(t) = &self.token {
            r.token_alg = Some(t.alg.name());
            r.token_kid = t.kid.clone();
            r.issuer = t.claims.iss.clone();
            r.subject = t.claims.sub.clone();
        }
        r
    }

    fn alert(&self, w: &mut Worker, out: &mut Effects, kind: &str, detail: &str) {
        if w.config().audit.is_some() {
            let a = audit::AnomalyRecord::new(kind, detail)
                .with_request(self.request_id.clone(), self.token.as_deref());
            w.audit_anomaly(self.now_ms, &a, out);
        }
        let who = self.token.as_ref().map(|t| {
            format!(
                "{}|{}",
                t.claims.iss.as_deref().unwrap_or(""),
                t.claims.sub.as_deref().unwrap_or("")
            )
        });
        out.log(
            Level::Warn,
            format!(
                "{ALERT_MARKER} {{\"kind\":{},\"identity\":{},\"tls_group\":{},\"detail\":{}}}",
                json_string(kind),
                who.as_deref().map_or("null".to_owned(), json_string),
                self.facts
                    .tls_group
                    .as_deref()
                    .map_or("null".to_owned(), json_string),
                json_string(detail)
            ),
        );
    }

    /// Lets the request go on; `record` builds its `pqguard.request` line,
    /// only when one is written.
    fn forward(
        &mut self,
        w: &mut Worker,
        out: &mut Effects,
        record: impl FnOnce(&Self) -> RequestRecord,
    ) -> Action {
        out.count("pqguard.allowed", 1);
        if w.config().audit.is_some() && self.audit.is_none() {
            self.audit = Some(self.audit_base());
        }
        if w.config().request_log == RequestLog::All && w.logs_info() {
            out.log(
                Level::Info,
                format!("{REQUEST_MARKER} {}", record(self).to_json()),
            );
        }
        self.phase = Phase::Forwarded;
        Action::Continue
    }

    fn refuse(&mut self, w: &mut Worker, out: &mut Effects, rejection: Rejection) -> Action {
        let record = self.record();
        self.refuse_with(w, out, record, rejection)
    }

    /// The one place a refusal becomes its counters, its log line, its
    /// audit record and its local reply.
    fn refuse_with(
        &mut self,
        w: &mut Worker,
        out: &mut Effects,
        record: RequestRecord,
        rejection: Rejection,
    ) -> Action {
        out.count("pqguard.rejected", 1);
        if let (Reason::Forbidden, Some(code)) = (rejection.reason, rejection.code) {
            out.count(format!("pqguard.denied.{code}"), 1);
        }
        if w.config().audit.is_some() {
            let d = self.audit.take().unwrap_or_else(|| self.audit_base());
            self.audit = Some(d.with_rejection(&rejection));
            self.write_audit(w, out, None);
        }
        if w.config().request_log != RequestLog::None && w.logs_info() {
            let record = record.with_rejection(&rejection);
            out.log(
                Level::Info,
                format!("{REQUEST_MARKER} {}", record.to_json()),
            );
        }
        let metadata = w
            .config()
            .auth
            .as_ref()
            .and_then(|a| a.resource_metadata_url.as_deref());
        self.phase = Phase::Refused;
        Action::Reply(wire::local_reply_with(&rejection, metadata))
    }

    /// A `tools/list` answer that cannot be read is replaced by a JSON-RPC
    /// error (fail closed: never show a list pqguard could not check). The
    /// response headers are already on their way, so the status stays.
    fn fail_answer(
        &mut self,
        format: ResponseFormat,
        id: &str,
        size: usize,
        why: &str,
        out: &mut Effects,
    ) -> Action {
        out.log(
            Level::Warn,
            format!("pqguard: tools/list answer refused: {why}"),
        );
        self.answer = Answer::Discard;
        Action::ReplaceResponseBody {
            size,
            body: wire::answer_error_body(id, format == ResponseFormat::EventStream),
        }
    }
}

/// Checks that run once a rule allowed a message: pins and argument rules.
fn after_allow(
    store: &dyn SharedStore,
    policy: &Policy,
    inspected: &Inspected<'_>,
    m: &Message<'_>,
) -> Option<Denial> {
    let Target::Tool(tool) = &m.target else {
        return None;
    };
    if policy.pins.contains_key(tool.as_ref()) && shared::pin_violated(store, tool) {
        return Some(Denial {
            reason: DenyReason::PinViolation,
            rule: None,
            detail: format!("tool {tool:?} changed since it was pinned"),
            missing_scope: None,
        });
    }
    let rules = policy.arguments_for(tool)?;
    match rules.check(&inspected.document, m.arguments) {
        Ok(()) => None,
        Err(v) => Some(Denial {
            reason: DenyReason::ArgumentRejected,
            rule: None,
            detail: format!("tool {tool:?}: {v}"),
            missing_scope: None,
        }),
    }
}

/// Remembers each tool's `Mcp-Param-*` headers for every worker, and
/// returns the tools whose `x-mcp-header` annotations are invalid
/// (clients must drop them; so does the filter).
fn learn_param_headers(
    store: &dyn SharedStore,
    parsed: &ToolsListBody,
    out: &mut Effects,
) -> Vec<String> {
    let mut invalid = Vec::new();
    for (name, read) in parsed.answer.param_headers() {
        let stored = KnownSchema::stored_form(&read);
        if let Err(e) = store.set(&shared::params_key(&name), stored.as_bytes(), None) {
            out.log(Level::Error, format!("pqguard: tool schema: {e}"));
        }
        if let Err(e) = read {
            out.log(
                Level::Warn,
                format!("pqguard: tool {name:?} removed from tools/list: {e}"),
            );
            invalid.push(name);
        }
    }
    if !invalid.is_empty() {
        out.count(
            "pqguard.tools_invalid",
            i64::try_from(invalid.len()).unwrap_or(i64::MAX),
        );
    }
    invalid
}
