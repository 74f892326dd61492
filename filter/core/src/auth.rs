//! Authentication configuration: which tokens the filter accepts and where
//! its keys come from, plus the RFC 9728 protected-resource metadata the
//! filter serves itself.
//!
//! ```yaml
//! auth:
//!   audience: https://mcp.example.com/mcp      # required (RFC 8707 audience binding)
//!   issuers: [https://issuer.example.com]       # optional: any issuer when absent
//!   algorithms: [ML-DSA-65, ML-DSA-87]          # default: every supported algorithm
//!   leeway_seconds: 60
//!   max_token_bytes: 16384
//!   cache_capacity: 1024                        # verified tokens kept per worker
//!   required: true                              # false: requests without a token pass (policy decides)
//!   forward_token: true                         # false: Authorization is removed before the MCP server
//!   forward_payload_header: x-jwt-payload       # optional: the verified claims, base64url JSON, for the server
//!   jwks: { keys: [ ... ] }                     # inline keys, and/or:
//!   remote_jwks:
//!     cluster: jwks                             # an Envoy cluster
//!     authority: issuer.example.com
//!     path: /.well-known/jwks.json
//!     refresh_seconds: 300                      # upper bound; Cache-Control max-age may shorten it
//!     timeout_ms: 2000
//!   resource_metadata:                          # served at /.well-known/oauth-protected-resource
//!     resource: https://mcp.example.com/mcp
//!     authorization_servers: [https://issuer.example.com]
//!   resource_metadata_url: https://mcp.example.com/.well-known/oauth-protected-resource
//! ```

use serde_json::Value;

use crate::token::{Algorithm, AlgorithmSet, KeySet, ValidationOptions};

/// Path of the RFC 9728 metadata document the filter answers itself.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

#[derive(Debug, Clone)]
struct RawRemoteJwks {
    cluster: String,
    authority: String,
    path: String,
    refresh_seconds: Option<u64>,
    timeout_ms: Option<u64>,
}

impl crate::config::read::FromJson for RawRemoteJwks {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawRemoteJwks",
            &[
                "cluster",
                "authority",
                "path",
                "refresh_seconds",
                "timeout_ms",
            ],
        )?;
        Ok(Self {
            cluster: o.req("cluster")?,
            authority: o.req("authority")?,
            path: o.req("path")?,
            refresh_seconds: o.opt("refresh_seconds")?,
            timeout_ms: o.opt("timeout_ms")?,
        })
    }
}

/// The raw `auth` section.
#[derive(Debug, Clone)]
pub struct RawAuth {
    audience: String,
    issuers: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    leeway_seconds: Option<u64>,
    max_token_bytes: Option<usize>,
    cache_capacity: Option<usize>,
    required: Option<bool>,
    forward_token: Option<bool>,
    forward_payload_header: Option<String>,
    jwks: Option<Value>,
    remote_jwks: Option<RawRemoteJwks>,
    resource_metadata: Option<Value>,
    resource_metadata_url: Option<String>,
}

impl crate::config::read::FromJson for RawAuth {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawAuth",
            &[
                "audience",
                "issuers",
                "algorithms",
                "leeway_seconds",
                "max_token_bytes",
                "cache_capacity",
                "required",
                "forward_token",
                "forward_payload_header",
                "jwks",
                "remote_jwks",
                "resource_metadata",
                "resource_metadata_url",
            ],
        )?;
        Ok(Self {
            audience: o.req("audience")?,
            issuers: o.opt("issuers")?,
            algorithms: o.opt("algorithms")?,
            leeway_seconds: o.opt("leeway_seconds")?,
            max_token_bytes: o.opt("max_token_bytes")?,
            cache_capacity: o.opt("cache_capacity")?,
            required: o.opt("required")?,
            forward_token: o.opt("forward_token")?,
            forward_payload_header: o.opt("forward_payload_header")?,
            jwks: o.opt("jwks")?,
            remote_jwks: o.opt("remote_jwks")?,
            resource_metadata: o.opt("resource_metadata")?,
            resource_metadata_url: o.opt("resource_metadata_url")?,
        })
    }
}

