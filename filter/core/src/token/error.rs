//! Why a token is refused. The precise reason goes to logs and the audit
//! record; on the wire every variant becomes the same `invalid_token`.

use std::fmt;

use super::alg::Algorithm;

/// A part of a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole token (its `header.payload.signature` structure).
    Token,
    /// The protected header.
    Header,
    /// The payload (the claims set).
    Claims,
    /// The signature.
    Signature,
}

impl Part {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Header => "header",
            Self::Claims => "claims",
            Self::Signature => "signature",
        }
    }
}

/// Why a bearer token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is longer than the configured maximum.
    TooLarge {
        /// Length of the token in bytes.
        len: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// Not a compact JWS: not three dot-separated segments, a segment that is
    /// not canonical base64url, JSON that is not an object, or a header
    /// member of the wrong type.
    Malformed {
        /// Where.
        part: Part,
        /// What is wrong.
        detail: &'static str,
    },
    /// The header or the claims repeat an object key (at any depth).
    DuplicateKey {
        /// The header or the claims.
        part: Part,
    },
    /// The header says `"alg":"none"`: an unsecured JWS.
    AlgNone,
    /// The header names an algorithm pqguard does not implement.
    UnsupportedAlgorithm,
    /// The algorithm is implemented but not accepted by this deployment.
    AlgorithmNotAccepted {
        /// The header's algorithm.
        alg: Algorithm,
    },
    /// The header's `alg` differs from the algorithm the selected key is pinned to.
    AlgorithmMismatch {
        /// The header's algorithm.
        header: Algorithm,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// The header's `kid` names no key of the key set.
    UnknownKid,
    /// The header has no `kid` and several keys of the header's algorithm could match.
    AmbiguousKey,
    /// The header has no `kid` and no key has the header's algorithm.
    NoMatchingKey,
    /// The header has a `crit` member: pqguard understands no critical extension.
    UnknownCrit,
    /// The header's `typ` is neither `JWT` nor `at+jwt`.
    UnsupportedType,
    /// The signature does not verify with the selected key.
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The time of the check.
        now: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The time of the check.
        now: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture {
        /// The token's `iat`.
        iat: u64,
        /// The time of the check.
        now: u64,
    },
    /// `aud` does not contain the configured audience.
    WrongAudience,
    /// `iss` is not an accepted issuer.
    WrongIssuer,
    /// A required claim is absent.
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// A registered claim has the wrong type (`exp` not a number, `aud` not a
    /// string or array of strings, …).
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
    },
}

impl TokenError {
    /// Stable snake_case name for logs, metrics and audit records.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed { .. } => "malformed",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAccepted { .. } => "algorithm_not_accepted",
            Self::AlgorithmMismatch { .. } => "algorithm_mismatch",
            Self::UnknownKid => "unknown_kid",
            Self::AmbiguousKey => "ambiguous_key",
            Self::NoMatchingKey => "no_matching_key",
            Self::UnknownCrit => "unknown_crit",
            Self::UnsupportedType => "unsupported_type",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.as_str();
        match self {
            Self::TooLarge { len, limit } => write!(f, "{name}: {len} bytes, limit {limit}"),
            Self::Malformed { part, detail } => write!(f, "{name}: {}: {detail}", part.as_str()),
            Self::DuplicateKey { part } => write!(f, "{name}: in the {}", part.as_str()),
            Self::AlgorithmNotAccepted { alg } => write!(f, "{name}: {alg}"),
            Self::AlgorithmMismatch { header, key } => {
                write!(f, "{name}: header alg {header}, key alg {key}")
            }
            Self::Expired { exp, now } => write!(f, "{name}: exp {exp}, now {now}"),
            Self::NotYetValid { nbf, now } => write!(f, "{name}: nbf {nbf}, now {now}"),
            Self::IssuedInFuture { iat, now } => write!(f, "{name}: iat {iat}, now {now}"),
            Self::MissingClaim { claim } | Self::InvalidClaim { claim } => {
                write!(f, "{name}: {claim}")
            }
            _ => f.write_str(name),
        }
    }
}

impl std::error::Error for TokenError {}
