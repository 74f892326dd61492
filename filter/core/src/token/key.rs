//! Keys: JWK and JWKS (RFC 7517) parsing into decoded, algorithm-pinned keys.
//!
//! Key formats, one per key type:
//! - `AKP` (RFC 9964): `{"kty":"AKP","alg":"ML-DSA-65","pub":…}`; the private
//!   form adds `priv`, the 32-byte ML-DSA seed. Composite keys
//!   (draft-ietf-jose-pq-composite-sigs-05 §4.1) are `AKP` too, with
//!   `pub` = ML-DSA public key || classical public key (Ed25519: 32 bytes;
//!   P-256: uncompressed point) and `priv` = ML-DSA seed || classical private
//!   key (Ed25519: 32-byte seed; P-256: the fixed-form DER `ECPrivateKey`).
//! - `OKP` (RFC 8037): `{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":…}`, private `d`.
//! - `EC` (RFC 7518): `{"kty":"EC","crv":"P-256","alg":"ES256","x":…,"y":…}`, private `d`.
//!
//! Every usable key must name its `alg`: a key verifies tokens of exactly
//! that algorithm. Keys are decoded once, when the set is parsed (ML-DSA
//! decoding expands the public matrix, ≈0.4 ms in wasm).

use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

use super::alg::{Algorithm, KeyType};
use super::b64;
use super::sig::{self, Verifier};
use crate::inspect::json::{self, JsonError, ScanLimits};

/// Why a JWK or JWKS is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not strict JSON (syntax, duplicate keys, nesting).
    Json(JsonError),
    /// The JSON is not a JWK or JWKS, or a member has the wrong type.
    Shape(String),
    /// Key `index` lacks a member its key type requires.
    MissingMember {
        /// Position of the key in the set (0 for a single JWK).
        index: usize,
        /// The missing member.
        member: &'static str,
    },
    /// Key `index` names an algorithm pqguard does not support (private keys only;
    /// in a key set such keys are skipped and reported).
    UnsupportedAlgorithm {
        /// Position of the key in the set.
        index: usize,
    },
    /// Key `index` has a `kty` or `crv` that does not fit its `alg`.
    KeyTypeMismatch {
        /// Position of the key in the set.
        index: usize,
        /// The key's algorithm.
        alg: Algorithm,
    },
    /// Key `index` carries key material that is not a valid key for its
    /// algorithm (not base64url, wrong length, point not on the curve, …).
    InvalidKeyMaterial {
        /// Position of the key in the set.
        index: usize,
        /// The key's algorithm.
        alg: Algorithm,
        /// Which member is wrong.
        member: &'static str,
    },
    /// A key in a public key set carries private material (`priv` or `d`).
    PrivateKeyMaterial {
        /// Position of the key in the set.
        index: usize,
    },
    /// A private JWK's public members do not match its private key.
    PublicKeyMismatch,
    /// Two keys share a `kid`.
    DuplicateKid {
        /// The repeated key id.
        kid: String,
    },
    /// The set holds no key pqguard can use.
    NoUsableKeys,
    /// Key generation got entropy that is not a valid private key
    /// (P-256: a scalar outside `[1, n-1]`); retry with fresh entropy.
    InvalidEntropy,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "invalid JSON: {e}"),
            Self::Shape(s) => write!(f, "not a JWK or JWKS: {s}"),
            Self::MissingMember { index, member } => {
                write!(f, "key {index}: missing member {member:?}")
            }
            Self::UnsupportedAlgorithm { index } => write!(f, "key {index}: unsupported alg"),
            Self::KeyTypeMismatch { index, alg } => {
                write!(f, "key {index}: kty/crv does not fit alg {alg}")
            }
            Self::InvalidKeyMaterial { index, alg, member } => {
                write!(f, "key {index}: member {member:?} is not a valid {alg} key")
            }
            Self::PrivateKeyMaterial { index } => {
                write!(f, "key {index}: private key material in a public key set")
            }
            Self::PublicKeyMismatch => f.write_str("public members do not match the private key"),
            Self::DuplicateKid { kid } => write!(f, "two keys share kid {kid:?}"),
            Self::NoUsableKeys => f.write_str("no usable signature key"),
            Self::InvalidEntropy => f.write_str("entropy is not a valid private key; retry"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Why a key of a set was left out (the set is still usable).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A key type pqguard does not verify (`RSA`, `oct`, …).
    UnsupportedKeyType,
    /// No `alg` member: the algorithm must be pinned.
    MissingAlg,
    /// An `alg` pqguard does not verify.
    UnsupportedAlgorithm,
    /// `use` is not `sig`, or `key_ops` does not include `verify`.
    NotForSignatures,
}

