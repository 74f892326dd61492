//! Audit records and checkpoints, their canonical lines, and the strict
//! parser that reads them back. The format is specified in the module
//! documentation of [`crate::audit`].

use std::fmt;

use serde_json::Value;

use super::canon::{escape_into, Fields, Obj};
use super::{sha3, to_hex, valid_chain_id, Digest, FORMAT_VERSION};
use crate::inspect::mcp::{Inspected, Message, Target};
use crate::outcome::reject::{Reason, Rejection};
use crate::tls::TlsFacts;
use crate::token::{self, VerifiedToken};

/// SHA3-256 of a canonical line: a record's digest, which the next record
/// names as its `prev`.
pub fn digest(line: &str) -> Digest {
    sha3(line.as_bytes())
}

/// Why a line is not a valid audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// Not JSON.
    Json(String),
    /// JSON, but not an object.
    NotAnObject,
    /// A member of the line's kind is missing.
    Missing(&'static str),
    /// A member has the wrong JSON type.
    WrongType(&'static str),
    /// A member has a value outside its range (a digest that is not 64
    /// lower-case hex characters, an invalid chain id, an unknown name, …).
    BadValue(&'static str),
    /// `v` names a format this version of pqguard does not read.
    UnsupportedVersion(u64),
    /// `kind` is not `genesis`, `decision`, `anomaly` or `checkpoint`.
    UnknownKind(String),
    /// The line parses, but differs from the canonical line of what it
    /// holds: members reordered, added or repeated, whitespace, other escapes.
    NotCanonical,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "not JSON: {e}"),
            Self::NotAnObject => f.write_str("not a JSON object"),
            Self::Missing(m) => write!(f, "member {m:?} is missing"),
            Self::WrongType(m) => write!(f, "member {m:?} has the wrong type"),
            Self::BadValue(m) => write!(f, "member {m:?} has an invalid value"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown kind {k:?}"),
            Self::NotCanonical => f.write_str(
                "not in canonical form (members added, repeated or reordered, whitespace or escapes changed)",
            ),
        }
    }
}

impl std::error::Error for LineError {}

/// The caller named by a verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
}

impl Identity {
    /// The identity of a verified token.
    pub fn of(token: &VerifiedToken) -> Self {
        Self {
            iss: token.claims.iss.clone(),
            sub: token.claims.sub.clone(),
        }
    }

    /// `iss|sub` (an absent member is empty), the key of the crypto inventory.
    pub fn label(&self) -> String {
        format!(
            "{}|{}",
            self.iss.as_deref().unwrap_or(""),
            self.sub.as_deref().unwrap_or("")
        )
    }

    fn to_json(&self) -> String {
        Obj::with_capacity(64)
            .opt_str("iss", self.iss.as_deref())
            .opt_str("sub", self.sub.as_deref())
            .finish()
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        Ok(Self {
            iss: f.opt_str("iss")?.map(str::to_owned),
            sub: f.opt_str("sub")?.map(str::to_owned),
        })
    }
}

/// What kind of thing a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A tool (`tools/call`).
    Tool,
    /// A resource URI (`resources/read`, subscriptions).
    Resource,
    /// A prompt (`prompts/get`).
    Prompt,
}

impl TargetKind {
    /// `tool`, `resource` or `prompt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Resource => "resource",
            Self::Prompt => "prompt",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "tool" => Some(Self::Tool),
            "resource" => Some(Self::Resource),
            "prompt" => Some(Self::Prompt),
            _ => None,
        }
    }
}

/// The tool, resource or prompt a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// Which kind.
    pub kind: TargetKind,
    /// The tool or prompt name, or the resource URI (unescaped).
    pub name: String,
}

impl TargetRef {
    /// The target of an inspected message, if it names one.
    pub fn of(target: &Target<'_>) -> Option<Self> {
        let (kind, name) = match target {
            Target::Tool(n) => (TargetKind::Tool, n),
            Target::Resource(n) => (TargetKind::Resource, n),
            Target::Prompt(n) => (TargetKind::Prompt, n),
            Target::None => return None,
        };
        Some(Self {
            kind,
            name: name.to_string(),
        })
    }

    fn to_json(&self) -> String {
        Obj::with_capacity(32 + self.name.len())
            .str("kind", self.kind.as_str())
            .str("name", &self.name)
            .finish()
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        Ok(Self {
            kind: TargetKind::from_name(f.str("kind")?).ok_or(LineError::BadValue("kind"))?,
            name: f.str("name")?.to_owned(),
        })
    }
}

