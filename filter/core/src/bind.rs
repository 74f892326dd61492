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
//! 2. **Bound requests** carry `PQGuard-Binding: v=2, id=…, ts=…, nonce=…, mac=…`,
//!    the MAC being HMAC-SHA3-256 with `K` over the HTTP method, the path,
//!    the authority, the MCP headers that route a request (`Mcp-Session-Id`,
//!    `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`), SHA3-256 of the
//!    body, the time, the nonce and SHA3-256 of the token (see [`request_mac`]).
//!
//! Nothing is stored: any worker of any Envoy holding the same binding
//! secret recomputes `K` from the id and the token, so bindings survive
//! worker and instance changes behind a load balancer. Secrets have ids
//! (the first binds, all verify), so they rotate without downtime. Replays
//! are stopped within the time window by every worker of one Envoy (the
//! engine's shared replay set) or per worker (see [`ReplayCache`]).
//!
//! A token whose `cnf` claim (RFC 7800) carries `mlkem#S3-256`, the
//! base64url SHA3-256 of an encapsulation key, binds to that key only, and
//! only such a token's proofs make a request *bound*: a proof for a token
//! without `cnf` shows that somebody holds some key, not that the token's
//! owner does (see [`confirmation`]).

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
/// The `cnf` member of a certificate-bound token (RFC 8705): base64url
/// SHA-256 of the client certificate (DER).
pub const CNF_X5T: &str = "x5t#S256";
/// The proof format this filter speaks (`v=2` in the header).
pub const PROOF_VERSION: &str = "2";
/// How far in the future a proof's time may be (seconds): a little clock
/// skew, never proofs made in advance.
pub const FUTURE_SKEW_SECONDS: u64 = 5;

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
    /// The token's `cnf` names a confirmation method this filter does not
    /// check (the member, or why the claim cannot be read): refused, never
    /// taken as a bearer token.
    UnsupportedConfirmation(&'static str),
    /// The token's `cnf` names a client certificate (`x5t#S256`) and the
    /// connection has no certificate, or another one.
    CertificateMismatch,
    /// The binding made too many live proofs on this worker
    /// (`replay_per_binding`): slow down.
    Quota,
    /// A session ticket that cannot be used: unreadable, altered, sealed
    /// under a retired secret, expired, its signing key gone from the key
    /// set, or no longer allowed (bind again for a new one when `rebind`).
    Ticket(&'static str, bool),
}

impl BindError {
    /// The `error` a client acts on (in `WWW-Authenticate`): `rebind` (bind
    /// again), `clock_skew` (fix the clock), `retry` (later, with a new
    /// proof: the answer is 503 or 429 with `Retry-After`), or
    /// `invalid_binding`.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Expired | Self::UnknownSecret | Self::Required => "rebind",
            Self::OutsideWindow => "clock_skew",
            Self::Busy | Self::Quota => "retry",
            Self::Ticket(_, true) => "rebind",
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
            Self::UnsupportedConfirmation(_) => "cnf_unsupported",
            Self::CertificateMismatch => "cnf_certificate_mismatch",
            Self::Quota => "binding_quota",
            Self::Ticket(..) => "binding_ticket",
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
            Self::UnsupportedConfirmation(what) => {
                write!(f, "the token's cnf cannot be checked here: {what}")
            }
            Self::CertificateMismatch => f.write_str(
                "the token is bound to a client certificate (x5t#S256) this connection did not present",
            ),
            Self::Quota => f.write_str("too many live proofs for this binding"),
            Self::Ticket(why, _) => write!(f, "session ticket: {why}"),
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

/// One binding secret (wiped when dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its id, the first part of every binding id it made.
    pub kid: String,
    /// At least 32 bytes.
    pub bytes: Vec<u8>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
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
    replay_scope: ReplayScope,
    replay_per_binding: usize,
    ticket_secrets: Vec<RawSecret>,
}

/// Who shares the set of accepted proofs (replay protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayScope {
    /// Each worker remembers its own proofs: a proof replayed to another
    /// worker is not caught. Only for hosts without shared data.
    Worker,
    /// Every worker of one Envoy shares one set (proxy-wasm shared data with
    /// compare-and-swap): the default.
    Envoy,
}

impl ReplayScope {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Envoy => "envoy",
        }
    }
}

