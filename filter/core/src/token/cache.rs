//! A bounded cache of verified tokens, keyed by the token text.
//!
//! - Lookup is a fast 64-bit hash of the text to find the entry, then a full
//!   comparison of the text: a hit is exactly the token that was verified.
//!   (A cryptographic digest would add nothing: only tokens that verified are
//!   ever inserted, so nobody can plant colliding entries, and a collision of
//!   two valid tokens is only a miss.) Hashing a 4.6 KB ML-DSA-65 token this
//!   way costs about a microsecond in V8, where SHA3-256 cost about 35.
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
    key: u64,
    text: Box<str>,
    token: Arc<VerifiedToken>,
    referenced: bool,
}

/// 64-bit hash of the token text: four independent FxHash-style lanes over
/// 32-byte blocks (so the multiplications do not wait on each other), then
/// the tail, then a splitmix64 avalanche. A hit is confirmed by comparing the
/// whole text ([`same_text`]), so the hash only has to spread tokens well.
fn fast_hash(text: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let bytes = text.as_bytes();
    let len = bytes.len() as u64;
    let mut lanes = [len, len ^ 0x9e37_79b9_7f4a_7c15, len.rotate_left(17), !len];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = (lane.rotate_left(5) ^ word_le(word)).wrapping_mul(K);
        }
    }
    let mut h =
        lanes[0] ^ lanes[1].rotate_left(16) ^ lanes[2].rotate_left(32) ^ lanes[3].rotate_left(48);
    let mut words = blocks.remainder().chunks_exact(8);
    for word in &mut words {
        h = (h.rotate_left(5) ^ word_le(word)).wrapping_mul(K);
    }
    h = (h.rotate_left(5) ^ word_le(words.remainder())).wrapping_mul(K);
    // Final avalanche (splitmix64).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Up to eight bytes as a little-endian word (zero-padded).
fn word_le(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = bytes.len().min(8);
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

/// Whether two token texts are equal, compared eight bytes at a time: in
/// wasm the `memcmp` behind `==` on `str` goes byte by byte, and a cache hit
/// compares the whole 4-6 KB token.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in (&mut wa).zip(&mut wb) {
        diff |= word_le(x) ^ word_le(y);
    }
    diff == 0 && wa.remainder() == wb.remainder()
}