/// A JSON-RPC id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcId {
    /// A string id (unescaped); also an integer id too large for 64 bits,
    /// as its decimal text.
    String(String),
    /// An integer id.
    Integer(i64),
}

impl RpcId {
    /// From the raw JSON text of an id (`"abc"` with its quotes, or `7`), as
    /// the inspection reports it.
    pub fn from_raw(raw: &str) -> Self {
        if let Ok(n) = raw.parse::<i64>() {
            return Self::Integer(n);
        }
        match serde_json::from_str::<String>(raw) {
            Ok(s) => Self::String(s),
            Err(_) => Self::String(raw.to_owned()),
        }
    }

    fn to_json(&self) -> String {
        match self {
            Self::Integer(n) => n.to_string(),
            Self::String(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                escape_into(&mut out, s);
                out
            }
        }
    }

    fn read(v: &Value) -> Result<Option<Self>, LineError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(Self::String(s.clone()))),
            Value::Number(n) => n
                .as_i64()
                .map(|n| Some(Self::Integer(n)))
                .ok_or(LineError::BadValue("rpc_id")),
            _ => Err(LineError::WrongType("rpc_id")),
        }
    }
}

/// What the filter did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded upstream.
    Allowed,
    /// Refused by authentication or policy (401, 403): who the caller is,
    /// or what it may do.
    Denied,
    /// Refused because the request itself is unacceptable (malformed,
    /// oversized, unsupported, or the host failed to hand it over).
    Rejected,
}

impl Outcome {
    /// `allowed`, `denied` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Rejected => "rejected",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "allowed" => Some(Self::Allowed),
            "denied" => Some(Self::Denied),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }

    /// The outcome of a refusal: [`Outcome::Denied`] for authentication and
    /// policy refusals, [`Outcome::Rejected`] for everything else.
    pub fn of(reason: Reason) -> Self {
        match reason {
            Reason::Unauthorized | Reason::Forbidden => Self::Denied,
            _ => Self::Rejected,
        }
    }
}

/// The cryptography of a request: its connection and its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoContext {
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Negotiated key-exchange group.
    pub tls_group: Option<String>,
    /// Negotiated cipher suite.
    pub tls_cipher: Option<String>,
    /// Key-exchange class computed by the filter (`none`, `classical`,
    /// `hybrid-pq`, `pq`).
    pub kex_class: String,
    /// Algorithm of the verified token.
    pub token_alg: Option<String>,
    /// `kid` of the key that verified the token.
    pub token_kid: Option<String>,
}

impl Default for CryptoContext {
    fn default() -> Self {
        Self::new(&TlsFacts::default(), None)
    }
}

impl CryptoContext {
    /// From the host's facts and the verified token.
    pub fn new(facts: &TlsFacts, token: Option<&VerifiedToken>) -> Self {
        Self {
            tls_version: facts.tls_version.clone(),
            tls_group: facts.tls_group.clone(),
            tls_cipher: facts.tls_cipher.clone(),
            kex_class: facts.kex_class().as_str().to_owned(),
            token_alg: token.map(|t| t.alg.name().to_owned()),
            token_kid: token.and_then(|t| t.kid.clone()),
        }
    }

    /// The signature class of the token algorithm (`None` without a token
    /// or for an algorithm this version does not know).
    pub fn token_class(&self) -> Option<token::SignatureClass> {
        self.token_alg
            .as_deref()
            .and_then(token::Algorithm::from_name)
            .map(token::Algorithm::class)
    }

    fn to_json(&self) -> String {
        Obj::with_capacity(192)
            .opt_str("tls_version", self.tls_version.as_deref())
            .opt_str("tls_group", self.tls_group.as_deref())
            .opt_str("tls_cipher", self.tls_cipher.as_deref())
            .str("kex_class", &self.kex_class)
            .opt_str("token_alg", self.token_alg.as_deref())
            .opt_str("token_kid", self.token_kid.as_deref())
            .finish()
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        let s = |k| f.opt_str(k).map(|v| v.map(str::to_owned));
        Ok(Self {
            tls_version: s("tls_version")?,
            tls_group: s("tls_group")?,
            tls_cipher: s("tls_cipher")?,
            kex_class: f.str("kex_class")?.to_owned(),
            token_alg: s("token_alg")?,
            token_kid: s("token_kid")?,
        })
    }
}