/// Where and how often to fetch a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Envoy cluster to call.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// `:path` of the call.
    pub path: String,
    /// Longest time between refreshes (seconds).
    pub refresh_seconds: u64,
    /// Call timeout (milliseconds).
    pub timeout_ms: u64,
}

/// Compiled authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Token validation options.
    pub options: ValidationOptions,
    /// Keys from the configuration (decoded once, here).
    pub inline_keys: Option<KeySet>,
    /// Remote key source.
    pub remote: Option<RemoteJwks>,
    /// Verified-token cache capacity per worker.
    pub cache_capacity: usize,
    /// Whether a request without a token is refused (401).
    pub required: bool,
    /// Whether `Authorization` goes on to the MCP server. `false` removes it
    /// from every request pqguard forwards (what Envoy's `jwt_authn` does by
    /// default, `forward: false`): the server never holds the caller's
    /// token, and the upstream hop does not carry 3 to 7 KB of ML-DSA token.
    pub forward_token: bool,
    /// A request header that carries the verified claims to the MCP server
    /// (base64url of the claims JSON, as Envoy's `jwt_authn`
    /// `forward_payload_header`), whether a token or a session ticket
    /// proved them; a client's own header of that name never passes.
    pub forward_payload_header: Option<String>,
    /// RFC 9728 metadata document, served as JSON.
    pub resource_metadata: Option<String>,
    /// URL of that document, advertised in `WWW-Authenticate`.
    pub resource_metadata_url: Option<String>,
}

impl PartialEq for AuthConfig {
    fn eq(&self, other: &Self) -> bool {
        self.options == other.options
            && self.inline_keys.as_ref().map(KeySet::id)
                == other.inline_keys.as_ref().map(KeySet::id)
            && self.remote == other.remote
            && self.cache_capacity == other.cache_capacity
            && self.required == other.required
            && self.forward_token == other.forward_token
            && self.forward_payload_header == other.forward_payload_header
            && self.resource_metadata == other.resource_metadata
            && self.resource_metadata_url == other.resource_metadata_url
    }
}

/// Compiles the `auth` section; errors name the offending field.
pub fn compile(raw: RawAuth) -> Result<AuthConfig, String> {
    if raw.audience.is_empty() {
        return Err("auth.audience must not be empty".into());
    }
    let algorithms = match raw.algorithms {
        None => AlgorithmSet::all(),
        Some(names) => {
            let mut set = AlgorithmSet::default();
            for n in names {
                let alg = Algorithm::from_name(&n)
                    .ok_or_else(|| format!("auth.algorithms: unknown algorithm {n:?}"))?;
                set.insert(alg);
            }
            if set.is_empty() {
                return Err("auth.algorithms must not be empty".into());
            }
            set
        }
    };
    let inline_keys = raw
        .jwks
        .map(|v| {
            let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
            KeySet::parse(&bytes).map_err(|e| format!("auth.jwks: {e}"))
        })
        .transpose()?;
    let remote = raw
        .remote_jwks
        .map(|r| {
            if r.cluster.is_empty() || r.authority.is_empty() || !r.path.starts_with('/') {
                return Err(
                    "auth.remote_jwks needs cluster, authority and a path starting with /"
                        .to_owned(),
                );
            }
            Ok(RemoteJwks {
                cluster: r.cluster,
                authority: r.authority,
                path: r.path,
                refresh_seconds: r.refresh_seconds.unwrap_or(300).max(1),
                timeout_ms: r.timeout_ms.unwrap_or(2000).max(1),
            })
        })
        .transpose()?;
    if inline_keys.is_none() && remote.is_none() {
        return Err("auth needs jwks or remote_jwks".into());
    }
    let resource_metadata = raw
        .resource_metadata
        .map(|v| {
            if v.get("resource").and_then(Value::as_str).is_none() {
                return Err("auth.resource_metadata.resource is required (RFC 9728)".to_owned());
            }
            serde_json::to_string(&v).map_err(|e| e.to_string())
        })
        .transpose()?;
    if let Some(h) = &raw.forward_payload_header {
        let valid = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !matches!(
                h.as_str(),
                "authorization" | "host" | "content-length" | "content-type"
            )
            && !h.starts_with("mcp-")
            && !h.starts_with("pqguard-");
        if !valid {
            return Err(format!(
                "auth.forward_payload_header {h:?}: a lower-case header name (a-z 0-9 -) of pqguard's own, not an HTTP or MCP one"
            ));
        }
    }
    let defaults = ValidationOptions::default();
    Ok(AuthConfig {
        options: ValidationOptions {
            issuers: raw.issuers,
            audience: Some(raw.audience),
            algorithms,
            leeway_secs: raw.leeway_seconds.unwrap_or(defaults.leeway_secs),
            max_token_bytes: raw.max_token_bytes.unwrap_or(defaults.max_token_bytes),
        },
        inline_keys,
        remote,
        cache_capacity: raw.cache_capacity.unwrap_or(1024).max(1),
        required: raw.required.unwrap_or(true),
        forward_token: raw.forward_token.unwrap_or(true),
        forward_payload_header: raw.forward_payload_header,
        resource_metadata,
        resource_metadata_url: raw.resource_metadata_url,
    })
}

