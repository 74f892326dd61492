//! # pqguard.wasm
//!
//! The proxy-wasm shim of pqguard: an I/O shell around the engine in
//! `pqguard-core` (`pqguard_core::engine`). It reads host facts, calls the
//! engine, and executes what the engine returns (continue, hold, read a
//! body, send a local reply, rewrite an answer, counters, log lines,
//! outbound calls). It decides nothing about MCP, tokens, crypto or policy.
//!
//! - [`root`]: per-VM root context: configuration, timer, outbound calls.
//! - [`http`]: per-request context: feeds the engine's `Exchange`.
//! - [`vm`]: the engine's `Worker` per VM, counters, the effect executor,
//!   and shared data as the engine's `SharedStore`.
//! - [`host`]: typed access to host calls.
//!
//! Failure handling: every host call's error reaches the engine as a
//! missing fact or an error, and the engine refuses (fail closed). A panic
//! is logged by the hook installed at start; with `failure_policy:
//! FAIL_CLOSED` Envoy then answers 503 instead of forwarding uninspected
//! traffic.

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