/// The first record of a chain: what started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    /// When the VM started (milliseconds since the epoch).
    pub vm_start_ms: u64,
    /// SHA3-256 of the plugin configuration bytes.
    pub config_sha3: Digest,
    /// pqguard's version.
    pub version: String,
    /// pqguard's build.
    pub build: String,
    /// `kid` of the key that signs this chain's checkpoints.
    pub kid: String,
    /// Checkpoint policy: at most this many records between checkpoints.
    pub checkpoint_every: u64,
    /// Checkpoint policy: a record this long (ms) after the last checkpoint
    /// is followed by one; 0 for no time rule.
    pub checkpoint_ms: u64,
}

impl Genesis {
    pub(crate) fn write_to(&self, o: &mut Obj) {
        o.u64("vm_start_ms", self.vm_start_ms)
            .str("config_sha3", &to_hex(&self.config_sha3))
            .str("version", &self.version)
            .str("build", &self.build)
            .str("kid", &self.kid)
            .u64("checkpoint_every", self.checkpoint_every)
            .u64("checkpoint_ms", self.checkpoint_ms);
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        let every = f.u64("checkpoint_every")?;
        if every == 0 {
            return Err(LineError::BadValue("checkpoint_every"));
        }
        Ok(Self {
            vm_start_ms: f.u64("vm_start_ms")?,
            config_sha3: f.digest("config_sha3")?,
            version: f.str("version")?.to_owned(),
            build: f.str("build")?.to_owned(),
            kid: f.str("kid")?.to_owned(),
            checkpoint_every: every,
            checkpoint_ms: f.u64("checkpoint_ms")?,
        })
    }
}

/// One request's decision.
///
/// Build it with [`DecisionRecord::new`] and the `with_*` methods as the request
/// goes through its phases; append it with [`super::Chain::append_decision`]
/// once the outcome (and, for forwarded requests, the upstream status) is
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Envoy's `x-request-id`.
    pub request_id: Option<String>,
    /// The JSON-RPC id.
    pub rpc_id: Option<RpcId>,
    /// The caller, from the verified token.
    pub identity: Option<Identity>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// The tool, resource or prompt.
    pub target: Option<TargetRef>,
    /// Number of messages, for a JSON-RPC batch.
    pub batch: Option<u64>,
    /// Allowed, denied or rejected.
    pub outcome: Outcome,
    /// Refusal class ([`Reason::as_str`]).
    pub reason: Option<String>,
    /// Finer refusal code (the token error or the policy deny reason).
    pub reason_code: Option<String>,
    /// Connection and token cryptography.
    pub crypto: CryptoContext,
    /// SHA3-256 of the request body.
    pub body_sha3: Option<Digest>,
    /// SHA3-256 of the raw JSON text of `params.arguments`.
    pub args_sha3: Option<Digest>,
    /// That text itself, only when the configuration asks for it.
    pub args: Option<String>,
    /// HTTP status of the upstream answer.
    pub upstream_status: Option<u16>,
    /// Time from the request head to the upstream answer's head (ms).
    pub latency_ms: Option<u64>,
}

impl DecisionRecord {
    /// An allowed request with its crypto context and identity; nothing
    /// else known yet.
    pub fn new(facts: &TlsFacts, token: Option<&VerifiedToken>) -> Self {
        Self {
            request_id: None,
            rpc_id: None,
            identity: token.map(Identity::of),
            method: None,
            target: None,
            batch: None,
            outcome: Outcome::Allowed,
            reason: None,
            reason_code: None,
            crypto: CryptoContext::new(facts, token),
            body_sha3: None,
            args_sha3: None,
            args: None,
            upstream_status: None,
            latency_ms: None,
        }
    }

