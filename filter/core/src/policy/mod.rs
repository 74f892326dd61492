//! Cipher-aware tool policy: what a caller may do depends on who they are
//! AND on the strength of the cryptography of their connection and token.
//!
//! # Document
//!
//! The policy is part of the plugin configuration (YAML in envoy.yaml, JSON
//! here). The `p2p_connectivity` block is accepted verbatim:
//!
//! ```yaml
//! p2p_connectivity:
//!   enforce_pqc: true            # every MCP request needs a hybrid or PQ key exchange
//!   allowed_algos: ["ML-KEM-768", "ML-DSA-65"]
//!   threat_detection:
//!     block_downgrade_attempts: true
//!     alert_on_latency_spike: true
//! policy:
//!   rules:
//!   - name: anyone-may-list
//!     effect: allow
//!     match: { methods: [initialize, notifications/initialized, ping, tools/list] }
//!   - name: python-needs-pq
//!     effect: require
//!     match: { tools: ["run_python"] }
//!     when: { min_kex: hybrid-pq, token_algs: ["ML-DSA-65"], scopes: ["tools:execute"] }
//!   - name: tools-for-users
//!     effect: allow
//!     match: { methods: [tools/call] }
//!     when: { authenticated: true }
//! ```
//!
//! `allowed_algos` mixes two families: key-exchange names (`ML-KEM-768`,
//! `ML-KEM-1024`, `X25519`, `P-256`, …) restrict the negotiated TLS group;
//! signature names (`ML-DSA-65`, `EdDSA`, `ML-DSA-65-Ed25519`, …) restrict the
//! token algorithm. A family that the list does not mention is not
//! restricted. `ML-KEM-768` admits the groups `X25519MLKEM768`,
//! `SecP256r1MLKEM768` and `MLKEM768`; `ML-KEM-1024` admits
//! `SecP384r1MLKEM1024` and `MLKEM1024`.
//!
//! # Precedence (written down, tested)
//!
//! 1. Transport gates: `enforce_pqc` (key exchange at least hybrid-pq) and
//!    `allowed_algos` apply to every request.
//! 2. Any matching `deny` rule whose conditions hold denies.
//! 3. Every matching `require` rule's conditions must hold.
//! 4. Some matching `allow` rule's conditions must hold.
//! 5. Otherwise: deny (default deny).
//!
//! Argument rules for `tools/call` run after an allow (see [`args`]).
//! Without a `policy` section the filter only inspects (no decisions).

pub mod args;
mod glob;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use glob::glob_match;

use crate::inspect::mcp::{Message, Target};
use crate::tls::{KexClass, TlsFacts};
use crate::token::{SignatureClass, VerifiedToken};

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Permits the request if its conditions hold.
    Allow,
    /// Denies the request if its conditions hold (an empty `when` always holds).
    Deny,
    /// Its conditions must hold for the request to be allowed at all.
    Require,
}

impl crate::config::read::FromJson for Effect {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        crate::config::read::variant(
            v,
            &[
                ("allow", Self::Allow),
                ("deny", Self::Deny),
                ("require", Self::Require),
            ],
        )
    }
}

#[derive(Debug, Clone, Default)]
struct RawMatch {
    methods: Vec<String>,
    http_methods: Vec<String>,
    tools: Vec<String>,
    resources: Vec<String>,
    prompts: Vec<String>,
}

impl crate::config::read::FromJson for RawMatch {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawMatch",
            &["methods", "http_methods", "tools", "resources", "prompts"],
        )?;
        Ok(Self {
            methods: o.or_default("methods")?,
            http_methods: o.or_default("http_methods")?,
            tools: o.or_default("tools")?,
            resources: o.or_default("resources")?,
            prompts: o.or_default("prompts")?,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct RawConditions {
    authenticated: bool,
    scopes: Vec<String>,
    claims: BTreeMap<String, Value>,
    min_kex: Option<String>,
    groups: Vec<String>,
    min_tls_version: Option<String>,
    token_algs: Vec<String>,
    min_token_class: Option<String>,
    mtls: bool,
    not_flagged: bool,
    bound: bool,
}

impl crate::config::read::FromJson for RawConditions {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawConditions",
            &[
                "authenticated",
                "scopes",
                "claims",
                "min_kex",
                "groups",
                "min_tls_version",
                "token_algs",
                "min_token_class",
                "mtls",
                "not_flagged",
                "bound",
            ],
        )?;
        Ok(Self {
            authenticated: o.or_default("authenticated")?,
            scopes: o.or_default("scopes")?,
            claims: o.or_default("claims")?,
            min_kex: o.opt("min_kex")?,
            groups: o.or_default("groups")?,
            min_tls_version: o.opt("min_tls_version")?,
            token_algs: o.or_default("token_algs")?,
            min_token_class: o.opt("min_token_class")?,
            mtls: o.or_default("mtls")?,
            not_flagged: o.or_default("not_flagged")?,
            bound: o.or_default("bound")?,
        })
    }
}

