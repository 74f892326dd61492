//! The signature primitives behind each [`Algorithm`]: decoding public keys
//! (once), verifying, and, with the `sign` feature, signing.
//!
//! Crates: `ml-dsa` (RustCrypto, FIPS 204), `ed25519-dalek` (strict
//! verification: small-order points and non-canonical encodings are refused),
//! `p256` (ECDSA, SHA-256), `sha2` (the composite pre-hash, SHA-512).

use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams};
use sha2::{Digest, Sha512};

use super::alg::{Algorithm, ClassicalScheme, MlDsaParams as Params, COMPOSITE_PREFIX};

/// A decoded ML-DSA public key (ExpandA already done).
#[derive(Clone)]
pub(crate) enum MlDsaKey {
    P44(Box<ml_dsa::VerifyingKey<MlDsa44>>),
    P65(Box<ml_dsa::VerifyingKey<MlDsa65>>),
    P87(Box<ml_dsa::VerifyingKey<MlDsa87>>),
}

fn decode_ml_dsa<P: MlDsaParams>(bytes: &[u8]) -> Option<Box<ml_dsa::VerifyingKey<P>>> {
    let enc = EncodedVerifyingKey::<P>::try_from(bytes).ok()?;
    Some(Box::new(ml_dsa::VerifyingKey::<P>::decode(&enc)))
}

fn verify_ml_dsa<P: MlDsaParams>(
    key: &ml_dsa::VerifyingKey<P>,
    msg: &[u8],
    ctx: &[u8],
    sig: &[u8],
) -> bool {
    let Ok(enc) = EncodedSignature::<P>::try_from(sig) else {
        return false;
    };
    let Some(sig) = ml_dsa::Signature::<P>::decode(&enc) else {
        return false;
    };
    key.verify_with_context(msg, ctx, &sig)
}

impl MlDsaKey {
    fn decode(params: Params, bytes: &[u8]) -> Option<Self> {
        Some(match params {
            Params::MlDsa44 => Self::P44(decode_ml_dsa(bytes)?),
            Params::MlDsa65 => Self::P65(decode_ml_dsa(bytes)?),
            Params::MlDsa87 => Self::P87(decode_ml_dsa(bytes)?),
        })
    }

    fn verify(&self, msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
        match self {
            Self::P44(k) => verify_ml_dsa(k, msg, ctx, sig),
            Self::P65(k) => verify_ml_dsa(k, msg, ctx, sig),
            Self::P87(k) => verify_ml_dsa(k, msg, ctx, sig),
        }
    }
}

/// A decoded classical public key.
#[derive(Clone)]
pub(crate) enum ClassicalKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl ClassicalKey {
    /// Ed25519: the 32-byte public key. P-256: the 65-byte uncompressed
    /// point `0x04 || x || y` (compressed points are refused: the JOSE and
    /// composite encodings are both uncompressed).
    fn decode(scheme: ClassicalScheme, bytes: &[u8]) -> Option<Self> {
        match scheme {
            ClassicalScheme::Ed25519 => {
                let bytes: &[u8; 32] = bytes.try_into().ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .ok()
                    .map(Self::Ed25519)
            }
            ClassicalScheme::EcdsaP256 => {
                if bytes.len() != 65 || bytes.first() != Some(&0x04) {
                    return None;
                }
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .ok()
                    .map(Self::P256)
            }
        }
    }

    /// Verifies a signature in its JOSE form: Ed25519 64 bytes, ECDSA raw
    /// `r || s` (64 bytes) or, inside a composite, a DER `Ecdsa-Sig-Value`.
    fn verify(&self, msg: &[u8], sig: &[u8], der: bool) -> bool {
        match self {
            Self::Ed25519(key) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                key.verify_strict(msg, &sig).is_ok()
            }
            Self::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                let raw = if der {
                    match der_to_raw(sig) {
                        Some(raw) => raw,
                        None => return false,
                    }
                } else {
                    match <[u8; 64]>::try_from(sig) {
                        Ok(raw) => raw,
                        Err(_) => return false,
                    }
                };
                let Ok(sig) = p256::ecdsa::Signature::from_slice(&raw) else {
                    return false;
                };
                key.verify(msg, &sig).is_ok()
            }
        }
    }
}

