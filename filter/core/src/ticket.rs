//! Session tickets: after one ML-DSA verification and one ML-KEM bind, a
//! bound client sends a short sealed ticket instead of its 3 to 7 KB token.
//!
//! A ticket is `<ticket secret kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`:
//!
//! ```text
//! enc, mac  = HMAC-SHA3-256(ticket secret, "pqguard-ticket-v1 enc" | "pqguard-ticket-v1 mac")
//! nonce     = 24 random bytes
//! ciphertext = plaintext ⊕ (HMAC-SHA3-256(enc, nonce ‖ 0) ‖ HMAC-SHA3-256(enc, nonce ‖ 1) ‖ …)
//!              (the counter as 4 bytes, big-endian; as long as the plaintext)
//! tag       = HMAC-SHA3-256(mac, "pqguard-ticket-v1" 0 ‖ kid ‖ 0 ‖ nonce ‖ ciphertext)
//! plaintext = JSON {"bid", "td", "alg", "kid", "kt", "exp", "claims"}
//! ```
//!
//! Encrypt-then-MAC with HMAC-SHA3-256 alone: HMAC is a PRF, so the keystream
//! in counter mode (as in NIST SP 800-108's counter-mode KDF) under a fresh
//! nonce is a stream cipher, and the HMAC tag under a second key over nonce
//! and ciphertext makes the whole an AEAD. It adds no cipher to the module,
//! whose every other symmetric primitive is HMAC-SHA3 already. The
//! contents (claims, the token's digest) stay out of logs and clients cannot
//! depend on the format: to a client a ticket is opaque.
//!
//! The plaintext holds what the policy needs without the token: the binding
//! id (`bid`), SHA3-256 of the token (`td`, from which the binding key is
//! derived), the token's algorithm and `kid`, the RFC 7638 thumbprint of the
//! key that verified it (`kt`), `exp` = min(token `exp`, binding expiry),
//! and the token's claims (`cnf` included). The filter accepts a ticket only
//! with a valid proof of its binding, only while that key is still in the
//! key set and its issuer, audience and algorithm are still allowed (checked
//! by the engine). Ticket secrets have ids and rotate independently of the
//! binding secrets: the first seals, all open.

use hmac::{KeyInit, Mac, SimpleHmac};
use serde_json::{Map, Value};
use sha3::Sha3_256;

use crate::bind::{constant_time_eq, Key32, Secret};
use crate::token::{base64url_decode, base64url_encode};

/// The request header carrying a ticket (lower case).
pub const TICKET_HEADER: &str = "pqguard-ticket";
/// Bytes of a ticket's nonce.
pub const NONCE_LEN: usize = 24;
/// The longest ticket accepted (characters).
pub const MAX_TICKET_LEN: usize = 8192;
const TAG_LEN: usize = 32;

type HmacSha3 = SimpleHmac<Sha3_256>;

/// Why a ticket cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not `kid.base64url`, too long, too short, or its plaintext is not a
    /// ticket.
    Malformed(&'static str),
    /// Sealed under a ticket secret this configuration does not have (bind
    /// again for a new ticket).
    UnknownSecret,
    /// The tag does not match: altered, or not made here.
    BadTag,
}

impl std::fmt::Display for TicketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "ticket: {why}"),
            Self::UnknownSecret => f.write_str("ticket: sealed under an unknown ticket secret"),
            Self::BadTag => f.write_str("ticket: the tag does not match (altered or foreign)"),
        }
    }
}

/// What a ticket holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketContents {
    /// The binding the ticket belongs to.
    pub binding_id: String,
    /// SHA3-256 of the token it stands for.
    pub token_digest: Key32,
    /// The token's algorithm (JOSE name).
    pub alg: String,
    /// The `kid` of the key that verified the token.
    pub kid: Option<String>,
    /// RFC 7638 thumbprint of that key.
    pub key_thumbprint: String,
    /// Unix seconds after which the ticket is refused.
    pub exp: u64,
    /// The token's claims.
    pub claims: Map<String, Value>,
}

