//! ML-KEM bound sessions: proof of possession for bearer tokens, written
//! once for both sides (the filter and the command line).
//!
//! A bearer token works for whoever holds it. A binding ties it to a key
//! only the client has:
//!
//! 1. **Bind.** The client sends its ML-KEM-768 encapsulation key `ek`
//!    (FIPS 203) with a valid token to `POST /.well-known/pqguard/bind`. The
//!    filter draws a binding id `kid.exp.random`, derives the binding key
//!    `K = HMAC-SHA3-256(secret[kid], "pqguard-bind-v1 key" 0 id SHA3-256(token))`,
//!    encapsulates to `ek` (shared secret `ss`, ciphertext `ct`) and answers
//!    `id`, `ct`, `K ⊕ HMAC-SHA3-256(ss, "pqguard-bind-v1 wrap" 0 id SHA3-256(ct))`
//!    and a 16-byte key check: a KEM-DEM, so only the holder of the
//!    decapsulation key learns `K`.
//! 2. **Bound requests** carry `PQGuard-Binding: id=…, ts=…, nonce=…, mac=…`,
//!    the MAC being HMAC-SHA3-256 with `K` over the HTTP method, the path,
//!    SHA3-256 of the body, the time, the nonce and SHA3-256 of the token.
//!
//! Nothing is stored: any worker of any Envoy holding the same binding
//! secret recomputes `K` from the id and the token, so bindings survive
//! worker and instance changes behind a load balancer. Secrets have ids
//! (the first binds, all verify), so they rotate without downtime. Replays
//! are stopped per worker within the time window (see [`ReplayCache`]).
//!
//! A token whose `cnf` claim (RFC 7800) carries `mlkem#S3-256`, the
//! base64url SHA3-256 of an encapsulation key, binds to that key only.

use hmac::{KeyInit, Mac, SimpleHmac};
use ml_kem::array::Array;
use ml_kem::kem::Decapsulate;
use ml_kem::{DecapsulationKey, EncapsulationKey, MlKem768};
use sha3::{Digest, Sha3_256};

use crate::token::{base64url_decode, base64url_encode};

/// Where the filter serves bindings.
pub const BIND_PATH: &str = "/.well-known/pqguard/bind";
/// The request header carrying a binding proof (lower case, as HTTP/2 sends it).
pub const PROOF_HEADER: &str = "pqguard-binding";
/// The `cnf` member naming the one encapsulation key a token may bind.
pub const CNF_MEMBER: &str = "mlkem#S3-256";
/// Bytes of an ML-KEM-768 encapsulation key.
pub const EK_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const CT_LEN: usize = 1088;
/// Randomness one binding consumes: 16 bytes of id, 32 of encapsulation.
pub const BIND_RANDOM_LEN: usize = 48;

type HmacSha3 = SimpleHmac<Sha3_256>;

/// A 32-byte key or digest.
pub type Key32 = [u8; 32];