impl SkipReason {
    /// Stable snake_case name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::UnsupportedKeyType => "unsupported_key_type",
            Self::MissingAlg => "missing_alg",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::NotForSignatures => "not_for_signatures",
        }
    }
}

/// A key of a set that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the set.
    pub index: usize,
    /// Its `kid`, if any.
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// The JWK members pqguard reads. Others (`x5c`, `n`, …) are ignored.
#[derive(Debug, Default)]
struct RawJwk {
    kty: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    public: Option<String>,
    private: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
}

impl crate::config::read::FromJson for RawJwk {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::lenient(v, "struct RawJwk")?;
        Ok(Self {
            kty: o.opt("kty")?,
            alg: o.opt("alg")?,
            kid: o.opt("kid")?,
            use_: o.opt("use")?,
            key_ops: o.opt("key_ops")?,
            public: o.opt("pub")?,
            private: o.opt("priv")?,
            crv: o.opt("crv")?,
            x: o.opt("x")?,
            y: o.opt("y")?,
            d: o.opt("d")?,
        })
    }
}

impl RawJwk {
    fn has_private(&self) -> bool {
        self.private.is_some() || self.d.is_some()
    }
}

/// Strictly parses a JWK or JWKS text into raw members.
/// Returns the keys and whether the text was a set.
fn parse_raw(bytes: &[u8]) -> Result<Vec<RawJwk>, KeyError> {
    json::scan(bytes, ScanLimits { max_depth: 16 }).map_err(KeyError::Json)?;
    let value: Value = serde_json::from_slice(bytes).map_err(|e| KeyError::Shape(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(KeyError::Shape("expected an object".into()));
    };
    let entries: Vec<Value> = match object.get("keys") {
        Some(Value::Array(keys)) if !object.contains_key("kty") => keys.clone(),
        Some(_) => return Err(KeyError::Shape("\"keys\" must be an array".into())),
        None => vec![Value::Object(object)],
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            <RawJwk as crate::config::read::FromJson>::read(&v)
                .map_err(|e| KeyError::Shape(format!("key {i}: {e}")))
        })
        .collect()
}

fn decode_member(
    raw: Option<&String>,
    index: usize,
    alg: Algorithm,
    member: &'static str,
) -> Result<Vec<u8>, KeyError> {
    let text = raw.ok_or(KeyError::MissingMember { index, member })?;
    b64::decode(text.as_bytes()).map_err(|_| KeyError::InvalidKeyMaterial { index, alg, member })
}

/// Checks `kty`/`crv` against `alg` and returns the raw public key bytes
/// in the form [`sig::decode_public`] reads.
fn public_bytes(raw: &RawJwk, index: usize, alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let mismatch = KeyError::KeyTypeMismatch { index, alg };
    if raw.kty.as_deref() != Some(alg.key_type().as_str()) {
        return Err(mismatch);
    }
    match alg.key_type() {
        KeyType::Akp => decode_member(raw.public.as_ref(), index, alg, "pub"),
        KeyType::Okp | KeyType::Ec => {
            let curve = alg.info().classical.map(|c| c.curve());
            if raw.crv.as_deref() != curve {
                return Err(mismatch);
            }
            let x = decode_member(raw.x.as_ref(), index, alg, "x")?;
            if alg.key_type() == KeyType::Okp {
                return Ok(x);
            }
            let y = decode_member(raw.y.as_ref(), index, alg, "y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(KeyError::InvalidKeyMaterial {
                    index,
                    alg,
                    member: "x",
                });
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(point)
        }
    }
}

