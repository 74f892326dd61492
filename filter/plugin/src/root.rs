//! The root context of a VM: compiles the configuration, keeps the key set
//! fresh (remote JWKS fetched through an Envoy cluster on a timer), and
//! hands each request its per-VM state.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use pqguard_core::audit::{batch_body, Chain};
use pqguard_core::auth;
use pqguard_core::config::Config;
use pqguard_core::record::{json_string, START_MARKER};
use pqguard_core::token::KeySet;

use crate::host;
use crate::http::Request;
use crate::vm::{AuditState, Vm, JWKS_MARKER};

/// The timer period in steady state (checkpoints, collector, JWKS).
const TICK: Duration = Duration::from_millis(500);

/// The timer period while a VM with a remote JWKS has no key set yet.
const FAST_TICK: Duration = Duration::from_millis(100);

/// Per-VM root context.
#[derive(Default)]
pub struct Root {
    vm: Option<Rc<Vm>>,
    /// When the next JWKS fetch is due (ms since the epoch).
    next_fetch_ms: u64,
    /// The token of the call in flight, if any.
    in_flight: Option<u32>,
    /// Consecutive failed fetches (for back-off).
    failures: u32,
    /// The audit batch in flight to the collector: call token and lines.
    audit_in_flight: Option<(u32, Vec<String>)>,
    /// When the audit queue is next flushed (ms since the epoch).
    next_flush_ms: u64,
    /// The timer runs at [`FAST_TICK`] until a key set is installed.
    fast_tick: bool,
}

impl Root {
    fn schedule(&mut self, now_ms: u64, seconds: u64) {
        self.next_fetch_ms = now_ms.saturating_add(seconds.saturating_mul(1000));
    }

    fn fetch_failed(&mut self, vm: &Vm, refresh: u64, why: &str) {
        self.failures = self.failures.saturating_add(1);
        vm.count("pqguard.jwks.fetch_failed", 1);
        // Back off 2, 4, 8 … seconds, never beyond the refresh interval;
        // the last good key set stays in force meanwhile.
        let backoff = 1u64 << self.failures.min(8);
        let now = host::now_millis();
        self.schedule(now, backoff.min(refresh));
        host::log(
            LogLevel::Warn,
            &format!(
                "{JWKS_MARKER} {{\"outcome\":\"fetch_failed\",\"reason\":{},\"retry_in_s\":{}}}",
                json_string(why),
                backoff.min(refresh)
            ),
        );
    }
}

impl Root {
    /// Ships a batch of audit lines when the queue is ready.
    fn flush_audit(&mut self, vm: &Vm, now: u64) {
        let Some(collector) = vm.config.audit.as_ref().and_then(|a| a.collector.clone()) else {
            return;
        };
        if self.audit_in_flight.is_some() || now < self.next_flush_ms {
            return;
        }
        self.next_flush_ms = now.saturating_add(collector.flush_ms);
        let batch = {
            let mut audit = vm.audit.borrow_mut();
            let Some(queue) = audit.as_mut().and_then(|a| a.queue.as_mut()) else {
                return;
            };
            queue.take_batch(collector.max_batch, now)
        };
        if batch.is_empty() {
            return;
        }
        let body = batch_body(&batch);
        match host::dispatch_post(
            &collector.cluster,
            &collector.authority,
            &collector.path,
            &body,
            collector.timeout_ms,
        ) {
            Ok(token) => self.audit_in_flight = Some((token, batch)),
            Err(e) => {
                vm.count("pqguard.audit.ship_failed", 1);
                host::log(LogLevel::Warn, &format!("pqguard: audit collector: {e}"));
                if let Some(q) = vm
                    .audit
                    .borrow_mut()
                    .as_mut()
                    .and_then(|a| a.queue.as_mut())
                {
                    q.failed(batch, now);
                }
            }
        }
    }

