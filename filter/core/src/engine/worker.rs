//! Per-worker state (one proxy-wasm VM): the compiled configuration, the key
//! set in force, the verified-token cache, latency baselines, the audit
//! chain and its collector queue, and the two background schedules (remote
//! JWKS refresh, audit shipping). Timers and outbound calls are sans-IO:
//! [`Worker::tick`] returns the calls to make; the shim makes them and
//! reports back with [`Worker::dispatched`] and [`Worker::answered`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::audit::{batch_body, valid_chain_id, AuditQueue, Backoff, Chain, ChainError, Push};
use crate::auth::{self, RemoteJwks};
use crate::config::Config;
use crate::inspect::tools::hex;
use crate::outcome::log::{json_string, START_MARKER};
use crate::threat::LatencyBaseline;
use crate::token::{KeySet, TokenCache};

use super::effects::{Effects, Level, FIXED_METRICS};
use super::shared::{jwks_key, SharedStore};

/// Marker of the line logged when a key set is installed, refused or not fetched.
pub const JWKS_MARKER: &str = "pqguard.jwks";

/// The timer period in steady state (checkpoints, collector, JWKS), ms.
pub const TICK_MS: u64 = 500;

/// The timer period while a worker with a remote JWKS has no key set yet, ms.
pub const FAST_TICK_MS: u64 = 100;

/// When the remote key set is next fetched, with back-off after failures.
///
/// Back-off doubles from 2 s after each consecutive failure, never beyond
/// the refresh interval (nor 256 s); the last good key set stays in force
/// meanwhile. A call in flight keeps the next fetch past its timeout, so a
/// lost answer cannot stop the refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSchedule {
    next_fetch_ms: u64,
    failures: u32,
    in_flight: Option<u32>,
}

impl JwksSchedule {
    /// A schedule with a fetch due at once.
    pub fn new() -> Self {
        Self {
            next_fetch_ms: 0,
            failures: 0,
            in_flight: None,
        }
    }

    fn backoff(refresh_seconds: u64) -> Backoff {
        Backoff {
            initial_ms: 2_000,
            max_ms: refresh_seconds.saturating_mul(1000).min(256_000),
        }
    }

    /// Whether a fetch is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_fetch_ms
    }

    /// A fetch was dispatched as call `token`: wait at most its timeout.
    pub fn started(&mut self, now_ms: u64, token: u32, timeout_ms: u64) {
        self.in_flight = Some(token);
        self.next_fetch_ms = now_ms.saturating_add(timeout_ms.saturating_add(1000));
    }

    /// Whether `token` is the fetch in flight (and no longer waits on it).
    pub fn take(&mut self, token: u32) -> bool {
        if self.in_flight == Some(token) {
            self.in_flight = None;
            return true;
        }
        false
    }

    /// A fetch succeeded: the next one after `refresh_seconds`.
    pub fn succeeded(&mut self, now_ms: u64, refresh_seconds: u64) {
        self.failures = 0;
        self.next_fetch_ms = now_ms.saturating_add(refresh_seconds.saturating_mul(1000));
    }

    /// A fetch failed: returns the delay (ms) before the next one.
    pub fn failed(&mut self, now_ms: u64, refresh_seconds: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let delay = Self::backoff(refresh_seconds).delay_ms(self.failures);
        self.next_fetch_ms = now_ms.saturating_add(delay);
        delay
    }

    /// Consecutive failed fetches.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Default for JwksSchedule {
    fn default() -> Self {
        Self::new()
    }
}

/// What an outbound call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Fetching the remote JWKS.
    Jwks,
    /// Shipping a batch of audit lines to the collector.
    AuditBatch,
}

/// An HTTP call the shim should dispatch to an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// What it is for (reported back with [`Worker::dispatched`]).
    pub kind: CallKind,
    /// Envoy cluster.
    pub cluster: String,
    /// Request headers, pseudo-headers included.
    pub headers: Vec<(&'static str, String)>,
    /// Request body, if any.
    pub body: Option<Vec<u8>>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
}

