//! # pqguard.wasm
//!
//! The proxy-wasm shim of pqguard. It is the only crate that talks to the
//! host: it copies request facts out of Envoy ([`host`]), hands them to
//! `pqguard-core` for every decision, and carries the decisions back
//! (forward, a local reply built by `pqguard_core::wire`, or a rewritten
//! `tools/list` answer). No MCP, token, crypto or policy logic lives here.
//!
//! - [`root`]: per-VM root context: configuration, remote JWKS refresh.
//! - [`http`]: per-request context: the phases of a request.
//! - [`vm`]: per-VM state (keys, token cache, metrics) and shared data
//!   (per-identity state across workers, pinned-tool state).
//! - [`host`]: typed access to host calls.
//!
//! Failure handling: every host call's error is turned into a refusal or
//! a logged, counted event (fail closed). A panic is logged by the hook
//! installed at start; with `failure_policy: FAIL_CLOSED` Envoy then
//! answers 503 instead of forwarding uninspected traffic.

pub mod host;
pub mod http;
pub mod root;
pub mod vm;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

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
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::<root::Root>::default() });
    }}
}
