//! Signature algorithms as data.
//!
//! Each JOSE `alg` pqguard accepts is one [`Algorithm`]; everything else about
//! it (key type, components, composite label, sizes, strength class) is read
//! from one static table, and the strength class is computed from the
//! components rather than declared: an algorithm with an ML-DSA component and
//! a classical component is hybrid, one with only ML-DSA is post-quantum.
//!
//! Standards followed:
//! - `ML-DSA-44`, `ML-DSA-65`, `ML-DSA-87`: RFC 9964 (ML-DSA for JOSE and
//!   COSE): key type `AKP`, `pub` = FIPS 204 public key, `priv` = the 32-byte
//!   seed, empty FIPS 204 context string.
//! - `EdDSA` with Ed25519 (RFC 8037, key type `OKP`) and `ES256` (RFC 7518,
//!   key type `EC`, P-256, signature = `r || s`, 64 bytes).
//! - `ML-DSA-65-Ed25519` and `ML-DSA-65-ES256`: draft-ietf-jose-pq-composite-sigs-05
//!   (October 2026), which uses the Composite ML-DSA construction of
//!   draft-ietf-lamps-pq-composite-sigs-19. See [`COMPOSITE_PREFIX`].

use std::fmt;

/// The JOSE signature algorithms pqguard verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// ML-DSA-44 (FIPS 204, RFC 9964). NIST security category 2.
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, RFC 9964). NIST security category 3.
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, RFC 9964). NIST security category 5.
    MlDsa87,
    /// Ed25519 (RFC 8032, RFC 8037). Classical.
    EdDsa,
    /// ECDSA with P-256 and SHA-256 (RFC 7518). Classical.
    Es256,
    /// Composite ML-DSA-65 + Ed25519, pre-hash SHA-512 (draft-ietf-jose-pq-composite-sigs-05).
    MlDsa65Ed25519,
    /// Composite ML-DSA-65 + ECDSA P-256 with SHA-256, pre-hash SHA-512
    /// (draft-ietf-jose-pq-composite-sigs-05).
    MlDsa65Es256,
}

/// The strength class of a signature algorithm, weakest first.
///
/// Ordered `Classical < HybridPq < Pq`, with the same names as the key-exchange
/// classes in [`crate::tls::KexClass`], so that one policy vocabulary
/// covers both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignatureClass {
    /// Only classical (elliptic-curve) signatures: forgeable by a quantum adversary.
    Classical,
    /// A composite of ML-DSA and a classical signature: secure while either holds.
    HybridPq,
    /// ML-DSA alone.
    Pq,
}

impl SignatureClass {
    /// Lower-case name used in configuration, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::HybridPq => "hybrid-pq",
            Self::Pq => "pq",
        }
    }
}

impl fmt::Display for SignatureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JWK key types (`kty`) pqguard understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Algorithm Key Pair (RFC 9964): ML-DSA and composite keys.
    Akp,
    /// Octet key pair (RFC 8037): Ed25519.
    Okp,
    /// Elliptic curve (RFC 7518): P-256.
    Ec,
}

impl KeyType {
    /// The `kty` member value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Akp => "AKP",
            Self::Okp => "OKP",
            Self::Ec => "EC",
        }
    }
}

/// An ML-DSA parameter set (FIPS 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlDsaParams {
    /// ML-DSA-44.
    MlDsa44,
    /// ML-DSA-65.
    MlDsa65,
    /// ML-DSA-87.
    MlDsa87,
}

impl MlDsaParams {
    /// Encoded public key length in bytes.
    pub fn public_key_len(self) -> usize {
        match self {
            Self::MlDsa44 => 1312,
            Self::MlDsa65 => 1952,
            Self::MlDsa87 => 2592,
        }
    }

    /// Encoded signature length in bytes.
    pub fn signature_len(self) -> usize {
        match self {
            Self::MlDsa44 => 2420,
            Self::MlDsa65 => 3309,
            Self::MlDsa87 => 4627,
        }
    }
}

/// A classical signature scheme, alone or as the second component of a composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicalScheme {
    /// Ed25519 (pure EdDSA, RFC 8032).
    Ed25519,
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
}

impl ClassicalScheme {
    /// The JWK `crv` value when the scheme is used alone.
    pub fn curve(self) -> &'static str {
        match self {
            Self::Ed25519 => "Ed25519",
            Self::EcdsaP256 => "P-256",
        }
    }

    /// Public key length inside a composite `pub` (Ed25519: 32 bytes; P-256:
    /// the 65-byte uncompressed X9.62 point).
    pub fn composite_public_key_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::EcdsaP256 => 65,
        }
    }
}