/// The answer to an outbound call, as far as the engine needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallAnswer {
    /// `:status`, if any (none: timeout or reset).
    pub status: Option<String>,
    /// `cache-control`, if any.
    pub cache_control: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The audit trail of one worker: its hash chain and, with a collector,
/// the queue of lines waiting to be shipped.
#[derive(Debug)]
struct AuditState {
    /// Started by the first record: a root context that never decides
    /// anything (Envoy checks a configuration in a context of its own, which
    /// never gets a timer) writes no line it could never ship or sign.
    chain: Option<Chain>,
    /// What the genesis record binds: the chain id, the configuration as
    /// the host handed it over, and the worker's start time.
    genesis: (String, Vec<u8>, u64),
    queue: Option<AuditQueue>,
    /// The batch taken for a call not yet dispatched, or in flight.
    batch: Option<Vec<String>>,
    in_flight: Option<u32>,
    next_flush_ms: u64,
}

/// The collector call that ships `batch`.
fn batch_call(collector: &crate::audit::CollectorSettings, batch: &[String]) -> Call {
    Call {
        kind: CallKind::AuditBatch,
        cluster: collector.cluster.clone(),
        headers: vec![
            (":method", "POST".into()),
            (":path", collector.path.clone()),
            (":authority", collector.authority.clone()),
            ("content-type", "application/x-ndjson".into()),
        ],
        body: Some(batch_body(batch)),
        timeout_ms: collector.timeout_ms,
    }
}

/// A session ticket opened by this worker, kept by its text so that a
/// request that carries it again costs a lookup, not a digest, a decryption
/// and a key derivation.
#[derive(Debug, Clone)]
pub(super) struct OpenedTicket {
    /// The token it stands for.
    pub token: Arc<crate::token::VerifiedToken>,
    /// The key set it was checked against (another one: open it again).
    pub key_set: [u8; 32],
    /// SHA3-256 of the ticket: what its requests' proofs cover.
    pub digest: [u8; 32],
    /// Its binding's id and key.
    pub binding_id: String,
    /// The binding key (wiped when dropped).
    pub key: zeroize::Zeroizing<[u8; 32]>,
}

/// State of one worker.
#[derive(Debug)]
pub struct Worker {
    config: Config,
    keys: Option<Arc<KeySet>>,
    pub(super) cache: TokenCache,
    latency: HashMap<String, LatencyBaseline>,
    missing_facts_logged: bool,
    audit: Option<AuditState>,
    jwks: JwksSchedule,
    fast_tick: bool,
    info_logged: bool,
    /// Binding proofs accepted within their window (`replay_scope: worker`).
    replay: Option<crate::bind::ReplayCache>,
    /// Live proofs per binding on this worker (with `binding`).
    quota: Option<crate::bind::BindingQuota>,
    /// Randomness for bindings, seeded from the host ([`Worker::seed_random`]).
    drbg: Option<crate::bind::Drbg>,
    /// Whether host entropy was mixed in since the last binding.
    fresh_entropy: bool,
    /// Opened session tickets by SHA3-256 of their text, with the key set
    /// they were checked against (see [`crate::ticket`]).
    pub(super) tickets: HashMap<String, OpenedTicket>,
    /// TLS facts of the connections this worker served (see
    /// [`super::ConnectionCache`]).
    pub connections: super::ConnectionCache,
}

impl Worker {
    /// A worker for an already compiled configuration, without an audit
    /// chain (tests and the command line; the filter uses [`Worker::start`]).
    pub fn new(config: Config) -> Self {
        let keys = config
            .auth
            .as_ref()
            .and_then(|a| a.inline_keys.clone())
            .map(Arc::new);
        let capacity = config.auth.as_ref().map_or(1, |a| a.cache_capacity);
        let replay = config
            .binding
            .as_ref()
            .filter(|b| b.replay_scope == crate::bind::ReplayScope::Worker)
            .map(|b| crate::bind::ReplayCache::new(b.replay_capacity));
        let quota = config.binding.as_ref().map(|b| {
            crate::bind::BindingQuota::new(
                b.replay_per_binding,
                b.window_seconds + crate::bind::FUTURE_SKEW_SECONDS,
            )
        });
        Self {
            config,
            keys,
            cache: TokenCache::new(capacity),
            latency: HashMap::new(),
            missing_facts_logged: false,
            audit: None,
            jwks: JwksSchedule::new(),
            fast_tick: false,
            info_logged: true,
            replay,
            quota,
            drbg: None,
            fresh_entropy: false,
            tickets: HashMap::new(),
            connections: super::ConnectionCache::default(),
        }
    }