    /// Sets Envoy's request id.
    pub fn with_request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }

    /// Records the digest of the request body (also for bodies that were
    /// refused before they could be inspected).
    pub fn with_body(mut self, body: &[u8]) -> Self {
        self.body_sha3 = Some(sha3(body));
        self
    }

    /// Records what inspection found: the (first) message's id, method,
    /// target and the digest of its arguments, the batch size, and the body
    /// digest. `include_arguments` also copies the arguments text.
    pub fn with_inspected(mut self, inspected: &Inspected<'_>, include_arguments: bool) -> Self {
        self.body_sha3 = Some(sha3(inspected.document.text().as_bytes()));
        if inspected.batch {
            self.batch = Some(inspected.messages.len() as u64);
        }
        if let Some(m) = inspected.messages.first() {
            self = self.with_message(inspected, m, include_arguments);
        }
        self
    }

    fn with_message(
        mut self,
        inspected: &Inspected<'_>,
        m: &Message<'_>,
        include_arguments: bool,
    ) -> Self {
        self.rpc_id = m.id.map(RpcId::from_raw);
        self.method = m.method.as_deref().map(str::to_owned);
        self.target = TargetRef::of(&m.target);
        if let Some(node) = m.arguments {
            let text = inspected.document.raw(node);
            self.args_sha3 = Some(sha3(text.as_bytes()));
            if include_arguments {
                self.args = Some(text.to_owned());
            }
        }
        self
    }

    /// Marks the request refused: outcome, reason and code; the refusal's
    /// id when inspection did not get that far. The refusal's detail is not
    /// recorded (it can quote the request).
    pub fn with_rejection(mut self, rejection: &Rejection) -> Self {
        self.outcome = Outcome::of(rejection.reason);
        self.reason = Some(rejection.reason.as_str().to_owned());
        self.reason_code = rejection.code.map(str::to_owned);
        if self.rpc_id.is_none() {
            self.rpc_id = rejection.id.as_deref().map(RpcId::from_raw);
        }
        self
    }

    /// Records the upstream answer's status and the latency.
    pub fn with_upstream(mut self, status: Option<u16>, latency_ms: Option<u64>) -> Self {
        self.upstream_status = status;
        self.latency_ms = latency_ms;
        self
    }

    pub(crate) fn write_to(&self, o: &mut Obj) {
        let hex = |d: &Option<Digest>| d.as_ref().map(to_hex);
        o.opt_str("request_id", self.request_id.as_deref())
            .opt_raw(
                "rpc_id",
                self.rpc_id.as_ref().map(RpcId::to_json).as_deref(),
            )
            .opt_raw(
                "identity",
                self.identity.as_ref().map(Identity::to_json).as_deref(),
            )
            .opt_str("method", self.method.as_deref())
            .opt_raw(
                "target",
                self.target.as_ref().map(TargetRef::to_json).as_deref(),
            )
            .opt_u64("batch", self.batch)
            .str("decision", self.outcome.as_str())
            .opt_str("reason", self.reason.as_deref())
            .opt_str("reason_code", self.reason_code.as_deref())
            .raw("crypto", &self.crypto.to_json())
            .opt_str("body_sha3", hex(&self.body_sha3).as_deref())
            .opt_str("args_sha3", hex(&self.args_sha3).as_deref())
            .opt_str("args", self.args.as_deref())
            .opt_u64("upstream_status", self.upstream_status.map(u64::from))
            .opt_u64("latency_ms", self.latency_ms);
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        let s = |k| f.opt_str(k).map(|v| v.map(str::to_owned));
        let upstream_status = f
            .opt_u64("upstream_status")?
            .map(|n| u16::try_from(n).map_err(|_| LineError::BadValue("upstream_status")))
            .transpose()?;
        Ok(Self {
            request_id: s("request_id")?,
            rpc_id: RpcId::read(f.value("rpc_id")?)?,
            identity: f.opt_obj("identity")?.map(Identity::read).transpose()?,
            method: s("method")?,
            target: f.opt_obj("target")?.map(TargetRef::read).transpose()?,
            batch: f.opt_u64("batch")?,
            outcome: Outcome::from_name(f.str("decision")?)
                .ok_or(LineError::BadValue("decision"))?,
            reason: s("reason")?,
            reason_code: s("reason_code")?,
            crypto: CryptoContext::read(f.obj("crypto")?)?,
            body_sha3: f.opt_digest("body_sha3")?,
            args_sha3: f.opt_digest("args_sha3")?,
            args: s("args")?,
            upstream_status,
            latency_ms: f.opt_u64("latency_ms")?,
        })
    }
}

/// Something unusual the filter noticed: a downgrade attempt, a pinned tool
/// that changed, a latency spike, an identity flagged, audit lines dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRecord {
    /// Envoy's `x-request-id`, when a request caused it.
    pub request_id: Option<String>,
    /// The caller, when known.
    pub identity: Option<Identity>,
    /// What kind (`downgrade`, `pin_violation`, `latency_spike`, `flagged`, …).
    pub anomaly: String,
    /// What exactly happened.
    pub detail: String,
}

