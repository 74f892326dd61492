//! The root context of a VM: compiles the configuration, keeps the key set
//! fresh (remote JWKS fetched through an Envoy cluster on a timer), and
//! hands each request its per-VM state.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use pqguard_core::auth;
use pqguard_core::config::Config;
use pqguard_core::record::{json_string, START_MARKER};
use pqguard_core::token::KeySet;
use pqguard_core::tools::hex;

use crate::host;
use crate::http::Request;
use crate::vm::Vm;

/// Marker of the line logged when a key set is installed or refused.
pub const JWKS_MARKER: &str = "pqguard.jwks";

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

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
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
                let line = format!(
                    "{JWKS_MARKER} {{\"outcome\":\"installed\",\"keys\":{},\"skipped\":{},\"id\":\"{}\",\"kids\":[{}]}}",
                    keys.keys().len(),
                    keys.skipped().len(),
                    hex(keys.id()),
                    keys.keys().iter().map(|k| json_string(k.kid().unwrap_or(""))).collect::<Vec<_>>().join(",")
                );
                let changed = vm
                    .keys
                    .borrow()
                    .as_ref()
                    .map(|k| k.id() != keys.id())
                    .unwrap_or(true);
                if changed {
                    vm.install_keys(keys);
                    host::log(LogLevel::Info, &line);
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
        let vm = Rc::new(Vm::new(config));
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
        if remote {
            host::set_tick(Duration::from_millis(500));
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
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