/// Extracts the token from an `Authorization` header value
/// (`Bearer <token>`, scheme case-insensitive, RFC 6750 §2.1).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Seconds to wait before the next JWKS refresh: the configured interval,
/// shortened by a `Cache-Control: max-age` (a max-age never brings it below 5 s).
pub fn refresh_after(cache_control: Option<&str>, configured: u64) -> u64 {
    let max_age = cache_control.and_then(|cc| {
        cc.split(',').find_map(|d| {
            let (k, v) = d.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
    });
    match max_age {
        // max-age only ever shortens the configured interval, never below 5 s.
        Some(a) => a.max(5).min(configured),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn raw(v: Value) -> Result<AuthConfig, String> {
        compile(<RawAuth as crate::config::read::FromJson>::read(&v)?)
    }

    #[test]
    fn needs_an_audience_and_a_key_source() {
        assert!(raw(serde_json::json!({"audience": "a"}))
            .unwrap_err()
            .contains("jwks"));
        assert!(raw(
            serde_json::json!({"remote_jwks": {"cluster":"c","authority":"a","path":"/k"}})
        )
        .is_err());
        let ok = raw(serde_json::json!({"audience": "a", "remote_jwks": {"cluster":"c","authority":"a","path":"/k"}})).unwrap();
        assert_eq!(ok.remote.as_ref().unwrap().refresh_seconds, 300);
        assert!(ok.required);
        assert!(raw(serde_json::json!({"audience": "a", "remote_jwks": {"cluster":"c","authority":"a","path":"k"}})).is_err());
        assert!(raw(serde_json::json!({"audience": "a", "algorithms": ["HS256"], "remote_jwks": {"cluster":"c","authority":"a","path":"/k"}})).unwrap_err().contains("HS256"));
        assert!(raw(serde_json::json!({"audience": "a", "colour": 1})).is_err());
    }

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }

    #[test]
    fn honours_cache_control_max_age() {
        assert_eq!(refresh_after(None, 300), 300);
        assert_eq!(refresh_after(Some("public, max-age=60"), 300), 60);
        assert_eq!(refresh_after(Some("max-age=3600"), 300), 300);
        assert_eq!(refresh_after(Some("max-age=1"), 300), 5);
        assert_eq!(refresh_after(Some("no-cache"), 300), 300);
        assert_eq!(refresh_after(Some("max-age=60"), 2), 2);
    }
}
