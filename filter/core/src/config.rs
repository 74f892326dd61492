//! Plugin configuration: the raw JSON form (what Envoy's
//! `google.protobuf.Struct` configuration delivers) and its compiled form.
//!
//! Unknown fields are errors and nothing is dropped silently: a typo in
//! envoy.yaml makes `on_configure` fail, so Envoy rejects the configuration.

use std::fmt;

pub mod read;
pub mod structpb;

use read::{variant, FromJson, Object, ReadError};

use crate::inspect::json::ScanLimits;
use crate::inspect::mcp::ParseOptions;
use crate::inspect::params::UnknownSchema;
use crate::policy::{self, Connectivity, Policy, RawP2p, RawPolicy};

/// Default cap on a request body: 1 MiB (Envoy's default buffer limit).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Raw configuration as written in envoy.yaml.
#[derive(Debug, Default)]
struct RawConfig {
    filter_state: RawFilterState,
    limits: RawLimits,
    mcp: RawMcp,
    p2p_connectivity: RawP2p,
    policy: Option<RawPolicy>,
    auth: Option<crate::auth::RawAuth>,
    audit: Option<crate::audit::RawAudit>,
    binding: Option<crate::bind::RawBinding>,
    request_log: RequestLog,
}

impl FromJson for RawConfig {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        let o = Object::strict(
            v,
            "struct RawConfig",
            &[
                "filter_state",
                "limits",
                "mcp",
                "p2p_connectivity",
                "policy",
                "auth",
                "audit",
                "binding",
                "request_log",
            ],
        )?;
        Ok(Self {
            filter_state: o.or_default("filter_state")?,
            limits: o.or_default("limits")?,
            mcp: o.or_default("mcp")?,
            p2p_connectivity: o.or_default("p2p_connectivity")?,
            policy: o.opt("policy")?,
            auth: o.opt("auth")?,
            audit: o.opt("audit")?,
            binding: o.opt("binding")?,
            request_log: o.or_default("request_log")?,
        })
    }
}

#[derive(Debug)]
struct RawFilterState {
    tls_group: String,
    tls_cipher: String,
}

impl FromJson for RawFilterState {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        let o = Object::strict(v, "struct RawFilterState", &["tls_group", "tls_cipher"])?;
        let d = Self::default();
        Ok(Self {
            tls_group: o.or("tls_group", d.tls_group)?,
            tls_cipher: o.or("tls_cipher", d.tls_cipher)?,
        })
    }
}

impl Default for RawFilterState {
    fn default() -> Self {
        Self {
            tls_group: "pqguard.tls_group".into(),
            tls_cipher: "pqguard.tls_cipher".into(),
        }
    }
}

#[derive(Debug)]
struct RawLimits {
    max_body_bytes: u64,
    max_response_bytes: u64,
    max_json_depth: usize,
    max_batch_len: usize,
}

impl FromJson for RawLimits {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        let o = Object::strict(
            v,
            "struct RawLimits",
            &[
                "max_body_bytes",
                "max_response_bytes",
                "max_json_depth",
                "max_batch_len",
            ],
        )?;
        let d = Self::default();
        Ok(Self {
            max_body_bytes: o.or("max_body_bytes", d.max_body_bytes)?,
            max_response_bytes: o.or("max_response_bytes", d.max_response_bytes)?,
            max_json_depth: o.or("max_json_depth", d.max_json_depth)?,
            max_batch_len: o.or("max_batch_len", d.max_batch_len)?,
        })
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_BODY_BYTES,
            max_json_depth: ScanLimits::default().max_depth,
            max_batch_len: ParseOptions::default().max_batch_len,
        }
    }
}

#[derive(Debug)]
struct RawMcp {
    allow_batches: bool,
    unknown_methods: UnknownMethods,
    allow_methods: Vec<String>,
    unknown_tool_schema: UnknownSchema,
}

impl FromJson for RawMcp {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        let o = Object::strict(
            v,
            "struct RawMcp",
            &[
                "allow_batches",
                "unknown_methods",
                "allow_methods",
                "unknown_tool_schema",
            ],
        )?;
        let d = Self::default();
        Ok(Self {
            allow_batches: o.or("allow_batches", d.allow_batches)?,
            unknown_methods: o.or("unknown_methods", d.unknown_methods)?,
            allow_methods: o.or("allow_methods", d.allow_methods)?,
            unknown_tool_schema: o.or("unknown_tool_schema", d.unknown_tool_schema)?,
        })
    }
}

