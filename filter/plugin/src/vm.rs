//! Per-VM state shared by the root context and every request of one
//! worker: the compiled configuration, the current key set, the verified
//! token cache, latency baselines and metrics.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use proxy_wasm::types::LogLevel;

use pqguard_core::audit::{AuditQueue, Chain, Push};
use pqguard_core::auth::RemoteJwks;
use pqguard_core::config::Config;
use pqguard_core::params::KnownSchema;
use pqguard_core::record::json_string;
use pqguard_core::threat::{IdentityState, LatencyBaseline};
use pqguard_core::token::{KeySet, TokenCache};
use pqguard_core::tools::hex;

use crate::host;

/// Metrics with fixed names (documented in the README). Dynamic families
/// (`pqguard.kex.<group>`, `pqguard.denied.<reason>`, …) are defined on
/// first use by [`Vm::count`].
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

/// The audit trail of one VM: its hash chain and, with a collector, the
/// queue of lines waiting to be shipped.
pub struct AuditState {
    /// The VM's chain (one chain per VM: see `pqguard_core::audit`).
    pub chain: Chain,
    /// Lines waiting for the collector.
    pub queue: Option<AuditQueue>,
}

/// State of one VM (one Envoy worker).
pub struct Vm {
    /// The compiled configuration.
    pub config: Config,
    /// Keys in force: inline keys, replaced by the remote set once fetched
    /// (a remote set that fails to parse never replaces a good one).
    pub keys: RefCell<Option<Arc<KeySet>>>,
    /// Verified tokens.
    pub cache: RefCell<TokenCache>,
    /// Latency baselines per upstream cluster.
    latency: RefCell<HashMap<String, LatencyBaseline>>,
    metrics: RefCell<HashMap<String, u32>>,
    /// "A crypto fact is missing" is logged once per VM, not per request.
    pub missing_facts_logged: Cell<bool>,
    /// The audit trail, when configured.
    pub audit: RefCell<Option<AuditState>>,
}

impl Vm {
    /// A VM state for a freshly compiled configuration.
    pub fn new(config: Config) -> Self {
        let keys = config
            .auth
            .as_ref()
            .and_then(|a| a.inline_keys.clone())
            .map(Arc::new);
        let capacity = config.auth.as_ref().map_or(1, |a| a.cache_capacity);
        let vm = Self {
            config,
            keys: RefCell::new(keys),
            cache: RefCell::new(TokenCache::new(capacity)),
            latency: RefCell::new(HashMap::new()),
            metrics: RefCell::new(HashMap::new()),
            missing_facts_logged: Cell::new(false),
            audit: RefCell::new(None),
        };
        for name in FIXED_METRICS {
            vm.count(name, 0);
        }
        vm
    }

    /// Adds `by` to the counter `name`, defining it on first use.
    pub fn count(&self, name: &str, by: i64) {
        let id = {
            let mut metrics = self.metrics.borrow_mut();
            match metrics.get(name) {
                Some(id) => Some(*id),
                None => {
                    let id = host::define_counter(name);
                    if let Some(id) = id {
                        metrics.insert(name.to_owned(), id);
                    }
                    id
                }
            }
        };
        if let (Some(id), true) = (id, by != 0) {
            host::increment(id, by);
        }
    }

    /// Replaces the key set (a rotation); cached verifications made with
    /// the old set no longer answer. `source` (`fetched`, `shared`) goes
    /// into the `pqguard.jwks` line logged.
    pub fn install_keys(&self, keys: KeySet, source: &str) {
        host::log(LogLevel::Info, &jwks_installed_line(&keys, source));
        self.cache.borrow_mut().clear();
        *self.keys.borrow_mut() = Some(Arc::new(keys));
    }

