//! The claims set (RFC 7519) and its validation against a deployment's options.

use serde_json::{Map, Value};

use super::alg::AlgorithmSet;
use super::error::{Part, TokenError};
use crate::inspect::json::{self, JsonError, ScanLimits};

/// How tokens are validated. One value per deployment; the defaults are
/// secure except that issuer and audience are unset, which a deployment must
/// configure (the command line may leave them unset to inspect any token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Accepted `iss` values. `None`: any issuer (the claim may be absent);
    /// `Some`: `iss` is required and must be one of them.
    pub issuers: Option<Vec<String>>,
    /// The audience this resource server is (RFC 8707 resource indicator).
    /// `aud` is always required; when set, it must contain this value.
    pub audience: Option<String>,
    /// Accepted algorithms (default: all).
    pub algorithms: AlgorithmSet,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (default 60).
    pub leeway_secs: u64,
    /// Longest accepted token in bytes (default 16 KiB: an ML-DSA-87 token
    /// with generous claims is about 7 KB).
    pub max_token_bytes: usize,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        Self {
            issuers: None,
            audience: None,
            algorithms: AlgorithmSet::all(),
            leeway_secs: 60,
            max_token_bytes: 16 * 1024,
        }
    }
}

/// A validated claims set: the registered claims, typed, and every claim
/// (registered or not) as JSON for policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud` (a single string becomes a one-element list).
    pub aud: Vec<String>,
    /// `exp`, seconds since the epoch (a fractional value is truncated).
    pub exp: u64,
    /// `nbf`.
    pub nbf: Option<u64>,
    /// `iat`.
    pub iat: Option<u64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `scope`, split on spaces (RFC 8693 §4.2); empty if absent.
    pub scope: Vec<String>,
    /// All claims, as sent.
    pub all: Map<String, Value>,
}

impl Claims {
    /// Any claim by name (for example a list of granted tools).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.all.get(name)
    }

    /// True if `scope` contains this scope token.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }

    /// The claims set as compact JSON.
    pub fn to_json(&self) -> String {
        Value::Object(self.all.clone()).to_string()
    }
}

fn json_error(part: Part, e: &JsonError) -> TokenError {
    match e {
        JsonError::DuplicateKey { .. } => TokenError::DuplicateKey { part },
        JsonError::TooDeep { .. } => TokenError::Malformed {
            part,
            detail: "JSON nested too deeply",
        },
        _ => TokenError::Malformed {
            part,
            detail: "not JSON",
        },
    }
}

/// Strictly parses a JSON object (duplicate keys at any depth refused).
pub(crate) fn parse_object(bytes: &[u8], part: Part) -> Result<Map<String, Value>, TokenError> {
    json::scan(bytes, ScanLimits { max_depth: 32 }).map_err(|e| json_error(part, &e))?;
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed {
            part,
            detail: "not a JSON object",
        }),
        Err(_) => Err(TokenError::Malformed {
            part,
            detail: "not JSON",
        }),
    }
}

fn string(map: &Map<String, Value>, claim: &'static str) -> Result<Option<String>, TokenError> {
    match map.get(claim) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaim { claim }),
    }
}

/// A NumericDate: a non-negative JSON number of seconds (fraction truncated).
fn numeric_date(map: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, TokenError> {
    let invalid = TokenError::InvalidClaim { claim };
    match map.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if (0.0..1.8e19).contains(&f) => Ok(Some(f as u64)),
                    _ => Err(invalid),
                }
            }
        }
        Some(_) => Err(invalid),
    }
}