#[derive(Debug, Clone)]
struct RawRule {
    name: String,
    effect: Effect,
    matcher: RawMatch,
    when: RawConditions,
}

impl crate::config::read::FromJson for RawRule {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawRule",
            &["name", "effect", "match", "when"],
        )?;
        Ok(Self {
            name: o.req("name")?,
            effect: o.req("effect")?,
            matcher: o.or_default("match")?,
            when: o.or_default("when")?,
        })
    }
}

/// The raw `policy` section.
#[derive(Debug, Clone, Default)]
pub struct RawPolicy {
    rules: Vec<RawRule>,
    arguments: Vec<args::RawToolArguments>,
    /// Pinned tool definitions: tool name → SHA3-256 hex digest.
    pins: BTreeMap<String, String>,
    /// Seconds an identity stays flagged after an anomaly (default 600).
    flag_seconds: Option<u64>,
    /// Denials within `flag_seconds` that flag an identity (default 5).
    flag_after_denials: Option<u32>,
}

impl crate::config::read::FromJson for RawPolicy {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawPolicy",
            &[
                "rules",
                "arguments",
                "pins",
                "flag_seconds",
                "flag_after_denials",
            ],
        )?;
        Ok(Self {
            rules: o.or_default("rules")?,
            arguments: o.or_default("arguments")?,
            pins: o.or_default("pins")?,
            flag_seconds: o.opt("flag_seconds")?,
            flag_after_denials: o.opt("flag_after_denials")?,
        })
    }
}

/// The raw `p2p_connectivity` block, accepted verbatim.
#[derive(Debug, Clone, Default)]
pub struct RawP2p {
    enforce_pqc: bool,
    allowed_algos: Vec<String>,
    threat_detection: RawThreatDetection,
}

impl crate::config::read::FromJson for RawP2p {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawP2p",
            &["enforce_pqc", "allowed_algos", "threat_detection"],
        )?;
        Ok(Self {
            enforce_pqc: o.or_default("enforce_pqc")?,
            allowed_algos: o.or_default("allowed_algos")?,
            threat_detection: o.or_default("threat_detection")?,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct RawThreatDetection {
    block_downgrade_attempts: bool,
    alert_on_latency_spike: bool,
    /// A response this many times slower than the baseline is a spike (default 4).
    latency_spike_factor: Option<f64>,
}

impl crate::config::read::FromJson for RawThreatDetection {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawThreatDetection",
            &[
                "block_downgrade_attempts",
                "alert_on_latency_spike",
                "latency_spike_factor",
            ],
        )?;
        Ok(Self {
            block_downgrade_attempts: o.or_default("block_downgrade_attempts")?,
            alert_on_latency_spike: o.or_default("alert_on_latency_spike")?,
            latency_spike_factor: o.opt("latency_spike_factor")?,
        })
    }
}

/// A policy configuration error, with the path of the offending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// Transport-level requirements and threat detection switches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connectivity {
    /// Every MCP request needs a key exchange of class hybrid-pq or pq.
    pub enforce_pqc: bool,
    /// Allowed TLS groups (empty: any).
    pub allowed_groups: Vec<String>,
    /// Allowed token algorithms (empty: any).
    pub allowed_token_algs: Vec<String>,
    /// Deny requests from an identity over weaker crypto than it used before.
    pub block_downgrade_attempts: bool,
    /// Log and count responses far slower than their cluster's baseline.
    pub alert_on_latency_spike: bool,
    /// Factor over the baseline that counts as a spike.
    pub latency_spike_factor: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    name: String,
    effect: Effect,
    methods: Vec<String>,
    /// `GET` / `DELETE`: the rule governs those requests (which carry no
    /// MCP message) and no MCP message.
    http_methods: Vec<String>,
    tools: Vec<String>,
    resources: Vec<String>,
    prompts: Vec<String>,
    when: Conditions,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Conditions {
    authenticated: bool,
    scopes: Vec<String>,
    claims: BTreeMap<String, Value>,
    min_kex: Option<KexClass>,
    groups: Vec<String>,
    min_tls_version: Option<u8>,
    token_algs: Vec<String>,
    min_token_class: Option<SignatureClass>,
    mtls: bool,
    not_flagged: bool,
    bound: bool,
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Argument rules per tool.
    pub arguments: Vec<args::ToolArguments>,
    /// Pinned tool digests.
    pub pins: BTreeMap<String, [u8; 32]>,
    /// Seconds an identity stays flagged.
    pub flag_seconds: u64,
    /// Denials within `flag_seconds` that flag an identity.
    pub flag_after_denials: u32,
}