/// A decoded public key, pinned to one algorithm.
#[derive(Clone)]
pub struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    /// Raw public key (AKP `pub`, OKP `x`, or the uncompressed EC point).
    bytes: Vec<u8>,
    verifier: Verifier,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("thumbprint", &self.thumbprint())
            .finish()
    }
}

impl PublicKey {
    /// Decodes raw public key bytes for `alg` (AKP `pub`, OKP `x`, or the
    /// uncompressed EC point `0x04 || x || y`).
    pub fn from_bytes(alg: Algorithm, kid: Option<String>, bytes: &[u8]) -> Option<Self> {
        let verifier = sig::decode_public(alg, bytes)?;
        Some(Self {
            kid,
            alg,
            bytes: bytes.to_vec(),
            verifier,
        })
    }

    /// The key id, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm this key is pinned to.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The raw public key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Verifies a JOSE signature over `msg` (a JWS signing input).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(msg, signature)
    }

    /// The required members of the public JWK, in lexicographic order
    /// (RFC 7638 §3.2; RFC 9964 for `AKP`: `alg`, `kty`, `pub`).
    fn required_members(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let s = |v: &str| Value::String(v.to_owned());
        match self.alg.key_type() {
            KeyType::Akp => {
                m.insert("alg".into(), s(self.alg.name()));
                m.insert("kty".into(), s("AKP"));
                m.insert("pub".into(), s(&b64::encode(&self.bytes)));
            }
            KeyType::Okp => {
                m.insert("crv".into(), s("Ed25519"));
                m.insert("kty".into(), s("OKP"));
                m.insert("x".into(), s(&b64::encode(&self.bytes)));
            }
            KeyType::Ec => {
                let (x, y) = self
                    .bytes
                    .get(1..)
                    .unwrap_or(&[])
                    .split_at(32.min(self.bytes.len().saturating_sub(1)));
                m.insert("crv".into(), s("P-256"));
                m.insert("kty".into(), s("EC"));
                m.insert("x".into(), s(&b64::encode(x)));
                m.insert("y".into(), s(&b64::encode(y)));
            }
        }
        m
    }

    /// The JWK thumbprint (RFC 7638, SHA-256, base64url): over `alg`, `kty`,
    /// `pub` for `AKP` keys (RFC 9964), over `crv`, `kty`, `x` (and `y`) otherwise.
    pub fn thumbprint(&self) -> String {
        // serde_json's map is ordered, so this is the canonical form.
        let canonical = Value::Object(self.required_members()).to_string();
        b64::encode(&Sha256::digest(canonical.as_bytes()))
    }

    /// The public JWK: the required members, `alg` and `kid`.
    pub fn to_jwk(&self) -> Value {
        let mut m = self.required_members();
        m.insert("alg".into(), Value::String(self.alg.name().to_owned()));
        if let Some(kid) = &self.kid {
            m.insert("kid".into(), Value::String(kid.clone()));
        }
        Value::Object(m)
    }
}

/// The verification keys of a deployment: decoded once, looked up per token.
///
/// Invariants: every key is decoded and pinned to an algorithm; no two keys
/// share a `kid`; the set is not empty.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<PublicKey>,
    skipped: Vec<SkippedKey>,
    id: [u8; 32],
}