/// Why a binding or a proof was refused. The text is for logs; [`BindError::hint`]
/// is what a client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// The encapsulation key is not a valid ML-KEM-768 key.
    BadKey(&'static str),
    /// The token's `cnf` names another encapsulation key.
    KeyNotConfirmed,
    /// A token without `cnf`, and the configuration binds only confirmed keys.
    UnconfirmedToken,
    /// The proof header cannot be read.
    Malformed(&'static str),
    /// The binding id names a secret this configuration does not have.
    UnknownSecret,
    /// The binding expired: bind again.
    Expired,
    /// The proof's time is outside the window (clock skew, or an old proof).
    OutsideWindow,
    /// The MAC does not match (another token, body, method or path, or
    /// not the binding's key).
    BadMac,
    /// The nonce was seen before within the window.
    Replayed,
    /// The replay cache is full of live entries: refuse rather than forget.
    Busy,
    /// The answer to a bind request cannot be used (client side).
    BadAnswer(&'static str),
    /// The token's `cnf` names an ML-KEM key and the request has no proof.
    Required,
    /// The request carries a proof but no bearer token to bind it to.
    NoToken,
}

impl BindError {
    /// The `error` a client acts on (in `WWW-Authenticate`): `rebind` (bind
    /// again), `clock_skew` (fix the clock), or `invalid_binding`.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Expired | Self::UnknownSecret | Self::Required => "rebind",
            Self::OutsideWindow => "clock_skew",
            _ => "invalid_binding",
        }
    }

    /// A short machine name (`reason_code` in logs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey(_) => "binding_bad_key",
            Self::KeyNotConfirmed => "binding_key_not_confirmed",
            Self::UnconfirmedToken => "binding_unconfirmed_token",
            Self::Malformed(_) => "binding_malformed",
            Self::UnknownSecret => "binding_unknown_secret",
            Self::Expired => "binding_expired",
            Self::OutsideWindow => "binding_outside_window",
            Self::BadMac => "binding_bad_mac",
            Self::Replayed => "binding_replayed",
            Self::Busy => "binding_busy",
            Self::BadAnswer(_) => "binding_bad_answer",
            Self::Required => "binding_required",
            Self::NoToken => "binding_without_token",
        }
    }
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadKey(why) => write!(f, "encapsulation key: {why}"),
            Self::KeyNotConfirmed => f.write_str("the token's cnf names another encapsulation key"),
            Self::UnconfirmedToken => {
                f.write_str("the token has no cnf and only confirmed keys may bind")
            }
            Self::Malformed(why) => write!(f, "binding proof: {why}"),
            Self::UnknownSecret => f.write_str("the binding names an unknown secret"),
            Self::Expired => f.write_str("the binding expired"),
            Self::OutsideWindow => f.write_str("the proof's time is outside the window"),
            Self::BadMac => f.write_str("the binding proof does not match"),
            Self::Replayed => f.write_str("the proof was used before"),
            Self::Busy => f.write_str("too many live proofs to remember"),
            Self::BadAnswer(why) => write!(f, "bind answer: {why}"),
            Self::Required => {
                f.write_str("the token is confirmed for an ML-KEM key: a binding proof is required")
            }
            Self::NoToken => f.write_str("a binding proof needs a bearer token"),
        }
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Key32 {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha3 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// SHA3-256.
pub fn sha3(bytes: &[u8]) -> Key32 {
    Sha3_256::digest(bytes).into()
}

/// The `mlkem#S3-256` thumbprint of an encapsulation key (base64url).
pub fn thumbprint(ek: &[u8]) -> String {
    base64url_encode(&sha3(ek))
}

fn xor(a: &Key32, b: &Key32) -> Key32 {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One binding secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its id, the first part of every binding id it made.
    pub kid: String,
    /// At least 32 bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret {{ kid: {:?}, {} bytes }}",
            self.kid,
            self.bytes.len()
        )
    }
}

/// The binding key of `id` for the token whose SHA3-256 is `token_digest`.
pub fn binding_key(secret: &Secret, id: &str, token_digest: &Key32) -> Key32 {
    hmac(
        &secret.bytes,
        &[b"pqguard-bind-v1 key\0", id.as_bytes(), b"\0", token_digest],
    )
}

fn wrap_key(ss: &[u8], id: &str, ct: &[u8]) -> Key32 {
    hmac(
        ss,
        &[b"pqguard-bind-v1 wrap\0", id.as_bytes(), b"\0", &sha3(ct)],
    )
}

fn key_check(key: &Key32, id: &str) -> [u8; 16] {
    let full = hmac(key, &[b"pqguard-bind-v1 check\0", id.as_bytes()]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The `binding` section as written in the configuration.
#[derive(Debug, Clone)]
pub struct RawBinding {
    secrets: Vec<RawSecret>,
    ttl_seconds: u64,
    window_seconds: u64,
    require_for_cnf: bool,
    allow_unconfirmed_tokens: bool,
    replay_capacity: usize,
}

impl crate::config::read::FromJson for RawBinding {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawBinding",
            &[
                "secrets",
                "ttl_seconds",
                "window_seconds",
                "require_for_cnf",
                "allow_unconfirmed_tokens",
                "replay_capacity",
            ],
        )?;
        Ok(Self {
            secrets: o.req("secrets")?,
            ttl_seconds: o.or("ttl_seconds", default_ttl())?,
            window_seconds: o.or("window_seconds", default_window())?,
            require_for_cnf: o.or("require_for_cnf", default_true())?,
            allow_unconfirmed_tokens: o.or("allow_unconfirmed_tokens", default_true())?,
            replay_capacity: o.or("replay_capacity", default_replay())?,
        })
    }
}

