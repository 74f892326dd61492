//! # pqguard-core
//!
//! The pure core of pqguard, a post-quantum security filter for MCP traffic.
//! It has no proxy-wasm dependency: the host shim (`filter/plugin`) copies
//! request facts in and carries decisions out, so everything here runs the
//! same natively, as wasm in a JavaScript engine and inside Envoy.
//!
//! Where each concern lives:
//! - [`audit`]: the audit trail: hash-chained records, ML-DSA-65 signed checkpoints, verifier, crypto inventory.
//! - [`auth`]: which tokens are accepted, key sources, RFC 9728 metadata.
//! - [`json`]: strict single-pass JSON scanner (duplicate keys, depth, UTF-8).
//! - [`mcp`]: MCP / JSON-RPC message inspection across protocol versions.
//! - [`mirror`]: 2026-07-28 header mirrors (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) against the body.
//! - [`params`]: `x-mcp-header` annotations from `tools/list`; `Mcp-Param-*` values against the arguments.
//! - [`policy`]: cipher-aware tool policy: rules, precedence, argument rules, transport gates.
//! - [`request`]: request head checks and body inspection entry points.
//! - [`crypto`]: crypto facts of a connection and their strength classes.
//! - [`engine`]: the request engine: one [`engine::Exchange`] per request, per-worker state and timers; the shim only executes it.
//! - [`config`]: plugin configuration, parsed and compiled.
//! - [`reject`]: typed refusals; [`wire`]: the one mapping to HTTP + JSON-RPC.
//! - [`record`]: the structured per-request log record.
//! - [`response`]: responses policy needs (`tools/list` answers, JSON or event stream).
//! - [`sse`]: incremental event-stream parsing of responses.
//! - [`threat`]: downgrade detection, flagged identities, latency baselines.
//! - [`tools`]: `tools/list` answers: tool digests and rewriting.
//! - [`token`]: bearer tokens: ML-DSA, composite and classical JWS, keys, claims, cache.

#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod json;
pub mod mcp;
pub mod mirror;
pub mod params;
pub mod policy;
pub mod record;
pub mod reject;
pub mod request;
pub mod response;
pub mod sse;
pub mod threat;
pub mod token;
pub mod tools;
pub mod wire;

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