impl KeySet {
    /// Parses a JWKS (`{"keys":[…]}`) or a single public JWK.
    ///
    /// Keys of an unsupported type or algorithm, without `alg`, or not meant
    /// for signatures are left out and listed in [`KeySet::skipped`] (a
    /// remote JWKS may also publish keys for other software). A supported key
    /// with invalid material, private key material, or a repeated `kid` is an
    /// error: such a set never replaces a good one.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, raw) in parse_raw(bytes)?.into_iter().enumerate() {
            if raw.has_private() {
                return Err(KeyError::PrivateKeyMaterial { index });
            }
            let skip = |reason| SkippedKey {
                index,
                kid: raw.kid.clone(),
                reason,
            };
            let known_kty = matches!(raw.kty.as_deref(), Some("AKP" | "OKP" | "EC"));
            if !known_kty {
                skipped.push(skip(SkipReason::UnsupportedKeyType));
                continue;
            }
            let for_signatures = raw.use_.as_deref().is_none_or(|u| u == "sig")
                && raw
                    .key_ops
                    .as_ref()
                    .is_none_or(|ops| ops.iter().any(|o| o == "verify"));
            if !for_signatures {
                skipped.push(skip(SkipReason::NotForSignatures));
                continue;
            }
            let Some(alg_name) = raw.alg.as_deref() else {
                skipped.push(skip(SkipReason::MissingAlg));
                continue;
            };
            let Some(alg) = Algorithm::from_name(alg_name) else {
                skipped.push(skip(SkipReason::UnsupportedAlgorithm));
                continue;
            };
            let bytes = public_bytes(&raw, index, alg)?;
            let member = match alg.key_type() {
                KeyType::Akp => "pub",
                KeyType::Okp | KeyType::Ec => "x",
            };
            let key = PublicKey::from_bytes(alg, raw.kid.clone(), &bytes)
                .ok_or(KeyError::InvalidKeyMaterial { index, alg, member })?;
            keys.push(key);
        }
        let mut set = Self::from_keys(keys)?;
        set.skipped = skipped;
        Ok(set)
    }

    /// Builds a set from decoded keys (for example the union of inline keys
    /// and a fetched JWKS). Refuses an empty set and repeated `kid`s.
    pub fn from_keys(keys: Vec<PublicKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoUsableKeys);
        }
        let mut kids: Vec<&str> = keys.iter().filter_map(PublicKey::kid).collect();
        kids.sort_unstable();
        if let Some(w) = kids.windows(2).find(|w| w.first() == w.get(1)) {
            return Err(KeyError::DuplicateKid {
                kid: w.first().map(|k| (*k).to_owned()).unwrap_or_default(),
            });
        }
        let mut hasher = Sha3_256::new();
        for key in &keys {
            hasher.update(key.alg.name().as_bytes());
            hasher.update([0]);
            if let Some(kid) = &key.kid {
                hasher.update([1]);
                hasher.update((kid.len() as u64).to_be_bytes());
                hasher.update(kid.as_bytes());
            } else {
                hasher.update([0]);
            }
            hasher.update((key.bytes.len() as u64).to_be_bytes());
            hasher.update(&key.bytes);
        }
        let id = hasher.finalize().into();
        Ok(Self {
            keys,
            skipped: Vec::new(),
            id,
        })
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Keys of the source document that were left out, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// SHA3-256 over the keys (algorithm, kid, public key), in order: equal
    /// for equal sets, so a refetched, unchanged JWKS keeps cached tokens.
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// The public JWKS.
    pub fn to_jwks(&self) -> Value {
        let keys = self.keys.iter().map(PublicKey::to_jwk).collect();
        let mut m = Map::new();
        m.insert("keys".into(), Value::Array(keys));
        Value::Object(m)
    }
}

/// A private JWK read but not yet made into a key: what a caller that
/// supports one algorithm needs (the filter's audit checkpoint key is
/// ML-DSA-65 only, and carries none of the other algorithms' signing code).
#[derive(Debug)]
pub(crate) struct PrivateJwk {
    /// The algorithm, from `alg`, with `kty` checked against it.
    pub alg: Algorithm,
    /// The key id.
    pub kid: Option<String>,
    /// The private member (`priv` for AKP, `d` otherwise), decoded.
    pub private: Vec<u8>,
    /// The public member(s), decoded, when present.
    pub public: Option<Vec<u8>>,
}