/// A decoded public key for one algorithm: the components it has.
#[derive(Clone)]
pub(crate) struct Verifier {
    alg: Algorithm,
    ml_dsa: Option<MlDsaKey>,
    classical: Option<ClassicalKey>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Decodes the raw public key bytes of `alg` (AKP `pub`, OKP `x`, or the
/// uncompressed EC point) into a verifier. `None` if the bytes are not a
/// valid key for the algorithm.
pub(crate) fn decode_public(alg: Algorithm, bytes: &[u8]) -> Option<Verifier> {
    let info = alg.info();
    let pq_len = info.ml_dsa.map_or(0, Params::public_key_len);
    let classical_len = match (info.classical, info.ml_dsa) {
        (Some(c), _) => c.composite_public_key_len(),
        (None, _) => 0,
    };
    if bytes.len() != pq_len + classical_len {
        return None;
    }
    let (pq_bytes, classical_bytes) = bytes.split_at(pq_len);
    let ml_dsa = match info.ml_dsa {
        Some(p) => Some(MlDsaKey::decode(p, pq_bytes)?),
        None => None,
    };
    let classical = match info.classical {
        Some(c) => Some(ClassicalKey::decode(c, classical_bytes)?),
        None => None,
    };
    Some(Verifier {
        alg,
        ml_dsa,
        classical,
    })
}

/// The composite message representative
/// `M' = Prefix || Label || 0x00 || SHA-512(M)`.
pub(crate) fn message_representative(label: &str, msg: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(COMPOSITE_PREFIX.len() + label.len() + 1 + 64);
    m.extend_from_slice(COMPOSITE_PREFIX);
    m.extend_from_slice(label.as_bytes());
    m.push(0x00);
    m.extend_from_slice(&Sha512::digest(msg));
    m
}

impl Verifier {
    /// Verifies a JOSE signature over `msg` (the JWS signing input).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let info = self.alg.info();
        match (&self.ml_dsa, &self.classical, info.composite_label) {
            (Some(pq), None, None) => pq.verify(msg, &[], sig),
            (None, Some(classical), None) => classical.verify(msg, sig, false),
            (Some(pq), Some(classical), Some(label)) => {
                let Some(split) = info.ml_dsa.map(Params::signature_len) else {
                    return false;
                };
                if sig.len() <= split {
                    return false;
                }
                let (pq_sig, classical_sig) = sig.split_at(split);
                let m = message_representative(label, msg);
                // Both components must verify.
                pq.verify(&m, label.as_bytes(), pq_sig) && classical.verify(&m, classical_sig, true)
            }
            _ => false,
        }
    }
}

/// Parses a P-256 `Ecdsa-Sig-Value` in exactly the DER form of
/// draft-ietf-jose-pq-composite-sigs-05 §4.2.1 (minimal positive INTEGERs,
/// short lengths, nothing trailing) into raw `r || s`.
pub(crate) fn der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        let first = *value.first()?;
        if first & 0x80 != 0 {
            return None; // negative
        }
        let value = if first == 0 && len > 1 {
            // A leading zero is only allowed to clear the sign bit.
            if value.get(1).is_some_and(|b| b & 0x80 == 0) {
                return None;
            }
            value.get(1..)?
        } else {
            value
        };
        if value.len() > 32 {
            return None;
        }
        Some((value, rest))
    }
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, rest) = integer(body)?;
    let (s, rest) = integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut raw = [0u8; 64];
    raw.get_mut(32 - r.len()..32)?.copy_from_slice(r);
    raw.get_mut(64 - s.len()..64)?.copy_from_slice(s);
    Some(raw)
}

/// Encodes raw `r || s` as a DER `Ecdsa-Sig-Value`.
#[cfg(any(test, feature = "sign"))]
pub(crate) fn raw_to_der(raw: &[u8; 64]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let start = value
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(value.len().saturating_sub(1));
        let trimmed = value.get(start..).unwrap_or(&[0]);
        let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        out.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(trimmed);
    }
    let mut body = Vec::with_capacity(70);
    integer(&mut body, &raw[..32]);
    integer(&mut body, &raw[32..]);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

