//! Threat detection state, as pure functions over small values the shim
//! keeps in Envoy's shared data (process-wide, updated with compare-and-swap
//! so every worker sees one state per identity):
//!
//! - **downgrade**: the strongest key-exchange class an identity has used;
//!   a later request over weaker crypto is an anomaly;
//! - **flagging**: identities with anomalies (downgrade, repeated denials,
//!   argument-rule hits, pin violations) are flagged for a configured time;
//! - **latency spikes**: a per-cluster moving baseline of response time
//!   (kept per VM: a baseline needs no cross-worker agreement).

use crate::tls::KexClass;
use crate::token::VerifiedToken;

/// The identity state is stored under this key prefix in shared data.
pub const SHARED_KEY_PREFIX: &str = "pqguard.identity.";

/// Who a request comes from, for per-identity state: issuer and subject of
/// a verified token; else the digest of a verified client certificate; else,
/// for a token without `sub`, the token itself (its SHA3-256), so that the
/// same token used first over a post-quantum and then over a classical
/// handshake is still a downgrade.
pub fn identity_key(
    token: Option<&VerifiedToken>,
    peer_cert_digest: Option<&str>,
) -> Option<String> {
    if let Some(t) = token {
        if let Some(sub) = &t.claims.sub {
            let iss = t.claims.iss.as_deref().unwrap_or("");
            return Some(format!("{SHARED_KEY_PREFIX}jwt:{}:{iss}|{sub}", iss.len()));
        }
    }
    if let Some(d) = peer_cert_digest {
        return Some(format!("{SHARED_KEY_PREFIX}cert:{d}"));
    }
    token.map(|t| {
        let hex: String = t.digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{SHARED_KEY_PREFIX}token:{hex}")
    })
}

/// What pqguard remembers about one identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityState {
    /// Strongest key-exchange class seen.
    pub strongest: Option<KexClass>,
    /// Flagged until this time (seconds since the epoch); 0 = not flagged.
    pub flagged_until: u64,
    /// Denials in the current window.
    pub denials: u32,
    /// Start of the current denial window.
    pub window_start: u64,
}

fn class_code(c: KexClass) -> u8 {
    match c {
        KexClass::None => 0,
        KexClass::Classical => 1,
        KexClass::HybridPq => 2,
        KexClass::Pq => 3,
    }
}

fn class_of(code: u8) -> Option<KexClass> {
    match code {
        0 => Some(KexClass::None),
        1 => Some(KexClass::Classical),
        2 => Some(KexClass::HybridPq),
        3 => Some(KexClass::Pq),
        _ => None,
    }
}

impl IdentityState {
    /// Decodes the shared-data form; anything unreadable is a fresh state.
    pub fn decode(bytes: &[u8]) -> Self {
        let text = std::str::from_utf8(bytes).unwrap_or("");
        let mut parts = text.split(':');
        if parts.next() != Some("v1") {
            return Self::default();
        }
        let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
        let (Some(s), Some(f), Some(d), Some(w)) = (num(), num(), num(), num()) else {
            return Self::default();
        };
        Self {
            strongest: u8::try_from(s).ok().and_then(class_of),
            flagged_until: f,
            denials: u32::try_from(d).unwrap_or(u32::MAX),
            window_start: w,
        }
    }

    /// The shared-data form.
    pub fn encode(&self) -> Vec<u8> {
        let s = self.strongest.map(class_code).map_or(9, u64::from);
        format!(
            "v1:{s}:{}:{}:{}",
            self.flagged_until, self.denials, self.window_start
        )
        .into_bytes()
    }

    /// Records the key-exchange class of a request; returns true when it is
    /// weaker than the strongest seen before (a downgrade).
    pub fn observe_kex(&mut self, class: KexClass) -> bool {
        match self.strongest {
            Some(prev) if class < prev => true,
            _ => {
                self.strongest = Some(class);
                false
            }
        }
    }

    /// Whether the identity is flagged at `now`.
    pub fn is_flagged(&self, now: u64) -> bool {
        now < self.flagged_until
    }

    /// Flags the identity until `now + seconds` (never shortens a flag).
    pub fn flag(&mut self, now: u64, seconds: u64) {
        self.flagged_until = self.flagged_until.max(now.saturating_add(seconds));
    }

    /// Counts a denial; flags the identity when `threshold` denials fall
    /// within `window` seconds. Returns true when this denial flagged it.
    pub fn record_denial(
        &mut self,
        now: u64,
        window: u64,
        threshold: u32,
        flag_seconds: u64,
    ) -> bool {
        if now.saturating_sub(self.window_start) >= window {
            self.window_start = now;
            self.denials = 0;
        }
        self.denials = self.denials.saturating_add(1);
        if self.denials >= threshold && !self.is_flagged(now) {
            self.flag(now, flag_seconds);
            return true;
        }
        false
    }
}

/// A moving baseline of response times for one upstream cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyBaseline {
    ewma_ms: f64,
    samples: u32,
}

