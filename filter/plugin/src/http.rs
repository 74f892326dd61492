//! The per-request context: reads host facts, hands them to the engine's
//! [`Exchange`], and carries out the [`EngineAction`] it returns (forward,
//! hold, read a body, send a local reply, rewrite the answer). Every
//! decision is the engine's.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use pqguard_core::engine::{
    Action as EngineAction, ConnectionFacts, Effects, Exchange, RequestStart, ResponseStart,
};

use crate::host;
use crate::vm::{SharedData, Vm};

/// Per-request context.
pub struct RequestContext {
    vm: Rc<Vm>,
    exchange: Exchange,
}

impl RequestContext {
    /// A context for one request.
    pub fn new(vm: Rc<Vm>) -> Self {
        Self {
            vm,
            exchange: Exchange::new(),
        }
    }

    /// Carries out an engine action and the effects gathered with it;
    /// actions that read a body feed it back to the engine.
    fn act(&mut self, action: EngineAction, mut out: Effects) -> Action {
        let action = match action {
            EngineAction::ReadRequestBody(n) => {
                let body = host::request_body(n).map_err(|e| e.to_string());
                let mut worker = self.vm.worker.borrow_mut();
                self.exchange.request_body(
                    &mut worker,
                    &SharedData,
                    body.as_deref().map_err(Clone::clone),
                    &mut out,
                )
            }
            EngineAction::ReadResponseBody(n) => {
                let body = host::response_body(n).map_err(|e| e.to_string());
                let mut worker = self.vm.worker.borrow_mut();
                self.exchange.response_body(
                    &mut worker,
                    &SharedData,
                    n,
                    body.as_deref().map_err(Clone::clone),
                    &mut out,
                )
            }
            other => other,
        };
        let action = self.execute(action, &mut out);
        self.vm.run(out);
        action
    }

    /// Executes an action that needs no further input from the engine
    /// (a body read's outcome never asks for another read).
    fn execute(&mut self, action: EngineAction, out: &mut Effects) -> Action {
        match action {
            EngineAction::Continue => Action::Continue,
            EngineAction::Pause
            | EngineAction::ReadRequestBody(_)
            | EngineAction::ReadResponseBody(_) => Action::Pause,
            EngineAction::Reply(reply) => {
                if let Err(e) = host::send_reply(&reply) {
                    host::log(
                        LogLevel::Error,
                        &format!("pqguard: cannot send local reply: {e}"),
                    );
                }
                Action::Pause
            }
            EngineAction::DropResponseHeaders(names) => {
                for name in names {
                    if let Err(e) = host::remove_response_header(name) {
                        host::log(LogLevel::Error, &format!("pqguard: {e}"));
                    }
                }
                Action::Continue
            }
            EngineAction::ReplaceResponseContentType(value) => {
                for name in ["content-length", "content-encoding"] {
                    if let Err(e) = host::remove_response_header(name) {
                        host::log(LogLevel::Error, &format!("pqguard: {e}"));
                    }
                }
                // Should this fail, the body is still replaced by the error.
                if let Err(e) = host::set_response_header("content-type", value) {
                    host::log(LogLevel::Error, &format!("pqguard: {e}"));
                }
                Action::Continue
            }
            EngineAction::ContinueWithRequestHeader(name, value) => {
                // Should this fail, a compressed answer is refused on arrival.
                if let Err(e) = host::set_request_header(name, value) {
                    host::log(LogLevel::Error, &format!("pqguard: {e}"));
                }
                Action::Continue
            }
            EngineAction::ReplaceResponseBody { size, body } => {
                match host::replace_response_body(size, &body) {
                    Ok(()) => self.exchange.replaced(),
                    Err(e) => {
                        let next = self.exchange.replace_failed(size, &e.to_string(), out);
                        if let EngineAction::ReplaceResponseBody { size, body } = next {
                            if let Err(e) = host::replace_response_body(size, &body) {
                                host::log(LogLevel::Error, &format!("pqguard: {e}"));
                            }
                        }
                    }
                }
                Action::Continue
            }
        }
    }
}