/// Reads one private JWK without building a signer (see [`PrivateJwk`]).
pub(crate) fn read_private_jwk(bytes: &[u8]) -> Result<PrivateJwk, KeyError> {
    let mut raws = parse_raw(bytes)?;
    let (Some(raw), true) = (raws.pop(), raws.is_empty()) else {
        return Err(KeyError::Shape("expected one private JWK".into()));
    };
    let index = 0;
    let alg_name = raw.alg.as_deref().ok_or(KeyError::MissingMember {
        index,
        member: "alg",
    })?;
    let alg = Algorithm::from_name(alg_name).ok_or(KeyError::UnsupportedAlgorithm { index })?;
    if raw.kty.as_deref() != Some(alg.key_type().as_str()) {
        return Err(KeyError::KeyTypeMismatch { index, alg });
    }
    let (member, text) = match alg.key_type() {
        KeyType::Akp => ("priv", raw.private.as_ref()),
        KeyType::Okp | KeyType::Ec => ("d", raw.d.as_ref()),
    };
    let private = decode_member(text, index, alg, member)?;
    let has_public = raw.public.is_some() || raw.x.is_some() || raw.y.is_some();
    let public = if has_public {
        Some(public_bytes(&raw, index, alg)?)
    } else {
        None
    };
    Ok(PrivateJwk {
        alg,
        kid: raw.kid,
        private,
        public,
    })
}

#[cfg(any(test, feature = "sign"))]
pub use private::PrivateKey;

#[cfg(any(test, feature = "sign"))]
mod private {
    use serde_json::{Map, Value};

    use super::super::alg::{Algorithm, KeyType};
    use super::super::b64;
    use super::super::sig::Signer;
    use super::{read_private_jwk, KeyError, PublicKey};

    /// A private signing key (a private JWK). Available with the `sign` feature.
    #[derive(Clone)]
    pub struct PrivateKey {
        kid: Option<String>,
        alg: Algorithm,
        signer: Signer,
        public: PublicKey,
    }