#[derive(Debug, Clone)]
struct RawSecret {
    kid: String,
    secret: String,
}

impl crate::config::read::FromJson for RawSecret {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(v, "struct RawSecret", &["kid", "secret"])?;
        Ok(Self {
            kid: o.req("kid")?,
            secret: o.req("secret")?,
        })
    }
}

fn default_ttl() -> u64 {
    3600
}
fn default_window() -> u64 {
    60
}
fn default_true() -> bool {
    true
}
fn default_replay() -> usize {
    100_000
}

/// Compiled binding settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSettings {
    /// The first binds; all verify (rotation: add a new one first, retire
    /// the old one after `ttl_seconds`).
    pub secrets: Vec<Secret>,
    /// How long a binding lasts.
    pub ttl_seconds: u64,
    /// How far a proof's time may be from the filter's clock.
    pub window_seconds: u64,
    /// A token whose `cnf` names an ML-KEM key is refused without a proof.
    pub require_for_cnf: bool,
    /// Tokens without `cnf` may bind.
    pub allow_unconfirmed_tokens: bool,
    /// Live proofs remembered per worker against replay.
    pub replay_capacity: usize,
}

/// Validates the `binding` section.
pub fn compile(raw: RawBinding) -> Result<BindingSettings, String> {
    if raw.secrets.is_empty() {
        return Err("binding.secrets: at least one secret".into());
    }
    let mut secrets: Vec<Secret> = Vec::with_capacity(raw.secrets.len());
    for (i, s) in raw.secrets.into_iter().enumerate() {
        let valid_kid = !s.kid.is_empty()
            && s.kid.len() <= 64
            && s.kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_kid {
            return Err(format!(
                "binding.secrets[{i}].kid: 1 to 64 characters from A-Z a-z 0-9 - _"
            ));
        }
        if secrets.iter().any(|x| x.kid == s.kid) {
            return Err(format!(
                "binding.secrets[{i}].kid {:?} appears twice",
                s.kid
            ));
        }
        let bytes = base64url_decode(s.secret.as_bytes())
            .map_err(|_| format!("binding.secrets[{i}].secret: not base64url"))?;
        if bytes.len() < 32 {
            return Err(format!(
                "binding.secrets[{i}].secret: at least 32 bytes (base64url), got {}",
                bytes.len()
            ));
        }
        secrets.push(Secret { kid: s.kid, bytes });
    }
    if raw.ttl_seconds == 0 || raw.window_seconds == 0 || raw.replay_capacity == 0 {
        return Err(
            "binding: ttl_seconds, window_seconds and replay_capacity must be positive".into(),
        );
    }
    Ok(BindingSettings {
        secrets,
        ttl_seconds: raw.ttl_seconds,
        window_seconds: raw.window_seconds,
        require_for_cnf: raw.require_for_cnf,
        allow_unconfirmed_tokens: raw.allow_unconfirmed_tokens,
        replay_capacity: raw.replay_capacity,
    })
}

/// What the filter answers to a bind request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// `kid.exp.random`.
    pub id: String,
    /// Unix seconds after which the binding is refused.
    pub expires_at: u64,
    /// The ML-KEM-768 ciphertext.
    pub ciphertext: Vec<u8>,
    /// `K` encrypted under the encapsulated secret.
    pub wrapped_key: Key32,
    /// The first 16 bytes of `HMAC(K, "pqguard-bind-v1 check" 0 id)`: the
    /// client checks it unwrapped the right key.
    pub key_check: [u8; 16],
}

