//! Bearer tokens: post-quantum JWS (RFC 7515 compact, RFC 7519 claims).
//!
//! What is accepted:
//! - algorithms ([`Algorithm`]): `ML-DSA-44/65/87` (RFC 9964), `EdDSA`
//!   (Ed25519), `ES256`, and the composites `ML-DSA-65-Ed25519` and
//!   `ML-DSA-65-ES256` (draft-ietf-jose-pq-composite-sigs-05); each has a
//!   strength class ([`SignatureClass`]) for policy;
//! - keys ([`KeySet`]): a JWKS or JWK, each key pinned to its `alg`, decoded once;
//! - tokens ([`verify`]): strict base64url, header and claims parsed with the
//!   strict scanner first (duplicate keys at any depth refused), `alg` equal
//!   to the key's, `none` and any `crit` refused, `typ` absent or a JWT type,
//!   `kid` required when several keys could match, a size cap;
//! - claims ([`Claims`]): `aud` required (and must contain the configured
//!   audience), `exp` required, `nbf`/`iat` checked with a leeway, `iss`
//!   checked against the accepted list; every claim kept for policy.
//!
//! Verified tokens are cached by SHA3-256 digest ([`TokenCache`],
//! [`verify_cached`]). Time is always passed in: nothing here reads a clock
//! or a random number generator. Signing and key generation (from
//! caller-supplied entropy) exist only with the `sign` cargo feature, which
//! the command line enables and the filter does not.
//!
//! Every refusal is a [`TokenError`] with a stable name for logs; on the wire
//! they all become the same `invalid_token`.

mod alg;
mod b64;
mod cache;
mod claims;
pub(crate) use claims::validate as validate_claims;
mod error;
mod jws;
mod key;
mod sig;

#[cfg(test)]
mod published;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "published-vectors"))]
mod vectors;

use std::sync::Arc;

use sha3::{Digest, Sha3_256};

pub use alg::{
    Algorithm, AlgorithmInfo, AlgorithmSet, ClassicalScheme, KeyType, MlDsaParams, SignatureClass,
    COMPOSITE_PREFIX,
};
pub use b64::{decode as base64url_decode, encode as base64url_encode, Base64Error};
pub use cache::{CacheStats, TokenCache};
pub use claims::{Claims, ValidationOptions};
pub use error::{Part, TokenError};
#[cfg(any(test, feature = "sign"))]
pub use jws::{mint, sign_compact};
pub use jws::{verify_compact, Header, VerifiedJws};
pub(crate) use key::read_private_jwk;
#[cfg(any(test, feature = "sign"))]
pub use key::PrivateKey;
pub use key::{KeyError, KeySet, PublicKey, SkipReason, SkippedKey};
pub(crate) use sig::MlDsa65Signer;

/// A token whose signature, header and claims were all accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The algorithm that signed it (equal to the key's pinned algorithm).
    pub alg: Algorithm,
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
    /// The validated claims.
    pub claims: Claims,
    /// SHA3-256 of the token text (safe to log; computed once, when the
    /// signature is checked).
    pub digest: [u8; 32],
}

impl VerifiedToken {
    /// The strength class of the signature.
    pub fn class(&self) -> SignatureClass {
        self.alg.class()
    }
}

/// SHA3-256 of a token's text.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha3_256::digest(token.as_bytes()).into()
}

/// Verifies a compact JWS bearer token at time `now_unix` (seconds since the
/// epoch): size, structure, header, key, signature, then claims.
pub fn verify(
    token: &str,
    keys: &KeySet,
    opts: &ValidationOptions,
    now_unix: u64,
) -> Result<VerifiedToken, TokenError> {
    check_size(token, opts)?;
    verify_unchecked_size(token, keys, opts, now_unix, token_digest(token))
}

fn check_size(token: &str, opts: &ValidationOptions) -> Result<(), TokenError> {
    if token.len() > opts.max_token_bytes {
        return Err(TokenError::TooLarge {
            len: token.len(),
            limit: opts.max_token_bytes,
        });
    }
    Ok(())
}

fn verify_unchecked_size(
    token: &str,
    keys: &KeySet,
    opts: &ValidationOptions,
    now_unix: u64,
    digest: [u8; 32],
) -> Result<VerifiedToken, TokenError> {
    let jws = verify_compact(token, keys, opts.algorithms)?;
    let claims = claims::validate(&jws.payload, opts, now_unix)?;
    Ok(VerifiedToken {
        alg: jws.header.alg,
        kid: jws.key.kid().map(str::to_owned),
        claims,
        digest,
    })
}

/// The answer of [`verify_cached`].
#[derive(Debug, Clone)]
pub struct CachedVerification {
    /// The verified token (shared with the cache).
    pub token: Arc<VerifiedToken>,
    /// True if the cache answered (no signature was checked).
    pub hit: bool,
}

/// [`verify`] through a [`TokenCache`]: a token seen before with the same key
/// set and not yet expired is answered from the cache; otherwise it is
/// verified and, if accepted, cached until its `exp`. Refused tokens are not
/// cached. The size cap is enforced before hashing.
pub fn verify_cached(
    token: &str,
    keys: &KeySet,
    opts: &ValidationOptions,
    now_unix: u64,
    cache: &mut TokenCache,
) -> Result<CachedVerification, TokenError> {
    check_size(token, opts)?;
    if let Some(hit) = cache.get(token, keys.id(), now_unix) {
        return Ok(CachedVerification {
            token: hit,
            hit: true,
        });
    }
    let verified = Arc::new(verify_unchecked_size(
        token,
        keys,
        opts,
        now_unix,
        token_digest(token),
    )?);
    cache.insert(token, Arc::clone(&verified), keys.id(), now_unix);
    Ok(CachedVerification {
        token: verified,
        hit: false,
    })
}