/// Everything a decision looks at for one message.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'r> {
    /// The connection's crypto facts.
    pub crypto: &'r TlsFacts,
    /// The verified token, if one was presented and accepted.
    pub token: Option<&'r VerifiedToken>,
    /// Whether the client presented a verified certificate (mTLS).
    pub mtls: bool,
    /// Whether the caller's identity is flagged.
    pub flagged: bool,
    /// Whether the request carried a valid ML-KEM binding proof for its
    /// token (proof of possession; says nothing about the transport).
    pub bound: bool,
}

/// Why a request was denied (the detail goes to log and audit only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Stable reason code.
    pub reason: DenyReason,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Human-readable detail.
    pub detail: String,
    /// A scope whose absence caused the denial (for `WWW-Authenticate`).
    pub missing_scope: Option<String>,
}

/// Stable reason codes for denials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// `enforce_pqc` and the key exchange was not post-quantum.
    PqcRequired,
    /// The TLS group or token algorithm is not in `allowed_algos`.
    AlgorithmNotAllowed,
    /// A `deny` rule matched.
    DeniedByRule,
    /// A matching `require` rule's condition did not hold.
    RequirementNotMet,
    /// No `allow` rule permitted the request.
    NoAllowRule,
    /// An argument rule rejected a `tools/call`.
    ArgumentRejected,
    /// The identity used weaker crypto than before.
    Downgrade,
    /// The tool's definition no longer matches its pin.
    PinViolation,
}

impl DenyReason {
    /// snake_case name for logs, metrics and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PqcRequired => "pqc_required",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::DeniedByRule => "denied_by_rule",
            Self::RequirementNotMet => "requirement_not_met",
            Self::NoAllowRule => "no_allow_rule",
            Self::ArgumentRejected => "argument_rejected",
            Self::Downgrade => "downgrade",
            Self::PinViolation => "pin_violation",
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule.
    Allow {
        /// The allowing rule.
        rule: String,
    },
    /// Denied.
    Deny(Denial),
}