impl Issued {
    /// The JSON answer of the bind endpoint.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "binding_id": self.id,
            "expires_at": self.expires_at,
            "kem": "ML-KEM-768",
            "ciphertext": base64url_encode(&self.ciphertext),
            "wrapped_key": base64url_encode(&self.wrapped_key),
            "key_check": base64url_encode(&self.key_check),
        })
        .to_string()
    }

    /// Reads the bind endpoint's JSON answer (client side).
    pub fn from_json(text: &[u8]) -> Result<Self, BindError> {
        let v: serde_json::Value =
            serde_json::from_slice(text).map_err(|_| BindError::BadAnswer("not JSON"))?;
        let field = |name: &'static str| -> Result<Vec<u8>, BindError> {
            let s = v[name].as_str().ok_or(BindError::BadAnswer(name))?;
            base64url_decode(s.as_bytes()).map_err(|_| BindError::BadAnswer(name))
        };
        let fixed = |name: &'static str| -> Result<Vec<u8>, BindError> { field(name) };
        let wrapped: Key32 = fixed("wrapped_key")?
            .try_into()
            .map_err(|_| BindError::BadAnswer("wrapped_key"))?;
        let check: [u8; 16] = fixed("key_check")?
            .try_into()
            .map_err(|_| BindError::BadAnswer("key_check"))?;
        Ok(Self {
            id: v["binding_id"]
                .as_str()
                .ok_or(BindError::BadAnswer("binding_id"))?
                .to_owned(),
            expires_at: v["expires_at"]
                .as_u64()
                .ok_or(BindError::BadAnswer("expires_at"))?,
            ciphertext: field("ciphertext")?,
            wrapped_key: wrapped,
            key_check: check,
        })
    }
}

/// The `mlkem#S3-256` thumbprint a token's `cnf` claim names, if any.
pub fn cnf_thumbprint(claims: &crate::token::Claims) -> Option<&str> {
    claims.get("cnf")?.get(CNF_MEMBER)?.as_str()
}

/// Checks an encapsulation key against a token's `cnf` thumbprint, if any.
pub fn confirm(ek: &[u8], cnf: Option<&str>, allow_unconfirmed: bool) -> Result<(), BindError> {
    match cnf {
        Some(expected) if constant_time_eq(thumbprint(ek).as_bytes(), expected.as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(BindError::KeyNotConfirmed),
        None if allow_unconfirmed => Ok(()),
        None => Err(BindError::UnconfirmedToken),
    }
}

/// Issues a binding (filter side): `random` is 48 fresh bytes from a CSPRNG.
pub fn issue(
    secret: &Secret,
    ek: &[u8],
    token_digest: &Key32,
    expires_at: u64,
    random: &[u8; BIND_RANDOM_LEN],
) -> Result<Issued, BindError> {
    let ek: &[u8; EK_LEN] = ek
        .try_into()
        .map_err(|_| BindError::BadKey("not 1184 bytes (ML-KEM-768)"))?;
    let ek = EncapsulationKey::<MlKem768>::new(&Array::from(*ek))
        .map_err(|_| BindError::BadKey("fails the FIPS 203 modulus check"))?;
    let (id_random, m) = random.split_at(16);
    let id = format!(
        "{}.{expires_at}.{}",
        secret.kid,
        base64url_encode(id_random)
    );
    let m: [u8; 32] = m.try_into().unwrap_or_else(|_| unreachable!());
    let (ct, ss) = ek.encapsulate_deterministic(&Array::from(m));
    let key = binding_key(secret, &id, token_digest);
    let wrap = wrap_key(ss.as_slice(), &id, ct.as_slice());
    Ok(Issued {
        key_check: key_check(&key, &id),
        wrapped_key: xor(&key, &wrap),
        ciphertext: ct.to_vec(),
        expires_at,
        id,
    })
}

/// A client's ML-KEM-768 key pair from its 64-byte seed (`d ‖ z`, FIPS 203).
pub struct ClientKey {
    dk: DecapsulationKey<MlKem768>,
}

impl ClientKey {
    /// The key pair of `seed`.
    pub fn from_seed(seed: &[u8; 64]) -> Self {
        Self {
            dk: DecapsulationKey::<MlKem768>::from_seed(Array::from(*seed)),
        }
    }

    /// The encapsulation key to send.
    pub fn encapsulation_key(&self) -> Vec<u8> {
        use ml_kem::KeyExport;
        self.dk.encapsulation_key().to_bytes().to_vec()
    }

    /// Opens a bind answer: the binding key, checked.
    pub fn open(&self, issued: &Issued) -> Result<Key32, BindError> {
        let ct: &[u8; CT_LEN] = issued
            .ciphertext
            .as_slice()
            .try_into()
            .map_err(|_| BindError::BadAnswer("ciphertext is not 1088 bytes"))?;
        let ss = self.dk.decapsulate(&Array::from(*ct));
        let key = xor(
            &issued.wrapped_key,
            &wrap_key(ss.as_slice(), &issued.id, &issued.ciphertext),
        );
        if constant_time_eq(&key_check(&key, &issued.id), &issued.key_check) {
            Ok(key)
        } else {
            Err(BindError::BadAnswer(
                "the key check fails (not our key, or altered)",
            ))
        }
    }
}

/// What a bound request's MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `:path`, query included, as sent.
    pub path: &'a str,
    /// SHA3-256 of the body (of nothing for a request without one).
    pub body_digest: &'a Key32,
    /// Unix seconds.
    pub ts: u64,
    /// 16 or more fresh random bytes.
    pub nonce: &'a [u8],
    /// SHA3-256 of the bearer token.
    pub token_digest: &'a Key32,
}

