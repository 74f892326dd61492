//! Inspection: what a request and its answer say, read strictly once.
//!
//! - [`json`]: strict single-pass JSON scanner (duplicate keys at any depth,
//!   depth, UTF-8, trailing data).
//! - [`mcp`]: MCP / JSON-RPC message inspection across protocol versions.
//! - [`head`]: request head checks (content type and encoding, size cap,
//!   repeated headers) and the body inspection entry points.
//! - [`mirror`]: 2026-07-28 header mirrors (`Mcp-Method`, `Mcp-Name`,
//!   `Mcp-Param-*`) against the body.
//! - [`params`]: `x-mcp-header` annotations from `tools/list`; `Mcp-Param-*`
//!   values against the arguments.
//! - [`response`]: answers pqguard must read (`tools/list`, JSON or event stream).
//! - [`sse`]: incremental event-stream parsing.
//! - [`tools`]: `tools/list` answers: tool digests and rewriting.

pub mod head;
pub mod json;
pub mod mcp;
pub mod mirror;
pub mod params;
pub mod response;
pub mod sse;
pub mod tools;
