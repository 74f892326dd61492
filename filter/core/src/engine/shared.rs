//! State shared by every worker of one process, behind [`SharedStore`].
//!
//! In Envoy the store is proxy-wasm shared data (process-wide per `vm_id`,
//! with compare-and-swap); in tests and in `pqguard inspect` it is a
//! [`MemoryStore`]. What lives there:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `pqguard.identity.…` | [`IdentityState`] (strongest key exchange, flag) | every request with an identity |
//! | `pqguard.pin_violation.<tool>` | `ok` or the digest seen | `tools/list` answers of pinned tools |
//! | `pqguard.params.<tool>` | what `tools/list` said of its `Mcp-Param-*` headers | `tools/list` answers |
//! | `pqguard.jwks|<cluster>|<authority>|<path>` | the last accepted JWKS bytes | the VM that fetched them |
//! | `pqguard.replay.<bucket>` | accepted binding proofs: 24-byte entries (16-byte key, expiry) | bound requests ([`SharedReplay`]) |

use std::cell::RefCell;
use std::collections::HashMap;

use crate::auth::RemoteJwks;
use crate::inspect::params::KnownSchema;
use crate::threat::IdentityState;

/// Process-wide key-value state with compare-and-swap, as proxy-wasm
/// shared data offers it.
pub trait SharedStore {
    /// The value under `key` and its version (`None`, `None` when absent
    /// or unreadable).
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Like [`SharedStore::get`], but a store that fails says so (`Err`)
    /// instead of looking empty: what must not be mistaken for "nothing
    /// stored" (an identity's flag) is read with this.
    fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(self.get(key))
    }
    /// Stores `value` if the version is still `cas` (`None`: always).
    /// `Ok(false)`: somebody changed it since; read again and retry.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String>;
    /// Stores `value` only if `key` is absent. `Ok(false)`: it exists (read
    /// it and compare-and-swap). Envoy's shared data has no such call; its
    /// implementation writes with a version no live entry has (see the
    /// shim), so that two workers creating the same key cannot both win.
    fn create(&self, key: &str, value: &[u8]) -> Result<bool, String>;
}

/// An in-memory [`SharedStore`] for tests and the command line. Versions
/// start at 1 and grow with every write, like Envoy's.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Ok(false);
            }
        }
        let next = current.map_or(1, |c| c.wrapping_add(1));
        entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(true)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<bool, String> {
        if self.entries.borrow().contains_key(key) {
            return Ok(false);
        }
        self.set(key, value, None)
    }
}

/// Attempts of the compare-and-swap loop before giving up.
const CAS_ATTEMPTS: usize = 8;

/// The result of [`update_identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityUpdate<T> {
    /// What the change returned, on the state it was applied to.
    pub out: T,
    /// The state after the change (whether or not it was stored).
    pub state: IdentityState,
    /// Whether the change was stored for the other workers.
    pub stored: bool,
    /// The stored state could not be read: `state` is the change applied to
    /// a blank state, nothing was written (a blank write-back would erase
    /// a flag), and the caller must treat the identity as unknown.
    pub unreadable: bool,
}

/// Reads, changes and writes one identity's state with compare-and-swap,
/// retrying when another worker raced this one.
///
/// The change is always applied to the latest state read, never to a blank
/// one: when the store fails or stays contended, the caller still decides
/// on what is known (a downgrade is noticed) and learns it was not stored.
/// The state returned is the one the change produced, so no second read
/// can race another worker. A change that changes nothing writes nothing
/// (one read per request in the common case).
pub fn update_identity<T>(
    store: &dyn SharedStore,
    key: &str,
    mut change: impl FnMut(&mut IdentityState) -> T,
) -> IdentityUpdate<T> {
    let mut last = None;
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = match store.read(key) {
            Ok(read) => read,
            Err(_) => {
                let mut state = IdentityState::default();
                let out = change(&mut state);
                return IdentityUpdate {
                    out,
                    state,
                    stored: false,
                    unreadable: true,
                };
            }
        };
        let mut state = bytes
            .as_deref()
            .map(IdentityState::decode)
            .unwrap_or_default();
        let out = change(&mut state);
        let encoded = state.encode();
        if bytes.as_deref() == Some(encoded.as_slice()) {
            // Nothing changed: no write, and nothing for other workers to see.
            return IdentityUpdate {
                out,
                state,
                stored: true,
                unreadable: false,
            };
        }
        match store.set(key, &encoded, cas) {
            Ok(true) => {
                return IdentityUpdate {
                    out,
                    state,
                    stored: true,
                    unreadable: false,
                }
            }
            Ok(false) => last = Some((out, state)),
            Err(_) => {
                return IdentityUpdate {
                    out,
                    state,
                    stored: false,
                    unreadable: false,
                }
            }
        }
    }
    match last {
        Some((out, state)) => IdentityUpdate {
            out,
            state,
            stored: false,
            unreadable: false,
        },
        // Unreachable with CAS_ATTEMPTS > 0; apply once more to stay total.
        None => {
            let mut state = IdentityState::default();
            let out = change(&mut state);
            IdentityUpdate {
                out,
                state,
                stored: false,
                unreadable: false,
            }
        }
    }
}