/// Samples needed before spikes are reported.
pub const LATENCY_WARMUP: u32 = 20;
/// Responses faster than this are never spikes, whatever the baseline.
pub const LATENCY_FLOOR_MS: f64 = 25.0;

impl LatencyBaseline {
    /// The current baseline in milliseconds (0 before any sample).
    pub fn baseline_ms(&self) -> f64 {
        self.ewma_ms
    }

    /// Adds a sample; returns the baseline it exceeded by more than
    /// `factor`, if this response is a spike. Spikes move the baseline only
    /// a little, so a burst does not hide itself.
    pub fn observe(&mut self, ms: f64, factor: f64) -> Option<f64> {
        if !ms.is_finite() || ms < 0.0 {
            return None;
        }
        if self.samples == 0 {
            self.ewma_ms = ms;
            self.samples = 1;
            return None;
        }
        let baseline = self.ewma_ms;
        let spike =
            self.samples >= LATENCY_WARMUP && ms > LATENCY_FLOOR_MS && ms > baseline * factor;
        let alpha = if spike { 0.01 } else { 0.1 };
        self.ewma_ms = baseline + alpha * (ms - baseline);
        self.samples = self.samples.saturating_add(1);
        spike.then_some(baseline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn detects_a_downgrade_after_a_stronger_exchange() {
        let mut s = IdentityState::default();
        assert!(!s.observe_kex(KexClass::HybridPq));
        assert!(!s.observe_kex(KexClass::Pq));
        assert!(s.observe_kex(KexClass::HybridPq));
        assert!(s.observe_kex(KexClass::Classical));
        assert_eq!(s.strongest, Some(KexClass::Pq));
        let mut fresh = IdentityState::default();
        assert!(!fresh.observe_kex(KexClass::Classical));
    }

    #[test]
    fn state_round_trips_and_garbage_is_a_fresh_state() {
        let s = IdentityState {
            strongest: Some(KexClass::HybridPq),
            flagged_until: 99,
            denials: 3,
            window_start: 7,
        };
        assert_eq!(IdentityState::decode(&s.encode()), s);
        assert_eq!(
            IdentityState::decode(b"v2:1:2:3:4"),
            IdentityState::default()
        );
        assert_eq!(IdentityState::decode(b"\xff"), IdentityState::default());
        assert_eq!(
            IdentityState::decode(&IdentityState::default().encode()),
            IdentityState::default()
        );
    }

    #[test]
    fn repeated_denials_flag_for_a_while() {
        let mut s = IdentityState::default();
        for t in 0..4 {
            assert!(!s.record_denial(100 + t, 60, 5, 300));
        }
        assert!(s.record_denial(104, 60, 5, 300));
        assert!(s.is_flagged(105) && s.is_flagged(403) && !s.is_flagged(404));
        let mut slow = IdentityState::default();
        for t in 0..10 {
            assert!(!slow.record_denial(t * 100, 60, 5, 300));
        }
    }

    #[test]
    fn identities_from_tokens_are_unambiguous() {
        // "a|b" + "c" and "a" + "b|c" must not collide.
        use crate::token::{Algorithm, Claims};
        let tok = |iss: &str, sub: &str| VerifiedToken {
            alg: Algorithm::MlDsa65,
            kid: None,
            claims: Claims {
                iss: Some(iss.into()),
                sub: Some(sub.into()),
                aud: vec![],
                exp: 0,
                nbf: None,
                iat: None,
                jti: None,
                scope: vec![],
                all: Default::default(),
            },
            digest: [0; 32],
        };
        assert_ne!(
            identity_key(Some(&tok("a|b", "c")), None),
            identity_key(Some(&tok("a", "b|c")), None)
        );
        assert_eq!(
            identity_key(None, Some("ab12")).as_deref(),
            Some("pqguard.identity.cert:ab12")
        );
        assert_eq!(identity_key(None, None), None);
        // A token without sub: the certificate when there is one, else the token.
        let mut anonymous = tok("a", "b");
        anonymous.claims.sub = None;
        anonymous.digest = [0xab; 32];
        assert_eq!(
            identity_key(Some(&anonymous), Some("cd34")).as_deref(),
            Some("pqguard.identity.cert:cd34")
        );
        let key = identity_key(Some(&anonymous), None).unwrap_or_default();
        assert_eq!(key, format!("pqguard.identity.token:{}", "ab".repeat(32)));
    }

    #[test]
    fn reports_latency_spikes_after_warmup() {
        let mut b = LatencyBaseline::default();
        for _ in 0..30 {
            assert_eq!(b.observe(10.0, 4.0), None);
        }
        assert_eq!(b.observe(30.0, 4.0), None);
        assert!(b.observe(200.0, 4.0).is_some());
        assert!(b.baseline_ms() < 15.0);
        let mut early = LatencyBaseline::default();
        early.observe(10.0, 4.0);
        assert_eq!(early.observe(500.0, 4.0), None);
    }
}
