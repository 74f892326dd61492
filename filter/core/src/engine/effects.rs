//! What the engine asks the host to do besides answering a request:
//! counter increments and log lines. The shim executes them in order.

use std::borrow::Cow;

/// Severity of a log line (mapped to the host's levels by the shim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Normal operation (records, key sets installed).
    Info,
    /// Something an operator should look at (alerts, failed fetches).
    Warn,
    /// pqguard could not do what it should (host failures).
    Error,
}

/// Side effects collected while the engine handles an event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Counter increments, in order: metric name and amount.
    pub counts: Vec<(Cow<'static, str>, i64)>,
    /// Log lines, in order.
    pub logs: Vec<(Level, String)>,
}

impl Effects {
    /// No effects yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `by` to the counter `name`.
    pub fn count(&mut self, name: impl Into<Cow<'static, str>>, by: i64) {
        self.counts.push((name.into(), by));
    }

    /// Writes a log line.
    pub fn log(&mut self, level: Level, line: impl Into<String>) {
        self.logs.push((level, line.into()));
    }

    /// Sum of the increments of counter `name` (for tests and tools).
    pub fn counted(&self, name: &str) -> i64 {
        self.counts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, by)| by)
            .sum()
    }

    /// The log lines that start with `marker` followed by a space, without it.
    pub fn lines_with(&self, marker: &str) -> Vec<&str> {
        self.logs
            .iter()
            .filter_map(|(_, l)| l.strip_prefix(marker)?.strip_prefix(' '))
            .collect()
    }

    /// Moves everything out, leaving this empty.
    pub fn take(&mut self) -> Self {
        std::mem::take(self)
    }
}

/// Metrics with fixed names (documented in the README); the shim defines
/// them at start so they exist with 0. Dynamic families (`pqguard.kex.<group>`,
/// `pqguard.denied.<reason>`, …) are defined on first use.
pub const FIXED_METRICS: [&str; 19] = [
    "pqguard.requests",
    "pqguard.allowed",
    "pqguard.rejected",
    "pqguard.downgrade_attempts",
    "pqguard.pin_violations",
    "pqguard.latency_alerts",
    "pqguard.token_cache.hit",
    "pqguard.token_cache.miss",
    "pqguard.jwks.fetch_ok",
    "pqguard.jwks.fetch_failed",
    "pqguard.jwks.rejected",
    "pqguard.tools_removed",
    "pqguard.tools_invalid",
    "pqguard.param_headers.unchecked",
    "pqguard.audit.records",
    "pqguard.audit.checkpoints",
    "pqguard.audit.dropped",
    "pqguard.audit.shipped",
    "pqguard.audit.ship_failed",
];

/// Metric-safe form of a name (group, cipher, algorithm).
pub fn metric_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
