//! # pqguard.wasm
//!
//! The proxy-wasm shim of pqguard. It is the only crate that talks to the
//! host: it copies request facts out of Envoy ([`host`]), hands them to
//! `pqguard-core`, and carries the core's decision back (forward, or a local
//! reply built by `pqguard_core::wire`). No MCP, crypto or policy logic lives
//! here.
//!
//! Failure handling: every host call's error is turned into a refusal
//! (fail closed). A panic is logged by the hook installed at start; with
//! `failure_policy: FAIL_CLOSED` Envoy then answers 503 instead of
//! forwarding uninspected traffic.

mod host;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use pqguard_core::config::Config;
use pqguard_core::crypto::CryptoFacts;
use pqguard_core::record::{RequestRecord, REQUEST_MARKER, START_MARKER, TOOLS_MARKER};
use pqguard_core::reject::{Reason, Rejection};
use pqguard_core::request::{self, HeadVerdict, RequestHead};
use pqguard_core::response::{ResponseFormat, ToolsListBody};
use pqguard_core::wire;

/// The proxy-wasm ABI entry point. This is the one place in pqguard where
/// `unsafe` code exists: the SDK's `main!` macro exports `_initialize` with
/// `#[no_mangle]` and calls the WASI constructors.
#[allow(unsafe_code)]
mod entry {
    use super::*;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        std::panic::set_hook(Box::new(|info| {
            host::log(LogLevel::Critical, &format!("pqguard: panic, failing closed: {info}"));
        }));
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
    }}
}

/// Per-VM root context: owns the compiled configuration.
#[derive(Default)]
struct Root {
    config: Rc<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match host::plugin_configuration(plugin_configuration_size) {
            Ok(b) => b,
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("pqguard: cannot read configuration: {e}"),
                );
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                self.config = Rc::new(config);
                host::log(
                    LogLevel::Info,
                    &format!(
                        "{START_MARKER} {{\"version\":\"{}\",\"max_body_bytes\":{}}}",
                        pqguard_core::VERSION,
                        self.config.max_body_bytes
                    ),
                );
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject the configuration.
                host::log(LogLevel::Error, &format!("pqguard: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request::new(Rc::clone(&self.config))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

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
struct Request {
    config: Rc<Config>,
    head: RequestHead,
    facts: CryptoFacts,
    phase: Phase,
    /// Body bytes buffered so far (cumulative, as Envoy reports it).
    body_size: usize,
    answer: Answer,
}

impl Request {
    fn new(config: Rc<Config>) -> Self {
        Self {
            config,
            head: RequestHead::default(),
            facts: CryptoFacts::default(),
            phase: Phase::Head,
            body_size: 0,
            answer: Answer::PassThrough,
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
        match request::inspect_body(&self.config, &self.head, &body) {
            Ok(inspected) => {
                let record = RequestRecord::new(&self.head, &self.facts).with_inspected(&inspected);
                if let (false, Some(m)) = (inspected.batch, inspected.messages.first()) {
                    if let (Some("tools/list"), Some(id)) = (m.method.as_deref(), m.id) {
                        self.answer = Answer::ToolsList(id.to_owned());
                    }
                }
                self.forward(&record)
            }
            Err(rejection) => self.refuse(rejection),
        }
    }

    fn forward(&mut self, record: &RequestRecord) -> Action {
        host::log(
            LogLevel::Info,
            &format!("{REQUEST_MARKER} {}", record.to_json()),
        );
        self.phase = Phase::Decided;
        Action::Continue
    }

    fn refuse(&mut self, rejection: Rejection) -> Action {
        let record = RequestRecord::new(&self.head, &self.facts).with_rejection(&rejection);
        host::log(
            LogLevel::Info,
            &format!("{REQUEST_MARKER} {}", record.to_json()),
        );
        let reply = wire::local_reply(&rejection);
        if let Err(e) = host::send_reply(&reply) {
            host::log(
                LogLevel::Error,
                &format!("pqguard: cannot send local reply: {e}"),
            );
        }
        self.phase = Phase::Refused;
        Action::Pause
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.facts = host::crypto_facts(&self.config);
        self.head = match host::request_head() {
            Ok(head) => head,
            Err(rejection) => return self.refuse(rejection),
        };
        self.head.has_body = !end_of_stream;
        match request::check_head(&self.config, &self.head) {
            HeadVerdict::Forward => {
                let record = RequestRecord::new(&self.head, &self.facts);
                self.forward(&record)
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
        if let Err(rejection) = request::check_body_size(&self.config, body_size as u64) {
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
        if body_size as u64 > self.config.max_response_bytes {
            let (format, id) = (*format, id.clone());
            return self.fail_answer(format, &id, body_size, "answer exceeds the response cap");
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let (format, id) = (*format, id.clone());
        let body = match host::response_body(body_size) {
            Ok(b) => b,
            Err(e) => return self.fail_answer(format, &id, body_size, &e.to_string()),
        };
        let cap = usize::try_from(self.config.max_response_bytes).unwrap_or(usize::MAX);
        match ToolsListBody::parse(format, &body, &id, cap) {
            Ok(parsed) => {
                let tools: Vec<String> = parsed
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
                host::log(
                    LogLevel::Info,
                    &format!(
                        "{TOOLS_MARKER} {{\"id\":{id},\"tools\":[{}]}}",
                        tools.join(",")
                    ),
                );
                self.answer = Answer::PassThrough;
                Action::Continue
            }
            Err(e) => self.fail_answer(format, &id, body_size, &e.to_string()),
        }
    }
}

impl Request {
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

/// A JSON string literal.
fn json_string(s: &str) -> String {
    pqguard_core::record::json_string(s)
}
