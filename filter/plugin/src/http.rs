//! The per-request context: copies request facts out of Envoy, asks the
//! core for decisions at each phase, and carries them out (forward, local
//! reply, rewritten `tools/list` answer).
//!
//! Phases of a request:
//! 1. headers: head checks, the RFC 9728 metadata endpoint, the bearer
//!    token (verified through the per-VM cache), downgrade detection;
//! 2. body (complete, or ended by trailers): MCP inspection, policy and
//!    argument rules for every message;
//! 3. response: `tools/list` answers are buffered, pinned tools checked and
//!    the list filtered to what this caller may call; latency is observed.

use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use pqguard_core::audit;
use pqguard_core::auth::{self, RESOURCE_METADATA_PATH};
use pqguard_core::config::RequestLog;
use pqguard_core::crypto::CryptoFacts;
use pqguard_core::mcp::{Inspected, Message, MessageKind, Target};
use pqguard_core::params::KnownSchema;
use pqguard_core::policy::{Decision, Denial, DenyReason, Facts};
use pqguard_core::record::{json_string, RequestRecord, REQUEST_MARKER, TOOLS_MARKER};
use pqguard_core::reject::{Reason, Rejection};
use pqguard_core::request::{self, HeadVerdict, RequestHead};
use pqguard_core::response::{ResponseFormat, ToolsListBody};
use pqguard_core::threat;
use pqguard_core::token::{self, VerifiedToken};
use pqguard_core::wire::{self, LocalReply};

use crate::host;
use crate::vm::{self, Vm};

/// Marker of alert lines (downgrade, pin violation, latency spike, flagging).
pub const ALERT_MARKER: &str = "pqguard.alert";

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request head.
    Head,
    /// Holding the request while its body arrives.
    Buffering,
    /// A decision was made; later callbacks only let it stand.
    Decided,
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
    /// The answer was refused: drop whatever else the upstream sends.
    Discard,
}

/// Per-request context.
pub struct Request {
    vm: Rc<Vm>,
    head: RequestHead,
    facts: CryptoFacts,
    token: Option<Arc<VerifiedToken>>,
    identity: Option<String>,
    mtls: bool,
    flagged: bool,
    phase: Phase,
    /// Body bytes buffered so far (cumulative, as Envoy reports it).
    body_size: usize,
    answer: Answer,
    started_ms: u64,
    /// A refusal decided on the headers (token, downgrade) that waits for
    /// the body so the JSON-RPC error can echo the request id.
    pending: Option<Rejection>,
    /// The audit record of this request, written once its outcome is known
    /// (refusals at once; forwarded requests when the response starts).
    audit: Option<audit::Decision>,
}

impl Request {
    /// A context for one request.
    pub fn new(vm: Rc<Vm>) -> Self {
        Self {
            vm,
            head: RequestHead::default(),
            facts: CryptoFacts::default(),
            token: None,
            identity: None,
            mtls: false,
            flagged: false,
            phase: Phase::Head,
            body_size: 0,
            answer: Answer::PassThrough,
            started_ms: 0,
            pending: None,
            audit: None,
        }
    }

    /// A fresh audit record with this request's crypto facts and identity.
    fn audit_base(&self) -> audit::Decision {
        audit::Decision::new(&self.facts, self.token.as_deref()).with_request_id(host::request_id())
    }

    /// Writes this request's audit record, once.
    fn write_audit(&mut self, status: Option<u16>) {
        if self.vm.config.audit.is_none() {
            return;
        }
        if let Some(d) = self.audit.take() {
            let latency = host::now_millis().saturating_sub(self.started_ms);
            self.vm
                .audit_decision(&d.with_upstream(status, Some(latency)));
        }
    }

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