    /// Whether the worker needs randomness from the host (for bindings)
    /// that it has not had yet: give it with [`Worker::seed_random`]. The
    /// shim asks after every request head: a bind request asks again, so
    /// that every binding mixes in fresh host entropy.
    pub fn wants_random(&self) -> bool {
        self.config.binding.is_some() && (self.drbg.is_none() || !self.fresh_entropy)
    }

    /// Seeds the worker's random generator, or mixes fresh entropy into it
    /// (at least 32 bytes from the host's CSPRNG).
    pub fn seed_random(&mut self, seed: &[u8]) {
        match self.drbg.as_mut() {
            Some(drbg) => drbg.reseed(seed),
            None => self.drbg = Some(crate::bind::Drbg::new(seed)),
        }
        self.fresh_entropy = true;
    }

    /// Randomness for one binding: `None` unless host entropy was mixed in
    /// since the last binding (a bind request is then refused: fail closed).
    pub(super) fn binding_random(&mut self) -> Option<[u8; crate::bind::BIND_RANDOM_LEN]> {
        if !std::mem::take(&mut self.fresh_entropy) {
            return None;
        }
        let drbg = self.drbg.as_mut()?;
        let mut out = [0u8; crate::bind::BIND_RANDOM_LEN];
        drbg.fill(&mut out);
        Some(out)
    }

    /// More randomness from the generator after a binding drew its own (a
    /// ticket's nonce); `false` when it was never seeded.
    pub(super) fn more_random(&mut self, out: &mut [u8]) -> bool {
        match self.drbg.as_mut() {
            Some(drbg) => {
                drbg.fill(out);
                true
            }
            None => false,
        }
    }

    /// Counts an accepted proof against its binding's quota, then
    /// remembers it in the replay set of the configured scope; `Err` for a
    /// binding over its quota, a replay, or a full set.
    pub(super) fn check_replay(
        &mut self,
        store: &dyn SharedStore,
        proof: &crate::bind::Proof,
        now: u64,
    ) -> Result<(), crate::bind::BindError> {
        use crate::bind::ReplaySet;
        let Some(settings) = self.config.binding.as_ref() else {
            return Ok(());
        };
        let until = crate::bind::replay_until(proof.ts, settings.window_seconds);
        let capacity = settings.replay_capacity;
        if let Some(quota) = self.quota.as_mut() {
            quota.take(&proof.id, now)?;
        }
        let key = crate::bind::replay_key(proof);
        match self.replay.as_mut() {
            Some(cache) => cache.remember(&key, until, now),
            None => super::shared::SharedReplay { store, capacity }.remember(&key, until, now),
        }
    }

    /// Seconds a binding over its quota should wait.
    pub(super) fn quota_retry_after(&self, id: &str, now: u64) -> u64 {
        self.quota.as_ref().map_or(1, |q| q.retry_after(id, now))
    }