impl Default for RawMcp {
    fn default() -> Self {
        Self {
            allow_batches: true,
            unknown_methods: UnknownMethods::Deny,
            allow_methods: Vec::new(),
            unknown_tool_schema: UnknownSchema::Forward,
        }
    }
}

/// What happens to a method the request's protocol version does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownMethods {
    /// Refuse with 404 and JSON-RPC -32601 (the default).
    Deny,
    /// Forward (policy still applies).
    Allow,
}

/// Which requests get a `pqguard.request` line in Envoy's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestLog {
    /// Every request (the default).
    #[default]
    All,
    /// Refused requests only (forwarded ones are still counted, and
    /// audited when the audit trail is on).
    Refused,
    /// None (metrics and the audit trail only).
    None,
}

impl FromJson for UnknownMethods {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        variant(v, &[("deny", Self::Deny), ("allow", Self::Allow)])
    }
}

impl FromJson for RequestLog {
    fn read(v: &serde_json::Value) -> Result<Self, ReadError> {
        variant(
            v,
            &[
                ("all", Self::All),
                ("refused", Self::Refused),
                ("none", Self::None),
            ],
        )
    }
}

/// Validated configuration, ready for per-request use.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Filter-state key holding the negotiated TLS group
    /// (stamped by `envoy.filters.http.set_filter_state`). Default `pqguard.tls_group`.
    pub tls_group_key: String,
    /// Filter-state key holding the negotiated cipher. Default `pqguard.tls_cipher`.
    pub tls_cipher_key: String,
    /// Largest accepted request body in bytes; larger bodies get 413. Default 1 MiB.
    pub max_body_bytes: u64,
    /// Largest response pqguard buffers when it must read one (the answer
    /// to `tools/list`); a larger answer is refused. Default 1 MiB.
    pub max_response_bytes: u64,
    /// Options for parsing MCP bodies (depth limit, batches).
    pub parse: ParseOptions,
    /// What happens to methods the protocol version does not define.
    pub unknown_methods: UnknownMethods,
    /// Extra methods accepted in every version (for extensions), compared exactly.
    pub allow_methods: Vec<String>,
    /// `tools/call` with `Mcp-Param-*` headers for a tool whose schema the
    /// filter has not seen (`mcp.unknown_tool_schema`): forwarded (default)
    /// or refused.
    pub unknown_tool_schema: UnknownSchema,
    /// Transport gates and threat detection (`p2p_connectivity`).
    pub connectivity: Connectivity,
    /// Tool policy; `None` means inspection only (no policy decisions).
    pub policy: Option<Policy>,
    /// Token validation; `None` means no tokens are checked.
    pub auth: Option<crate::auth::AuthConfig>,
    /// The audit trail; `None` means no audit records.
    pub audit: Option<crate::audit::AuditSettings>,
    /// ML-KEM bound sessions (`binding`); `None`: no bind endpoint, proofs
    /// are not checked.
    pub binding: Option<crate::bind::BindingSettings>,
    /// Which requests get a `pqguard.request` log line (`request_log`).
    pub request_log: RequestLog,
}

impl Default for Config {
    fn default() -> Self {
        // The raw defaults always compile.
        compile(RawConfig::default()).unwrap_or(Self {
            tls_group_key: String::new(),
            tls_cipher_key: String::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_BODY_BYTES,
            parse: ParseOptions::default(),
            unknown_methods: UnknownMethods::Deny,
            allow_methods: Vec::new(),
            unknown_tool_schema: UnknownSchema::Forward,
            connectivity: Connectivity::default(),
            policy: None,
            auth: None,
            audit: None,
            binding: None,
            request_log: RequestLog::All,
        })
    }
}