impl RequestContext {
    /// The downstream connection's TLS facts: read from the host on its
    /// first request, then from the worker's [`ConnectionCache`]
    /// (`pqguard_core::engine`), which says why that is sound. Four
    /// property reads fewer per request on a reused connection.
    fn connection_facts(&self) -> ConnectionFacts {
        let id = host::connection_id();
        if let Some(known) = id.and_then(|id| self.vm.worker.borrow().connections.get(id).cloned())
        {
            return known;
        }
        let (group_key, cipher_key) = {
            let worker = self.vm.worker.borrow();
            let config = worker.config();
            (config.tls_group_key.clone(), config.tls_cipher_key.clone())
        };
        let mtls = host::mtls();
        let facts = ConnectionFacts {
            tls_version: host::tls_version(),
            tls_group: host::filter_state(&group_key),
            tls_cipher: host::filter_state(&cipher_key),
            mtls,
            peer_certificate_digest: mtls.then(host::peer_certificate_digest).flatten(),
        };
        if let Some(id) = id {
            self.vm
                .worker
                .borrow_mut()
                .connections
                .insert(id, facts.clone());
        }
        facts
    }
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(all(feature = "fault-injection", target_arch = "wasm32"))]
        if matches!(
            proxy_wasm::hostcalls::get_map_value_bytes(
                proxy_wasm::types::MapType::HttpRequestHeaders,
                "x-pqguard-fault"
            ),
            Ok(Some(v)) if v == b"trap"
        ) {
            core::arch::wasm32::unreachable();
        }
        let facts = self.connection_facts();
        let start = {
            let worker = self.vm.worker.borrow();
            RequestStart {
                headers: host::request_headers().map_err(|e| e.to_string()),
                end_of_stream,
                now_ms: host::now_millis(),
                connection: facts,
                request_id: worker.wants_request_id().then(host::request_id).flatten(),
            }
        };
        let mut out = Effects::new();
        let action = {
            let mut worker = self.vm.worker.borrow_mut();
            let action = self
                .exchange
                .request_head(&mut worker, &SharedData, start, &mut out);
            // After each binding, fresh host entropy for the next one (a
            // bind request that finds none is refused).
            if worker.wants_random() {
                if let Some(seed) = host::random32() {
                    worker.seed_random(&seed);
                }
            }
            action
        };
        let mut action = action;
        let payload = self
            .exchange
            .request_payload_header(&self.vm.worker.borrow())
            .map(|(name, value)| (name.to_owned(), value));
        if let Some((name, value)) = payload {
            let done = match &value {
                Some(v) => host::set_request_header(&name, v),
                None => host::remove_request_header(&name),
            };
            if let Err(e) = done {
                action = self.exchange.header_removal_failed(
                    &mut self.vm.worker.borrow_mut(),
                    &name,
                    &e.to_string(),
                    &mut out,
                );
            }
        }
        let remove = self
            .exchange
            .request_headers_to_remove(&self.vm.worker.borrow());
        for name in remove.into_iter().flatten() {
            if let Err(e) = host::remove_request_header(name) {
                // Never forward a token or proof the configuration keeps back.
                action = self.exchange.header_removal_failed(
                    &mut self.vm.worker.borrow_mut(),
                    name,
                    &e.to_string(),
                    &mut out,
                );
                break;
            }
        }
        self.act(action, out)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut out = Effects::new();
        let action = {
            let mut worker = self.vm.worker.borrow_mut();
            self.exchange
                .request_body_progress(&mut worker, body_size, end_of_stream, &mut out)
        };
        self.act(action, out)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let action = self.exchange.request_trailers();
        self.act(action, Effects::new())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let wants = self.exchange.response_wants(&self.vm.worker.borrow());
        let start = ResponseStart {
            status: wants
                .status
                .then(|| host::response_header(":status"))
                .flatten(),
            content_type: wants
                .content_type
                .then(|| host::response_header("content-type"))
                .flatten(),
            content_encoding: wants
                .content_type
                .then(|| host::response_header("content-encoding"))
                .flatten(),
            end_of_stream,
            now_ms: wants.time.then(host::now_millis).flatten(),
            cluster: wants.cluster.then(host::cluster_name).flatten(),
        };
        let mut out = Effects::new();
        let action = {
            let mut worker = self.vm.worker.borrow_mut();
            self.exchange.response_head(&mut worker, start, &mut out)
        };
        self.act(action, out)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut out = Effects::new();
        let action = self.exchange.response_body_progress(
            &self.vm.worker.borrow(),
            body_size,
            end_of_stream,
            &mut out,
        );
        self.act(action, out)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let mut out = Effects::new();
        let action = self
            .exchange
            .response_trailers(&self.vm.worker.borrow(), &mut out);
        self.act(action, out)
    }

    fn on_log(&mut self) {
        if !self.exchange.finish_wants_time() {
            return;
        }
        let mut out = Effects::new();
        self.exchange.finish(
            &mut self.vm.worker.borrow_mut(),
            host::now_millis(),
            &mut out,
        );
        self.vm.run(out);
    }
}
