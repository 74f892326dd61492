//! The `audit` section of the plugin configuration: parsed, then compiled.
//!
//! ```yaml
//! audit:
//!   signing_key: { kty: AKP, alg: ML-DSA-65, kid: audit-1, pub: "…", priv: "…" }  # RFC 9964 private JWK
//!   checkpoint_every: 100        # records between checkpoints (1 to 1000000)
//!   checkpoint_seconds: 10       # a record this long after the last checkpoint gets one; 0: off
//!   include_arguments: false     # true: records carry the tool arguments, not only their digest
//!   log: true                    # write lines to Envoy's log
//!   collector:                   # optional HTTP collector (POST, one line per record)
//!     cluster: audit             # an Envoy cluster
//!     authority: audit.example.com
//!     path: /v1/audit
//!     timeout_ms: 2000
//!     flush_ms: 1000             # how often queued lines are sent
//!     max_batch: 100             # lines per POST
//!     queue_capacity: 10000      # lines held while the collector is slow or down; more are dropped
//!     backoff_initial_ms: 500    # retry after a failure, doubling up to backoff_max_ms
//!     backoff_max_ms: 30000
//!   strict: false                # true: deny requests while the collector is failing or the queue is full
//! ```
//!
//! The signing key is a secret: anyone holding it can re-sign an edited log.
//! Envoy has no secret store for Wasm plugin configuration, so keep the
//! configuration file readable by Envoy only, and rotate the key like any
//! other (a new key starts with new VMs; keep the old public key in the
//! verifier's JWKS while its logs are kept).

use std::fmt;

use serde_json::Value;

use super::chain::{CheckpointPolicy, CheckpointSigner};
use super::queue::{AuditQueue, Backoff};

/// The raw `audit` section.
#[derive(Clone)]
pub struct RawAudit {
    signing_key: Value,
    checkpoint_every: Option<u64>,
    checkpoint_seconds: Option<u64>,
    include_arguments: Option<bool>,
    log: Option<bool>,
    collector: Option<RawCollector>,
    strict: Option<bool>,
}

impl crate::config::read::FromJson for RawAudit {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawAudit",
            &[
                "signing_key",
                "checkpoint_every",
                "checkpoint_seconds",
                "include_arguments",
                "log",
                "collector",
                "strict",
            ],
        )?;
        Ok(Self {
            signing_key: o.req("signing_key")?,
            checkpoint_every: o.opt("checkpoint_every")?,
            checkpoint_seconds: o.opt("checkpoint_seconds")?,
            include_arguments: o.opt("include_arguments")?,
            log: o.opt("log")?,
            collector: o.opt("collector")?,
            strict: o.opt("strict")?,
        })
    }
}

impl fmt::Debug for RawAudit {
    /// Never prints the signing key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawAudit")
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_seconds", &self.checkpoint_seconds)
            .field("include_arguments", &self.include_arguments)
            .field("log", &self.log)
            .field("collector", &self.collector)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct RawCollector {
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: Option<u64>,
    flush_ms: Option<u64>,
    max_batch: Option<usize>,
    queue_capacity: Option<usize>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
}

impl crate::config::read::FromJson for RawCollector {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawCollector",
            &[
                "cluster",
                "authority",
                "path",
                "timeout_ms",
                "flush_ms",
                "max_batch",
                "queue_capacity",
                "backoff_initial_ms",
                "backoff_max_ms",
            ],
        )?;
        Ok(Self {
            cluster: o.req("cluster")?,
            authority: o.req("authority")?,
            path: o.req("path")?,
            timeout_ms: o.opt("timeout_ms")?,
            flush_ms: o.opt("flush_ms")?,
            max_batch: o.opt("max_batch")?,
            queue_capacity: o.opt("queue_capacity")?,
            backoff_initial_ms: o.opt("backoff_initial_ms")?,
            backoff_max_ms: o.opt("backoff_max_ms")?,
        })
    }
}