    /// Publishes a key set this VM fetched and accepted (its JWKS bytes),
    /// for the other VMs of this configuration, present and future.
    pub fn publish_keys(&self, jwks: &[u8]) {
        let Some(remote) = self.config.auth.as_ref().and_then(|a| a.remote.as_ref()) else {
            return;
        };
        if let Err(e) = host::shared_set(&shared_jwks_key(remote), jwks, None) {
            host::log(
                LogLevel::Warn,
                &format!("{JWKS_MARKER} cannot share the key set: {e}"),
            );
        }
    }

    /// A VM without a key set yet (just started, or started by a
    /// configuration change) takes the one another VM fetched, so it never
    /// answers 401 `no_keys` while a good key set is known. Returns whether
    /// it installed one.
    pub fn adopt_shared_keys(&self) -> bool {
        if self.keys.borrow().is_some() {
            return false;
        }
        let Some(remote) = self.config.auth.as_ref().and_then(|a| a.remote.as_ref()) else {
            return false;
        };
        let Some(bytes) = host::shared_get(&shared_jwks_key(remote)).0 else {
            return false;
        };
        match KeySet::parse(&bytes) {
            Ok(keys) => {
                self.install_keys(keys, "shared");
                true
            }
            Err(_) => false,
        }
    }

    /// Writes audit lines (already prefixed) to the log and the collector queue.
    pub fn emit_audit(&self, lines: Vec<String>) {
        let Some(settings) = &self.config.audit else {
            return;
        };
        let mut dropped = 0i64;
        {
            let mut audit = self.audit.borrow_mut();
            let queue = audit.as_mut().and_then(|a| a.queue.as_mut());
            let mut queue = queue;
            for line in lines {
                if settings.log {
                    host::log(LogLevel::Info, &line);
                }
                if let Some(q) = queue.as_deref_mut() {
                    if let Push::Dropped { .. } = q.push(line) {
                        dropped += 1;
                    }
                }
            }
        }
        self.count("pqguard.audit.dropped", dropped);
    }

    /// Appends a decision to the chain and emits its line. Only hashes:
    /// checkpoints are signed by the root context's timer.
    pub fn audit_decision(&self, decision: &pqguard_core::audit::Decision) {
        let line = {
            let mut audit = self.audit.borrow_mut();
            let Some(state) = audit.as_mut() else { return };
            state.chain.append_decision(host::now_millis(), decision)
        };
        self.count("pqguard.audit.records", 1);
        self.emit_audit(vec![line]);
    }

    /// Appends an anomaly to the chain and emits its line (no signing).
    pub fn audit_anomaly(&self, anomaly: &pqguard_core::audit::Anomaly) {
        let line = {
            let mut audit = self.audit.borrow_mut();
            let Some(state) = audit.as_mut() else { return };
            state.chain.append_anomaly(host::now_millis(), anomaly)
        };
        self.count("pqguard.audit.records", 1);
        self.emit_audit(vec![line]);
    }

    /// For the root context's timer: signs a checkpoint when the policy
    /// makes one due, and emits it.
    pub fn audit_tick(&self, now_ms: u64) {
        let line = self
            .audit
            .borrow_mut()
            .as_mut()
            .and_then(|a| a.chain.tick(now_ms));
        if let Some(line) = line {
            self.count("pqguard.audit.checkpoints", 1);
            self.emit_audit(vec![line]);
        }
    }

    /// Strict audit mode: whether requests must be refused because the
    /// collector is failing or its queue is full.
    pub fn audit_blocks(&self) -> bool {
        let strict = self.config.audit.as_ref().is_some_and(|a| a.strict);
        strict
            && self
                .audit
                .borrow()
                .as_ref()
                .and_then(|a| a.queue.as_ref())
                .is_some_and(|q| !q.healthy())
    }

    /// Adds a latency sample for `cluster`; returns the exceeded baseline
    /// when the sample is a spike.
    pub fn observe_latency(&self, cluster: &str, ms: f64) -> Option<f64> {
        let factor = self.config.connectivity.latency_spike_factor;
        let mut all = self.latency.borrow_mut();
        all.entry(cluster.to_owned())
            .or_default()
            .observe(ms, factor)
    }
}

