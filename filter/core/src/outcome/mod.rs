//! Outcomes: how a decision leaves the filter.
//!
//! - [`reject`]: typed refusals (one reason per refusal class).
//! - [`wire`]: the one mapping from a refusal to HTTP status, JSON-RPC error
//!   and `WWW-Authenticate` (the detail never reaches the client).
//! - [`log`]: the structured `pqguard.request` log line, and the one JSON
//!   string quoter and hex encoder of the log lines.

pub mod log;
pub mod reject;
pub mod wire;
