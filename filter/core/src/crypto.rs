//! The cryptographic context of a request: facts observed by the host,
//! and the strength classes computed from them (never declared by a client).

use std::fmt;

/// Strength of the key exchange that protected the connection, weakest first.
///
/// Ordered: `None < Classical < HybridPq < Pq`. A fact the host did not
/// provide classifies as [`KexClass::None`] (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KexClass {
    /// Plaintext, or the group is unknown.
    None,
    /// A classical elliptic-curve or finite-field group (X25519, P-256, ...).
    Classical,
    /// A hybrid of a classical group and ML-KEM (X25519MLKEM768, ...).
    HybridPq,
    /// Pure ML-KEM (MLKEM768, MLKEM1024).
    Pq,
}

impl KexClass {
    /// Classifies a TLS group name as Envoy/BoringSSL reports it
    /// (`%DOWNSTREAM_TLS_GROUP%`). Unknown names are [`KexClass::None`].
    pub fn of_group(group: &str) -> Self {
        match group {
            "X25519MLKEM768" | "SecP256r1MLKEM768" | "SecP384r1MLKEM1024" => Self::HybridPq,
            "MLKEM768" | "MLKEM1024" => Self::Pq,
            "X25519" | "X448" | "P-256" | "P-384" | "P-521" | "secp256r1" | "secp384r1"
            | "secp521r1" | "ffdhe2048" | "ffdhe3072" | "ffdhe4096" => Self::Classical,
            _ => Self::None,
        }
    }

    /// Lower-case name used in configuration, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Classical => "classical",
            Self::HybridPq => "hybrid-pq",
            Self::Pq => "pq",
        }
    }
}

impl fmt::Display for KexClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the host told us about the downstream connection.
///
/// Values the host did not provide are `None`; Envoy's formatter writes `-`
/// for an absent value, which [`CryptoFacts::new`] also treats as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CryptoFacts {
    /// TLS version (`TLSv1.3`), from the `connection.tls_version` property.
    pub tls_version: Option<String>,
    /// Negotiated key-exchange group (`X25519MLKEM768`), from filter state.
    pub tls_group: Option<String>,
    /// Negotiated cipher suite, from filter state.
    pub tls_cipher: Option<String>,
}

impl CryptoFacts {
    /// Builds facts from raw host values, dropping empty and `-` values.
    pub fn new(
        tls_version: Option<String>,
        tls_group: Option<String>,
        tls_cipher: Option<String>,
    ) -> Self {
        fn present(v: Option<String>) -> Option<String> {
            v.filter(|s| !s.is_empty() && s != "-")
        }
        Self {
            tls_version: present(tls_version),
            tls_group: present(tls_group),
            tls_cipher: present(tls_cipher),
        }
    }

    /// Key-exchange class computed from the negotiated group.
    pub fn kex_class(&self) -> KexClass {
        match (&self.tls_version, &self.tls_group) {
            (Some(_), Some(g)) => KexClass::of_group(g),
            _ => KexClass::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn classifies_groups() {
        assert_eq!(KexClass::of_group("X25519MLKEM768"), KexClass::HybridPq);
        assert_eq!(KexClass::of_group("MLKEM1024"), KexClass::Pq);
        assert_eq!(KexClass::of_group("X25519"), KexClass::Classical);
        assert_eq!(KexClass::of_group("x25519mlkem768"), KexClass::None);
        assert!(KexClass::None < KexClass::Classical);
        assert!(KexClass::Classical < KexClass::HybridPq);
        assert!(KexClass::HybridPq < KexClass::Pq);
    }

    #[test]
    fn missing_facts_classify_as_weakest() {
        let plain = CryptoFacts::new(None, Some("-".into()), Some(String::new()));
        assert_eq!(plain.tls_group, None);
        assert_eq!(plain.kex_class(), KexClass::None);
        let no_version = CryptoFacts::new(None, Some("X25519MLKEM768".into()), None);
        assert_eq!(no_version.kex_class(), KexClass::None);
        let pq = CryptoFacts::new(Some("TLSv1.3".into()), Some("X25519MLKEM768".into()), None);
        assert_eq!(pq.kex_class(), KexClass::HybridPq);
    }
}