/// Where and how audit lines are shipped to an HTTP collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorSettings {
    /// Envoy cluster to call.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// `:path` of the call (`POST`, body: lines separated by `\n`).
    pub path: String,
    /// Call timeout (ms). Default 2000.
    pub timeout_ms: u64,
    /// How often queued lines are sent (ms). Default 1000.
    pub flush_ms: u64,
    /// Lines per call. Default 100.
    pub max_batch: usize,
    /// Lines held while the collector is slow or down. Default 10000.
    pub queue_capacity: usize,
    /// Retry schedule after failed calls. Default 500 ms doubling to 30 s.
    pub backoff: Backoff,
}

impl CollectorSettings {
    /// An empty queue with these bounds.
    pub fn queue(&self) -> AuditQueue {
        AuditQueue::new(self.queue_capacity, self.backoff)
    }
}

/// Compiled audit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// The checkpoint signing key.
    pub signer: CheckpointSigner,
    /// When checkpoints are due.
    pub policy: CheckpointPolicy,
    /// Whether decision records carry the tool arguments text. Default false.
    pub include_arguments: bool,
    /// Whether lines go to Envoy's log. Default true.
    pub log: bool,
    /// The HTTP collector, if any.
    pub collector: Option<CollectorSettings>,
    /// Deny requests while the collector is failing or its queue is full
    /// (for deployments where an unrecorded request must not happen).
    /// Default false: audit shipping never blocks or slows requests.
    pub strict: bool,
}

/// Compiles the `audit` section; errors name the offending field.
pub fn compile(raw: RawAudit) -> Result<AuditSettings, String> {
    let key = serde_json::to_vec(&raw.signing_key).map_err(|e| e.to_string())?;
    let signer = CheckpointSigner::parse(&key).map_err(|e| format!("audit.signing_key: {e}"))?;
    let every = raw.checkpoint_every.unwrap_or(100);
    if !(1..=1_000_000).contains(&every) {
        return Err("audit.checkpoint_every must be between 1 and 1000000".into());
    }
    let seconds = raw.checkpoint_seconds.unwrap_or(10);
    if seconds > 86_400 {
        return Err(
            "audit.checkpoint_seconds must be at most 86400 (0 turns the time rule off)".into(),
        );
    }
    let collector = raw.collector.map(compile_collector).transpose()?;
    let log = raw.log.unwrap_or(true);
    let strict = raw.strict.unwrap_or(false);
    if !log && collector.is_none() {
        return Err(
            "audit: with log: false, a collector is required (records would go nowhere)".into(),
        );
    }
    if strict && collector.is_none() {
        return Err("audit.strict needs audit.collector".into());
    }
    Ok(AuditSettings {
        signer,
        policy: CheckpointPolicy {
            every_records: every,
            interval_ms: seconds * 1000,
        },
        include_arguments: raw.include_arguments.unwrap_or(false),
        log,
        collector,
        strict,
    })
}

