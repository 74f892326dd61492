//! # pqguard-core
//!
//! The pure core of pqguard, a post-quantum security filter for MCP traffic.
//! It has no proxy-wasm dependency: the host shim (`filter/plugin`) copies
//! request facts in and carries decisions out, so everything here runs the
//! same natively, as wasm in a JavaScript engine and inside Envoy.
//!
//! Where each concern lives:
//! - [`engine`]: the request engine: one [`engine::Exchange`] per request,
//!   per-worker state and timers, shared state behind a trait. The shim only
//!   executes what it returns.
//! - [`inspect`]: strict JSON, MCP / JSON-RPC messages, the request head,
//!   header mirrors, `Mcp-Param-*`, `tools/list` answers and event streams.
//! - [`tls`]: TLS facts of a connection and their key-exchange classes.
//! - [`token`]: bearer tokens: ML-DSA, composite and classical JWS, keys, claims, cache.
//! - [`auth`]: which tokens are accepted, key sources, RFC 9728 metadata.
//! - [`policy`]: cipher-aware tool policy: rules, precedence, argument rules, transport gates.
//! - [`threat`]: downgrade detection, flagged identities, latency baselines.
//! - [`outcome`]: typed refusals, their one wire mapping, the request log line.
//! - [`audit`]: the audit trail: hash-chained records, ML-DSA-65 signed
//!   checkpoints, collector queue; offline verifier and crypto inventory.
//! - [`config`]: plugin configuration, parsed and compiled.
//! - [`text`]: the one hex encoder and JSON string quoter.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod bind;
pub mod config;
pub mod engine;
pub mod inspect;
pub mod outcome;
pub mod policy;
pub mod text;
pub mod threat;
pub mod ticket;
pub mod tls;
pub mod token;

#[cfg(test)]
mod properties;

/// pqguard's version: `PQGUARD_VERSION` at build time (set by
/// `just release VERSION`), else the crate version.
pub const VERSION: &str = match option_env!("PQGUARD_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// Build identifier: `PQGUARD_BUILD` at build time (for example the git
/// commit), else `dev`.
pub const BUILD: &str = match option_env!("PQGUARD_BUILD") {
    Some(b) => b,
    None => "dev",
};