    /// What policy decides on for this request.
    fn policy_facts(&self) -> Facts<'_> {
        Facts {
            crypto: &self.facts,
            token: self.token.as_deref(),
            mtls: self.mtls,
            flagged: self.flagged,
        }
    }

    /// Inspects the complete body and decides.
    fn decide(&mut self) -> Action {
        let body = match host::request_body(self.body_size) {
            Ok(b) => b,
            Err(e) => {
                return self.refuse(Rejection::new(Reason::HostError, format!("body: {e}")));
            }
        };
        let parsed = request::parse_body(&self.vm.config, &self.head, &body);
        if let Some(settings) = &self.vm.config.audit {
            let mut d = self.audit_base().with_body(&body);
            if let Ok(inspected) = &parsed {
                d = d.with_inspected(inspected, settings.include_arguments);
            }
            self.audit = Some(d);
        }
        if let Some(pending) = self.pending.take() {
            // Refused on the headers: the body only supplies the id to echo.
            return match parsed {
                Ok(inspected) => {
                    let id = if inspected.batch {
                        None
                    } else {
                        inspected.messages.first().and_then(|m| m.id)
                    };
                    let record = self.record().with_inspected(&inspected);
                    self.refuse_with(record, pending.with_id(id))
                }
                Err(_) => self.refuse(pending),
            };
        }
        let inspected = match parsed {
            Ok(i) => i,
            Err(rejection) => return self.refuse(rejection),
        };
        let verdict = request::validate(&self.vm.config, &self.head, &inspected)
            .and_then(|()| self.check_param_headers(&inspected))
            .and_then(|()| self.apply_policy(&inspected));
        if let Err(rejection) = verdict {
            let record = self.record().with_inspected(&inspected);
            return self.refuse_with(record, rejection);
        }
        if let (false, Some(m)) = (inspected.batch, inspected.messages.first()) {
            if let (Some("tools/list"), Some(id)) = (m.method.as_deref(), m.id) {
                self.answer = Answer::ToolsList(id.to_owned());
            }
        }
        self.forward(|me| me.record().with_inspected(&inspected))
    }

    /// `Mcp-Param-*` headers of `tools/call` against the tool schemas
    /// learnt from `tools/list` answers (shared by every worker).
    fn check_param_headers(&self, inspected: &Inspected<'_>) -> Result<(), Rejection> {
        let unchecked =
            request::check_param_headers(&self.vm.config, &self.head, inspected, vm::known_schema)?;
        self.vm
            .count("pqguard.param_headers.unchecked", i64::from(unchecked));
        Ok(())
    }

    /// Policy, pins and argument rules for every message (a batch is
    /// allowed only if every element is).
    fn apply_policy(&self, inspected: &Inspected<'_>) -> Result<(), Rejection> {
        let config = &self.vm.config;
        let Some(policy) = &config.policy else {
            return Ok(());
        };
        let facts = self.policy_facts();
        for m in &inspected.messages {
            if m.kind == MessageKind::Response {
                continue;
            }
            let denial = match policy.evaluate(&config.connectivity, m, &facts) {
                Decision::Deny(d) => Some(d),
                Decision::Allow { .. } => self.after_allow(policy, inspected, m),
            };
            if let Some(d) = denial {
                return Err(self.denied(d, m));
            }
        }
        Ok(())
    }

    /// Checks that run once a rule allowed a message: pins and argument rules.
    fn after_allow(
        &self,
        policy: &pqguard_core::policy::Policy,
        inspected: &Inspected<'_>,
        m: &Message<'_>,
    ) -> Option<Denial> {
        let Target::Tool(tool) = &m.target else {
            return None;
        };
        if policy.pins.contains_key(tool.as_ref()) && vm::pin_violated(tool) {
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

    /// Turns a policy denial into a refusal; counts it against the identity.
    fn denied(&self, d: Denial, m: &Message<'_>) -> Rejection {
        // The detail already names the deciding rule.
        let mut r = Rejection::new(Reason::Forbidden, d.detail.clone()).with_id(m.id);
        r.scope = d.missing_scope.clone();
        r.code = Some(d.reason.as_str());
        if let (Some(key), Some(policy)) = (&self.identity, &self.vm.config.policy) {
            let now = host::now_millis() / 1000;
            let anomaly = matches!(
                d.reason,
                DenyReason::ArgumentRejected | DenyReason::PinViolation
            );
            let newly = vm::update_identity(key, |s| {
                if anomaly && !s.is_flagged(now) {
                    s.flag(now, policy.flag_seconds);
                    return true;
                }
                s.record_denial(
                    now,
                    policy.flag_seconds,
                    policy.flag_after_denials,
                    policy.flag_seconds,
                )
            });
            if newly {
                self.alert(
                    "flagged",
                    &format!("identity flagged after {}", d.reason.as_str()),
                );
            }
        }
        r
    }

    fn alert(&self, kind: &str, detail: &str) {
        if self.vm.config.audit.is_some() {
            let a = audit::Anomaly::new(kind, detail)
                .with_request(host::request_id(), self.token.as_deref());
            self.vm.audit_anomaly(&a);
        }
        let who = self.token.as_ref().map(|t| {
            format!(
                "{}|{}",
                t.claims.iss.as_deref().unwrap_or(""),
                t.claims.sub.as_deref().unwrap_or("")
            )
        });
        host::log(
            LogLevel::Warn,
            &format!(
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
    /// only when `request_log` says to write one.
    fn forward(&mut self, record: impl FnOnce(&Self) -> RequestRecord) -> Action {
        self.vm.count("pqguard.allowed", 1);
        if self.vm.config.audit.is_some() && self.audit.is_none() {
            self.audit = Some(self.audit_base());
        }
        if self.vm.config.request_log == RequestLog::All {
            host::log(
                LogLevel::Info,
                &format!("{REQUEST_MARKER} {}", record(self).to_json()),
            );
        }
        self.phase = Phase::Decided;
        Action::Continue
    }

    fn refuse(&mut self, rejection: Rejection) -> Action {
        let record = self.record();
        self.refuse_with(record, rejection)
    }

    fn refuse_with(&mut self, record: RequestRecord, rejection: Rejection) -> Action {
        self.vm.count("pqguard.rejected", 1);
        if let (Reason::Forbidden, Some(code)) = (rejection.reason, rejection.code) {
            self.vm.count(&format!("pqguard.denied.{code}"), 1);
        }
        if self.vm.config.audit.is_some() {
            let d = self.audit.take().unwrap_or_else(|| self.audit_base());
            self.audit = Some(d.with_rejection(&rejection));
            self.write_audit(None);
        }
        if self.vm.config.request_log != RequestLog::None {
            let record = record.with_rejection(&rejection);
            host::log(
                LogLevel::Info,
                &format!("{REQUEST_MARKER} {}", record.to_json()),
            );
        }
        let metadata = self
            .vm
            .config
            .auth
            .as_ref()
            .and_then(|a| a.resource_metadata_url.as_deref());
        self.send(&wire::local_reply_with(&rejection, metadata));
        self.phase = Phase::Refused;
        Action::Pause
    }

    fn send(&self, reply: &LocalReply) {
        if let Err(e) = host::send_reply(reply) {
            host::log(
                LogLevel::Error,
                &format!("pqguard: cannot send local reply: {e}"),
            );
        }
    }

    /// Counts the crypto inventory of a request.
    fn count_inventory(&self) {
        let vm = &self.vm;
        vm.count("pqguard.requests", 1);
        let group = self.facts.tls_group.as_deref().unwrap_or("none");
        vm.count(&format!("pqguard.kex.{}", vm::metric_part(group)), 1);
        let cipher = self.facts.tls_cipher.as_deref().unwrap_or("none");
        vm.count(&format!("pqguard.cipher.{}", vm::metric_part(cipher)), 1);
        if self.facts.tls_group.is_none() && !vm.missing_facts_logged.replace(true) {
            host::log(
                LogLevel::Warn,
                "pqguard: the host gave no TLS group (plaintext listener, or no set_filter_state before pqguard); such requests count as key exchange class none",
            );
        }
    }

    /// Verifies the bearer token, if any. `Err` is the refusal to send.
    fn authenticate(&mut self) -> Result<(), Rejection> {
        let Some(auth_config) = &self.vm.config.auth else {
            return Ok(());
        };
        let token = self
            .head
            .authorization
            .as_deref()
            .and_then(auth::bearer_token);
        let Some(token) = token else {
            if auth_config.required || self.head.authorization.is_some() {
                let mut r = Rejection::new(Reason::Unauthorized, "no bearer token");
                r.code = Some("missing_token");
                return Err(r);
            }
            return Ok(());
        };
        if self.vm.keys.borrow().is_none() {
            // Another VM may have fetched the key set already.
            self.vm.adopt_shared_keys();
        }
        let keys = self.vm.keys.borrow().clone();
        let Some(keys) = keys else {
            let mut r = Rejection::new(Reason::Unauthorized, "no key set available yet");
            r.code = Some("no_keys");
            return Err(r);
        };
        let now = host::now_millis() / 1000;
        let result = token::verify_cached(
            token,
            &keys,
            &auth_config.options,
            now,
            &mut self.vm.cache.borrow_mut(),
        );
        match result {
            Ok(v) => {
                self.vm.count(
                    if v.hit {
                        "pqguard.token_cache.hit"
                    } else {
                        "pqguard.token_cache.miss"
                    },
                    1,
                );
                self.vm.count(
                    &format!("pqguard.token_alg.{}", vm::metric_part(v.token.alg.name())),
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

    /// Remembers the strongest key exchange of this identity; a weaker one
    /// later is a downgrade. Also reads whether the identity is flagged.
    fn check_downgrade(&mut self) -> Result<(), Rejection> {
        let peer = if self.mtls {
            host::peer_certificate_digest()
        } else {
            None
        };
        self.identity = threat::identity_key(self.token.as_deref(), peer.as_deref());
        let Some(key) = self.identity.clone() else {
            return Ok(());
        };
        let class = self.facts.kex_class();
        let now = host::now_millis() / 1000;
        let flag_seconds = self
            .vm
            .config
            .policy
            .as_ref()
            .map_or(600, |p| p.flag_seconds);
        let (downgrade, flagged) = vm::update_identity(&key, |s| {
            let downgrade = s.observe_kex(class);
            if downgrade {
                s.flag(now, flag_seconds);
            }
            (downgrade, s.is_flagged(now))
        });
        self.flagged = flagged;
        if !downgrade {
            return Ok(());
        }
        self.vm.count("pqguard.downgrade_attempts", 1);
        let strongest = vm::read_identity(&key)
            .strongest
            .map_or("none", |c| c.as_str());
        self.alert(
            "downgrade",
            &format!("key exchange {} after {strongest} before", class.as_str()),
        );
        if self.vm.config.connectivity.block_downgrade_attempts {
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

    /// Serves the RFC 9728 metadata document, when configured.
    fn metadata_reply(&self) -> Option<LocalReply> {
        let doc = self.vm.config.auth.as_ref()?.resource_metadata.as_ref()?;
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

    /// Remembers each tool's `Mcp-Param-*` headers for every worker, and
    /// returns the tools whose `x-mcp-header` annotations are invalid
    /// (clients must drop them; so does the filter).
    fn learn_param_headers(&self, parsed: &ToolsListBody) -> Vec<String> {
        let mut invalid = Vec::new();
        for (name, read) in parsed.answer.param_headers() {
            vm::store_schema(&name, &KnownSchema::stored_form(&read));
            if let Err(e) = read {
                host::log(
                    LogLevel::Warn,
                    &format!("pqguard: tool {name:?} removed from tools/list: {e}"),
                );
                invalid.push(name);
            }
        }
        self.vm.count(
            "pqguard.tools_invalid",
            i64::try_from(invalid.len()).unwrap_or(i64::MAX),
        );
        invalid
    }

    /// Filters a complete `tools/list` answer: tools with invalid
    /// `x-mcp-header` annotations are removed, so are pinned tools whose
    /// definition changed (and remembered), and every tool this caller may
    /// not call.
    fn filter_tools(&self, parsed: &mut ToolsListBody, invalid: &[String]) -> usize {
        let policy = self.vm.config.policy.as_ref();
        if policy.is_none() && invalid.is_empty() {
            return 0;
        }
        let facts = self.policy_facts();
        let mut violations = Vec::new();
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
                vm::set_pin_state(&tool.name, b"ok");
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
                policy.evaluate(&self.vm.config.connectivity, &call, &facts),
                Decision::Allow { .. }
            )
        });
        for (name, digest) in violations {
            vm::set_pin_state(&name, digest.as_bytes());
            self.vm.count("pqguard.pin_violations", 1);
            self.alert(
                "pin_violation",
                &format!("tool {name:?} definition digest {digest} differs from its pin"),
            );
        }
        self.vm.count(
            "pqguard.tools_removed",
            i64::try_from(removed).unwrap_or(i64::MAX),
        );
        removed
    }

    /// A `tools/list` answer that cannot be read is replaced by a JSON-RPC
    /// error (fail closed: never show a list pqguard could not check). The
    /// response headers are already on their way, so the status stays.
    fn fail_answer(&mut self, format: ResponseFormat, id: &str, size: usize, why: &str) -> Action {
        host::log(
            LogLevel::Warn,
            &format!("pqguard: tools/list answer refused: {why}"),
        );
        let body = wire::answer_error_body(id, format == ResponseFormat::EventStream);
        if let Err(e) = host::replace_response_body(size, &body) {
            host::log(LogLevel::Error, &format!("pqguard: {e}"));
        }
        self.answer = Answer::Discard;
        Action::Continue
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.started_ms = host::now_millis();
        self.facts = host::crypto_facts(&self.vm.config);
        self.mtls = host::mtls();
        self.count_inventory();
        let (head, refusal) = host::request_head();
        self.head = head;
        if let Some(rejection) = refusal {
            return self.refuse(rejection);
        }
        self.head.has_body = !end_of_stream;
        if self.vm.audit_blocks() {
            return self.refuse(Rejection::new(
                Reason::AuditUnavailable,
                "strict audit: the collector is failing or its queue is full",
            ));
        }
        if let Some(reply) = self.metadata_reply() {
            self.send(&reply);
            self.phase = Phase::Refused;
            return Action::Pause;
        }
        let early = self.authenticate().and_then(|()| self.check_downgrade());
        if let Err(rejection) = early {
            let inspectable = self.head.http_method == "POST"
                && matches!(
                    request::check_head(&self.vm.config, &self.head),
                    HeadVerdict::InspectBody
                );
            if inspectable && !end_of_stream {
                // Hold the request and read the body for its id; nothing is forwarded.
                self.pending = Some(rejection);
                self.phase = Phase::Buffering;
                return Action::Pause;
            }
            return self.refuse(rejection);
        }
        match request::check_head(&self.vm.config, &self.head) {
            HeadVerdict::Forward => {
                // No MCP message to decide on (GET stream, DELETE), but the
                // transport gates still apply when a policy is configured.
                if self.vm.config.policy.is_some() {
                    let facts = self.policy_facts();
                    if let Some(d) = self.vm.config.connectivity.gate(&facts) {
                        let mut r = Rejection::new(Reason::Forbidden, d.detail);
                        r.code = Some(d.reason.as_str());
                        return self.refuse(r);
                    }
                }
                self.forward(Self::record)
            }
            HeadVerdict::Reject(rejection) => self.refuse(rejection),
            HeadVerdict::InspectBody if end_of_stream => self.decide(),
            HeadVerdict::InspectBody => {
                self.phase = Phase::Buffering;
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.phase {
            Phase::Buffering => {}
            Phase::Refused => return Action::Pause,
            Phase::Head | Phase::Decided => return Action::Continue,
        }
        self.body_size = body_size;
        if let Err(rejection) = request::check_body_size(&self.vm.config, body_size as u64) {
            // A refusal decided on the headers takes precedence.
            let rejection = self.pending.take().unwrap_or(rejection);
            return self.refuse(rejection);
        }
        if end_of_stream {
            self.decide()
        } else {
            Action::Pause
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Over HTTP/2 a body followed by trailers may never report
        // end_of_stream in the body callback: the trailers end the body.
        match self.phase {
            Phase::Buffering => self.decide(),
            Phase::Refused => Action::Pause,
            Phase::Head | Phase::Decided => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.phase == Phase::Decided && self.vm.config.audit.is_some() {
            let status = host::response_header(":status").and_then(|s| s.parse().ok());
            self.write_audit(status);
        }
        if self.phase == Phase::Decided && self.vm.config.connectivity.alert_on_latency_spike {
            if let Some(cluster) = host::cluster_name() {
                let ms = host::now_millis().saturating_sub(self.started_ms) as f64;
                if let Some(baseline) = self.vm.observe_latency(&cluster, ms) {
                    self.vm.count("pqguard.latency_alerts", 1);
                    self.alert(
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
        let status = host::response_header(":status");
        let format = host::response_header("content-type")
            .as_deref()
            .and_then(ResponseFormat::of_content_type);
        match (status.as_deref(), format) {
            (Some("200"), Some(format)) if !end_of_stream => {
                // The answer may be rewritten, so its length is not known yet.
                if let Err(e) = host::remove_response_header("content-length") {
                    host::log(LogLevel::Error, &format!("pqguard: {e}"));
                }
                self.answer = Answer::Buffering(format, id.clone());
            }
            _ => self.answer = Answer::PassThrough,
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.answer == Answer::Discard {
            if let Err(e) = host::replace_response_body(body_size, b"") {
                host::log(LogLevel::Error, &format!("pqguard: {e}"));
            }
            return Action::Continue;
        }
        let Answer::Buffering(format, id) = &self.answer else {
            return Action::Continue;
        };
        let (format, id) = (*format, id.clone());
        if body_size as u64 > self.vm.config.max_response_bytes {
            return self.fail_answer(format, &id, body_size, "answer exceeds the response cap");
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = match host::response_body(body_size) {
            Ok(b) => b,
            Err(e) => return self.fail_answer(format, &id, body_size, &e.to_string()),
        };
        let cap = usize::try_from(self.vm.config.max_response_bytes).unwrap_or(usize::MAX);
        let mut parsed = match ToolsListBody::parse(format, &body, &id, cap) {
            Ok(p) => p,
            Err(e) => return self.fail_answer(format, &id, body_size, &e.to_string()),
        };
        let offered: Vec<String> = parsed
            .answer
            .tools()
            .iter()
            .map(|t| {
                format!(
                    "{{\"name\":{},\"digest\":\"{}\"}}",
                    json_string(&t.name),
                    t.digest_hex()
                )
            })
            .collect();
        let invalid = self.learn_param_headers(&parsed);
        let removed = self.filter_tools(&mut parsed, &invalid);
        let kept: Vec<String> = parsed.answer.names().into_iter().map(json_string).collect();
        host::log(
            LogLevel::Info,
            &format!(
                "{TOOLS_MARKER} {{\"id\":{id},\"tools\":[{}],\"visible\":[{}],\"removed\":{removed}}}",
                offered.join(","),
                kept.join(",")
            ),
        );
        if removed > 0 {
            if let Err(e) = host::replace_response_body(body_size, &parsed.to_bytes()) {
                return self.fail_answer(format, &id, body_size, &e.to_string());
            }
        }
        self.answer = Answer::PassThrough;
        Action::Continue
    }

    fn on_log(&mut self) {
        // A forwarded request whose response never started (reset, timeout).
        self.write_audit(None);
    }
}