/// "CompositeAlgorithmSignatures2025": the prefix of the composite message
/// representative `M' = Prefix || Label || 0x00 || SHA-512(M)` (the `0x00` is
/// the length of the empty application context that JOSE mandates). The
/// ML-DSA component signs `M'` with the label as its FIPS 204 context; the
/// classical component signs `M'`. The composite signature is the ML-DSA
/// signature followed by the classical one (Ed25519: 64 bytes; ECDSA: a DER
/// `Ecdsa-Sig-Value`), the composite public key is the ML-DSA public key
/// followed by the classical one.
pub const COMPOSITE_PREFIX: &[u8] = b"CompositeAlgorithmSignatures2025";

/// Everything pqguard knows about one algorithm.
#[derive(Debug)]
pub struct AlgorithmInfo {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The JOSE `alg` name.
    pub name: &'static str,
    /// The JWK key type.
    pub key_type: KeyType,
    /// The ML-DSA component, if any.
    pub ml_dsa: Option<MlDsaParams>,
    /// The classical component, if any.
    pub classical: Option<ClassicalScheme>,
    /// For composites, the label (domain separator and ML-DSA context).
    pub composite_label: Option<&'static str>,
}

static TABLE: [AlgorithmInfo; 7] = [
    AlgorithmInfo {
        algorithm: Algorithm::MlDsa44,
        name: "ML-DSA-44",
        key_type: KeyType::Akp,
        ml_dsa: Some(MlDsaParams::MlDsa44),
        classical: None,
        composite_label: None,
    },
    AlgorithmInfo {
        algorithm: Algorithm::MlDsa65,
        name: "ML-DSA-65",
        key_type: KeyType::Akp,
        ml_dsa: Some(MlDsaParams::MlDsa65),
        classical: None,
        composite_label: None,
    },
    AlgorithmInfo {
        algorithm: Algorithm::MlDsa87,
        name: "ML-DSA-87",
        key_type: KeyType::Akp,
        ml_dsa: Some(MlDsaParams::MlDsa87),
        classical: None,
        composite_label: None,
    },
    AlgorithmInfo {
        algorithm: Algorithm::EdDsa,
        name: "EdDSA",
        key_type: KeyType::Okp,
        ml_dsa: None,
        classical: Some(ClassicalScheme::Ed25519),
        composite_label: None,
    },
    AlgorithmInfo {
        algorithm: Algorithm::Es256,
        name: "ES256",
        key_type: KeyType::Ec,
        ml_dsa: None,
        classical: Some(ClassicalScheme::EcdsaP256),
        composite_label: None,
    },
    AlgorithmInfo {
        algorithm: Algorithm::MlDsa65Ed25519,
        name: "ML-DSA-65-Ed25519",
        key_type: KeyType::Akp,
        ml_dsa: Some(MlDsaParams::MlDsa65),
        classical: Some(ClassicalScheme::Ed25519),
        composite_label: Some("COMPSIG-MLDSA65-Ed25519-SHA512"),
    },
    AlgorithmInfo {
        algorithm: Algorithm::MlDsa65Es256,
        name: "ML-DSA-65-ES256",
        key_type: KeyType::Akp,
        ml_dsa: Some(MlDsaParams::MlDsa65),
        classical: Some(ClassicalScheme::EcdsaP256),
        composite_label: Some("COMPSIG-MLDSA65-ECDSA-P256-SHA512"),
    },
];

impl Algorithm {
    /// Every supported algorithm, in a stable order.
    pub const ALL: [Algorithm; 7] = [
        Self::MlDsa44,
        Self::MlDsa65,
        Self::MlDsa87,
        Self::EdDsa,
        Self::Es256,
        Self::MlDsa65Ed25519,
        Self::MlDsa65Es256,
    ];