/// A configuration that cannot be used, with a precise reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pqguard configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates the plugin configuration bytes, as Envoy hands
    /// them over: JSON text (a `StringValue` configuration, or a file), or a
    /// serialized `google.protobuf.Struct` (YAML written in envoy.yaml).
    /// Empty input means all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let raw = match first {
            None => return compile(RawConfig::default()),
            // Both forms become a `Value`, which `read` turns into sections.
            // A `Value` keeps the last of duplicate keys: the strict scanner
            // refuses them first, so a configuration is never read two ways.
            Some(b'{') => {
                let limits = crate::inspect::json::ScanLimits { max_depth: 128 };
                crate::inspect::json::scan(bytes, limits)
                    .map_err(|e| ConfigError(format!("invalid JSON: {e}")))?;
                serde_json::from_slice::<serde_json::Value>(bytes)
                    .map_err(|e| ConfigError(e.to_string()))?
            }
            Some(_) => structpb::decode_struct(bytes)
                .map_err(|e| ConfigError(format!("not JSON and not a protobuf Struct: {e}")))?,
        };
        let raw = RawConfig::read(&raw).map_err(ConfigError)?;
        compile(raw)
    }

    /// Whether `method` may be forwarded in `version`: defined by the
    /// protocol, listed in `mcp.allow_methods`, or unknown methods allowed.
    pub fn method_allowed(
        &self,
        version: crate::inspect::mcp::ProtocolVersion,
        method: &str,
    ) -> bool {
        self.unknown_methods == UnknownMethods::Allow
            || crate::inspect::mcp::is_known_method(version, method)
            || self.allow_methods.iter().any(|m| m == method)
    }
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    let err = |m: &str| Err(ConfigError(m.to_owned()));
    if raw.filter_state.tls_group.is_empty() || raw.filter_state.tls_cipher.is_empty() {
        return err("filter_state keys must not be empty");
    }
    if raw.limits.max_body_bytes == 0 || raw.limits.max_response_bytes == 0 {
        return err("limits.max_body_bytes and limits.max_response_bytes must be positive");
    }
    if !(2..=512).contains(&raw.limits.max_json_depth) {
        return err("limits.max_json_depth must be between 2 and 512");
    }
    if raw.limits.max_batch_len == 0 {
        return err("limits.max_batch_len must be positive");
    }
    if raw.mcp.allow_methods.iter().any(|m| m.is_empty()) {
        return err("mcp.allow_methods entries must not be empty");
    }
    if raw.binding.is_some() && raw.auth.is_none() {
        return err("binding needs auth: a binding ties a verified token to a key");
    }
    Ok(Config {
        tls_group_key: raw.filter_state.tls_group,
        tls_cipher_key: raw.filter_state.tls_cipher,
        max_body_bytes: raw.limits.max_body_bytes,
        max_response_bytes: raw.limits.max_response_bytes,
        parse: ParseOptions {
            scan: ScanLimits {
                max_depth: raw.limits.max_json_depth,
            },
            allow_batches: raw.mcp.allow_batches,
            max_batch_len: raw.limits.max_batch_len,
        },
        unknown_methods: raw.mcp.unknown_methods,
        allow_methods: raw.mcp.allow_methods,
        unknown_tool_schema: raw.mcp.unknown_tool_schema,
        connectivity: policy::compile_connectivity(raw.p2p_connectivity)
            .map_err(|e| ConfigError(e.to_string()))?,
        policy: raw
            .policy
            .map(policy::compile)
            .transpose()
            .map_err(|e| ConfigError(e.to_string()))?,
        auth: raw
            .auth
            .map(crate::auth::compile)
            .transpose()
            .map_err(ConfigError)?,
        audit: raw
            .audit
            .map(crate::audit::settings::compile)
            .transpose()
            .map_err(ConfigError)?,
        binding: raw
            .binding
            .map(crate::bind::compile)
            .transpose()
            .map_err(ConfigError)?,
        request_log: raw.request_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn empty_configuration_means_defaults() {
        let c = Config::from_json(b"").unwrap();
        assert_eq!(c, Config::from_json(b"{}").unwrap());
        assert_eq!(c.tls_group_key, "pqguard.tls_group");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c, Config::default());
        assert_eq!(c.request_log, RequestLog::All);
        assert_eq!(c.unknown_tool_schema, UnknownSchema::Forward);
    }

    #[test]
    fn reads_request_log_and_unknown_tool_schema() {
        let c = Config::from_json(
            br#"{"request_log":"refused","mcp":{"unknown_tool_schema":"refuse"}}"#,
        )
        .unwrap();
        assert_eq!(c.request_log, RequestLog::Refused);
        assert_eq!(c.unknown_tool_schema, UnknownSchema::Refuse);
        assert!(Config::from_json(br#"{"request_log":"some"}"#).is_err());
        assert!(Config::from_json(br#"{"mcp":{"unknown_tool_schema":"allow"}}"#).is_err());
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        // A `Value` would keep the last of two keys; the configuration must
        // not be read two ways.
        let e = Config::from_json(br#"{"request_log":"all","request_log":"refused"}"#);
        assert!(e.unwrap_err().0.contains("duplicate"));
        let e = Config::from_json(br#"{"limits":{"max_body_bytes":10,"max_body_bytes":20}}"#);
        assert!(e.unwrap_err().0.contains("duplicate"));
        assert!(Config::from_json(br#"{"limits":{"max_body_bytes":10}}"#).is_ok());
    }

    #[test]
    fn reads_a_serialized_protobuf_struct() {
        // {"limits": {"max_body_bytes": 4096.0}} as Envoy serializes a Struct.
        let mut value = vec![0x11];
        value.extend_from_slice(&4096f64.to_le_bytes());
        let mut entry = vec![0x0a, 14];
        entry.extend_from_slice(b"max_body_bytes");
        entry.push(0x12);
        entry.push(value.len() as u8);
        entry.extend_from_slice(&value);
        let mut limits_struct = vec![0x0a, entry.len() as u8];
        limits_struct.extend_from_slice(&entry);
        let mut limits_value = vec![0x2a, limits_struct.len() as u8];
        limits_value.extend_from_slice(&limits_struct);
        let mut top_entry = vec![0x0a, 6];
        top_entry.extend_from_slice(b"limits");
        top_entry.push(0x12);
        top_entry.push(limits_value.len() as u8);
        top_entry.extend_from_slice(&limits_value);
        let mut top = vec![0x0a, top_entry.len() as u8];
        top.extend_from_slice(&top_entry);
        let c = Config::from_json(&top).unwrap();
        assert_eq!(c.max_body_bytes, 4096);
        assert!(Config::from_json(b"\x0a\x03abc").is_err());
    }

    #[test]
    fn reads_every_field() {
        let c = Config::from_json(
            br#"{"filter_state":{"tls_group":"g","tls_cipher":"c"},
                 "limits":{"max_body_bytes":10,"max_json_depth":8,"max_batch_len":2},
                 "mcp":{"allow_batches":false,"unknown_methods":"allow","allow_methods":["x/y"]}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.tls_group_key.as_str(), c.tls_cipher_key.as_str()),
            ("g", "c")
        );
        assert_eq!(c.max_body_bytes, 10);
        assert_eq!(c.parse.scan.max_depth, 8);
        assert_eq!(c.parse.max_batch_len, 2);
        assert!(!c.parse.allow_batches);
        assert_eq!(c.unknown_methods, UnknownMethods::Allow);
        assert_eq!(c.allow_methods, vec!["x/y".to_owned()]);
    }

    #[test]
    fn unknown_methods_are_denied_unless_listed_or_allowed() {
        use crate::inspect::mcp::ProtocolVersion::V2025_11_25;
        let c = Config::default();
        assert!(c.method_allowed(V2025_11_25, "tools/call"));
        assert!(!c.method_allowed(V2025_11_25, "admin/shutdown"));
        let listed = Config::from_json(br#"{"mcp":{"allow_methods":["admin/shutdown"]}}"#).unwrap();
        assert!(listed.method_allowed(V2025_11_25, "admin/shutdown"));
        assert!(!listed.method_allowed(V2025_11_25, "admin/Shutdown"));
        let open = Config::from_json(br#"{"mcp":{"unknown_methods":"allow"}}"#).unwrap();
        assert!(open.method_allowed(V2025_11_25, "anything"));
        assert!(Config::from_json(br#"{"mcp":{"unknown_methods":"maybe"}}"#).is_err());
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values_with_a_precise_message() {
        let e = Config::from_json(br#"{"limits":{"max_body_byte":10}}"#).unwrap_err();
        assert!(e.to_string().contains("max_body_byte"), "{e}");
        assert!(Config::from_json(br#"{"colour":"blue"}"#).is_err());
        assert!(Config::from_json(br#"{"limits":{"max_body_bytes":0}}"#).is_err());
        assert!(Config::from_json(br#"{"limits":{"max_json_depth":1}}"#).is_err());
        assert!(Config::from_json(br#"{"limits":{"max_body_bytes":"big"}}"#).is_err());
        assert!(Config::from_json(b"[").is_err());
    }
}