/// Shared-data key of the last key set fetched from `remote` by any VM.
pub fn jwks_key(remote: &RemoteJwks) -> String {
    format!(
        "pqguard.jwks|{}|{}|{}",
        remote.cluster, remote.authority, remote.path
    )
}

/// Shared-data key holding what the last `tools/list` answer said of a
/// tool's `Mcp-Param-*` headers (see [`crate::inspect::params`]).
pub fn params_key(tool: &str) -> String {
    format!("pqguard.params.{tool}")
}

/// What the workers know of a tool's `Mcp-Param-*` headers.
pub fn known_schema(store: &dyn SharedStore, tool: &str) -> KnownSchema {
    KnownSchema::from_stored(store.get(&params_key(tool)).0.as_deref())
}

/// Shared-data key remembering that a pinned tool's definition changed.
pub fn pin_key(tool: &str) -> String {
    format!("pqguard.pin_violation.{tool}")
}

/// Whether a pinned tool is currently in violation (seen changed).
pub fn pin_violated(store: &dyn SharedStore, tool: &str) -> bool {
    matches!(store.get(&pin_key(tool)).0.as_deref(), Some(v) if v != b"ok")
}

/// Records the state of a pinned tool (`ok` or the digest seen).
pub fn set_pin_state(store: &dyn SharedStore, tool: &str, value: &[u8]) -> Result<(), String> {
    let key = pin_key(tool);
    for _ in 0..CAS_ATTEMPTS {
        let (_, cas) = store.get(&key);
        if store.set(&key, value, cas)? {
            return Ok(());
        }
    }
    Err(format!("pin state of {tool:?} contended; not stored"))
}

/// Buckets of the shared replay set: a proof's key picks one, so workers
/// contend only when they land in the same bucket, and each write copies
/// one bucket (at most `capacity / REPLAY_BUCKETS` entries), not the set.
pub const REPLAY_BUCKETS: usize = 4096;
const REPLAY_ENTRY: usize = 24;

/// The replay set shared by every worker of one Envoy (`replay_scope:
/// envoy`): [`REPLAY_BUCKETS`] shared-data entries, each a list of
/// (16-byte key, expiry) changed by compare-and-swap, expired entries
/// dropped on every write; a bucket holds at most twice its share of
/// `capacity`. A bucket that cannot be read or written after a
/// few attempts answers [`BindError::Busy`] (the request is refused with
/// 503): never accept a proof that was not remembered.
///
/// [`BindError::Busy`]: crate::bind::BindError::Busy
pub struct SharedReplay<'s> {
    /// The process-wide store.
    pub store: &'s dyn SharedStore,
    /// Live proofs the whole set may hold.
    pub capacity: usize,
}

/// The bucket a proof's replay key falls in.
pub fn replay_bucket(key: &[u8; 16]) -> usize {
    usize::from(u16::from_be_bytes([key[0], key[1]])) % REPLAY_BUCKETS
}

/// Shared-data key of replay bucket `n`.
pub fn replay_bucket_key(n: usize) -> String {
    format!("pqguard.replay.{n}")
}

impl crate::bind::ReplaySet for SharedReplay<'_> {
    fn remember(
        &mut self,
        key: &[u8; 16],
        until: u64,
        now: u64,
    ) -> Result<(), crate::bind::BindError> {
        use crate::bind::BindError;
        let name = replay_bucket_key(replay_bucket(key));
        // Proofs fall into buckets at random, so a bucket holds twice its
        // share: the set refuses (Busy) only near `capacity`, not when the
        // fullest bucket of a half-full set overflows.
        let per_bucket = self
            .capacity
            .saturating_mul(2)
            .div_ceil(REPLAY_BUCKETS)
            .max(1);
        let mut entry = [0u8; REPLAY_ENTRY];
        entry[..16].copy_from_slice(key);
        entry[16..].copy_from_slice(&until.to_be_bytes());
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = self.store.get(&name);
            let Some(bytes) = bytes else {
                match self.store.create(&name, &entry) {
                    Ok(true) => return Ok(()),
                    Ok(false) => continue,
                    Err(_) => return Err(BindError::Busy),
                }
            };
            // Live entries only; a value that is not whole entries (nobody
            // but this filter writes here) keeps its whole entries.
            let mut kept = Vec::with_capacity(bytes.len() + REPLAY_ENTRY);
            for e in bytes.chunks_exact(REPLAY_ENTRY) {
                let (k, t) = e.split_at(16);
                let t = u64::from_be_bytes(t.try_into().unwrap_or([0; 8]));
                if t < now {
                    continue;
                }
                if k == key {
                    return Err(BindError::Replayed);
                }
                kept.extend_from_slice(e);
            }
            if kept.len() / REPLAY_ENTRY >= per_bucket {
                return Err(BindError::Busy);
            }
            kept.extend_from_slice(&entry);
            match self.store.set(&name, &kept, cas) {
                Ok(true) => return Ok(()),
                Ok(false) => continue,
                Err(_) => return Err(BindError::Busy),
            }
        }
        Err(BindError::Busy)
    }
}
