//! The request engine: every decision pqguard takes on a request, its
//! answer and the worker's background work, as sans-IO state machines
//! (the shape of quinn-proto's `Connection` or rustls' `ConnectionCore`).
//!
//! - [`Exchange`]: one request and its answer. Fed with host facts (the
//!   request head, body progress, the body, the response head and body,
//!   the time), it answers with an [`Action`] for the host and collects
//!   [`Effects`] (counters, log lines); audit records go through the
//!   [`Worker`]'s chain.
//! - [`Worker`]: per-VM state (configuration, key set, token cache, audit
//!   chain and collector queue) and the timer's work: checkpoints, audit
//!   shipping and the remote JWKS refresh, with one back-off
//!   ([`crate::audit::Backoff`]). Outbound calls are returned as [`Call`]s.
//! - [`SharedStore`]: state shared by every worker (identities, pins, tool
//!   schemas, the fetched key set); shared data in Envoy, [`MemoryStore`] in
//!   tests and in `pqguard inspect`.
//!
//! The proxy-wasm shim (`filter/plugin`) reads host facts, calls these and
//! executes what they return; it decides nothing itself. The command line's
//! `pqguard inspect` runs the same engine, so its answer is Envoy's.

mod connections;
mod effects;
mod exchange;
pub mod shared;
mod worker;

#[cfg(test)]
mod tests;

pub use connections::{ConnectionCache, ConnectionFacts, CONNECTION_CACHE_CAPACITY};
pub use effects::{metric_part, Effects, Level, FIXED_METRICS};
pub use exchange::{Action, Exchange, RequestStart, ResponseStart, ResponseWants, ALERT_MARKER};
pub use shared::{MemoryStore, SharedStore};
pub use worker::{
    jwks_installed_line, Call, CallAnswer, CallKind, JwksSchedule, Worker, FAST_TICK_MS,
    JWKS_MARKER, TICK_MS,
};
