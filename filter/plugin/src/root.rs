//! The root context of a VM: starts the engine's [`Worker`] from the
//! configuration, runs its timer work (checkpoints, audit shipping, remote
//! JWKS refresh) and dispatches the calls it asks for.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use pqguard_core::engine::{Call, CallAnswer, Effects, Worker};

use crate::host;
use crate::http::RequestContext;
use crate::vm::{run_logs, SharedData, Vm};

/// Per-VM root context.
#[derive(Default)]
pub struct Root {
    vm: Option<Rc<Vm>>,
    /// The timer period in force (ms), if any.
    tick_ms: Option<u64>,
    /// `pqguard.vm.memory_bytes`: the linear memory of the VM whose timer
    /// ran last (the VMs of one plugin are alike), set on every tick.
    memory_gauge: Option<u32>,
    /// The host is removing this plugin (a new configuration, Envoy
    /// stopping): the last audit lines are being shipped before
    /// `proxy_done`.
    stopping: bool,
    /// The last batch went out (it is tried once).
    last_sent: bool,
}

/// Starts one of the worker's outbound calls and tells the worker how that went.
fn dispatch(vm: &Vm, call: &Call, now: u64, out: &mut Effects) {
    let result = host::dispatch(
        &call.cluster,
        &call.headers,
        call.body.as_deref(),
        call.timeout_ms,
    )
    .map_err(|e| e.to_string());
    vm.worker
        .borrow_mut()
        .dispatched(call.kind, result, now, out);
}

impl Root {
    /// Asks the host for the timer period the worker wants.
    fn set_timer(&mut self) {
        let Some(vm) = &self.vm else { return };
        let want = vm.worker.borrow().tick_period_ms();
        if want != self.tick_ms {
            host::set_tick(Duration::from_millis(want.unwrap_or(0)));
            self.tick_ms = want;
        }
    }
}

impl Root {
    /// While stopping: sends the last audit batch if one is due; `true`
    /// when nothing is left to wait for.
    fn ship_last(&mut self, now: u64, out: &mut Effects) -> bool {
        let Some(vm) = self.vm.clone() else {
            return true;
        };
        let call = if self.last_sent {
            None
        } else {
            vm.worker.borrow_mut().last_audit_call()
        };
        if let Some(call) = call {
            self.last_sent = true;
            dispatch(&vm, &call, now, out);
        }
        let waiting = vm.worker.borrow().audit_in_flight();
        !waiting
    }
}

impl Context for Root {
    /// The host removes this plugin: sign the chain's tail and ship what is
    /// still queued (one try) before telling the host it may go.
    fn on_done(&mut self) -> bool {
        let (Some(vm), Some(now)) = (self.vm.clone(), host::now_millis()) else {
            return true;
        };
        let mut out = Effects::new();
        vm.worker.borrow_mut().stop(now, &mut out);
        self.stopping = true;
        let done = self.ship_last(now, &mut out);
        vm.run(out);
        done
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(vm) = self.vm.clone() else { return };
        let answer = CallAnswer {
            status: host::call_response_header(":status"),
            cache_control: host::call_response_header("cache-control"),
            body: host::call_response_body(body_size),
        };
        let Some(now) = host::now_millis() else {
            host::log(
                LogLevel::Error,
                "pqguard: host clock unavailable; call answer dropped",
            );
            return;
        };
        let mut out = Effects::new();
        vm.worker
            .borrow_mut()
            .answered(token_id, &answer, now, &SharedData, &mut out);
        if self.stopping {
            // The batch that was out has its answer: ship the rest once,
            // then let the host delete this context.
            let done = self.ship_last(now, &mut out);
            vm.run(out);
            if done {
                let _ = proxy_wasm::hostcalls::done();
            }
            return;
        }
        vm.run(out);
        self.set_timer();
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
        let mut out = Effects::new();
        let started = Worker::start(
            &bytes,
            host::now_millis(),
            host::random8(),
            &SharedData,
            &mut out,
        );
        match started {
            Ok(mut worker) => {
                worker.set_info_logged(host::info_logged());
                if worker.wants_random() {
                    // Without it every bind request is refused (500).
                    match host::random32() {
                        Some(seed) => worker.seed_random(&seed),
                        None => host::log(
                            LogLevel::Error,
                            "pqguard: no randomness from the host; bind requests will be refused",
                        ),
                    }
                }
                let vm = Rc::new(Vm::new(worker));
                vm.run(out);
                self.vm = Some(vm);
                self.tick_ms = None;
                self.set_timer();
                true
            }
            Err(e) => {
                run_logs(out.logs);
                // Returning false makes Envoy reject the configuration.
                host::log(LogLevel::Error, &format!("pqguard: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(vm) = self.vm.clone() else { return };
        let Some(now) = host::now_millis() else {
            host::log(
                LogLevel::Error,
                "pqguard: host clock unavailable; timer work skipped",
            );
            return;
        };
        if self.memory_gauge.is_none() {
            self.memory_gauge = host::define_gauge("pqguard.vm.memory_bytes");
        }
        if let (Some(gauge), Some(bytes)) = (self.memory_gauge, host::vm_memory_bytes()) {
            host::set_gauge(gauge, bytes);
        }
        let mut out = Effects::new();
        vm.worker.borrow_mut().set_info_logged(host::info_logged());
        let calls = vm.worker.borrow_mut().tick(now, &SharedData, &mut out);
        for call in &calls {
            dispatch(&vm, call, now, &mut out);
        }
        vm.run(out);
        self.set_timer();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.clone()?;
        Some(Box::new(RequestContext::new(vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