impl AnomalyRecord {
    /// An anomaly of `kind` with a detail.
    pub fn new(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            request_id: None,
            identity: None,
            anomaly: kind.into(),
            detail: detail.into(),
        }
    }

    /// Names the request and caller that caused it.
    pub fn with_request(
        mut self,
        request_id: Option<String>,
        token: Option<&VerifiedToken>,
    ) -> Self {
        self.request_id = request_id;
        self.identity = token.map(Identity::of);
        self
    }

    pub(crate) fn write_to(&self, o: &mut Obj) {
        o.opt_str("request_id", self.request_id.as_deref())
            .opt_raw(
                "identity",
                self.identity.as_ref().map(Identity::to_json).as_deref(),
            )
            .str("anomaly", &self.anomaly)
            .str("detail", &self.detail);
    }

    fn read(f: Fields<'_>) -> Result<Self, LineError> {
        Ok(Self {
            request_id: f.opt_str("request_id")?.map(str::to_owned),
            identity: f.opt_obj("identity")?.map(Identity::read).transpose()?,
            anomaly: f.str("anomaly")?.to_owned(),
            detail: f.str("detail")?.to_owned(),
        })
    }
}

/// What a record holds beyond the chain members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordBody {
    /// The first record of a chain.
    Genesis(Genesis),
    /// A request's decision (boxed: it is much larger than the others).
    DecisionRecord(Box<DecisionRecord>),
    /// An anomaly.
    AnomalyRecord(AnomalyRecord),
}

impl RecordBody {
    /// The `kind` member.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Genesis(_) => "genesis",
            Self::DecisionRecord(_) => "decision",
            Self::AnomalyRecord(_) => "anomaly",
        }
    }

    fn write(&self, o: &mut Obj) {
        match self {
            Self::Genesis(g) => g.write_to(o),
            Self::DecisionRecord(d) => d.write_to(o),
            Self::AnomalyRecord(a) => a.write_to(o),
        }
    }
}

/// A record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Chain id.
    pub chain: String,
    /// Sequence number (0 for the genesis).
    pub seq: u64,
    /// Digest of the previous record's line ([`super::ZERO_DIGEST`] for the genesis).
    pub prev: Digest,
    /// Milliseconds since the epoch.
    pub time_ms: u64,
    /// The kind and its members.
    pub body: RecordBody,
}

/// Writes a record line from its parts (the chain writer does not build an
/// [`AuditRecord`], to avoid copying the body).
pub(crate) fn record_line(
    chain: &str,
    seq: u64,
    prev: &Digest,
    time_ms: u64,
    kind: &str,
    body: impl FnOnce(&mut Obj),
) -> String {
    let mut o = Obj::new();
    o.u64("v", FORMAT_VERSION)
        .str("kind", kind)
        .str("chain", chain)
        .u64("seq", seq)
        .str("prev", &to_hex(prev))
        .u64("time_ms", time_ms);
    body(&mut o);
    o.finish()
}

impl AuditRecord {
    /// The canonical line.
    pub fn to_line(&self) -> String {
        record_line(
            &self.chain,
            self.seq,
            &self.prev,
            self.time_ms,
            self.body.kind(),
            |o| self.body.write(o),
        )
    }
}

/// A signed statement that a chain's record `seq` has digest `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Chain id.
    pub chain: String,
    /// Sequence number of the last record covered.
    pub seq: u64,
    /// Digest of that record's line.
    pub head: Digest,
    /// Records covered (`seq + 1`).
    pub count: u64,
    /// When it was made (ms since the epoch).
    pub time_ms: u64,
    /// Signature algorithm name (`ML-DSA-65`).
    pub alg: String,
    /// Key id of the signing key.
    pub kid: String,
    /// The signature.
    pub sig: Vec<u8>,
}

impl Checkpoint {
    fn members(&self) -> Obj {
        let mut o = Obj::with_capacity(4800);
        o.u64("v", FORMAT_VERSION)
            .str("kind", "checkpoint")
            .str("chain", &self.chain)
            .u64("seq", self.seq)
            .str("head", &to_hex(&self.head))
            .u64("count", self.count)
            .u64("time_ms", self.time_ms)
            .str("alg", &self.alg)
            .str("kid", &self.kid);
        o
    }

    /// The bytes the signature covers: the canonical line without `sig`.
    pub fn signed_bytes(&self) -> String {
        self.members().finish()
    }

    /// The canonical line.
    pub fn to_line(&self) -> String {
        self.members()
            .str("sig", &token::base64url_encode(&self.sig))
            .finish()
    }

    fn read(f: Fields<'_>, chain: String) -> Result<Self, LineError> {
        let sig = token::base64url_decode(f.str("sig")?.as_bytes())
            .map_err(|_| LineError::BadValue("sig"))?;
        Ok(Self {
            chain,
            seq: f.u64("seq")?,
            head: f.digest("head")?,
            count: f.u64("count")?,
            time_ms: f.u64("time_ms")?,
            alg: f.str("alg")?.to_owned(),
            kid: f.str("kid")?.to_owned(),
            sig,
        })
    }
}