/// The MAC of a bound request.
pub fn request_mac(key: &Key32, s: &Signed<'_>) -> Key32 {
    hmac(
        key,
        &[
            b"pqguard-bind-v1 request\0",
            s.method.as_bytes(),
            b"\0",
            s.path.as_bytes(),
            b"\0",
            s.body_digest,
            &s.ts.to_be_bytes(),
            s.nonce,
            s.token_digest,
        ],
    )
}

/// The request a proof is checked against (filter side).
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `:path` as received.
    pub path: &'a str,
    /// SHA3-256 of the body.
    pub body_digest: &'a Key32,
    /// SHA3-256 of the bearer token.
    pub token_digest: &'a Key32,
}

/// A parsed `PQGuard-Binding` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The binding id.
    pub id: String,
    /// Unix seconds.
    pub ts: u64,
    /// The nonce (16 to 64 bytes).
    pub nonce: Vec<u8>,
    /// The MAC.
    pub mac: Key32,
}

impl Proof {
    /// Builds the proof of a request (client side).
    pub fn new(id: &str, key: &Key32, s: &Signed<'_>) -> Self {
        Self {
            id: id.to_owned(),
            ts: s.ts,
            nonce: s.nonce.to_vec(),
            mac: request_mac(key, s),
        }
    }

    /// The header value: `id=…, ts=…, nonce=…, mac=…`.
    pub fn to_header(&self) -> String {
        format!(
            "id={}, ts={}, nonce={}, mac={}",
            self.id,
            self.ts,
            base64url_encode(&self.nonce),
            base64url_encode(&self.mac)
        )
    }