impl TicketContents {
    fn to_json(&self) -> String {
        serde_json::json!({
            "bid": self.binding_id,
            "td": base64url_encode(&self.token_digest),
            "alg": self.alg,
            "kid": self.kid,
            "kt": self.key_thumbprint,
            "exp": self.exp,
            "claims": self.claims,
        })
        .to_string()
    }

    fn from_json(bytes: &[u8]) -> Result<Self, TicketError> {
        let bad = TicketError::Malformed("the sealed contents are not a ticket");
        let v: Value = serde_json::from_slice(bytes).map_err(|_| bad)?;
        let text = |name: &str| v.get(name).and_then(Value::as_str).ok_or(bad);
        let token_digest: Key32 = base64url_decode(text("td")?.as_bytes())
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(bad)?;
        Ok(Self {
            binding_id: text("bid")?.to_owned(),
            token_digest,
            alg: text("alg")?.to_owned(),
            kid: match v.get("kid") {
                Some(Value::String(k)) => Some(k.clone()),
                Some(Value::Null) | None => None,
                Some(_) => return Err(bad),
            },
            key_thumbprint: text("kt")?.to_owned(),
            exp: v.get("exp").and_then(Value::as_u64).ok_or(bad)?,
            claims: v
                .get("claims")
                .and_then(Value::as_object)
                .cloned()
                .ok_or(bad)?,
        })
    }
}

fn keys(secret: &Secret) -> (zeroize::Zeroizing<Key32>, zeroize::Zeroizing<Key32>) {
    let derive = |label: &[u8]| {
        let mut m =
            <HmacSha3 as KeyInit>::new_from_slice(&secret.bytes).unwrap_or_else(|_| unreachable!());
        Mac::update(&mut m, label);
        zeroize::Zeroizing::new(m.finalize().into_bytes().into())
    };
    (
        derive(b"pqguard-ticket-v1 enc"),
        derive(b"pqguard-ticket-v1 mac"),
    )
}

fn keystream_xor(enc: &Key32, nonce: &[u8], data: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(data.chunks_mut(32)) {
        let mut m = <HmacSha3 as KeyInit>::new_from_slice(enc).unwrap_or_else(|_| unreachable!());
        Mac::update(&mut m, nonce);
        Mac::update(&mut m, &counter.to_be_bytes());
        let block: Key32 = m.finalize().into_bytes().into();
        for (d, k) in chunk.iter_mut().zip(block.iter()) {
            *d ^= k;
        }
    }
}

fn tag(mac_key: &Key32, kid: &str, nonce: &[u8], ciphertext: &[u8]) -> Key32 {
    let mut m = <HmacSha3 as KeyInit>::new_from_slice(mac_key).unwrap_or_else(|_| unreachable!());
    Mac::update(&mut m, b"pqguard-ticket-v1\0");
    Mac::update(&mut m, kid.as_bytes());
    Mac::update(&mut m, b"\0");
    Mac::update(&mut m, nonce);
    Mac::update(&mut m, ciphertext);
    m.finalize().into_bytes().into()
}

/// Seals `contents` under `secret` (filter side); `nonce` is fresh randomness.
pub fn seal(secret: &Secret, nonce: &[u8; NONCE_LEN], contents: &TicketContents) -> String {
    let (enc, mac_key) = keys(secret);
    let mut body = contents.to_json().into_bytes();
    keystream_xor(&enc, nonce, &mut body);
    let t = tag(&mac_key, &secret.kid, nonce, &body);
    let mut sealed = Vec::with_capacity(NONCE_LEN + body.len() + TAG_LEN);
    sealed.extend_from_slice(nonce);
    sealed.extend_from_slice(&body);
    sealed.extend_from_slice(&t);
    format!("{}.{}", secret.kid, base64url_encode(&sealed))
}