/// The fixed bytes around `d` in a P-256 `ECPrivateKey` as
/// draft-ietf-jose-pq-composite-sigs-05 §4.2.2 requires it (version 1,
/// parameters present, no public key).
#[cfg(any(test, feature = "sign"))]
pub(crate) const EC_PRIVATE_KEY_PREFIX: [u8; 7] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
/// See [`EC_PRIVATE_KEY_PREFIX`].
#[cfg(any(test, feature = "sign"))]
pub(crate) const EC_PRIVATE_KEY_SUFFIX: [u8; 12] = [
    0xA0, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07,
];

/// An ML-DSA-65 signing key made from its 32-byte seed (FIPS 204
/// `KeyGen_internal`): the one signer the filter itself carries, for audit
/// checkpoints. Deterministic signing, empty context, no randomness. Every
/// other algorithm, key generation and token minting are behind the `sign`
/// feature, so the filter does not carry their code.
#[derive(Clone)]
pub(crate) struct MlDsa65Signer(Box<ml_dsa::SigningKey<ml_dsa::MlDsa65>>);

impl MlDsa65Signer {
    /// The key of a seed.
    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ml_dsa_from_seed(seed))
    }

    /// The encoded public key.
    pub(crate) fn public_bytes(&self) -> Vec<u8> {
        ml_dsa_public(&self.0)
    }

    /// A deterministic signature over `msg` with an empty context.
    pub(crate) fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        ml_dsa_sign(&self.0, msg, &[])
    }
}

/// An ML-DSA signing key from its 32-byte seed (FIPS 204 `KeyGen_internal`).
fn ml_dsa_from_seed<P: ml_dsa::MlDsaParams>(seed: &[u8; 32]) -> Box<ml_dsa::SigningKey<P>> {
    Box::new(ml_dsa::SigningKey::<P>::from_seed(&ml_dsa::Seed::from(
        *seed,
    )))
}

/// The encoded public key of a signing key.
fn ml_dsa_public<P: ml_dsa::MlDsaParams>(key: &ml_dsa::SigningKey<P>) -> Vec<u8> {
    use ml_dsa::Keypair;
    key.verifying_key().encode().to_vec()
}

/// A deterministic ML-DSA signature with context `ctx`; `None` if signing fails.
fn ml_dsa_sign<P: ml_dsa::MlDsaParams>(
    key: &ml_dsa::SigningKey<P>,
    msg: &[u8],
    ctx: &[u8],
) -> Option<Vec<u8>> {
    key.expanded_key()
        .sign_deterministic(msg, ctx)
        .ok()
        .map(|s| s.encode().to_vec())
}

#[cfg(any(test, feature = "sign"))]
pub(crate) use signing::*;

#[cfg(any(test, feature = "sign"))]
mod signing {
    use ml_dsa::{MlDsa44, MlDsa65, MlDsa87};

    use super::{
        message_representative, ml_dsa_from_seed, ml_dsa_public, ml_dsa_sign, raw_to_der,
        Algorithm, ClassicalScheme, Params, EC_PRIVATE_KEY_PREFIX, EC_PRIVATE_KEY_SUFFIX,
    };