    /// Starts a worker from the plugin configuration bytes as the host
    /// handed them over: compiles them, starts the audit chain (its id is
    /// `<now_ms>-<nonce>`) and takes a key set another worker already
    /// fetched. `now_ms` and `nonce` are `None` when the host could not give
    /// them; a configuration that needs them is then refused.
    ///
    /// `Err` is the reason to log; the host must refuse the configuration.
    pub fn start(
        bytes: &[u8],
        now_ms: Option<u64>,
        nonce: Option<[u8; 8]>,
        store: &dyn SharedStore,
        out: &mut Effects,
    ) -> Result<Self, String> {
        let config = Config::from_json(bytes).map_err(|e| e.to_string())?;
        let mut worker = Self::new(config);
        for name in FIXED_METRICS {
            out.count(name, 0);
        }
        if let Some(settings) = worker.config.audit.clone() {
            let now = now_ms.ok_or("audit: the host clock is unavailable")?;
            let nonce = nonce.ok_or("audit: no randomness for the chain id")?;
            let chain_id = format!("{now}-{}", hex(&nonce));
            // Checked now, so that starting the chain later cannot fail.
            if !valid_chain_id(&chain_id) {
                return Err(format!("audit: {}", ChainError::InvalidChainId));
            }
            if settings.policy.every_records == 0 {
                return Err(format!("audit: {}", ChainError::InvalidPolicy));
            }
            worker.audit = Some(AuditState {
                chain: None,
                genesis: (chain_id, bytes.to_vec(), now),
                queue: settings.collector.as_ref().map(|c| c.queue()),
                batch: None,
                in_flight: None,
                next_flush_ms: 0,
            });
        }
        let remote = worker.remote().is_some();
        out.log(
            Level::Info,
            format!(
                "{START_MARKER} {{\"version\":{},\"build\":{},\"max_body_bytes\":{},\"policy\":{},\"auth\":{},\"remote_jwks\":{}}}",
                json_string(crate::VERSION),
                json_string(crate::BUILD),
                worker.config.max_body_bytes,
                worker.config.policy.is_some(),
                worker.config.auth.is_some(),
                remote
            ),
        );
        // A configuration change starts new VMs: they take the key set the
        // previous ones fetched, rather than answer 401 until their fetch.
        worker.adopt_shared_keys(store, out);
        worker.fast_tick = remote && worker.keys.is_none();
        Ok(worker)
    }

    /// The compiled configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The key set in force, if any.
    pub fn keys(&self) -> Option<&Arc<KeySet>> {
        self.keys.as_ref()
    }

    fn remote(&self) -> Option<&RemoteJwks> {
        self.config.auth.as_ref().and_then(|a| a.remote.as_ref())
    }

    /// The timer period this worker wants (ms). There is always a timer:
    /// besides checkpoints, shipping and key refreshes, it is where the shim
    /// tells the worker the host's log level.
    pub fn tick_period_ms(&self) -> Option<u64> {
        if self.fast_tick {
            Some(FAST_TICK_MS)
        } else {
            Some(TICK_MS)
        }
    }

    /// Tells the worker whether the host writes info-level lines (its log
    /// level is info or more verbose). When it does not, the worker and its
    /// exchanges do not build them at all (`pqguard.request`, `pqguard.tools`,
    /// audit lines to the log): the host would drop them anyway. Audit
    /// records are still chained and shipped to the collector. Default: true.
    pub fn set_info_logged(&mut self, logged: bool) {
        self.info_logged = logged;
    }

    /// Whether info-level lines are built (see [`Worker::set_info_logged`]).
    pub fn logs_info(&self) -> bool {
        self.info_logged
    }

    /// Replaces the key set (a rotation); cached verifications made with
    /// the old set no longer answer. `source` (`fetched`, `shared`) goes
    /// into the `pqguard.jwks` line.
    pub fn install_keys(&mut self, keys: KeySet, source: &str, out: &mut Effects) {
        out.log(Level::Info, jwks_installed_line(&keys, source));
        self.cache.clear();
        self.keys = Some(Arc::new(keys));
    }

    /// A worker without a key set yet (just started, or started by a
    /// configuration change) takes the one another worker fetched, so it
    /// never answers 401 `no_keys` while a good key set is known. Returns
    /// whether it installed one.
    pub fn adopt_shared_keys(&mut self, store: &dyn SharedStore, out: &mut Effects) -> bool {
        if self.keys.is_some() {
            return false;
        }
        let Some(key) = self.remote().map(jwks_key) else {
            return false;
        };
        let Some(bytes) = store.get(&key).0 else {
            return false;
        };
        match KeySet::parse(&bytes) {
            Ok(keys) => {
                self.install_keys(keys, "shared", out);
                true
            }
            Err(_) => false,
        }
    }

