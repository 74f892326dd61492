//! JWS compact serialization (RFC 7515 §7.1): parsing, the protected header,
//! key selection and signature verification; with the `sign` feature, signing.

use serde_json::Value;

use super::alg::{Algorithm, AlgorithmSet};
use super::b64;
use super::claims::parse_object;
use super::error::{Part, TokenError};
use super::key::{KeySet, PublicKey};

/// The protected header members pqguard acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg`.
    pub alg: Algorithm,
    /// `kid`.
    pub kid: Option<String>,
    /// `typ`.
    pub typ: Option<String>,
}

/// A compact JWS whose signature verified; the payload is not yet interpreted.
#[derive(Debug, Clone)]
pub struct VerifiedJws<'k> {
    /// The protected header.
    pub header: Header,
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The key that verified the signature.
    pub key: &'k PublicKey,
}

fn segment(text: &str, part: Part) -> Result<Vec<u8>, TokenError> {
    b64::decode(text.as_bytes()).map_err(|_| TokenError::Malformed {
        part,
        detail: "not canonical base64url",
    })
}

fn malformed_header(detail: &'static str) -> TokenError {
    TokenError::Malformed {
        part: Part::Header,
        detail,
    }
}

/// Parses and checks the protected header: strict JSON, `alg` known,
/// accepted and not `none`, no `crit`, `typ` absent or a JWT type.
fn parse_header(bytes: &[u8], accepted: AlgorithmSet) -> Result<Header, TokenError> {
    let map = parse_object(bytes, Part::Header)?;
    let alg_name = match map.get("alg") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(malformed_header("alg is not a string")),
        None => return Err(malformed_header("no alg")),
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let alg = Algorithm::from_name(alg_name).ok_or(TokenError::UnsupportedAlgorithm)?;
    if !accepted.contains(alg) {
        return Err(TokenError::AlgorithmNotAccepted { alg });
    }
    if map.contains_key("crit") {
        // RFC 7515 §4.1.11: a recipient must refuse extensions it does not
        // understand, and pqguard understands none.
        return Err(TokenError::UnknownCrit);
    }
    let kid = match map.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed_header("kid is not a string")),
    };
    let typ = match map.get("typ") {
        None => None,
        Some(Value::String(s)) => {
            // RFC 7515 §4.1.9: compared case-insensitively, "application/" may be omitted.
            let t = s.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if t != "jwt" && t != "at+jwt" {
                return Err(TokenError::UnsupportedType);
            }
            Some(s.clone())
        }
        Some(_) => return Err(malformed_header("typ is not a string")),
    };
    Ok(Header { alg, kid, typ })
}

/// Chooses the key: by `kid` when the header has one (and then the key's
/// pinned algorithm must equal the header's), otherwise the only key of the
/// header's algorithm.
fn select_key<'k>(keys: &'k KeySet, header: &Header) -> Result<&'k PublicKey, TokenError> {
    match &header.kid {
        Some(kid) => {
            let key = keys
                .keys()
                .iter()
                .find(|k| k.kid() == Some(kid.as_str()))
                .ok_or(TokenError::UnknownKid)?;
            if key.alg() != header.alg {
                return Err(TokenError::AlgorithmMismatch {
                    header: header.alg,
                    key: key.alg(),
                });
            }
            Ok(key)
        }
        None => {
            let mut candidates = keys.keys().iter().filter(|k| k.alg() == header.alg);
            let key = candidates.next().ok_or(TokenError::NoMatchingKey)?;
            if candidates.next().is_some() {
                return Err(TokenError::AmbiguousKey);
            }
            Ok(key)
        }
    }
}

/// Verifies the structure, header and signature of a compact JWS.
/// Size limits are the caller's (see [`super::verify`]).
pub fn verify_compact<'k>(
    token: &str,
    keys: &'k KeySet,
    accepted: AlgorithmSet,
) -> Result<VerifiedJws<'k>, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed {
            part: Part::Token,
            detail: "not three dot-separated segments",
        });
    };
    let header = parse_header(&segment(h, Part::Header)?, accepted)?;
    let key = select_key(keys, &header)?;
    let payload = segment(p, Part::Claims)?;
    let signature = segment(s, Part::Signature)?;
    if signature.len() > header.alg.max_signature_len() {
        return Err(TokenError::Malformed {
            part: Part::Signature,
            detail: "too long for the algorithm",
        });
    }
    // The signing input is the ASCII text `header.payload`.
    let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or("");
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }
    Ok(VerifiedJws {
        header,
        payload,
        key,
    })
}

/// Signs a compact JWS with an exact header text and payload (the header
/// is used as given, so tests can produce hostile headers).
#[cfg(any(test, feature = "sign"))]
pub fn sign_compact(
    key: &super::key::PrivateKey,
    header_json: &str,
    payload: &[u8],
) -> Option<String> {
    let mut token = b64::encode(header_json.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64::encode(&signature));
    Some(token)
}

/// Mints a JWT: header `{"alg":…,"kid":…,"typ":"JWT"}` (no `kid` if the key
/// has none) over the given claims.
#[cfg(any(test, feature = "sign"))]
pub fn mint(
    key: &super::key::PrivateKey,
    claims: &serde_json::Map<String, Value>,
) -> Option<String> {
    let mut header = serde_json::Map::new();
    header.insert("alg".into(), Value::String(key.alg().name().into()));
    if let Some(kid) = key.kid() {
        header.insert("kid".into(), Value::String(kid.into()));
    }
    header.insert("typ".into(), Value::String("JWT".into()));
    let header = Value::Object(header).to_string();
    let payload = Value::Object(claims.clone()).to_string();
    sign_compact(key, &header, payload.as_bytes())
}