/// Parses and validates a claims set at time `now` (seconds since the epoch).
pub(crate) fn validate(
    payload: &[u8],
    opts: &ValidationOptions,
    now: u64,
) -> Result<Claims, TokenError> {
    let all = parse_object(payload, Part::Claims)?;
    let iss = string(&all, "iss")?;
    let sub = string(&all, "sub")?;
    let jti = string(&all, "jti")?;
    let aud = match all.get("aud") {
        None => return Err(TokenError::MissingClaim { claim: "aud" }),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::InvalidClaim { claim: "aud" })?,
        Some(_) => return Err(TokenError::InvalidClaim { claim: "aud" }),
    };
    let scope = string(&all, "scope")?
        .map(|s| {
            s.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let exp = numeric_date(&all, "exp")?.ok_or(TokenError::MissingClaim { claim: "exp" })?;
    let nbf = numeric_date(&all, "nbf")?;
    let iat = numeric_date(&all, "iat")?;

    let leeway = opts.leeway_secs;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = nbf {
        if now.saturating_add(leeway) < nbf {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    if let Some(iat) = iat {
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture { iat, now });
        }
    }
    if let Some(accepted) = &opts.issuers {
        let Some(iss) = &iss else {
            return Err(TokenError::MissingClaim { claim: "iss" });
        };
        if !accepted.iter().any(|a| a == iss) {
            return Err(TokenError::WrongIssuer);
        }
    }
    if let Some(audience) = &opts.audience {
        if !aud.iter().any(|a| a == audience) {
            return Err(TokenError::WrongAudience);
        }
    }
    Ok(Claims {
        iss,
        sub,
        aud,
        exp,
        nbf,
        iat,
        jti,
        scope,
        all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn opts() -> ValidationOptions {
        ValidationOptions {
            issuers: Some(vec!["https://issuer".into()]),
            audience: Some("https://mcp".into()),
            ..ValidationOptions::default()
        }
    }

    fn check(claims: &str, now: u64) -> Result<Claims, TokenError> {
        validate(claims.as_bytes(), &opts(), now)
    }

    const OK: &str = r#"{"iss":"https://issuer","aud":["x","https://mcp"],"exp":2000,"nbf":1000,"iat":1000,"sub":"alice","scope":"tools:read  tools:call","jti":"j1","tools":["echo"]}"#;

    #[test]
    fn accepts_and_types_registered_claims() {
        let c = check(OK, 1500).unwrap();
        assert_eq!(c.iss.as_deref(), Some("https://issuer"));
        assert_eq!(c.aud, ["x", "https://mcp"]);
        assert_eq!(c.scope, ["tools:read", "tools:call"]);
        assert!(c.has_scope("tools:call"));
        assert_eq!(c.get("tools"), Some(&serde_json::json!(["echo"])));
        assert_eq!((c.exp, c.nbf, c.iat), (2000, Some(1000), Some(1000)));
    }

    #[test]
    fn applies_leeway_on_each_time_claim() {
        assert!(check(OK, 2059).is_ok());
        assert_eq!(
            check(OK, 2060).unwrap_err(),
            TokenError::Expired {
                exp: 2000,
                now: 2060
            }
        );
        assert!(check(OK, 940).is_ok());
        assert_eq!(
            check(OK, 939).unwrap_err(),
            TokenError::NotYetValid {
                nbf: 1000,
                now: 939
            }
        );
        let future_iat = r#"{"aud":"https://mcp","iss":"https://issuer","exp":9000,"iat":5000}"#;
        assert!(matches!(
            check(future_iat, 4000),
            Err(TokenError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn refuses_wrong_or_missing_audience_and_issuer() {
        let e = |s: &str| check(s, 100).unwrap_err();
        assert_eq!(
            e(r#"{"iss":"https://issuer","aud":"other","exp":999}"#),
            TokenError::WrongAudience
        );
        assert_eq!(
            e(r#"{"iss":"https://issuer","exp":999}"#),
            TokenError::MissingClaim { claim: "aud" }
        );
        assert_eq!(
            e(r#"{"iss":"https://evil","aud":"https://mcp","exp":999}"#),
            TokenError::WrongIssuer
        );
        assert_eq!(
            e(r#"{"aud":"https://mcp","exp":999}"#),
            TokenError::MissingClaim { claim: "iss" }
        );
        assert_eq!(
            e(r#"{"iss":"https://issuer","aud":"https://mcp"}"#),
            TokenError::MissingClaim { claim: "exp" }
        );
    }

    #[test]
    fn refuses_mistyped_claims() {
        let e = |s: &str| check(s, 100).unwrap_err();
        assert_eq!(
            e(r#"{"iss":"https://issuer","aud":"https://mcp","exp":"999"}"#),
            TokenError::InvalidClaim { claim: "exp" }
        );
        assert_eq!(
            e(r#"{"iss":"https://issuer","aud":"https://mcp","exp":-5}"#),
            TokenError::InvalidClaim { claim: "exp" }
        );
        assert_eq!(
            e(r#"{"iss":"https://issuer","aud":["https://mcp",1],"exp":999}"#),
            TokenError::InvalidClaim { claim: "aud" }
        );
        assert_eq!(
            e(r#"{"iss":7,"aud":"https://mcp","exp":999}"#),
            TokenError::InvalidClaim { claim: "iss" }
        );
        assert_eq!(
            e(r#"["not","an","object"]"#),
            TokenError::Malformed {
                part: Part::Claims,
                detail: "not a JSON object"
            }
        );
    }

    #[test]
    fn refuses_duplicate_claims_even_nested_or_escaped() {
        for s in [
            r#"{"aud":"https://mcp","exp":999,"iss":"https://issuer","sub":"a","sub":"b"}"#,
            r#"{"aud":"https://mcp","exp":999,"iss":"https://issuer","s\u0075b":"a","sub":"b"}"#,
            r#"{"aud":"https://mcp","exp":999,"iss":"https://issuer","x":{"k":1,"k":2}}"#,
        ] {
            assert_eq!(
                check(s, 100).unwrap_err(),
                TokenError::DuplicateKey { part: Part::Claims }
            );
        }
    }

    #[test]
    fn unset_issuer_and_audience_accept_any_but_aud_stays_required() {
        let o = ValidationOptions::default();
        assert!(validate(br#"{"aud":"a","exp":999}"#, &o, 1).is_ok());
        assert!(validate(br#"{"exp":999}"#, &o, 1).is_err());
    }

    #[test]
    fn fractional_dates_are_truncated() {
        let c = validate(
            br#"{"aud":"a","exp":999.9}"#,
            &ValidationOptions::default(),
            1,
        )
        .unwrap();
        assert_eq!(c.exp, 999);
    }
}