    /// Logs, once per worker, that the host gives no TLS group (requests
    /// then count as key-exchange class none).
    pub(super) fn note_missing_group(&mut self, out: &mut Effects) {
        if !self.missing_facts_logged {
            self.missing_facts_logged = true;
            out.log(
                Level::Warn,
                "pqguard: the host gave no TLS group (plaintext listener, or no set_filter_state before pqguard); such requests count as key exchange class none",
            );
        }
    }

    /// Writes audit lines (already prefixed) to the log and the collector queue.
    fn emit_audit(&mut self, lines: Vec<String>, out: &mut Effects) {
        let Some(settings) = &self.config.audit else {
            return;
        };
        let mut queue = self.audit.as_mut().and_then(|a| a.queue.as_mut());
        let mut dropped = 0i64;
        for line in lines {
            if let Some(q) = queue.as_deref_mut() {
                if let Push::Dropped { .. } = q.push(line.clone()) {
                    dropped += 1;
                }
            }
            if settings.log && self.info_logged {
                out.log(Level::Info, line);
            }
        }
        if dropped > 0 {
            out.count("pqguard.audit.dropped", dropped);
        }
    }

    /// The chain, started on first use: its genesis record and the
    /// checkpoint signing it are emitted first.
    fn chain(&mut self, now_ms: u64, out: &mut Effects) -> Option<&mut Chain> {
        let settings = self.config.audit.as_ref()?;
        let state = self.audit.as_mut()?;
        if state.chain.is_none() {
            let (id, config, vm_start_ms) = &state.genesis;
            let (policy, signer) = (settings.policy, settings.signer.clone());
            let (chain, lines) =
                Chain::new(id, config, *vm_start_ms, now_ms, policy, signer).ok()?;
            state.chain = Some(chain);
            self.emit_audit(lines, out);
        }
        self.audit.as_mut()?.chain.as_mut()
    }

    /// Appends a decision to the chain and emits its line (only hashes:
    /// checkpoints are signed by [`Worker::tick`]).
    pub(super) fn audit_decision(
        &mut self,
        now_ms: u64,
        decision: &crate::audit::DecisionRecord,
        out: &mut Effects,
    ) {
        let Some(chain) = self.chain(now_ms, out) else {
            return;
        };
        let line = chain.append_decision(now_ms, decision);
        out.count("pqguard.audit.records", 1);
        self.emit_audit(vec![line], out);
    }

    /// Appends an anomaly to the chain and emits its line (no signing).
    pub(super) fn audit_anomaly(
        &mut self,
        now_ms: u64,
        anomaly: &crate::audit::AnomalyRecord,
        out: &mut Effects,
    ) {
        let Some(chain) = self.chain(now_ms, out) else {
            return;
        };
        let line = chain.append_anomaly(now_ms, anomaly);
        out.count("pqguard.audit.records", 1);
        self.emit_audit(vec![line], out);
    }

    /// Strict audit mode: whether requests must be refused because the
    /// collector is failing or its queue is full.
    pub fn audit_blocks(&self) -> bool {
        let strict = self.config.audit.as_ref().is_some_and(|a| a.strict);
        strict
            && self
                .audit
                .as_ref()
                .and_then(|a| a.queue.as_ref())
                .is_some_and(|q| !q.healthy())
    }

    /// Adds a latency sample for `cluster`; returns the exceeded baseline
    /// when the sample is a spike.
    pub(super) fn observe_latency(&mut self, cluster: &str, ms: f64) -> Option<f64> {
        let factor = self.config.connectivity.latency_spike_factor;
        self.latency
            .entry(cluster.to_owned())
            .or_default()
            .observe(ms, factor)
    }

    /// The worker stops: a last checkpoint so the chain's tail is signed.
    pub fn stop(&mut self, now_ms: u64, out: &mut Effects) {
        let line = self
            .audit
            .as_mut()
            .and_then(|a| a.chain.as_mut())
            .and_then(|c| c.checkpoint(now_ms));
        if let Some(line) = line {
            out.count("pqguard.audit.checkpoints", 1);
            self.emit_audit(vec![line], out);
        }
    }