fn compile_collector(raw: RawCollector) -> Result<CollectorSettings, String> {
    if raw.cluster.is_empty() || raw.authority.is_empty() || !raw.path.starts_with('/') {
        return Err(
            "audit.collector needs cluster, authority and a path starting with /".to_owned(),
        );
    }
    let positive = |v: Option<u64>, default: u64, name: &str| match v.unwrap_or(default) {
        0 => Err(format!("audit.collector.{name} must be positive")),
        n => Ok(n),
    };
    let max_batch = raw.max_batch.unwrap_or(100);
    let queue_capacity = raw.queue_capacity.unwrap_or(10_000);
    if max_batch == 0 || queue_capacity < max_batch {
        return Err(
            "audit.collector: max_batch must be positive and at most queue_capacity".to_owned(),
        );
    }
    let backoff = Backoff {
        initial_ms: positive(raw.backoff_initial_ms, 500, "backoff_initial_ms")?,
        max_ms: positive(raw.backoff_max_ms, 30_000, "backoff_max_ms")?,
    };
    if backoff.max_ms < backoff.initial_ms {
        return Err("audit.collector.backoff_max_ms must be at least backoff_initial_ms".into());
    }
    Ok(CollectorSettings {
        cluster: raw.cluster,
        authority: raw.authority,
        path: raw.path,
        timeout_ms: positive(raw.timeout_ms, 2000, "timeout_ms")?,
        flush_ms: positive(raw.flush_ms, 1000, "flush_ms")?,
        max_batch,
        queue_capacity,
        backoff,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Algorithm, PrivateKey};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(alg: Algorithm) -> Value {
        PrivateKey::generate(alg, Some("audit-1".into()), &[5; 64])
            .unwrap()
            .to_jwk()
    }

    fn compile_json(v: Value) -> Result<AuditSettings, String> {
        let raw = <RawAudit as crate::config::read::FromJson>::read(&v)?;
        compile(raw)
    }

    #[test]
    fn defaults_sign_every_100_records_or_10_seconds_to_the_log() {
        let s = compile_json(json!({ "signing_key": key(Algorithm::MlDsa65) })).unwrap();
        assert_eq!(s.signer.kid(), "audit-1");
        assert_eq!(s.policy, CheckpointPolicy::default());
        assert!(s.log && !s.strict && !s.include_arguments);
        assert_eq!(s.collector, None);
    }

    #[test]
    fn collector_settings_compile_with_defaults() {
        let s = compile_json(json!({
            "signing_key": key(Algorithm::MlDsa65),
            "checkpoint_every": 10, "checkpoint_seconds": 0, "strict": true,
            "collector": { "cluster": "audit", "authority": "a.example", "path": "/v1/audit" }
        }))
        .unwrap();
        assert_eq!(s.policy.interval_ms, 0);
        let c = s.collector.unwrap();
        assert_eq!(
            (c.max_batch, c.queue_capacity, c.timeout_ms),
            (100, 10_000, 2000)
        );
        assert_eq!(
            c.backoff,
            Backoff {
                initial_ms: 500,
                max_ms: 30_000
            }
        );
        assert_eq!(c.queue().capacity(), 10_000);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let k = key(Algorithm::MlDsa65);
        let collector = json!({ "cluster": "a", "authority": "b", "path": "/p" });
        let cases = [
            (json!({}), "signing_key"),
            (
                json!({ "signing_key": key(Algorithm::MlDsa44) }),
                "ML-DSA-65",
            ),
            (json!({ "signing_key": k["pub"] }), "audit.signing_key"),
            (
                json!({ "signing_key": k, "checkpoint_every": 0 }),
                "checkpoint_every",
            ),
            (
                json!({ "signing_key": k, "log": false }),
                "collector is required",
            ),
            (json!({ "signing_key": k, "strict": true }), "strict"),
            (
                json!({ "signing_key": k, "colector": collector }),
                "unknown field",
            ),
            (
                json!({ "signing_key": k, "collector": { "cluster": "a", "authority": "b", "path": "p" } }),
                "path starting with /",
            ),
            (
                json!({ "signing_key": k, "collector": { "cluster": "a", "authority": "b", "path": "/p", "max_batch": 20, "queue_capacity": 10 } }),
                "max_batch",
            ),
        ];
        for (case, want) in cases {
            let err = compile_json(case.clone()).unwrap_err();
            assert!(err.contains(want), "{case}: {err}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let k = key(Algorithm::MlDsa65);
        let seed = k["priv"].as_str().unwrap().to_owned();
        let raw = <RawAudit as crate::config::read::FromJson>::read(&json!({ "signing_key": k }))
            .unwrap();
        assert!(!format!("{raw:?}").contains(&seed));
        let s = compile(raw).unwrap();
        assert!(!format!("{s:?}").contains(&seed));
    }
}
