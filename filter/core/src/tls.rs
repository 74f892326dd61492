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
        Group::named(group).map_or(Self::None, |g| g.class)
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

/// A TLS key-exchange group pqguard knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The name as Envoy/BoringSSL reports it (`%DOWNSTREAM_TLS_GROUP%`).
    pub name: &'static str,
    /// Its strength class.
    pub class: KexClass,
    /// The ML-KEM parameter set inside it (FIPS 203), for hybrid and pure groups.
    pub kem: Option<&'static str>,
}

impl Group {
    /// The one table of TLS group names: classification, policy
    /// (`allowed_algos`) and reports all read it.
    pub const ALL: [Group; 16] = [
        Group::new("X25519MLKEM768", KexClass::HybridPq, Some("ML-KEM-768")),
        Group::new("SecP256r1MLKEM768", KexClass::HybridPq, Some("ML-KEM-768")),
        Group::new(
            "SecP384r1MLKEM1024",
            KexClass::HybridPq,
            Some("ML-KEM-1024"),
        ),
        Group::new("MLKEM768", KexClass::Pq, Some("ML-KEM-768")),
        Group::new("MLKEM1024", KexClass::Pq, Some("ML-KEM-1024")),
        Group::new("X25519", KexClass::Classical, None),
        Group::new("X448", KexClass::Classical, None),
        Group::new("P-256", KexClass::Classical, None),
        Group::new("P-384", KexClass::Classical, None),
        Group::new("P-521", KexClass::Classical, None),
        Group::new("secp256r1", KexClass::Classical, None),
        Group::new("secp384r1", KexClass::Classical, None),
        Group::new("secp521r1", KexClass::Classical, None),
        Group::new("ffdhe2048", KexClass::Classical, None),
        Group::new("ffdhe3072", KexClass::Classical, None),
        Group::new("ffdhe4096", KexClass::Classical, None),
    ];

    const fn new(name: &'static str, class: KexClass, kem: Option<&'static str>) -> Self {
        Self { name, class, kem }
    }

    /// The group with this exact name (names are case-sensitive, as Envoy writes them).
    pub fn named(name: &str) -> Option<&'static Group> {
        Self::ALL.iter().find(|g| g.name == name)
    }

    /// The groups an `allowed_algos` entry admits: every group built on an
    /// ML-KEM parameter set (`ML-KEM-768`), or one group by name. Empty
    /// when the entry names no group.
    pub fn admitted_by(entry: &str) -> Vec<&'static str> {
        let by_kem: Vec<_> = Self::ALL
            .iter()
            .filter(|g| g.kem == Some(entry))
            .map(|g| g.name)
            .collect();
        if !by_kem.is_empty() {
            return by_kem;
        }
        Self::named(entry).map(|g| vec![g.name]).unwrap_or_default()
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
/// for an absent value, which [`TlsFacts::new`] also treats as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// TLS version (`TLSv1.3`), from the `connection.tls_version` property.
    pub tls_version: Option<String>,
    /// Negotiated key-exchange group (`X25519MLKEM768`), from filter state.
    pub tls_group: Option<String>,
    /// Negotiated cipher suite, from filter state.
    pub tls_cipher: Option<String>,
}

impl TlsFacts {
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
    fn allowed_algos_entries_admit_groups_from_the_one_table() {
        assert_eq!(
            Group::admitted_by("ML-KEM-768"),
            ["X25519MLKEM768", "SecP256r1MLKEM768", "MLKEM768"]
        );
        assert_eq!(
            Group::admitted_by("ML-KEM-1024"),
            ["SecP384r1MLKEM1024", "MLKEM1024"]
        );
        assert_eq!(Group::admitted_by("X25519"), ["X25519"]);
        assert!(Group::admitted_by("ML-DSA-65").is_empty());
        for g in Group::ALL {
            assert_eq!(KexClass::of_group(g.name), g.class);
            assert_eq!(g.kem.is_some(), g.class >= KexClass::HybridPq, "{}", g.name);
        }
    }

    #[test]
    fn missing_facts_classify_as_weakest() {
        let plain = TlsFacts::new(None, Some("-".into()), Some(String::new()));
        assert_eq!(plain.tls_group, None);
        assert_eq!(plain.kex_class(), KexClass::None);
        let no_version = TlsFacts::new(None, Some("X25519MLKEM768".into()), None);
        assert_eq!(no_version.kex_class(), KexClass::None);
        let pq = TlsFacts::new(Some("TLSv1.3".into()), Some("X25519MLKEM768".into()), None);
        assert_eq!(pq.kex_class(), KexClass::HybridPq);
    }
}