/// Opens a ticket with whichever of `secrets` sealed it: the tag is checked
/// (constant time) before anything is decrypted.
pub fn open(secrets: &[Secret], ticket: &str) -> Result<TicketContents, TicketError> {
    if ticket.len() > MAX_TICKET_LEN {
        return Err(TicketError::Malformed("longer than 8192 characters"));
    }
    let (kid, sealed) = ticket
        .split_once('.')
        .ok_or(TicketError::Malformed("not kid.sealed"))?;
    let secret = secrets
        .iter()
        .find(|s| s.kid == kid)
        .ok_or(TicketError::UnknownSecret)?;
    let sealed =
        base64url_decode(sealed.as_bytes()).map_err(|_| TicketError::Malformed("not base64url"))?;
    if sealed.len() < NONCE_LEN + TAG_LEN + 2 {
        return Err(TicketError::Malformed("too short"));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, got) = rest.split_at(rest.len() - TAG_LEN);
    let (enc, mac_key) = keys(secret);
    if !constant_time_eq(&tag(&mac_key, kid, nonce, ciphertext), got) {
        return Err(TicketError::BadTag);
    }
    let mut plain = zeroize::Zeroizing::new(ciphertext.to_vec());
    keystream_xor(&enc, nonce, &mut plain);
    TicketContents::from_json(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn secret(kid: &str, fill: u8) -> Secret {
        Secret {
            kid: kid.into(),
            bytes: vec![fill; 32],
        }
    }

    fn contents() -> TicketContents {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::from("alice"));
        claims.insert("scope".into(), Value::from("tools:call"));
        TicketContents {
            binding_id: "b1.2000.abc".into(),
            token_digest: [7; 32],
            alg: "ML-DSA-65".into(),
            kid: Some("k65".into()),
            key_thumbprint: "thumb".into(),
            exp: 2_000,
            claims,
        }
    }

    #[test]
    fn a_ticket_opens_with_its_secret_and_hides_its_contents() {
        let s = secret("t1", 3);
        let sealed = seal(&s, &[9; NONCE_LEN], &contents());
        assert!(sealed.starts_with("t1."));
        assert!(!sealed.contains("alice"));
        let raw = base64url_decode(sealed.split_once('.').unwrap().1.as_bytes()).unwrap();
        assert!(
            !raw.windows(5).any(|w| w == b"alice"),
            "claims are encrypted"
        );
        assert_eq!(open(&[secret("t0", 1), s.clone()], &sealed), Ok(contents()));
        // Another nonce, another ticket.
        assert_ne!(sealed, seal(&s, &[8; NONCE_LEN], &contents()));
    }

    #[test]
    fn any_change_or_another_secret_is_refused() {
        let s = secret("t1", 3);
        let sealed = seal(&s, &[9; NONCE_LEN], &contents());
        let (kid, body) = sealed.split_once('.').unwrap();
        let raw = base64url_decode(body.as_bytes()).unwrap();
        for i in [0, NONCE_LEN, raw.len() / 2, raw.len() - 1] {
            let mut changed = raw.clone();
            changed[i] ^= 1;
            let t = format!("{kid}.{}", base64url_encode(&changed));
            assert_eq!(
                open(std::slice::from_ref(&s), &t),
                Err(TicketError::BadTag),
                "byte {i}"
            );
        }
        assert_eq!(open(&[secret("t1", 4)], &sealed), Err(TicketError::BadTag));
        assert_eq!(
            open(&[secret("t2", 3)], &sealed),
            Err(TicketError::UnknownSecret)
        );
        // The kid is under the tag: relabelled to another secret's id, refused.
        let relabelled = sealed.replacen("t1.", "t2.", 1);
        assert_eq!(
            open(&[s.clone(), secret("t2", 3)], &relabelled),
            Err(TicketError::BadTag)
        );
        for junk in [
            "",
            "t1",
            "t1.!!",
            "t1.AAAA",
            &"x".repeat(MAX_TICKET_LEN + 1),
        ] {
            assert!(
                matches!(
                    open(std::slice::from_ref(&s), junk),
                    Err(TicketError::Malformed(_) | TicketError::UnknownSecret)
                ),
                "{junk:.20}"
            );
        }
    }
}