    /// The collector answered (or the call failed).
    fn audit_answer(&mut self, vm: &Vm, batch: Vec<String>) {
        let status = host::call_response_header(":status");
        let ok = status.as_deref().is_some_and(|s| s.starts_with('2'));
        let now = host::now_millis();
        let n = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        let retry = {
            let mut audit = vm.audit.borrow_mut();
            let Some(queue) = audit.as_mut().and_then(|a| a.queue.as_mut()) else {
                return;
            };
            if ok {
                queue.delivered();
                None
            } else {
                Some(queue.failed(batch, now))
            }
        };
        match retry {
            None => vm.count("pqguard.audit.shipped", n),
            Some(at) => {
                vm.count("pqguard.audit.ship_failed", 1);
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "pqguard: audit collector answered {}; retry at {at}",
                        status.as_deref().unwrap_or("nothing (timeout or reset)")
                    ),
                );
            }
        }
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // A last checkpoint so the chain's tail is signed when the VM stops.
        if let Some(vm) = self.vm.clone() {
            let line = vm
                .audit
                .borrow_mut()
                .as_mut()
                .and_then(|a| a.chain.checkpoint(host::now_millis()));
            if let Some(line) = line {
                vm.emit_audit(vec![line]);
            }
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some((token, batch)) = self.audit_in_flight.take() {
            if token == token_id {
                if let Some(vm) = self.vm.clone() {
                    self.audit_answer(&vm, batch);
                }
                return;
            }
            self.audit_in_flight = Some((token, batch));
        }
        if self.in_flight != Some(token_id) {
            return;
        }
        self.in_flight = None;
        let Some(vm) = self.vm.clone() else { return };
        let Some(remote) = vm.config.auth.as_ref().and_then(|a| a.remote.clone()) else {
            return;
        };
        let status = host::call_response_header(":status");
        if status.as_deref() != Some("200") {
            let why = format!(
                "status {}",
                status.as_deref().unwrap_or("none (timeout or reset)")
            );
            return self.fetch_failed(&vm, remote.refresh_seconds, &why);
        }
        let body = host::call_response_body(body_size);
        let now = host::now_millis();
        match KeySet::parse(&body) {
            Ok(keys) => {
                self.failures = 0;
                let changed = vm
                    .keys
                    .borrow()
                    .as_ref()
                    .map(|k| k.id() != keys.id())
                    .unwrap_or(true);
                vm.publish_keys(&body);
                if changed {
                    vm.install_keys(keys, "fetched");
                }
                vm.count("pqguard.jwks.fetch_ok", 1);
                let refresh = auth::refresh_after(
                    host::call_response_header("cache-control").as_deref(),
                    remote.refresh_seconds,
                );
                self.schedule(now, refresh);
            }
            Err(e) => {
                // A bad key set never replaces a good one.
                vm.count("pqguard.jwks.rejected", 1);
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "{JWKS_MARKER} {{\"outcome\":\"rejected\",\"reason\":{}}}",
                        json_string(&e.to_string())
                    ),
                );
                self.failures = self.failures.saturating_add(1);
                let backoff = 1u64 << self.failures.min(8);
                self.schedule(now, backoff.min(remote.refresh_seconds));
            }
        }
    }
}

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
        let config = match Config::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Returning false makes Envoy reject the configuration.
                host::log(LogLevel::Error, &format!("pqguard: {e}"));
                return false;
            }
        };
        let remote = config.auth.as_ref().is_some_and(|a| a.remote.is_some());
        let audit_settings = config.audit.clone();
        let vm = Rc::new(Vm::new(config));
        if let Some(settings) = audit_settings {
            let now = host::now_millis();
            let Some(nonce) = host::random_hex8() else {
                host::log(
                    LogLevel::Error,
                    "pqguard: audit: no randomness for the chain id",
                );
                return false;
            };
            let chain_id = format!("{now}-{nonce}");
            match Chain::new(
                &chain_id,
                &bytes,
                now,
                now,
                settings.policy,
                settings.signer.clone(),
            ) {
                Ok((chain, lines)) => {
                    *vm.audit.borrow_mut() = Some(AuditState {
                        chain,
                        queue: settings.collector.as_ref().map(|c| c.queue()),
                    });
                    vm.emit_audit(lines);
                }
                Err(e) => {
                    host::log(LogLevel::Error, &format!("pqguard: audit: {e}"));
                    return false;
                }
            }
        }
        host::log(
            LogLevel::Info,
            &format!(
                "{START_MARKER} {{\"version\":{},\"build\":{},\"max_body_bytes\":{},\"policy\":{},\"auth\":{},\"remote_jwks\":{}}}",
                json_string(pqguard_core::VERSION),
                json_string(pqguard_core::BUILD),
                vm.config.max_body_bytes,
                vm.config.policy.is_some(),
                vm.config.auth.is_some(),
                remote
            ),
        );
        self.vm = Some(vm);
        self.in_flight = None;
        self.failures = 0;
        self.next_fetch_ms = 0;
        self.audit_in_flight = None;
        self.next_flush_ms = 0;
        // A configuration change starts new VMs: they take the key set the
        // previous ones fetched, rather than answer 401 until their fetch.
        if let Some(vm) = &self.vm {
            vm.adopt_shared_keys();
        }
        self.fast_tick = remote && self.vm.as_ref().is_some_and(|v| v.keys.borrow().is_none());
        if self.fast_tick {
            host::set_tick(FAST_TICK);
        } else if remote || vm_has_audit(self.vm.as_deref()) {
            host::set_tick(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let now = host::now_millis();
        // Checkpoints are signed here, between requests, never while one
        // is handled.
        vm.audit_tick(now);
        self.flush_audit(&vm, now);
        if self.fast_tick {
            vm.adopt_shared_keys();
            if vm.keys.borrow().is_some() {
                self.fast_tick = false;
                host::set_tick(TICK);
            }
        }
        let Some(remote) = vm.config.auth.as_ref().and_then(|a| a.remote.clone()) else {
            return;
        };
        let now = host::now_millis();
        // A call in flight keeps `next_fetch_ms` past its timeout, so a lost
        // answer cannot stop the refreshes.
        if now < self.next_fetch_ms {
            return;
        }
        match host::dispatch_get(
            &remote.cluster,
            &remote.authority,
            &remote.path,
            remote.timeout_ms,
        ) {
            Ok(token) => {
                self.in_flight = Some(token);
                // If the answer never comes, try again after the timeout.
                self.schedule(now, remote.timeout_ms / 1000 + 1);
            }
            Err(e) => self.fetch_failed(&vm, remote.refresh_seconds, &e.to_string()),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.clone()?;
        Some(Box::new(Request::new(vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn vm_has_audit(vm: Option<&Vm>) -> bool {
    vm.is_some_and(|v| v.config.audit.is_some())
}