impl crate::config::read::FromJson for ReplayScope {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        crate::config::read::variant(v, &[("worker", Self::Worker), ("envoy", Self::Envoy)])
    }
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
                "replay_scope",
                "replay_per_binding",
                "ticket_secrets",
            ],
        )?;
        Ok(Self {
            secrets: o.req("secrets")?,
            ttl_seconds: o.or("ttl_seconds", default_ttl())?,
            window_seconds: o.or("window_seconds", default_window())?,
            require_for_cnf: o.or("require_for_cnf", default_true())?,
            allow_unconfirmed_tokens: o.or("allow_unconfirmed_tokens", false)?,
            replay_capacity: o.or("replay_capacity", default_replay())?,
            replay_scope: o.or("replay_scope", ReplayScope::Envoy)?,
            replay_per_binding: o.or("replay_per_binding", default_per_binding())?,
            ticket_secrets: o.or_default("ticket_secrets")?,
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
    30
}
fn default_true() -> bool {
    true
}
fn default_replay() -> usize {
    500_000
}
fn default_per_binding() -> usize {
    2_000
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
    /// Tokens without `cnf` may bind (their proofs are checked, but a
    /// request is only *bound* when the token confirms the key).
    pub allow_unconfirmed_tokens: bool,
    /// Live proofs remembered against replay (in the whole set).
    pub replay_capacity: usize,
    /// Who shares the replay set.
    pub replay_scope: ReplayScope,
    /// Live proofs one binding may have on one worker.
    pub replay_per_binding: usize,
    /// Session ticket secrets (see [`crate::ticket`]): the first seals, all
    /// open. Empty: no tickets are issued or accepted.
    pub ticket_secrets: Vec<Secret>,
}

fn compile_secrets(raw: Vec<RawSecret>, field: &str) -> Result<Vec<Secret>, String> {
    let mut secrets: Vec<Secret> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let valid_kid = !s.kid.is_empty()
            && s.kid.len() <= 64
            && s.kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_kid {
            return Err(format!(
                "binding.{field}[{i}].kid: 1 to 64 characters from A-Z a-z 0-9 - _"
            ));
        }
        if secrets.iter().any(|x| x.kid == s.kid) {
            return Err(format!(
                "binding.{field}[{i}].kid {:?} appears twice",
                s.kid
            ));
        }
        let bytes = base64url_decode(s.secret.as_bytes())
            .map_err(|_| format!("binding.{field}[{i}].secret: not base64url"))?;
        if bytes.len() < 32 {
            return Err(format!(
                "binding.{field}[{i}].secret: at least 32 bytes (base64url), got {}",
                bytes.len()
            ));
        }
        secrets.push(Secret { kid: s.kid, bytes });
    }
    Ok(secrets)
}

/// Validates the `binding` section.
pub fn compile(raw: RawBinding) -> Result<BindingSettings, String> {
    if raw.secrets.is_empty() {
        return Err("binding.secrets: at least one secret".into());
    }
    let secrets = compile_secrets(raw.secrets, "secrets")?;
    let ticket_secrets = compile_secrets(raw.ticket_secrets, "ticket_secrets")?;
    if ticket_secrets
        .iter()
        .any(|t| secrets.iter().any(|s| s.bytes == t.bytes))
    {
        return Err(
            "binding.ticket_secrets: a ticket secret must differ from every binding secret".into(),
        );
    }
    if raw.ttl_seconds == 0
        || raw.window_seconds == 0
        || raw.replay_capacity == 0
        || raw.replay_per_binding == 0
    {
        return Err(
            "binding: ttl_seconds, window_seconds, replay_capacity and replay_per_binding must be positive"
                .into(),
        );
    }
    if raw.window_seconds > 300 {
        return Err(
            "binding.window_seconds: at most 300 (a proof is fresh or it is a replay risk)".into(),
        );
    }
    Ok(BindingSettings {
        secrets,
        ttl_seconds: raw.ttl_seconds,
        window_seconds: raw.window_seconds,
        require_for_cnf: raw.require_for_cnf,
        allow_unconfirmed_tokens: raw.allow_unconfirmed_tokens,
        replay_capacity: raw.replay_capacity,
        replay_scope: raw.replay_scope,
        replay_per_binding: raw.replay_per_binding,
        ticket_secrets,
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

/// How a request was proven by the key its token confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// An ML-KEM binding proof (`cnf.mlkem#S3-256`).
    MlKem,
    /// The TLS client certificate (`cnf.x5t#S256`, RFC 8705).
    Certificate,
}

impl Mechanism {
    /// The name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MlKem => "mlkem",
            Self::Certificate => "x5t#S256",
        }
    }
}