    /// The timer fired: signs a checkpoint when one is due (between
    /// requests, never while one waits), takes a shared key set while this
    /// worker has none, and returns the calls due (audit batch, JWKS fetch).
    pub fn tick(&mut self, now_ms: u64, store: &dyn SharedStore, out: &mut Effects) -> Vec<Call> {
        let mut calls = Vec::new();
        let line = self
            .audit
            .as_mut()
            .and_then(|a| a.chain.as_mut())
            .and_then(|c| c.tick(now_ms));
        if let Some(line) = line {
            out.count("pqguard.audit.checkpoints", 1);
            self.emit_audit(vec![line], out);
        }
        calls.extend(self.audit_call(now_ms));
        if self.fast_tick {
            self.adopt_shared_keys(store, out);
            if self.keys.is_some() {
                self.fast_tick = false;
            }
        }
        if let Some(remote) = self.remote() {
            if self.jwks.due(now_ms) {
                calls.push(Call {
                    kind: CallKind::Jwks,
                    cluster: remote.cluster.clone(),
                    headers: vec![
                        (":method", "GET".into()),
                        (":path", remote.path.clone()),
                        (":authority", remote.authority.clone()),
                        ("accept", "application/json".into()),
                    ],
                    body: None,
                    timeout_ms: remote.timeout_ms,
                });
            }
        }
        calls
    }

    /// The next audit batch for the collector, when one is due.
    fn audit_call(&mut self, now_ms: u64) -> Option<Call> {
        let collector = self.config.audit.as_ref()?.collector.as_ref()?;
        let state = self.audit.as_mut()?;
        if state.batch.is_some() || now_ms < state.next_flush_ms {
            return None;
        }
        state.next_flush_ms = now_ms.saturating_add(collector.flush_ms);
        let batch = state
            .queue
            .as_mut()?
            .take_batch(collector.max_batch, now_ms);
        if batch.is_empty() {
            return None;
        }
        let call = batch_call(collector, &batch);
        state.batch = Some(batch);
        Some(call)
    }

    /// Whether a batch of audit lines is out to the collector.
    pub fn audit_in_flight(&self) -> bool {
        self.audit.as_ref().is_some_and(|a| a.batch.is_some())
    }

    /// The worker is going (after [`Worker::stop`]): one call that ships
    /// everything still queued, now, whatever the flush period, batch size
    /// or back-off (nothing retries after this). `None` when nothing is
    /// queued or a batch is still out (ask again once it is answered).
    pub fn last_audit_call(&mut self) -> Option<Call> {
        let collector = self.config.audit.as_ref()?.collector.as_ref()?;
        let state = self.audit.as_mut()?;
        if state.batch.is_some() {
            return None;
        }
        let batch = state.queue.as_mut()?.take_all();
        if batch.is_empty() {
            return None;
        }
        let call = batch_call(collector, &batch);
        state.batch = Some(batch);
        Some(call)
    }

    /// The shim dispatched (or failed to dispatch) a call [`Worker::tick`]
    /// asked for; `Ok` carries the host's call token.
    pub fn dispatched(
        &mut self,
        kind: CallKind,
        result: Result<u32, String>,
        now_ms: u64,
        out: &mut Effects,
    ) {
        match (kind, result) {
            (CallKind::Jwks, Ok(token)) => {
                let timeout = self.remote().map_or(0, |r| r.timeout_ms);
                self.jwks.started(now_ms, token, timeout);
            }
            (CallKind::Jwks, Err(e)) => self.jwks_failed(now_ms, &e, out),
            (CallKind::AuditBatch, Ok(token)) => {
                if let Some(state) = self.audit.as_mut() {
                    state.in_flight = Some(token);
                }
            }
            (CallKind::AuditBatch, Err(e)) => {
                out.count("pqguard.audit.ship_failed", 1);
                out.log(Level::Warn, format!("pqguard: audit collector: {e}"));
                self.audit_batch_failed(now_ms);
            }
        }
    }