/// One audit line: a record or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A record (genesis, decision, anomaly).
    Record(AuditRecord),
    /// A checkpoint.
    Checkpoint(Checkpoint),
}

impl Line {
    /// Parses a canonical line (the JSON after [`super::LINE_PREFIX`]).
    /// Refuses anything that is not exactly the canonical form of what it
    /// holds, so two readers can never read one line two ways.
    pub fn parse(json: &str) -> Result<Self, LineError> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| LineError::Json(e.to_string()))?;
        let Value::Object(map) = &value else {
            return Err(LineError::NotAnObject);
        };
        let f = Fields(map);
        let v = f.u64("v")?;
        if v != FORMAT_VERSION {
            return Err(LineError::UnsupportedVersion(v));
        }
        let kind = f.str("kind")?;
        let chain = f.str("chain")?;
        if !valid_chain_id(chain) {
            return Err(LineError::BadValue("chain"));
        }
        let chain = chain.to_owned();
        let line = if kind == "checkpoint" {
            Self::Checkpoint(Checkpoint::read(f, chain)?)
        } else {
            let body = match kind {
                "genesis" => RecordBody::Genesis(Genesis::read(f)?),
                "decision" => RecordBody::DecisionRecord(Box::new(DecisionRecord::read(f)?)),
                "anomaly" => RecordBody::AnomalyRecord(AnomalyRecord::read(f)?),
                other => return Err(LineError::UnknownKind(other.to_owned())),
            };
            Self::Record(AuditRecord {
                chain,
                seq: f.u64("seq")?,
                prev: f.digest("prev")?,
                time_ms: f.u64("time_ms")?,
                body,
            })
        };
        if line.to_line() != json {
            return Err(LineError::NotCanonical);
        }
        Ok(line)
    }

    /// The chain id.
    pub fn chain(&self) -> &str {
        match self {
            Self::Record(r) => &r.chain,
            Self::Checkpoint(c) => &c.chain,
        }
    }

    /// The canonical line.
    pub fn to_line(&self) -> String {
        match self {
            Self::Record(r) => r.to_line(),
            Self::Checkpoint(c) => c.to_line(),
        }
    }
}