/// What a token's `cnf` claim (RFC 7800) asks the filter to check. Every
/// member named must be proven.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `mlkem#S3-256`: the ML-KEM key whose binding must make the proof.
    pub mlkem: Option<String>,
    /// `x5t#S256`: base64url SHA-256 of the client certificate (RFC 8705).
    pub x5t: Option<String>,
}

/// Reads a token's `cnf` claim: `Ok(None)` without one; an error for a
/// confirmation this filter cannot check (DPoP's `jkt`, `jwk`, `jku`,
/// `kid`, an unknown member, a claim that is not an object of strings):
/// such a token is refused, never taken as a plain bearer token.
pub fn confirmation(claims: &crate::token::Claims) -> Result<Option<Confirmation>, BindError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let members = cnf
        .as_object()
        .ok_or(BindError::UnsupportedConfirmation("cnf is not an object"))?;
    if members.is_empty() {
        return Err(BindError::UnsupportedConfirmation("cnf is empty"));
    }
    let mut out = Confirmation::default();
    for (name, value) in members {
        let slot = match name.as_str() {
            CNF_MEMBER => &mut out.mlkem,
            CNF_X5T => &mut out.x5t,
            "jkt" => {
                return Err(BindError::UnsupportedConfirmation(
                    "jkt (DPoP proofs are not validated)",
                ))
            }
            "jwk" | "jku" | "kid" | "osc" => {
                return Err(BindError::UnsupportedConfirmation(
                    "a key confirmation method without a proof this filter checks",
                ))
            }
            _ => return Err(BindError::UnsupportedConfirmation("an unknown cnf member")),
        };
        let text =
            value
                .as_str()
                .filter(|t| !t.is_empty())
                .ok_or(BindError::UnsupportedConfirmation(
                    "a cnf member that is not a non-empty string",
                ))?;
        *slot = Some(text.to_owned());
    }
    Ok(Some(out))
}

/// Checks `x5t#S256` against the SHA-256 digest of the client certificate,
/// in hex as Envoy reports it (`connection.sha256_peer_certificate_digest`).
pub fn confirm_certificate(x5t: &str, peer_digest_hex: Option<&str>) -> Result<(), BindError> {
    let digest = peer_digest_hex
        .and_then(decode_hex32)
        .ok_or(BindError::CertificateMismatch)?;
    if constant_time_eq(base64url_encode(&digest).as_bytes(), x5t.as_bytes()) {
        Ok(())
    } else {
        Err(BindError::CertificateMismatch)
    }
}

fn decode_hex32(hex: &str) -> Option<Key32> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
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
    let key = zeroize::Zeroizing::new(binding_key(secret, &id, token_digest));
    let wrap = zeroize::Zeroizing::new(wrap_key(ss.as_slice(), &id, ct.as_slice()));
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

/// The request headers a proof covers besides method and path. An absent
/// header is encoded apart from an empty one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoundHeaders<'a> {
    /// `:authority` (HTTP/1.1 `Host`), as sent.
    pub authority: Option<&'a str>,
    /// `Mcp-Session-Id`.
    pub session_id: Option<&'a str>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<&'a str>,
    /// `Mcp-Method` (2026-07-28).
    pub mcp_method: Option<&'a str>,
    /// `Mcp-Name` (2026-07-28).
    pub mcp_name: Option<&'a str>,
}

/// What a bound request's MAC covers: the request as sent (client side) or
/// as received (filter side).
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `:path`, query included, as sent.
    pub path: &'a str,
    /// The authority and the MCP routing headers.
    pub headers: BoundHeaders<'a>,
    /// SHA3-256 of the body (of nothing for a request without one).
    pub body_digest: &'a Key32,
    /// SHA3-256 of the bearer token.
    pub token_digest: &'a Key32,
}

/// `1 ‖ length (4 bytes, big-endian) ‖ bytes`, or `0` when absent.
fn field(mac: &mut HmacSha3, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            mac.update(&[1]);
            // Header values are far below 4 GiB; saturate rather than wrap.
            let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(v);
        }
        None => mac.update(&[0]),
    }
}