/// The verified-token cache. See the module documentation.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    slots: Vec<Slot>,
    index: BTreeMap<u64, usize>,
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
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Looks a token up by its text, for tokens verified with key set
    /// `key_set_id`, at time `now`. Counts a hit or a miss.
    pub fn get(
        &mut self,
        text: &str,
        key_set_id: &[u8; 32],
        now: u64,
    ) -> Option<Arc<VerifiedToken>> {
        self.check_key_set(key_set_id);
        let key = fast_hash(text);
        let found = self
            .index
            .get(&key)
            .copied()
            .filter(|&i| self.slots.get(i).is_some_and(|s| same_text(&s.text, text)));
        let Some(i) = found else {
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

    /// Caches `token`, verified from `text` with key set `key_set_id`
    /// (ignored if already expired at `now` or if the capacity is 0). A
    /// different token whose text hashes the same is replaced.
    pub fn insert(
        &mut self,
        text: &str,
        token: Arc<VerifiedToken>,
        key_set_id: &[u8; 32],
        now: u64,
    ) {
        self.check_key_set(key_set_id);
        if self.capacity == 0 || now >= token.claims.exp {
            return;
        }
        let key = fast_hash(text);
        if let Some(&i) = self.index.get(&key) {
            if let Some(slot) = self.slots.get_mut(i) {
                if !same_text(&slot.text, text) {
                    slot.text = text.into();
                }
                slot.token = token;
                slot.referenced = true;
            }
            return;
        }
        while self.slots.len() >= self.capacity {
            self.evict_one(now);
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot {
            key,
            text: text.into(),
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

    #[test]
    fn same_text_finds_a_difference_anywhere() {
        for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 40, 4621] {
            let a: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            assert!(same_text(&a, &a.clone()), "len {len}");
            for at in [0, len / 2, len.saturating_sub(1)] {
                if len == 0 {
                    continue;
                }
                let mut b = a.clone().into_bytes();
                b[at] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_text(&a, &b), "len {len}, byte {at}");
                assert_ne!(fast_hash(&a), fast_hash(&b), "len {len}, byte {at}");
            }
            let longer = format!("{a}a");
            assert!(!same_text(&a, &longer), "len {len}");
            assert_ne!(fast_hash(&a), fast_hash(&longer), "len {len}");
        }
    }

    #[test]
    fn the_hash_depends_on_every_lane_and_on_the_order_of_blocks() {
        let base = "x".repeat(64);
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(fast_hash(&base)));
        for at in 0..64 {
            let mut b = base.clone().into_bytes();
            b[at] = b'y';
            let b = String::from_utf8(b).unwrap();
            assert!(seen.insert(fast_hash(&b)), "a change at byte {at} collides");
        }
        let swapped = format!("{}{}", "y".repeat(32), "x".repeat(32));
        let swapped_back = format!("{}{}", "x".repeat(32), "y".repeat(32));
        assert_ne!(fast_hash(&swapped), fast_hash(&swapped_back));
    }

    fn text(n: u8) -> String {
        format!(
            "eyJhbGciOiJNTC1EU0EtNjUifQ.{}.sig",
            "x".repeat(usize::from(n) * 7)
        )
    }

    fn token(n: u8, exp: u64) -> (String, Arc<VerifiedToken>) {
        let verified = Arc::new(VerifiedToken {
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
        });
        (text(n), verified)
    }

    fn put(c: &mut TokenCache, (t, v): (String, Arc<VerifiedToken>), ks: &[u8; 32], now: u64) {
        c.insert(&t, v, ks, now);
    }

    const KS: [u8; 32] = [1; 32];

    #[test]
    fn hits_until_exp_then_misses() {
        let mut c = TokenCache::new(4);
        put(&mut c, token(1, 100), &KS, 10);
        assert!(c.get(&text(1), &KS, 99).is_some());
        assert!(c.get(&text(1), &KS, 100).is_none());
        assert!(c.is_empty());
        assert!(c.get(&text(2), &KS, 10).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
    }

    #[test]
    fn never_stores_expired_tokens() {
        let mut c = TokenCache::new(4);
        put(&mut c, token(1, 100), &KS, 100);
        assert!(c.is_empty());
        let mut off = TokenCache::new(0);
        put(&mut off, token(1, 100), &KS, 1);
        assert!(off.is_empty());
    }

    #[test]
    fn stays_bounded_and_keeps_recently_used_entries() {
        let mut c = TokenCache::new(3);
        for n in 1..=3 {
            put(&mut c, token(n, 1000), &KS, 0);
        }
        // Touch 1 and 3; 2 is the one without a second chance.
        assert!(c.get(&text(1), &KS, 0).is_some());
        assert!(c.get(&text(3), &KS, 0).is_some());
        put(&mut c, token(4, 1000), &KS, 0);
        assert_eq!(c.len(), 3);
        assert!(c.get(&text(2), &KS, 0).is_none());
        assert!(c.get(&text(1), &KS, 0).is_some());
        assert!(c.get(&text(4), &KS, 0).is_some());
        for n in 5..50 {
            put(&mut c, token(n, 1000), &KS, 0);
            assert!(c.len() <= 3);
        }
        assert!(c.stats().evictions >= 46);
    }

    #[test]
    fn prefers_evicting_expired_entries() {
        let mut c = TokenCache::new(2);
        put(&mut c, token(1, 50), &KS, 0);
        put(&mut c, token(2, 1000), &KS, 0);
        c.get(&text(1), &KS, 0);
        c.get(&text(2), &KS, 0);
        put(&mut c, token(3, 1000), &KS, 60);
        assert!(c.get(&text(2), &KS, 60).is_some());
        assert!(c.get(&text(3), &KS, 60).is_some());
        assert_eq!(c.stats().expirations, 1);
    }

    #[test]
    fn a_hit_is_exactly_the_verified_text() {
        let mut c = TokenCache::new(4);
        put(&mut c, token(1, 1000), &KS, 0);
        let mut other = text(1);
        other.pop();
        other.push('h');
        assert!(c.get(&other, &KS, 0).is_none());
        assert!(c.get(&text(1)[1..], &KS, 0).is_none());
        assert!(c.get(&text(1), &KS, 0).is_some());
        assert_ne!(fast_hash(&text(1)), fast_hash(&other));
    }

    #[test]
    fn a_different_key_set_empties_the_cache() {
        let mut c = TokenCache::new(4);
        put(&mut c, token(1, 1000), &KS, 0);
        assert!(c.get(&text(1), &[2; 32], 0).is_none());
        assert!(c.is_empty());
        assert_eq!(c.stats().flushes, 1);
        // Same id again: entries inserted under it survive.
        put(&mut c, token(1, 1000), &[2; 32], 0);
        assert!(c.get(&text(1), &[2; 32], 0).is_some());
    }
}