    /// Reads a header value; every member exactly once.
    pub fn parse(value: &str) -> Result<Self, BindError> {
        let (mut id, mut ts, mut nonce, mut mac) = (None, None, None, None);
        for part in value.split(',') {
            let (name, v) = part
                .trim()
                .split_once('=')
                .ok_or(BindError::Malformed("expected name=value pairs"))?;
            let slot = match name {
                "id" => &mut id,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "mac" => &mut mac,
                _ => return Err(BindError::Malformed("unknown member")),
            };
            if slot.replace(v).is_some() {
                return Err(BindError::Malformed("a member appears twice"));
            }
        }
        let id = id.ok_or(BindError::Malformed("no id"))?;
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BindError::Malformed("bad id"));
        }
        let ts = ts
            .ok_or(BindError::Malformed("no ts"))?
            .parse::<u64>()
            .map_err(|_| BindError::Malformed("bad ts"))?;
        let nonce = base64url_decode(nonce.ok_or(BindError::Malformed("no nonce"))?.as_bytes())
            .map_err(|_| BindError::Malformed("bad nonce"))?;
        if !(16..=64).contains(&nonce.len()) {
            return Err(BindError::Malformed("nonce must be 16 to 64 bytes"));
        }
        let mac: Key32 = base64url_decode(mac.ok_or(BindError::Malformed("no mac"))?.as_bytes())
            .map_err(|_| BindError::Malformed("bad mac"))?
            .try_into()
            .map_err(|_| BindError::Malformed("mac must be 32 bytes"))?;
        Ok(Self {
            id: id.to_owned(),
            ts,
            nonce,
            mac,
        })
    }

    /// The secret id and expiry named by the binding id (`kid.exp.random`).
    pub fn id_parts(id: &str) -> Result<(&str, u64), BindError> {
        let mut parts = id.split('.');
        let (Some(kid), Some(exp), Some(random), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BindError::Malformed("binding id is not kid.exp.random"));
        };
        if kid.is_empty() || random.is_empty() {
            return Err(BindError::Malformed("binding id is not kid.exp.random"));
        }
        let exp = exp
            .parse::<u64>()
            .map_err(|_| BindError::Malformed("binding id expiry"))?;
        Ok((kid, exp))
    }

    /// Checks this proof (filter side), except replay: the binding's
    /// secret, expiry, the time window and the MAC, in constant time.
    pub fn verify(
        &self,
        secrets: &[Secret],
        request: &Covered<'_>,
        now: u64,
        window_seconds: u64,
    ) -> Result<(), BindError> {
        let (kid, exp) = Self::id_parts(&self.id)?;
        let secret = secrets
            .iter()
            .find(|s| s.kid == kid)
            .ok_or(BindError::UnknownSecret)?;
        if now > exp {
            return Err(BindError::Expired);
        }
        if self.ts.abs_diff(now) > window_seconds {
            return Err(BindError::OutsideWindow);
        }
        let key = binding_key(secret, &self.id, request.token_digest);
        let expected = request_mac(
            &key,
            &Signed {
                method: request.method,
                path: request.path,
                body_digest: request.body_digest,
                ts: self.ts,
                nonce: &self.nonce,
                token_digest: request.token_digest,
            },
        );
        if constant_time_eq(&expected, &self.mac) {
            Ok(())
        } else {
            Err(BindError::BadMac)
        }
    }
}

/// The proofs one worker has accepted, until their time window closes.
///
/// Per worker: a proof replayed to another worker or another Envoy within
/// the window is not caught here (the MAC still ties it to the same
/// method, path, body and token, so a replay can only repeat the exact
/// request). Kept small: each entry is 16 bytes of digest and a time.
#[derive(Debug)]
pub struct ReplayCache {
    seen: std::collections::HashMap<[u8; 16], u64>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live proofs.
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: std::collections::HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a proof seen at `now`; `Err` if it was seen before (or the
    /// cache is full of live proofs).
    pub fn check(&mut self, proof: &Proof, now: u64, window_seconds: u64) -> Result<(), BindError> {
        let digest = sha3(&[proof.id.as_bytes(), b"\0", &proof.nonce].concat());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let until = proof.ts.saturating_add(window_seconds);
        if self.seen.get(&key).is_some_and(|&t| t >= now) {
            return Err(BindError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, &mut t| t >= now);
            if self.seen.len() >= self.capacity {
                return Err(BindError::Busy);
            }
        }
        self.seen.insert(key, until);
        Ok(())
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A deterministic random bit generator (SP 800-90A HMAC_DRBG with
/// SHA3-256), seeded once from the host's randomness: bindings need 48
/// fresh bytes each, without a host call per binding.
pub struct Drbg {
    k: Key32,
    v: Key32,
}

impl std::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drbg")
    }
}

impl Drbg {
    /// Instantiates from `seed` (at least 32 bytes of entropy).
    pub fn new(seed: &[u8]) -> Self {
        let mut d = Self {
            k: [0; 32],
            v: [1; 32],
        };
        d.update(seed);
        d
    }

    fn update(&mut self, provided: &[u8]) {
        self.k = hmac(&self.k, &[&self.v, &[0], provided]);
        self.v = hmac(&self.k, &[&self.v]);
        if !provided.is_empty() {
            self.k = hmac(&self.k, &[&self.v, &[1], provided]);
            self.v = hmac(&self.k, &[&self.v]);
        }
    }

    /// Fills `out`.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            self.v = hmac(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
    }
}

#[cfg(test)]
mod tests;