/// The MAC of a bound request (proof format 2):
///
/// ```text
/// HMAC-SHA3-256(K, "pqguard-bind-v2 request" 0
///     ‖ F(method) ‖ F(path) ‖ F(authority) ‖ F(Mcp-Session-Id)
///     ‖ F(MCP-Protocol-Version) ‖ F(Mcp-Method) ‖ F(Mcp-Name)
///     ‖ SHA3-256(body) ‖ ts (8 bytes, big-endian) ‖ F(nonce) ‖ SHA3-256(token))
/// F(x) = 1 ‖ len(x) (4 bytes, big-endian) ‖ x, or 0 for an absent header
/// ```
pub fn request_mac(key: &Key32, c: &Covered<'_>, ts: u64, nonce: &[u8]) -> Key32 {
    let mut mac = <HmacSha3 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(b"pqguard-bind-v2 request\0");
    field(&mut mac, Some(c.method.as_bytes()));
    field(&mut mac, Some(c.path.as_bytes()));
    let h = &c.headers;
    for header in [
        h.authority,
        h.session_id,
        h.protocol_version,
        h.mcp_method,
        h.mcp_name,
    ] {
        field(&mut mac, header.map(str::as_bytes));
    }
    mac.update(c.body_digest);
    mac.update(&ts.to_be_bytes());
    field(&mut mac, Some(nonce));
    mac.update(c.token_digest);
    mac.finalize().into_bytes().into()
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
    /// Builds the proof of a request (client side): `nonce` is 16 to 64
    /// fresh random bytes, `ts` the time in Unix seconds.
    pub fn new(id: &str, key: &Key32, request: &Covered<'_>, ts: u64, nonce: &[u8]) -> Self {
        Self {
            id: id.to_owned(),
            ts,
            nonce: nonce.to_vec(),
            mac: request_mac(key, request, ts, nonce),
        }
    }

    /// The header value: `v=2, id=…, ts=…, nonce=…, mac=…`.
    pub fn to_header(&self) -> String {
        format!(
            "v={PROOF_VERSION}, id={}, ts={}, nonce={}, mac={}",
            self.id,
            self.ts,
            base64url_encode(&self.nonce),
            base64url_encode(&self.mac)
        )
    }

    /// Reads a header value; every member exactly once. Only format 2
    /// (`v=2`) is accepted: format 1 left the authority and the MCP headers
    /// outside the MAC, so a captured request could be sent to another
    /// host or session.
    pub fn parse(value: &str) -> Result<Self, BindError> {
        let (mut version, mut id, mut ts, mut nonce, mut mac) = (None, None, None, None, None);
        for part in value.split(',') {
            let (name, v) = part
                .trim()
                .split_once('=')
                .ok_or(BindError::Malformed("expected name=value pairs"))?;
            let slot = match name {
                "v" => &mut version,
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
        match version {
            Some(PROOF_VERSION) => {}
            None => {
                return Err(BindError::Malformed(
                    "proof format 1 is no longer accepted: send v=2 (the MAC covers the authority and the MCP headers)",
                ))
            }
            Some(_) => return Err(BindError::Malformed("unknown proof format (v)")),
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

    /// Checks this proof with a binding key already derived (a session
    /// ticket's, kept by the worker): the binding's expiry, the time and
    /// the MAC, as [`Proof::verify`] does after deriving the key.
    pub fn verify_with_key(
        &self,
        key: &Key32,
        request: &Covered<'_>,
        now: u64,
        window_seconds: u64,
    ) -> Result<(), BindError> {
        let (_, exp) = Self::id_parts(&self.id)?;
        if now > exp {
            return Err(BindError::Expired);
        }
        let too_old = now.saturating_sub(self.ts) > window_seconds;
        let too_new = self.ts.saturating_sub(now) > FUTURE_SKEW_SECONDS;
        if too_old || too_new {
            return Err(BindError::OutsideWindow);
        }
        let expected = request_mac(key, request, self.ts, &self.nonce);
        if constant_time_eq(&expected, &self.mac) {
            Ok(())
        } else {
            Err(BindError::BadMac)
        }
    }

    /// Checks this proof (filter side), except replay: the binding's
    /// secret, expiry, the time (at most `window_seconds` old, at most
    /// [`FUTURE_SKEW_SECONDS`] ahead) and the MAC, in constant time. The
    /// binding key is derived from `key_digest`, SHA3-256 of the token the
    /// binding was made for; the MAC covers `request.token_digest`, the
    /// digest of what the request carries (that token, or its session
    /// ticket).
    pub fn verify(
        &self,
        secrets: &[Secret],
        request: &Covered<'_>,
        key_digest: &Key32,
        now: u64,
        window_seconds: u64,
    ) -> Result<(), BindError> {
        let (kid, _) = Self::id_parts(&self.id)?;
        let secret = secrets
            .iter()
            .find(|s| s.kid == kid)
            .ok_or(BindError::UnknownSecret)?;
        let key = zeroize::Zeroizing::new(binding_key(secret, &self.id, key_digest));
        self.verify_with_key(&key, request, now, window_seconds)
    }
}

/// The replay key of a proof: the first 16 bytes of its MAC. A MAC only
/// the binding key makes, over the nonce, the time and the whole request:
/// the same proof sent again has the same key, and nobody without the key
/// can choose one (so nobody can aim at a bucket, or at another's entry).
pub fn replay_key(proof: &Proof) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&proof.mac[..16]);
    key
}

/// Until when a proof made at `ts` can be accepted (its replay entry lives
/// that long).
pub fn replay_until(ts: u64, window_seconds: u64) -> u64 {
    ts.saturating_add(window_seconds)
}

/// Where accepted proofs are remembered until their window closes. The
/// worker's own [`ReplayCache`] and the engine's set shared by every worker
/// of one Envoy implement it; a fleet-wide set plugs in here.
pub trait ReplaySet {
    /// Remembers `key` until `until`. `Err(Replayed)` when it is already
    /// remembered and live; `Err(Busy)` when the set is full of live keys
    /// (refuse rather than forget).
    fn remember(&mut self, key: &[u8; 16], until: u64, now: u64) -> Result<(), BindError>;
}

/// The proofs one worker has accepted, until their time window closes
/// (`replay_scope: worker`): a proof replayed to another worker is not
/// caught here. Each entry is 16 bytes of digest and a time.
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

    /// Live entries.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplaySet for ReplayCache {
    fn remember(&mut self, key: &[u8; 16], until: u64, now: u64) -> Result<(), BindError> {
        if self.seen.get(key).is_some_and(|&t| t >= now) {
            return Err(BindError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, &mut t| t >= now);
            if self.seen.len() >= self.capacity {
                return Err(BindError::Busy);
            }
        }
        self.seen.insert(*key, until);
        Ok(())
    }
}

/// How many live proofs each binding has made on one worker, so that one
/// binding (a flooding client, or a thief's own) cannot fill the replay
/// set: at most `limit` per binding per `window` seconds.
#[derive(Debug)]
pub struct BindingQuota {
    /// Binding id → (start of its current window, proofs in it).
    counts: std::collections::HashMap<String, (u64, usize)>,
    limit: usize,
    window: u64,
}

impl BindingQuota {
    /// At most `limit` proofs per binding per `window` seconds.
    pub fn new(limit: usize, window: u64) -> Self {
        Self {
            counts: std::collections::HashMap::new(),
            limit: limit.max(1),
            window: window.max(1),
        }
    }

    /// Counts one proof of binding `id` at `now`; `Err(Quota)` over the limit.
    pub fn take(&mut self, id: &str, now: u64) -> Result<(), BindError> {
        if self.counts.len() >= 4096 {
            let window = self.window;
            self.counts
                .retain(|_, (start, _)| start.saturating_add(window) > now);
        }
        let entry = match self.counts.get_mut(id) {
            Some(e) => e,
            None => self.counts.entry(id.to_owned()).or_insert((now, 0)),
        };
        if entry.0.saturating_add(self.window) <= now {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(BindError::Quota);
        }
        entry.1 += 1;
        Ok(())
    }

    /// Seconds until binding `id` may send proofs again (at least 1).
    pub fn retry_after(&self, id: &str, now: u64) -> u64 {
        self.counts
            .get(id)
            .map_or(1, |(start, _)| {
                start.saturating_add(self.window).saturating_sub(now)
            })
            .max(1)
    }
}

/// A deterministic random bit generator (SP 800-90A HMAC_DRBG with
/// SHA3-256), seeded once from the host's randomness: bindings need 48
/// fresh bytes each, without a host call per binding.
pub struct Drbg {
    k: Key32,
    v: Key32,
}

impl Drop for Drbg {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.k);
        zeroize::Zeroize::zeroize(&mut self.v);
    }
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

    /// Mixes fresh entropy into the state (SP 800-90A reseed): the filter
    /// does so before every binding, so the state seeded at start does not
    /// determine every binding key that follows.
    pub fn reseed(&mut self, entropy: &[u8]) {
        self.update(entropy);
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