/// Reads, changes and writes one identity's shared state with
/// compare-and-swap, retrying when another worker raced us. Returns what
/// `change` returned on the attempt that was stored. On a host error the
/// change is applied to a fresh state and not stored (logged).
pub fn update_identity<T>(key: &str, mut change: impl FnMut(&mut IdentityState) -> T) -> T {
    for _ in 0..8 {
        let (bytes, cas) = host::shared_get(key);
        let mut state = bytes
            .as_deref()
            .map(IdentityState::decode)
            .unwrap_or_default();
        let out = change(&mut state);
        match host::shared_set(key, &state.encode(), cas) {
            Ok(true) => return out,
            Ok(false) => continue,
            Err(e) => {
                host::log(LogLevel::Error, &format!("pqguard: identity state: {e}"));
                return out;
            }
        }
    }
    host::log(
        LogLevel::Warn,
        "pqguard: identity state contended; last change not stored",
    );
    change(&mut IdentityState::default())
}

/// Reads one identity's shared state without changing it.
pub fn read_identity(key: &str) -> IdentityState {
    host::shared_get(key)
        .0
        .as_deref()
        .map(IdentityState::decode)
        .unwrap_or_default()
}

/// Marker of the line logged when a key set is installed or refused.
pub const JWKS_MARKER: &str = "pqguard.jwks";

/// Shared-data key of the last key set fetched from `remote` by any VM.
pub fn shared_jwks_key(remote: &RemoteJwks) -> String {
    format!(
        "pqguard.jwks|{}|{}|{}",
        remote.cluster, remote.authority, remote.path
    )
}

/// The `pqguard.jwks` line of an installed key set.
pub fn jwks_installed_line(keys: &KeySet, source: &str) -> String {
    format!(
        "{JWKS_MARKER} {{\"outcome\":\"installed\",\"source\":\"{source}\",\"keys\":{},\"skipped\":{},\"id\":\"{}\",\"kids\":[{}]}}",
        keys.keys().len(),
        keys.skipped().len(),
        hex(keys.id()),
        keys.keys()
            .iter()
            .map(|k| json_string(k.kid().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Shared-data key holding what the last `tools/list` answer said of a
/// tool's `Mcp-Param-*` headers (see `pqguard_core::params`).
pub fn params_key(tool: &str) -> String {
    format!("pqguard.params.{tool}")
}

/// What the workers know of a tool's `Mcp-Param-*` headers.
pub fn known_schema(tool: &str) -> KnownSchema {
    KnownSchema::from_stored(host::shared_get(&params_key(tool)).0.as_deref())
}

/// Remembers what a `tools/list` answer said of a tool's headers, for
/// every worker (the last answer wins).
pub fn store_schema(tool: &str, stored: &str) {
    if let Err(e) = host::shared_set(&params_key(tool), stored.as_bytes(), None) {
        host::log(LogLevel::Error, &format!("pqguard: tool schema: {e}"));
    }
}

/// Shared-data key remembering that a pinned tool's definition changed.
pub fn pin_key(tool: &str) -> String {
    format!("pqguard.pin_violation.{tool}")
}

/// Whether a pinned tool is currently in violation (seen changed).
pub fn pin_violated(tool: &str) -> bool {
    matches!(host::shared_get(&pin_key(tool)).0.as_deref(), Some(v) if v != b"ok")
}

/// Records the state of a pinned tool (`ok` or the digest seen).
pub fn set_pin_state(tool: &str, value: &[u8]) {
    let key = pin_key(tool);
    for _ in 0..4 {
        let (_, cas) = host::shared_get(&key);
        match host::shared_set(&key, value, cas) {
            Ok(false) => continue,
            Ok(true) | Err(_) => return,
        }
    }
}

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