    fn audit_batch_failed(&mut self, now_ms: u64) -> Option<u64> {
        let state = self.audit.as_mut()?;
        state.in_flight = None;
        let batch = state.batch.take()?;
        Some(state.queue.as_mut()?.failed(batch, now_ms))
    }

    fn jwks_failed(&mut self, now_ms: u64, why: &str, out: &mut Effects) {
        let refresh = self.remote().map_or(300, |r| r.refresh_seconds);
        out.count("pqguard.jwks.fetch_failed", 1);
        let delay = self.jwks.failed(now_ms, refresh);
        out.log(
            Level::Warn,
            format!(
                "{JWKS_MARKER} {{\"outcome\":\"fetch_failed\",\"reason\":{},\"retry_in_s\":{}}}",
                json_string(why),
                delay / 1000
            ),
        );
    }

    /// The answer to call `token` arrived (or the call failed: no status).
    /// Returns whether the call was one of this worker's.
    pub fn answered(
        &mut self,
        token: u32,
        answer: &CallAnswer,
        now_ms: u64,
        store: &dyn SharedStore,
        out: &mut Effects,
    ) -> bool {
        let audit_call = self
            .audit
            .as_ref()
            .is_some_and(|a| a.in_flight == Some(token));
        if audit_call {
            self.audit_answered(answer, now_ms, out);
            return true;
        }
        if !self.jwks.take(token) {
            return false;
        }
        let Some(remote) = self.remote().cloned() else {
            return true;
        };
        if answer.status.as_deref() != Some("200") {
            let why = format!(
                "status {}",
                answer
                    .status
                    .as_deref()
                    .unwrap_or("none (timeout or reset)")
            );
            self.jwks_failed(now_ms, &why, out);
            return true;
        }
        match KeySet::parse(&answer.body) {
            Ok(keys) => {
                let changed = self.keys.as_ref().is_none_or(|k| k.id() != keys.id());
                if let Err(e) = store.set(&jwks_key(&remote), &answer.body, None) {
                    out.log(
                        Level::Warn,
                        format!("{JWKS_MARKER} cannot share the key set: {e}"),
                    );
                }
                if changed {
                    self.install_keys(keys, "fetched", out);
                    self.fast_tick = false;
                }
                out.count("pqguard.jwks.fetch_ok", 1);
                let refresh =
                    auth::refresh_after(answer.cache_control.as_deref(), remote.refresh_seconds);
                self.jwks.succeeded(now_ms, refresh);
            }
            Err(e) => {
                // A bad key set never replaces a good one.
                out.count("pqguard.jwks.rejected", 1);
                out.log(
                    Level::Warn,
                    format!(
                        "{JWKS_MARKER} {{\"outcome\":\"rejected\",\"reason\":{}}}",
                        json_string(&e.to_string())
                    ),
                );
                self.jwks.failed(now_ms, remote.refresh_seconds);
            }
        }
        true
    }

    fn audit_answered(&mut self, answer: &CallAnswer, now_ms: u64, out: &mut Effects) {
        let ok = answer.status.as_deref().is_some_and(|s| s.starts_with('2'));
        if ok {
            let Some(state) = self.audit.as_mut() else {
                return;
            };
            state.in_flight = None;
            let n = state.batch.take().map_or(0, |b| b.len());
            if let Some(q) = state.queue.as_mut() {
                q.delivered();
            }
            out.count(
                "pqguard.audit.shipped",
                i64::try_from(n).unwrap_or(i64::MAX),
            );
            return;
        }
        out.count("pqguard.audit.ship_failed", 1);
        let at = self.audit_batch_failed(now_ms).unwrap_or(now_ms);
        out.log(
            Level::Warn,
            format!(
                "pqguard: audit collector answered {}; retry at {at}",
                answer
                    .status
                    .as_deref()
                    .unwrap_or("nothing (timeout or reset)")
            ),
        );
    }
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