    /// Why a private key cannot be built or used.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum SignerError {
        /// The private key bytes have the wrong length or form.
        Encoding,
        /// The bytes are not a valid scalar (P-256: zero or not below the order).
        InvalidScalar,
        /// The signing primitive failed.
        Signing,
    }

    #[derive(Clone)]
    enum MlDsaSigner {
        P44(Box<ml_dsa::SigningKey<MlDsa44>>),
        P65(Box<ml_dsa::SigningKey<MlDsa65>>),
        P87(Box<ml_dsa::SigningKey<MlDsa87>>),
    }

    impl MlDsaSigner {
        fn from_seed(params: Params, seed: &[u8; 32]) -> Self {
            match params {
                Params::MlDsa44 => Self::P44(ml_dsa_from_seed(seed)),
                Params::MlDsa65 => Self::P65(ml_dsa_from_seed(seed)),
                Params::MlDsa87 => Self::P87(ml_dsa_from_seed(seed)),
            }
        }

        fn public(&self) -> Vec<u8> {
            match self {
                Self::P44(k) => ml_dsa_public(k),
                Self::P65(k) => ml_dsa_public(k),
                Self::P87(k) => ml_dsa_public(k),
            }
        }

        fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>, SignerError> {
            match self {
                Self::P44(k) => ml_dsa_sign(k, msg, ctx),
                Self::P65(k) => ml_dsa_sign(k, msg, ctx),
                Self::P87(k) => ml_dsa_sign(k, msg, ctx),
            }
            .ok_or(SignerError::Signing)
        }
    }

    #[derive(Clone)]
    enum ClassicalSigner {
        Ed25519(Box<ed25519_dalek::SigningKey>),
        P256(Box<p256::ecdsa::SigningKey>),
    }

    impl ClassicalSigner {
        fn from_secret(scheme: ClassicalScheme, secret: &[u8; 32]) -> Result<Self, SignerError> {
            Ok(match scheme {
                ClassicalScheme::Ed25519 => {
                    Self::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(secret)))
                }
                ClassicalScheme::EcdsaP256 => Self::P256(Box::new(
                    p256::ecdsa::SigningKey::from_slice(secret)
                        .map_err(|_| SignerError::InvalidScalar)?,
                )),
            })
        }

        fn secret(&self) -> [u8; 32] {
            match self {
                Self::Ed25519(k) => k.to_bytes(),
                Self::P256(k) => {
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&k.to_bytes());
                    d
                }
            }
        }

        /// Ed25519: 32 bytes; P-256: uncompressed point.
        fn public(&self) -> Vec<u8> {
            match self {
                Self::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
                Self::P256(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            }
        }

        fn sign(&self, msg: &[u8], der: bool) -> Result<Vec<u8>, SignerError> {
            match self {
                Self::Ed25519(k) => {
                    use ed25519_dalek::Signer;
                    Ok(k.sign(msg).to_bytes().to_vec())
                }
                Self::P256(k) => {
                    use p256::ecdsa::signature::Signer;
                    let sig: p256::ecdsa::Signature =
                        k.try_sign(msg).map_err(|_| SignerError::Signing)?;
                    let mut raw = [0u8; 64];
                    raw.copy_from_slice(&sig.to_bytes());
                    Ok(if der { raw_to_der(&raw) } else { raw.to_vec() })
                }
            }
        }
    }

    /// A private key for one algorithm.
    #[derive(Clone)]
    pub(crate) struct Signer {
        alg: Algorithm,
        ml_dsa: Option<MlDsaSigner>,
        classical: Option<ClassicalSigner>,
    }

    impl Signer {
        /// Builds a key from its JOSE private encoding: AKP `priv` (ML-DSA
        /// seed, or for composites the seed followed by the Ed25519 seed or
        /// the P-256 `ECPrivateKey`), OKP or EC `d`.
        pub(crate) fn from_private(alg: Algorithm, bytes: &[u8]) -> Result<Self, SignerError> {
            let info = alg.info();
            let (pq_bytes, classical_bytes) = match info.ml_dsa {
                Some(_) => {
                    if bytes.len() < 32 {
                        return Err(SignerError::Encoding);
                    }
                    bytes.split_at(32)
                }
                None => (&[][..], bytes),
            };
            let ml_dsa = match info.ml_dsa {
                Some(p) => {
                    let seed: &[u8; 32] = pq_bytes.try_into().map_err(|_| SignerError::Encoding)?;
                    Some(MlDsaSigner::from_seed(p, seed))
                }
                None => None,
            };
            let classical = match info.classical {
                Some(scheme) => {
                    let secret: &[u8] =
                        if info.composite_label.is_some() && scheme == ClassicalScheme::EcdsaP256 {
                            classical_bytes
                                .strip_prefix(&EC_PRIVATE_KEY_PREFIX[..])
                                .and_then(|r| r.strip_suffix(&EC_PRIVATE_KEY_SUFFIX[..]))
                                .ok_or(SignerError::Encoding)?
                        } else {
                            classical_bytes
                        };
                    let secret: &[u8; 32] = secret.try_into().map_err(|_| SignerError::Encoding)?;
                    Some(ClassicalSigner::from_secret(scheme, secret)?)
                }
                None if !classical_bytes.is_empty() => return Err(SignerError::Encoding),
                None => None,
            };
            Ok(Self {
                alg,
                ml_dsa,
                classical,
            })
        }

        /// The JOSE private encoding (inverse of [`Signer::from_private`]).
        pub(crate) fn private_bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            if let Some(pq) = &self.ml_dsa {
                let seed = match pq {
                    MlDsaSigner::P44(k) => k.to_seed(),
                    MlDsaSigner::P65(k) => k.to_seed(),
                    MlDsaSigner::P87(k) => k.to_seed(),
                };
                out.extend_from_slice(&seed);
            }
            if let Some(c) = &self.classical {
                let composite_ec = self.alg.is_composite() && matches!(c, ClassicalSigner::P256(_));
                if composite_ec {
                    out.extend_from_slice(&EC_PRIVATE_KEY_PREFIX);
                }
                out.extend_from_slice(&c.secret());
                if composite_ec {
                    out.extend_from_slice(&EC_PRIVATE_KEY_SUFFIX);
                }
            }
            out
        }

        /// The raw public key bytes, as [`super::decode_public`] reads them.
        pub(crate) fn public_bytes(&self) -> Vec<u8> {
            let mut out = self
                .ml_dsa
                .as_ref()
                .map(MlDsaSigner::public)
                .unwrap_or_default();
            if let Some(c) = &self.classical {
                out.extend_from_slice(&c.public());
            }
            out
        }

        /// Signs `msg` (the JWS signing input) and returns the JOSE signature.
        /// ML-DSA signs deterministically (FIPS 204 deterministic variant),
        /// ECDSA uses RFC 6979 nonces: no randomness is needed.
        pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
            match (
                &self.ml_dsa,
                &self.classical,
                self.alg.info().composite_label,
            ) {
                (Some(pq), None, None) => pq.sign(msg, &[]),
                (None, Some(c), None) => c.sign(msg, false),
                (Some(pq), Some(c), Some(label)) => {
                    let m = message_representative(label, msg);
                    let mut sig = pq.sign(&m, label.as_bytes())?;
                    sig.extend_from_slice(&c.sign(&m, true)?);
                    Ok(sig)
                }
                _ => Err(SignerError::Encoding),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn der_round_trips_and_is_minimal() {
        let mut raw = [0u8; 64];
        raw[0] = 0xF3; // high bit: needs a 0x00 pad
        raw[31] = 1;
        raw[33] = 0x07; // leading zero byte: trimmed
        raw[63] = 9;
        let der = raw_to_der(&raw);
        assert_eq!(&der[..5], &[0x30, der.len() as u8 - 2, 0x02, 0x21, 0x00]);
        assert_eq!(der_to_raw(&der), Some(raw));
    }

    #[test]
    fn der_refuses_non_minimal_negative_and_trailing_encodings() {
        let raw = [0x11u8; 64];
        let good = raw_to_der(&raw);
        assert_eq!(der_to_raw(&good), Some(raw));
        // Extra leading zero on r.
        let mut padded = vec![0x30, 0x45, 0x02, 0x21, 0x00];
        padded.extend_from_slice(&raw[..32]);
        padded.extend_from_slice(&[0x02, 0x20]);
        padded.extend_from_slice(&raw[32..]);
        assert_eq!(der_to_raw(&padded), None);
        // Negative r.
        let mut negative = good.clone();
        negative[4] = 0x91;
        assert_eq!(der_to_raw(&negative), None);
        // Trailing byte, wrong outer length.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(der_to_raw(&trailing), None);
        let mut long = good;
        long[1] += 1;
        assert_eq!(der_to_raw(&long), None);
        assert_eq!(der_to_raw(&[]), None);
    }

    #[test]
    fn decoding_refuses_wrong_lengths_and_compressed_points() {
        assert!(decode_public(Algorithm::MlDsa65, &[0u8; 1951]).is_none());
        assert!(decode_public(Algorithm::EdDsa, &[0u8; 31]).is_none());
        let signer = Signer::from_private(Algorithm::Es256, &[7u8; 32]).unwrap();
        let mut public = signer.public_bytes();
        assert!(decode_public(Algorithm::Es256, &public).is_some());
        // Same point, compressed: refused.
        let compressed = {
            let mut c = vec![0x02 | (public[64] & 1)];
            c.extend_from_slice(&public[1..33]);
            c
        };
        assert!(decode_public(Algorithm::Es256, &compressed).is_none());
        // Not on the curve.
        public[64] ^= 1;
        assert!(decode_public(Algorithm::Es256, &public).is_none());
    }
}