/// The chain id and sequence number of a line that may not parse, for
/// naming it in an error.
pub(crate) fn peek(json: &str) -> (Option<String>, Option<u64>) {
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(json) else {
        return (None, None);
    };
    let chain = m
        .get("chain")
        .and_then(Value::as_str)
        .filter(|c| valid_chain_id(c))
        .map(str::to_owned);
    (chain, m.get("seq").and_then(Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ZERO_DIGEST;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sample_decision() -> DecisionRecord {
        DecisionRecord {
            request_id: Some("8f1c".into()),
            rpc_id: Some(RpcId::Integer(7)),
            identity: Some(Identity {
                iss: Some("https://issuer.example".into()),
                sub: Some("alice".into()),
            }),
            method: Some("tools/call".into()),
            target: Some(TargetRef {
                kind: TargetKind::Tool,
                name: "run_python".into(),
            }),
            batch: None,
            outcome: Outcome::Denied,
            reason: Some("forbidden".into()),
            reason_code: Some("requirement_not_met".into()),
            crypto: CryptoContext {
                tls_version: Some("TLSv1.3".into()),
                tls_group: Some("X25519".into()),
                tls_cipher: Some("TLS_AES_128_GCM_SHA256".into()),
                kex_class: "classical".into(),
                token_alg: Some("ML-DSA-65".into()),
                token_kid: Some("k1".into()),
            },
            body_sha3: Some(sha3(b"{}")),
            args_sha3: Some(sha3(b"{\"code\":\"1\"}")),
            args: None,
            upstream_status: None,
            latency_ms: None,
        }
    }

    /// The canonical line of a fixed record, and its digest, as computed
    /// independently with Python (`json.dumps(json.loads(line),
    /// separators=(",", ":"), ensure_ascii=False) == line`, then
    /// `hashlib.sha3_256`). If this test fails, the format changed and other
    /// tools would compute other digests: bump the format version.
    #[test]
    fn golden_decision_line() {
        let record = AuditRecord {
            chain: "1790000000000-1".into(),
            seq: 3,
            prev: [0xab; 32],
            time_ms: 1_790_000_000_123,
            body: RecordBody::DecisionRecord(Box::new(sample_decision())),
        };
        let line = record.to_line();
        let want = concat!(
            r#"{"v":1,"kind":"decision","chain":"1790000000000-1","seq":3,"#,
            r#""prev":"abababababababababababababababababababababababababababababababab","#,
            r#""time_ms":1790000000123,"request_id":"8f1c","rpc_id":7,"#,
            r#""identity":{"iss":"https://issuer.example","sub":"alice"},"method":"tools/call","#,
            r#""target":{"kind":"tool","name":"run_python"},"batch":null,"decision":"denied","#,
            r#""reason":"forbidden","reason_code":"requirement_not_met","#,
            r#""crypto":{"tls_version":"TLSv1.3","tls_group":"X25519","tls_cipher":"TLS_AES_128_GCM_SHA256","#,
            r#""kex_class":"classical","token_alg":"ML-DSA-65","token_kid":"k1"},"#,
            r#""body_sha3":"840eb7aa2a9935de63366bacbe9d97e978a859e93dc792a0334de60ed52f8e99","#,
            r#""args_sha3":"c5ea054e0186847e00adc0b4048f83ce4ea95bc3993fc59e349c46a1fe9f2752","#,
            r#""args":null,"upstream_status":null,"latency_ms":null}"#
        );
        assert_eq!(line, want);
        assert_eq!(
            to_hex(&digest(&line)),
            "24792327a6a7fdb8c8199f00a65a8231c8d8efd6e5d240276e84c085ed063e86"
        );
        assert_eq!(Line::parse(&line).unwrap(), Line::Record(record));
    }

    #[test]
    fn every_kind_round_trips() {
        let genesis = AuditRecord {
            chain: "c".into(),
            seq: 0,
            prev: ZERO_DIGEST,
            time_ms: 5,
            body: RecordBody::Genesis(Genesis {
                vm_start_ms: 4,
                config_sha3: sha3(b""),
                version: "0.1.0".into(),
                build: "dev".into(),
                kid: "audit-1".into(),
                checkpoint_every: 100,
                checkpoint_ms: 10_000,
            }),
        };
        let anomaly = AuditRecord {
            chain: "c".into(),
            seq: 1,
            prev: [1; 32],
            time_ms: 6,
            body: RecordBody::AnomalyRecord(AnomalyRecord::new(
                "downgrade",
                "classical after hybrid-pq",
            )),
        };
        let mut d = sample_decision();
        d.rpc_id = Some(RpcId::String("a\"b\n\u{1}é".into()));
        d.args = Some("{\"code\": \"print(1)\"}".into());
        d.batch = Some(3);
        d.identity = None;
        d.target = None;
        d.upstream_status = Some(200);
        d.latency_ms = Some(12);
        let decision = AuditRecord {
            chain: "c".into(),
            seq: 2,
            prev: [2; 32],
            time_ms: 7,
            body: RecordBody::DecisionRecord(Box::new(d)),
        };
        let checkpoint = Checkpoint {
            chain: "c".into(),
            seq: 2,
            head: [3; 32],
            count: 3,
            time_ms: 8,
            alg: "ML-DSA-65".into(),
            kid: "audit-1".into(),
            sig: vec![1, 2, 3, 250],
        };
        for line in [
            Line::Record(genesis),
            Line::Record(anomaly),
            Line::Record(decision),
            Line::Checkpoint(checkpoint),
        ] {
            let text = line.to_line();
            assert_eq!(Line::parse(&text).unwrap(), line, "{text}");
        }
    }

    #[test]
    fn refuses_lines_that_are_not_canonical() {
        let record = AuditRecord {
            chain: "c".into(),
            seq: 2,
            prev: [2; 32],
            time_ms: 7,
            body: RecordBody::DecisionRecord(Box::new(sample_decision())),
        };
        let line = record.to_line();
        let variants = [
            line.replacen("{\"v\":1,", "{\"v\":1, ", 1),
            line.replacen("\"seq\":2", "\"seq\":2,\"seq\":2", 1),
            line.replacen(
                "{\"v\":1,\"kind\":\"decision\"",
                "{\"kind\":\"decision\",\"v\":1",
                1,
            ),
            line.replacen(
                "\"method\":\"tools/call\"",
                "\"method\":\"tools\\/call\"",
                1,
            ),
            line.replacen(
                "\"latency_ms\":null}",
                "\"latency_ms\":null,\"extra\":1}",
                1,
            ),
        ];
        for v in &variants {
            assert_eq!(Line::parse(v), Err(LineError::NotCanonical), "{v}");
        }
        let missing = line.replacen("\"batch\":null,", "", 1);
        assert_eq!(Line::parse(&missing), Err(LineError::Missing("batch")));
        assert_eq!(
            Line::parse(&line.replacen("\"v\":1", "\"v\":2", 1)),
            Err(LineError::UnsupportedVersion(2))
        );
        assert_eq!(
            Line::parse(&line.replacen("\"chain\":\"c\"", "\"chain\":\"a:b\"", 1)),
            Err(LineError::BadValue("chain"))
        );
        assert_eq!(
            Line::parse(&line.replacen("\"decision\":\"denied\"", "\"decision\":\"maybe\"", 1)),
            Err(LineError::BadValue("decision"))
        );
        assert!(matches!(Line::parse("{"), Err(LineError::Json(_))));
        assert_eq!(Line::parse("[]"), Err(LineError::NotAnObject));
    }

    #[test]
    fn rpc_ids_keep_their_type() {
        assert_eq!(RpcId::from_raw("7"), RpcId::Integer(7));
        assert_eq!(RpcId::from_raw("-3"), RpcId::Integer(-3));
        assert_eq!(RpcId::from_raw("\"7\""), RpcId::String("7".into()));
        assert_eq!(RpcId::from_raw("\"\\u0061\""), RpcId::String("a".into()));
        assert_eq!(
            RpcId::from_raw("123456789012345678901234567890"),
            RpcId::String("123456789012345678901234567890".into())
        );
    }

    #[test]
    fn decisions_are_built_from_inspection_and_refusals() {
        use crate::config::Config;
        use crate::inspect::head::{inspect_body, RequestHead};
        let head = RequestHead::post_json("/mcp");
        let body = br#"{"jsonrpc":"2.0","id":"r\u0031","method":"tools/call","params":{"name":"run_\u0070ython","arguments": {"code":"print(1)"}}}"#;
        let inspected = inspect_body(&Config::default(), &head, body).unwrap();
        let facts = TlsFacts::new(
            Some("TLSv1.3".into()),
            Some("X25519MLKEM768".into()),
            Some("TLS_AES_128_GCM_SHA256".into()),
        );
        let d = DecisionRecord::new(&facts, None).with_inspected(&inspected, false);
        assert_eq!(d.rpc_id, Some(RpcId::String("r1".into())));
        assert_eq!(d.method.as_deref(), Some("tools/call"));
        assert_eq!(
            d.target,
            Some(TargetRef {
                kind: TargetKind::Tool,
                name: "run_python".into()
            })
        );
        assert_eq!(d.body_sha3, Some(sha3(body)));
        assert_eq!(d.args_sha3, Some(sha3(br#"{"code":"print(1)"}"#)));
        assert_eq!(d.args, None, "arguments only as a digest by default");
        assert_eq!(d.crypto.kex_class, "hybrid-pq");
        assert_eq!((d.outcome, d.batch), (Outcome::Allowed, None));
        let with_args = DecisionRecord::new(&facts, None).with_inspected(&inspected, true);
        assert_eq!(with_args.args.as_deref(), Some(r#"{"code":"print(1)"}"#));

        let mut refusal = Rejection::new(Reason::Forbidden, "no rule allows it").with_id(Some("5"));
        refusal.code = Some("no_allow_rule");
        let d = DecisionRecord::new(&facts, None)
            .with_body(b"x")
            .with_rejection(&refusal);
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(
            (d.reason.as_deref(), d.reason_code.as_deref()),
            (Some("forbidden"), Some("no_allow_rule"))
        );
        assert_eq!(d.rpc_id, Some(RpcId::Integer(5)));
        let line = AuditRecord {
            chain: "c".into(),
            seq: 1,
            prev: ZERO_DIGEST,
            time_ms: 1,
            body: RecordBody::DecisionRecord(Box::new(d)),
        }
        .to_line();
        assert!(!line.contains("no rule allows it"), "details stay out");

        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let head = RequestHead {
            protocol_version: Some("2025-03-26".into()),
            ..head
        };
        let inspected = inspect_body(&Config::default(), &head, batch).unwrap();
        let d = DecisionRecord::new(&facts, None).with_inspected(&inspected, false);
        assert_eq!(d.batch, Some(2));
        assert_eq!(d.method.as_deref(), Some("ping"));
    }

    #[test]
    fn outcomes_split_refusals_by_who_refused() {
        assert_eq!(Outcome::of(Reason::Forbidden), Outcome::Denied);
        assert_eq!(Outcome::of(Reason::Unauthorized), Outcome::Denied);
        assert_eq!(Outcome::of(Reason::ParseError), Outcome::Rejected);
        assert_eq!(Outcome::of(Reason::BodyTooLarge), Outcome::Rejected);
    }
}