fn parse_kex_class(s: &str) -> Option<KexClass> {
    [
        KexClass::None,
        KexClass::Classical,
        KexClass::HybridPq,
        KexClass::Pq,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

fn parse_sig_class(s: &str) -> Option<SignatureClass> {
    [
        SignatureClass::Classical,
        SignatureClass::HybridPq,
        SignatureClass::Pq,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
}

/// `TLSv1.2` → 2, `TLSv1.3` → 3.
fn tls_minor(s: &str) -> Option<u8> {
    match s {
        "TLSv1" | "TLSv1.0" | "TLSv1_0" => Some(0),
        "TLSv1.1" | "TLSv1_1" => Some(1),
        "TLSv1.2" | "TLSv1_2" => Some(2),
        "TLSv1.3" | "TLSv1_3" => Some(3),
        _ => None,
    }
}

fn known_token_alg(s: &str) -> bool {
    crate::token::Algorithm::from_name(s).is_some()
}

/// Compiles the `p2p_connectivity` block.
pub fn compile_connectivity(raw: RawP2p) -> Result<Connectivity, PolicyError> {
    let mut c = Connectivity {
        enforce_pqc: raw.enforce_pqc,
        block_downgrade_attempts: raw.threat_detection.block_downgrade_attempts,
        alert_on_latency_spike: raw.threat_detection.alert_on_latency_spike,
        latency_spike_factor: raw.threat_detection.latency_spike_factor.unwrap_or(4.0),
        ..Connectivity::default()
    };
    if c.latency_spike_factor.is_nan() || c.latency_spike_factor <= 1.0 {
        return Err(PolicyError(
            "p2p_connectivity.threat_detection.latency_spike_factor must be greater than 1".into(),
        ));
    }
    for name in raw.allowed_algos {
        let groups = crate::tls::Group::admitted_by(&name);
        if !groups.is_empty() {
            c.allowed_groups
                .extend(groups.iter().map(|g| (*g).to_owned()));
        } else if known_token_alg(&name) {
            c.allowed_token_algs.push(name);
        } else {
            return Err(PolicyError(format!(
                "p2p_connectivity.allowed_algos: unknown algorithm {name:?}"
            )));
        }
    }
    Ok(c)
}

/// Compiles the `policy` section.
pub fn compile(raw: RawPolicy) -> Result<Policy, PolicyError> {
    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let at = format!("policy.rules[{i}] ({:?})", r.name);
        if r.name.is_empty() || !names.insert(r.name.clone()) {
            return Err(PolicyError(format!(
                "{at}: rule names must be non-empty and unique"
            )));
        }
        let w = r.when;
        let min_kex = w
            .min_kex
            .as_deref()
            .map(|s| {
                parse_kex_class(s).ok_or_else(|| {
                    PolicyError(format!(
                        "{at}: min_kex {s:?} is not none|classical|hybrid-pq|pq"
                    ))
                })
            })
            .transpose()?;
        let min_tls_version = w
            .min_tls_version
            .as_deref()
            .map(|s| {
                tls_minor(s).ok_or_else(|| {
                    PolicyError(format!(
                        "{at}: min_tls_version {s:?} is not TLSv1.2|TLSv1.3"
                    ))
                })
            })
            .transpose()?;
        let min_token_class = w
            .min_token_class
            .as_deref()
            .map(|s| {
                parse_sig_class(s).ok_or_else(|| {
                    PolicyError(format!(
                        "{at}: min_token_class {s:?} is not classical|hybrid-pq|pq"
                    ))
                })
            })
            .transpose()?;
        if let Some(bad) = w.token_algs.iter().find(|a| !known_token_alg(a)) {
            return Err(PolicyError(format!(
                "{at}: unknown token algorithm {bad:?}"
            )));
        }
        if let Some(bad) = w
            .groups
            .iter()
            .find(|g| KexClass::of_group(g) == KexClass::None)
        {
            return Err(PolicyError(format!("{at}: unknown TLS group {bad:?}")));
        }
        if let Some(bad) = r
            .matcher
            .http_methods
            .iter()
            .find(|m| !matches!(m.as_str(), "GET" | "DELETE"))
        {
            return Err(PolicyError(format!(
                "{at}: http_methods {bad:?}: only GET (the server's event stream) and DELETE (ending a session) carry no MCP message"
            )));
        }
        let m = &r.matcher;
        let names_messages = !m.methods.is_empty()
            || !m.tools.is_empty()
            || !m.resources.is_empty()
            || !m.prompts.is_empty();
        if !m.http_methods.is_empty() && names_messages {
            return Err(PolicyError(format!(
                "{at}: http_methods cannot be combined with methods, tools, resources or prompts"
            )));
        }
        if r.effect == Effect::Require
            && r.matcher.methods.is_empty()
            && r.matcher.http_methods.is_empty()
            && r.matcher.tools.is_empty()
            && r.matcher.resources.is_empty()
            && r.matcher.prompts.is_empty()
            && w.scopes.is_empty()
            && w.claims.is_empty()
            && min_kex.is_none()
            && w.groups.is_empty()
            && min_tls_version.is_none()
            && w.token_algs.is_empty()
            && min_token_class.is_none()
            && !w.mtls
            && !w.not_flagged
            && !w.bound
            && !w.authenticated
        {
            return Err(PolicyError(format!(
                "{at}: a require rule needs a match or a condition"
            )));
        }
        rules.push(Rule {
            name: r.name,
            effect: r.effect,
            methods: r.matcher.methods,
            http_methods: r.matcher.http_methods,
            tools: r.matcher.tools,
            resources: r.matcher.resources,
            prompts: r.matcher.prompts,
            when: Conditions {
                authenticated: w.authenticated,
                scopes: w.scopes,
                claims: w.claims,
                min_kex,
                groups: w.groups,
                min_tls_version,
                token_algs: w.token_algs,
                min_token_class,
                mtls: w.mtls,
                not_flagged: w.not_flagged,
                bound: w.bound,
            },
        });
    }
    let arguments = raw
        .arguments
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            args::compile(a).map_err(|e| PolicyError(format!("policy.arguments[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut pins = BTreeMap::new();
    for (tool, hex) in raw.pins {
        let digest = parse_hex32(&hex).ok_or_else(|| {
            PolicyError(format!(
                "policy.pins.{tool}: not a 64-digit hex SHA3-256 digest"
            ))
        })?;
        pins.insert(tool, digest);
    }
    Ok(Policy {
        rules,
        arguments,
        pins,
        flag_seconds: raw.flag_seconds.unwrap_or(600),
        flag_after_denials: raw.flag_after_denials.unwrap_or(5).max(1),
    })
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Rule {
    fn matches(&self, m: &Message<'_>) -> bool {
        if !self.http_methods.is_empty() {
            return false;
        }
        let method = m.method.as_deref().unwrap_or("");
        if !self.methods.is_empty() && !self.methods.iter().any(|x| x == method) {
            return false;
        }
        if !self.tools.is_empty() {
            let Target::Tool(t) = &m.target else {
                return false;
            };
            if !self.tools.iter().any(|g| glob_match(g, t)) {
                return false;
            }
        }
        if !self.resources.is_empty() {
            let Target::Resource(u) = &m.target else {
                return false;
            };
            if !self.resources.iter().any(|p| u.starts_with(p.as_str())) {
                return false;
            }
        }
        if !self.prompts.is_empty() {
            let Target::Prompt(p) = &m.target else {
                return false;
            };
            if !self.prompts.iter().any(|g| glob_match(g, p)) {
                return false;
            }
        }
        true
    }
}

/// The first condition of `c` that does not hold, with the missing scope
/// when a scope is what is missing.
fn failed_condition(c: &Conditions, f: &Facts<'_>) -> Option<(String, Option<String>)> {
    if (c.authenticated || !c.scopes.is_empty() || !c.claims.is_empty()) && f.token.is_none() {
        return Some(("no verified token".into(), c.scopes.first().cloned()));
    }
    if let Some(t) = f.token {
        if let Some(s) = c.scopes.iter().find(|s| !t.claims.has_scope(s)) {
            return Some((format!("scope {s:?} missing"), Some(s.clone())));
        }
        for (k, want) in &c.claims {
            let ok = match t.claims.get(k) {
                Some(Value::Array(items)) if !want.is_array() => items.contains(want),
                Some(v) => v == want,
                None => false,
            };
            if !ok {
                return Some((format!("claim {k:?} does not match"), None));
            }
        }
    }
    let kex = f.crypto.kex_class();
    if let Some(min) = c.min_kex {
        if kex < min {
            return Some((format!("key exchange {kex} below {min}"), None));
        }
    }
    if !c.groups.is_empty() {
        let g = f.crypto.tls_group.as_deref().unwrap_or("");
        if !c.groups.iter().any(|x| x == g) {
            return Some((format!("TLS group {g:?} not allowed"), None));
        }
    }
    if let Some(min) = c.min_tls_version {
        let v = f.crypto.tls_version.as_deref().and_then(tls_minor);
        if v.is_none_or(|v| v < min) {
            return Some(("TLS version too old".into(), None));
        }
    }
    if !c.token_algs.is_empty() || c.min_token_class.is_some() {
        let Some(t) = f.token else {
            return Some(("no verified token".into(), None));
        };
        if !c.token_algs.is_empty() && !c.token_algs.iter().any(|a| a == t.alg.name()) {
            return Some((
                format!("token algorithm {} not allowed", t.alg.name()),
                None,
            ));
        }
        if let Some(min) = c.min_token_class {
            if t.class() < min {
                return Some((format!("token class {} below {min}", t.class()), None));
            }
        }
    }
    if c.mtls && !f.mtls {
        return Some(("mTLS required".into(), None));
    }
    if c.not_flagged && f.flagged {
        return Some(("identity is flagged".into(), None));
    }
    if c.bound && !f.bound {
        return Some(("an ML-KEM bound request is required".into(), None));
    }
    None
}

impl Policy {
    /// Decides one message. `connectivity` holds the transport gates.
    pub fn evaluate(
        &self,
        connectivity: &Connectivity,
        m: &Message<'_>,
        f: &Facts<'_>,
    ) -> Decision {
        if let Some(d) = connectivity.gate(f) {
            return Decision::Deny(d);
        }
        let matching: Vec<&Rule> = self.rules.iter().filter(|r| r.matches(m)).collect();
        Self::decide(&matching, f)
    }

    /// Decides a request that carries no MCP message (`GET`, the server's
    /// event stream; `DELETE`, ending a session) by the rules whose
    /// `http_methods` name its method: any holding `deny` denies, every
    /// `require` must hold, and, only when some `allow` rule names the
    /// method, one of them must hold (default deny among them). `None`: no
    /// rule names it, and only the transport gates apply (the caller checks
    /// them), as for every such request before `http_methods` existed.
    pub fn evaluate_http(&self, http_method: &str, f: &Facts<'_>) -> Option<Decision> {
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.http_methods.iter().any(|m| m == http_method))
            .collect();
        let first = matching.first()?;
        if matching.iter().any(|r| r.effect == Effect::Allow) {
            return Some(Self::decide(&matching, f));
        }
        Some(match Self::decide(&matching, f) {
            Decision::Deny(d) if d.reason != DenyReason::NoAllowRule => Decision::Deny(d),
            _ => Decision::Allow {
                rule: first.name.clone(),
            },
        })
    }

    fn decide(matching: &[&Rule], f: &Facts<'_>) -> Decision {
        for r in matching.iter().filter(|r| r.effect == Effect::Deny) {
            if failed_condition(&r.when, f).is_none() {
                return Decision::Deny(Denial {
                    reason: DenyReason::DeniedByRule,
                    rule: Some(r.name.clone()),
                    detail: format!("deny rule {:?} matched", r.name),
                    missing_scope: None,
                });
            }
        }
        for r in matching.iter().filter(|r| r.effect == Effect::Require) {
            if let Some((why, scope)) = failed_condition(&r.when, f) {
                return Decision::Deny(Denial {
                    reason: DenyReason::RequirementNotMet,
                    rule: Some(r.name.clone()),
                    detail: format!("require rule {:?}: {why}", r.name),
                    missing_scope: scope,
                });
            }
        }
        let mut first_failure: Option<(String, String, Option<String>)> = None;
        for r in matching.iter().filter(|r| r.effect == Effect::Allow) {
            match failed_condition(&r.when, f) {
                None => {
                    return Decision::Allow {
                        rule: r.name.clone(),
                    }
                }
                Some((why, scope)) => {
                    if first_failure.is_none() {
                        first_failure = Some((r.name.clone(), why, scope));
                    }
                }
            }
        }
        Decision::Deny(match first_failure {
            Some((rule, why, scope)) => Denial {
                reason: DenyReason::NoAllowRule,
                rule: Some(rule.clone()),
                detail: format!("allow rule {rule:?} did not apply: {why}"),
                missing_scope: scope,
            },
            None => Denial {
                reason: DenyReason::NoAllowRule,
                rule: None,
                detail: "no allow rule matches (default deny)".into(),
                missing_scope: None,
            },
        })
    }

    /// Argument rules for a tool, if any.
    pub fn arguments_for(&self, tool: &str) -> Option<&args::ToolArguments> {
        self.arguments.iter().find(|a| a.tool == tool)
    }
}

impl Connectivity {
    /// The transport gates: `enforce_pqc` and `allowed_algos`.
    pub fn gate(&self, f: &Facts<'_>) -> Option<Denial> {
        let deny = |reason, detail: String| Denial {
            reason,
            rule: None,
            detail,
            missing_scope: None,
        };
        if self.enforce_pqc && f.crypto.kex_class() < KexClass::HybridPq {
            return Some(deny(
                DenyReason::PqcRequired,
                format!("enforce_pqc: key exchange is {}", f.crypto.kex_class()),
            ));
        }
        if !self.allowed_groups.is_empty() {
            let g = f.crypto.tls_group.as_deref().unwrap_or("");
            if !self.allowed_groups.iter().any(|x| x == g) {
                return Some(deny(
                    DenyReason::AlgorithmNotAllowed,
                    format!("TLS group {g:?} not in allowed_algos"),
                ));
            }
        }
        if let (false, Some(t)) = (self.allowed_token_algs.is_empty(), f.token) {
            if !self.allowed_token_algs.iter().any(|a| a == t.alg.name()) {
                return Some(deny(
                    DenyReason::AlgorithmNotAllowed,
                    format!("token algorithm {} not in allowed_algos", t.alg.name()),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