    /// The algorithm's table entry.
    pub fn info(self) -> &'static AlgorithmInfo {
        let index = match self {
            Self::MlDsa44 => 0,
            Self::MlDsa65 => 1,
            Self::MlDsa87 => 2,
            Self::EdDsa => 3,
            Self::Es256 => 4,
            Self::MlDsa65Ed25519 => 5,
            Self::MlDsa65Es256 => 6,
        };
        &TABLE[index]
    }

    /// The JOSE `alg` name (`ML-DSA-65`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Looks up a JOSE `alg` name (case-sensitive, as JOSE compares them).
    /// `none` and unknown names are `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE.iter().find(|i| i.name == name).map(|i| i.algorithm)
    }

    /// Computed from the components: ML-DSA and classical is hybrid, ML-DSA
    /// alone is post-quantum, classical alone is classical.
    pub fn class(self) -> SignatureClass {
        match (self.info().ml_dsa, self.info().classical) {
            (Some(_), Some(_)) => SignatureClass::HybridPq,
            (Some(_), None) => SignatureClass::Pq,
            (None, _) => SignatureClass::Classical,
        }
    }

    /// The JWK key type carrying keys for this algorithm.
    pub fn key_type(self) -> KeyType {
        self.info().key_type
    }

    /// True for composite (hybrid) algorithms.
    pub fn is_composite(self) -> bool {
        self.info().composite_label.is_some()
    }

    /// Length of a JOSE signature for this algorithm: exact, or for
    /// composites with an ECDSA component, the maximum (the DER encoding of
    /// `r` and `s` varies).
    pub fn max_signature_len(self) -> usize {
        let info = self.info();
        let pq = info.ml_dsa.map_or(0, MlDsaParams::signature_len);
        let classical = match (info.classical, info.composite_label.is_some()) {
            (None, _) => 0,
            (Some(ClassicalScheme::EcdsaP256), true) => 72,
            (Some(_), _) => 64,
        };
        pq + classical
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of algorithms (which ones a deployment accepts). Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// No algorithm.
    pub const NONE: Self = Self(0);

    /// Every supported algorithm.
    pub fn all() -> Self {
        Algorithm::ALL.iter().copied().collect()
    }

    /// Every algorithm of at least the given class.
    pub fn at_least(class: SignatureClass) -> Self {
        Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| a.class() >= class)
            .collect()
    }

    fn bit(alg: Algorithm) -> u16 {
        let index = Algorithm::ALL.iter().position(|a| *a == alg).unwrap_or(15);
        1u16 << index
    }

    /// Adds an algorithm.
    pub fn insert(&mut self, alg: Algorithm) {
        self.0 |= Self::bit(alg);
    }

    /// True if the set holds the algorithm.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The algorithms in the set, in [`Algorithm::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

impl Default for AlgorithmSet {
    /// Every supported algorithm.
    fn default() -> Self {
        Self::all()
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        let mut set = Self::NONE;
        for alg in iter {
            set.insert(alg);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn table_is_consistent_with_the_enum() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.info().algorithm, alg);
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
    }

    #[test]
    fn classes_are_computed_from_components() {
        assert_eq!(Algorithm::MlDsa65.class(), SignatureClass::Pq);
        assert_eq!(Algorithm::MlDsa65Ed25519.class(), SignatureClass::HybridPq);
        assert_eq!(Algorithm::MlDsa65Es256.class(), SignatureClass::HybridPq);
        assert_eq!(Algorithm::EdDsa.class(), SignatureClass::Classical);
        assert_eq!(Algorithm::Es256.class(), SignatureClass::Classical);
        assert!(SignatureClass::Classical < SignatureClass::HybridPq);
        assert!(SignatureClass::HybridPq < SignatureClass::Pq);
    }

    #[test]
    fn names_are_case_sensitive_and_none_is_unknown() {
        assert_eq!(Algorithm::from_name("none"), None);
        assert_eq!(Algorithm::from_name("ml-dsa-65"), None);
        assert_eq!(Algorithm::from_name("HS256"), None);
        assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::Es256));
    }

    #[test]
    fn sets_filter_by_class() {
        let set = AlgorithmSet::at_least(SignatureClass::HybridPq);
        assert!(set.contains(Algorithm::MlDsa44));
        assert!(set.contains(Algorithm::MlDsa65Es256));
        assert!(!set.contains(Algorithm::EdDsa));
        assert_eq!(set.iter().count(), 5);
        assert_eq!(AlgorithmSet::all().iter().count(), Algorithm::ALL.len());
        assert!(AlgorithmSet::NONE.is_empty());
    }

    #[test]
    fn composite_labels_follow_the_draft() {
        assert_eq!(
            Algorithm::MlDsa65Ed25519.info().composite_label,
            Some("COMPSIG-MLDSA65-Ed25519-SHA512")
        );
        assert_eq!(
            Algorithm::MlDsa65Es256.info().composite_label,
            Some("COMPSIG-MLDSA65-ECDSA-P256-SHA512")
        );
        assert_eq!(Algorithm::MlDsa65Es256.max_signature_len(), 3309 + 72);
        assert_eq!(Algorithm::Es256.max_signature_len(), 64);
    }
}
