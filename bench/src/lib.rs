//! # pqguard-bench
//!
//! What the benchmarks of pqguard share:
//! - [`body`]: deterministic, realistic MCP `tools/call` request bodies of an
//!   exact size. The `parse-throughput` binary measures them, and
//!   `bench/envoy_rps.py` sends them through Envoy (via `--emit-body`), so both
//!   benchmarks see the same bytes.
//! - [`timing`]: warm-up, then the median of several timed batches, interleaved
//!   between the operations compared.
//!
//! Everything here runs the same natively and on `wasm32-wasip1`.

#![forbid(unsafe_code)]

pub mod body;
pub mod timing;
