//! A bounded cache of verified tokens, keyed by the SHA3-256 digest of the
//! token text.
//!
//! - Each entry expires at its token's `exp`; an expired entry is a miss.
//! - The cache remembers the [`KeySet::id`](super::KeySet::id) its entries
//!   were verified with: a different key set (a rotation, a refetch that
//!   changed something) empties it. An identical refetch keeps it.
//! - When full, CLOCK (second chance) eviction picks the victim: a cheap
//!   approximation of least-recently-used, O(1) amortized per insert.
//! - Pure data structure: time is passed in, nothing is read from a clock.
//!
//! A cache belongs to one set of [`ValidationOptions`](super::ValidationOptions):
//! when the options change (new configuration), build a new cache.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::VerifiedToken;

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that were not (absent or expired).
    pub misses: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries dropped because their token expired.
    pub expirations: u64,
    /// Times the whole cache was emptied because the key set changed.
    pub flushes: u64,
}

#[derive(Debug)]
struct Slot {
    digest: [u8; 32],
    token: Arc<VerifiedToken>,
    referenced: bool,
}

/// The verified-token cache. See the module documentation.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    slots: Vec<Slot>,
    index: BTreeMap<[u8; 32], usize>,
    hand: usize,
    key_set: Option<[u8; 32]>,
    stats: CacheStats,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            slots: Vec::new(),
            index: BTreeMap::new(),
            hand: 0,
            key_set: None,
            stats: CacheStats::default(),
        }
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Drops every entry (counters are kept).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.hand = 0;
    }

    fn check_key_set(&mut self, key_set_id: &[u8; 32]) {
        if self.key_set.as_ref() != Some(key_set_id) {
            if !self.slots.is_empty() {
                self.stats.flushes += 1;
            }
            self.clear();
            self.key_set = Some(*key_set_id);
        }
    }

    fn remove_at(&mut self, i: usize) {
        if i >= self.slots.len() {
            return;
        }
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.digest);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.digest, i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Looks a token up by digest, for tokens verified with key set
    /// `key_set_id`, at time `now`. Counts a hit or a miss.
    pub fn get(
        &mut self,
        digest: &[u8; 32],
        key_set_id: &[u8; 32],
        now: u64,
    ) -> Option<Arc<VerifiedToken>> {
        self.check_key_set(key_set_id);
        let Some(&i) = self.index.get(digest) else {
            self.stats.misses += 1;
            return None;
        };
        let expired = self.slots.get(i).is_none_or(|s| now >= s.token.claims.exp);
        if expired {
            self.remove_at(i);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        self.stats.hits += 1;
        Some(Arc::clone(&slot.token))
    }

    /// Caches a token verified with key set `key_set_id` (ignored if already
    /// expired at `now` or if the capacity is 0).
    pub fn insert(&mut self, token: Arc<VerifiedToken>, key_set_id: &[u8; 32], now: u64) {
        self.check_key_set(key_set_id);
        if self.capacity == 0 || now >= token.claims.exp {
            return;
        }
        if let Some(&i) = self.index.get(&token.digest) {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.token = token;
                slot.referenced = true;
            }
            return;
        }
        while self.slots.len() >= self.capacity {
            self.evict_one(now);
        }
        self.index.insert(token.digest, self.slots.len());
        self.slots.push(Slot {
            digest: token.digest,
            token,
            referenced: false,
        });
    }

    /// Frees one slot: an expired entry if the hand meets one, otherwise the
    /// first entry not referenced since the hand last passed.
    fn evict_one(&mut self, now: u64) {
        // At most two sweeps: the first clears reference bits.
        for _ in 0..2 * self.slots.len() + 1 {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let Some(slot) = self.slots.get_mut(self.hand) else {
                return;
            };
            if now >= slot.token.claims.exp {
                self.remove_at(self.hand);
                self.stats.expirations += 1;
                return;
            }
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
            } else {
                self.remove_at(self.hand);
                self.stats.evictions += 1;
                return;
            }
        }
        // Unreachable in practice; keep the bound anyway.
        self.remove_at(0);
        self.stats.evictions += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Algorithm, Claims};
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn token(n: u8, exp: u64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            alg: Algorithm::MlDsa65,
            kid: None,
            claims: Claims {
                iss: None,
                sub: None,
                aud: vec![],
                exp,
                nbf: None,
                iat: None,
                jti: None,
                scope: vec![],
                all: serde_json::Map::new(),
            },
            digest: [n; 32],
        })
    }

    const KS: [u8; 32] = [1; 32];

    #[test]
    fn hits_until_exp_then_misses() {
        let mut c = TokenCache::new(4);
        c.insert(token(1, 100), &KS, 10);
        assert!(c.get(&[1; 32], &KS, 99).is_some());
        assert!(c.get(&[1; 32], &KS, 100).is_none());
        assert!(c.is_empty());
        assert!(c.get(&[2; 32], &KS, 10).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
    }

    #[test]
    fn never_stores_expired_tokens() {
        let mut c = TokenCache::new(4);
        c.insert(token(1, 100), &KS, 100);
        assert!(c.is_empty());
        let mut off = TokenCache::new(0);
        off.insert(token(1, 100), &KS, 1);
        assert!(off.is_empty());
    }

    #[test]
    fn stays_bounded_and_keeps_recently_used_entries() {
        let mut c = TokenCache::new(3);
        for n in 1..=3 {
            c.insert(token(n, 1000), &KS, 0);
        }
        // Touch 1 and 3; 2 is the one without a second chance.
        assert!(c.get(&[1; 32], &KS, 0).is_some());
        assert!(c.get(&[3; 32], &KS, 0).is_some());
        c.insert(token(4, 1000), &KS, 0);
        assert_eq!(c.len(), 3);
        assert!(c.get(&[2; 32], &KS, 0).is_none());
        assert!(c.get(&[1; 32], &KS, 0).is_some());
        assert!(c.get(&[4; 32], &KS, 0).is_some());
        for n in 5..50 {
            c.insert(token(n, 1000), &KS, 0);
            assert!(c.len() <= 3);
        }
        assert!(c.stats().evictions >= 46);
    }

    #[test]
    fn prefers_evicting_expired_entries() {
        let mut c = TokenCache::new(2);
        c.insert(token(1, 50), &KS, 0);
        c.insert(token(2, 1000), &KS, 0);
        c.get(&[1; 32], &KS, 0);
        c.get(&[2; 32], &KS, 0);
        c.insert(token(3, 1000), &KS, 60);
        assert!(c.get(&[2; 32], &KS, 60).is_some());
        assert!(c.get(&[3; 32], &KS, 60).is_some());
        assert_eq!(c.stats().expirations, 1);
    }

    #[test]
    fn a_different_key_set_empties_the_cache() {
        let mut c = TokenCache::new(4);
        c.insert(token(1, 1000), &KS, 0);
        assert!(c.get(&[1; 32], &[2; 32], 0).is_none());
        assert!(c.is_empty());
        assert_eq!(c.stats().flushes, 1);
        // Same id again: entries inserted under it survive.
        c.insert(token(1, 1000), &[2; 32], 0);
        assert!(c.get(&[1; 32], &[2; 32], 0).is_some());
    }
}