    impl std::fmt::Debug for PrivateKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PrivateKey")
                .field("kid", &self.kid)
                .field("alg", &self.alg)
                .finish_non_exhaustive()
        }
    }

    impl PrivateKey {
        fn from_signer(
            alg: Algorithm,
            kid: Option<String>,
            signer: Signer,
        ) -> Result<Self, KeyError> {
            let public = PublicKey::from_bytes(alg, kid.clone(), &signer.public_bytes())
                .ok_or(KeyError::InvalidEntropy)?;
            Ok(Self {
                kid,
                alg,
                signer,
                public,
            })
        }

        /// Generates a key from caller-supplied entropy (64 bytes from a
        /// CSPRNG): ML-DSA uses the first 32 bytes as its seed, the classical
        /// component the last 32 (Ed25519 seed, or the P-256 scalar).
        /// [`KeyError::InvalidEntropy`] (P-256 scalar out of range, probability
        /// about 2⁻³²) means: call again with fresh entropy.
        pub fn generate(
            alg: Algorithm,
            kid: Option<String>,
            entropy: &[u8; 64],
        ) -> Result<Self, KeyError> {
            let (pq, classical) = entropy.split_at(32);
            let info = alg.info();
            let mut private = Vec::with_capacity(32 + 51);
            if info.ml_dsa.is_some() {
                private.extend_from_slice(pq);
            }
            if info.classical.is_some() {
                let composite_ec = alg == Algorithm::MlDsa65Es256;
                if composite_ec {
                    private.extend_from_slice(&super::sig::EC_PRIVATE_KEY_PREFIX);
                }
                private.extend_from_slice(classical);
                if composite_ec {
                    private.extend_from_slice(&super::sig::EC_PRIVATE_KEY_SUFFIX);
                }
            }
            // Only a P-256 scalar out of range can fail here.
            let signer =
                Signer::from_private(alg, &private).map_err(|_| KeyError::InvalidEntropy)?;
            Self::from_signer(alg, kid, signer)
        }

        /// Parses one private JWK (`AKP` with `priv`, `OKP`/`EC` with `d`).
        /// Public members, when present, must match the private key.
        pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
            let jwk = read_private_jwk(bytes)?;
            let (index, alg) = (0, jwk.alg);
            let member = match alg.key_type() {
                KeyType::Akp => "priv",
                KeyType::Okp | KeyType::Ec => "d",
            };
            let signer = Signer::from_private(alg, &jwk.private)
                .map_err(|_| KeyError::InvalidKeyMaterial { index, alg, member })?;
            let key = Self::from_signer(alg, jwk.kid, signer)?;
            if jwk.public.is_some_and(|p| p != key.public.bytes()) {
                return Err(KeyError::PublicKeyMismatch);
            }
            Ok(key)
        }

        /// The key id.
        pub fn kid(&self) -> Option<&str> {
            self.kid.as_deref()
        }

        /// The algorithm.
        pub fn alg(&self) -> Algorithm {
            self.alg
        }

        /// The matching public key.
        pub fn public_key(&self) -> &PublicKey {
            &self.public
        }

        /// The private key bytes as the JWK carries them (`priv` or `d`).
        pub(crate) fn private_bytes(&self) -> Vec<u8> {
            self.signer.private_bytes()
        }

        /// Signs a JWS signing input, returning the JOSE signature bytes.
        pub(crate) fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
            self.signer.sign(msg).ok()
        }

        /// The private JWK: the public JWK plus `priv` (AKP) or `d`.
        pub fn to_jwk(&self) -> Value {
            let mut jwk = match self.public.to_jwk() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let private = self.signer.private_bytes();
            let member = match self.alg.key_type() {
                KeyType::Akp => "priv",
                KeyType::Okp | KeyType::Ec => "d",
            };
            jwk.insert(member.into(), Value::String(b64::encode(&private)));
            Value::Object(jwk)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(alg: Algorithm, kid: &str, byte: u8) -> PrivateKey {
        PrivateKey::generate(alg, Some(kid.into()), &[byte; 64]).unwrap()
    }

    #[test]
    fn private_jwks_round_trip_for_every_algorithm() {
        for alg in Algorithm::ALL {
            let k = key(alg, "k1", 3);
            let text = k.to_jwk().to_string();
            let back = PrivateKey::parse(text.as_bytes()).unwrap();
            assert_eq!(back.to_jwk(), k.to_jwk(), "{alg}");
            let public = k.public_key().to_jwk().to_string();
            let set = KeySet::parse(public.as_bytes()).unwrap();
            assert_eq!(set.keys().len(), 1);
            assert_eq!(set.keys()[0].alg(), alg);
            assert_eq!(set.keys()[0].bytes(), k.public_key().bytes());
        }
    }

    #[test]
    fn composite_private_encodings_follow_the_draft() {
        let k = key(Algorithm::MlDsa65Es256, "c", 1);
        let jwk = k.to_jwk();
        let private = b64::decode(jwk["priv"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(private.len(), 32 + 51);
        assert_eq!(&private[32..39], &sig::EC_PRIVATE_KEY_PREFIX);
        let public = b64::decode(jwk["pub"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(public.len(), 1952 + 65);
        assert_eq!(public[1952], 0x04);
        let k = key(Algorithm::MlDsa65Ed25519, "e", 1);
        let private = b64::decode(k.to_jwk()["priv"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(private.len(), 64);
    }

    #[test]
    fn refuses_private_material_in_a_public_set() {
        let k = key(Algorithm::EdDsa, "k", 1);
        let text = format!(r#"{{"keys":[{}]}}"#, k.to_jwk());
        assert_eq!(
            KeySet::parse(text.as_bytes()).unwrap_err(),
            KeyError::PrivateKeyMaterial { index: 0 }
        );
    }

    #[test]
    fn refuses_duplicate_kids_and_empty_sets() {
        let a = key(Algorithm::EdDsa, "same", 1).public_key().to_jwk();
        let b = key(Algorithm::Es256, "same", 2).public_key().to_jwk();
        let text = format!(r#"{{"keys":[{a},{b}]}}"#);
        assert!(matches!(
            KeySet::parse(text.as_bytes()),
            Err(KeyError::DuplicateKid { .. })
        ));
        assert_eq!(
            KeySet::parse(br#"{"keys":[]}"#).unwrap_err(),
            KeyError::NoUsableKeys
        );
    }

    #[test]
    fn skips_and_reports_foreign_keys() {
        let good = key(Algorithm::MlDsa44, "pq", 1).public_key().to_jwk();
        let text = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}},
                {{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
                {{"kty":"OKP","crv":"Ed25519","alg":"Ed448","x":"AA"}},
                {{"kty":"EC","use":"enc","crv":"P-256","alg":"ES256","x":"AA","y":"AA"}},
                {good}
            ]}}"#
        );
        let set = KeySet::parse(text.as_bytes()).unwrap();
        assert_eq!(set.keys().len(), 1);
        let reasons: Vec<_> = set.skipped().iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "unsupported_key_type",
                "missing_alg",
                "unsupported_algorithm",
                "not_for_signatures"
            ]
        );
    }

    #[test]
    fn refuses_bad_material_and_mismatched_types() {
        let cases = [
            r#"{"kty":"AKP","alg":"ML-DSA-65","pub":"AAAA"}"#,
            r#"{"kty":"AKP","alg":"ML-DSA-65"}"#,
            r#"{"kty":"OKP","alg":"ML-DSA-65","crv":"Ed25519","x":"AA"}"#,
            r#"{"kty":"EC","alg":"ES256","crv":"P-384","x":"AA","y":"AA"}"#,
            r#"{"kty":"OKP","alg":"EdDSA","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo="}"#,
        ];
        for case in cases {
            assert!(KeySet::parse(case.as_bytes()).is_err(), "{case}");
        }
        assert!(matches!(
            KeySet::parse(br#"{"kty":"AKP","kty":"AKP"}"#),
            Err(KeyError::Json(JsonError::DuplicateKey { .. }))
        ));
    }

    #[test]
    fn private_jwk_with_a_foreign_public_key_is_refused() {
        let a = key(Algorithm::EdDsa, "a", 1).to_jwk();
        let b = key(Algorithm::EdDsa, "a", 2).to_jwk();
        let mut mixed = a.clone();
        mixed["x"] = b["x"].clone();
        assert_eq!(
            PrivateKey::parse(mixed.to_string().as_bytes()).unwrap_err(),
            KeyError::PublicKeyMismatch
        );
    }

    #[test]
    fn key_set_id_depends_on_content_only() {
        let a = key(Algorithm::EdDsa, "a", 1).public_key().clone();
        let b = key(Algorithm::MlDsa44, "b", 2).public_key().clone();
        let one = KeySet::from_keys(vec![a.clone(), b.clone()]).unwrap();
        let two = KeySet::from_keys(vec![a.clone(), b]).unwrap();
        let three = KeySet::from_keys(vec![a]).unwrap();
        assert_eq!(one.id(), two.id());
        assert_ne!(one.id(), three.id());
    }

    #[test]
    fn thumbprint_matches_rfc7638_example_form_for_okp() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        let jwk = br#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let set = KeySet::parse(jwk).unwrap();
        assert_eq!(
            set.keys()[0].thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
