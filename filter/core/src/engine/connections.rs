//! The TLS facts of the downstream connections a worker serves, kept per
//! connection so that a connection's second and later requests do not ask
//! the host for them again.
//!
//! Why this is sound: the facts (TLS version, key-exchange group, cipher,
//! mTLS and the client certificate) are fixed when the handshake completes;
//! TLS 1.3 has no renegotiation, and the filter-state entries the shipped
//! Envoy configuration publishes are formatted from the connection
//! (`%DOWNSTREAM_TLS_GROUP%`, `%DOWNSTREAM_TLS_CIPHER%`). Envoy's connection
//! ids are unique within a process and a connection stays on one worker.
//! A host that gives no connection id gets no caching: every request reads
//! its facts. A new configuration starts a new worker, hence an empty cache
//! (the filter-state keys may have changed).

use std::collections::VecDeque;

/// What a request learns about its downstream connection from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// `connection.tls_version`.
    pub tls_version: Option<String>,
    /// The negotiated key-exchange group (filter state).
    pub tls_group: Option<String>,
    /// The negotiated cipher (filter state).
    pub tls_cipher: Option<String>,
    /// Whether the client presented a verified certificate.
    pub mtls: bool,
    /// SHA-256 of that certificate, hex (mTLS only).
    pub peer_certificate_digest: Option<String>,
}

/// How many connections a worker remembers; the oldest is forgotten first
/// (a forgotten connection's next request reads its facts again).
pub const CONNECTION_CACHE_CAPACITY: usize = 256;

/// The facts of the last [`CONNECTION_CACHE_CAPACITY`] connections, by the
/// host's connection id.
#[derive(Debug, Default)]
pub struct ConnectionCache {
    entries: VecDeque<(u64, ConnectionFacts)>,
}

impl ConnectionCache {
    /// The remembered facts of connection `id`.
    pub fn get(&self, id: u64) -> Option<&ConnectionFacts> {
        // Newest first: a busy connection is usually one of the last few.
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| *k == id)
            .map(|(_, f)| f)
    }

    /// Remembers the facts of connection `id`, forgetting the oldest
    /// connection when full.
    pub fn insert(&mut self, id: u64, facts: ConnectionFacts) {
        if let Some(i) = self.entries.iter().position(|(k, _)| *k == id) {
            self.entries.remove(i);
        }
        if self.entries.len() >= CONNECTION_CACHE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((id, facts));
    }

    /// How many connections are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn facts(group: &str) -> ConnectionFacts {
        ConnectionFacts {
            tls_group: Some(group.to_owned()),
            ..ConnectionFacts::default()
        }
    }

    #[test]
    fn remembers_each_connection_and_forgets_the_oldest_when_full() {
        let mut c = ConnectionCache::default();
        assert!(c.get(1).is_none());
        c.insert(1, facts("X25519MLKEM768"));
        c.insert(2, facts("X25519"));
        assert_eq!(c.get(1), Some(&facts("X25519MLKEM768")));
        assert_eq!(c.get(2), Some(&facts("X25519")));
        // The same id again replaces, never duplicates.
        c.insert(2, facts("P-256"));
        assert_eq!((c.len(), c.get(2)), (2, Some(&facts("P-256"))));
        for id in 3..=(CONNECTION_CACHE_CAPACITY as u64 + 1) {
            c.insert(id, facts("X25519"));
        }
        assert_eq!(c.len(), CONNECTION_CACHE_CAPACITY);
        assert!(c.get(1).is_none(), "the oldest connection is forgotten");
        assert_eq!(c.get(2), Some(&facts("P-256")));
    }
}
