//! The command line's grammar (clap derive): every subcommand, its flags,
//! its help text with examples.

use clap::{Args, Parser, Subcommand};

/// pqguard: the post-quantum security filter for MCP traffic, offline.
///
/// Every command reuses the filter's own core, so what it reports is what
/// the filter inside Envoy decides.
#[derive(Debug, Parser)]
#[command(name = "pqguard", version = pqguard_core::VERSION, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success; 1 refused (inspect, verify, check-config) or tampered (audit verify); 2 usage or I/O error; 3 a file not overwritten (no command replaces an existing file without --force, nor an audit log ever)."
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry-run a request through the filter's engine: the exact decision Envoy would take.
    Inspect(InspectArgs),
    /// Validate a plugin configuration (JSON).
    CheckConfig(CheckConfigArgs),
    /// A new private key as a JWK (RFC 7517; RFC 9964 AKP for ML-DSA).
    Keygen(KeygenArgs),
    /// The public JWKS of key files.
    Jwks(JwksArgs),
    /// Mint a signed token (compact JWS) with a private JWK.
    Mint(MintArgs),
    /// Verify a token as the filter would; prints its claims or the precise reason.
    Verify(VerifyArgs),
    /// SHA3-256 pins of the tools in a tools/list answer, for `policy.pins`.
    Pin(PinArgs),
    /// The audit trail, checked and summarised offline.
    Audit(AuditArgs),
    /// ML-KEM bound sessions, the client side, for scripts (HTTP with curl or any client).
    Bind(BindArgs),
    /// A local proxy giving any MCP client a bound session and a post-quantum hop to the edge.
    Proxy(ProxyArgs),
    /// Shell completions on stdout.
    Completions(CompletionsArgs),
    /// Print the version.
    Version,
}

/// `pqguard inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # Would this call be allowed over a classical connection?
  pqguard inspect --config pqguard.json --token alice.jwt --tls-group X25519 call.json
  # The same, for a script:
  pqguard inspect --config pqguard.json --token alice.jwt --tls-group X25519MLKEM768 --json call.json
  # A 2026-07-28 request with its mirrored headers, from stdin:
  echo '{...}' | pqguard inspect -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/list' -

Exit 0 when the request would be forwarded, 1 when it would be refused.")]
pub struct InspectArgs {
    /// The plugin configuration (JSON); all defaults (inspection only) without it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<String>,
    /// A request header, as `Name: value` (repeatable). Content-Type defaults to application/json.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A bearer token file: sent as `Authorization: Bearer …`.
    #[arg(long, value_name = "FILE")]
    pub token: Option<String>,
    /// Keys for the token when the configuration fetches them from a remote JWKS.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<String>,
    /// The negotiated TLS key-exchange group (X25519MLKEM768, X25519, …); none: plaintext.
    #[arg(long, value_name = "GROUP")]
    pub tls_group: Option<String>,
    /// The TLS version (default TLSv1.3 when a group is given).
    #[arg(long, value_name = "VERSION")]
    pub tls_version: Option<String>,
    /// The negotiated cipher suite.
    #[arg(long, value_name = "CIPHER")]
    pub tls_cipher: Option<String>,
    /// The time of the request, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<u64>,
    /// The HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// The request path.
    #[arg(long, default_value = "/mcp")]
    pub path: String,
    /// Shorthand for `-H 'MCP-Protocol-Version: V'`.
    #[arg(long, value_name = "V")]
    pub protocol_version: Option<String>,
    /// Print one JSON document instead of the readable report.
    #[arg(long)]
    pub json: bool,
    /// The request body (`-` for stdin); no body when absent.
    #[arg(value_name = "BODY_FILE")]
    pub body: Option<String>,
}

/// `pqguard check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file (JSON; `-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: String,
}

/// `pqguard keygen`.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  pqguard keygen --alg ML-DSA-65 --kid k1 > k1.jwk

Algorithms: ML-DSA-44 ML-DSA-65 ML-DSA-87 ML-DSA-65-Ed25519 ML-DSA-65-ES256 EdDSA ES256")]
pub struct KeygenArgs {
    /// The algorithm.
    #[arg(long)]
    pub alg: String,
    /// The key id (default: the key's thumbprint).
    #[arg(long)]
    pub kid: Option<String>,
}

/// `pqguard jwks`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pqguard jwks k1.jwk k2.jwk > jwks.json")]
pub struct JwksArgs {
    /// JWK or JWKS files (private keys give their public key).
    #[arg(value_name = "KEYFILE", required = true)]
    pub keyfiles: Vec<String>,
}

/// `pqguard mint`.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  pqguard mint --key k1.jwk --iss https://issuer.example --aud https://mcp.example/mcp \\
               --ttl 3600 --sub alice --scope 'tools:read tools:execute' --claim 'tools=[\"echo\"]'")]
pub struct MintArgs {
    /// The private JWK.
    #[arg(long, value_name = "KEYFILE")]
    pub key: String,
    /// Issuer (`iss`).
    #[arg(long)]
    pub iss: String,
    /// Audience (`aud`; repeat for several).
    #[arg(long, required = true)]
    pub aud: Vec<String>,
    /// Lifetime in seconds (`exp` = now + ttl).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: u64,
    /// Subject (`sub`).
    #[arg(long)]
    pub sub: Option<String>,
    /// Space-separated scopes (`scope`).
    #[arg(long)]
    pub scope: Option<String>,
    /// Another claim, `NAME=VALUE`; a VALUE that parses as JSON is used as JSON.
    #[arg(long, value_name = "NAME=VALUE")]
    pub claim: Vec<String>,
    /// Confirm the token for the client's ML-KEM-768 encapsulation key
    /// (RFC 7800 `cnf` with `mlkem#S3-256`): a `pqguard bind key` file, or a
    /// file holding the base64url key. Only that key can bind the token, and
    /// only then do its requests count as `bound: true`.
    #[arg(long, value_name = "FILE")]
    pub bind_ek: Option<String>,
}

/// `pqguard verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  pqguard verify --jwks jwks.json --aud https://mcp.example/mcp --alg ML-DSA-65 token.jwt"
)]
pub struct VerifyArgs {
    /// The keys (JWKS, JWK, or private JWK files).
    #[arg(long, value_name = "FILE")]
    pub jwks: String,
    /// Required audience.
    #[arg(long)]
    pub aud: Option<String>,
    /// Accepted issuers (repeatable; any when absent).
    #[arg(long)]
    pub iss: Vec<String>,
    /// Clock leeway in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub leeway: Option<u64>,
    /// Accepted algorithms (repeatable; all when absent).
    #[arg(long)]
    pub alg: Vec<String>,
    /// The token, or `-` for stdin.
    #[arg(value_name = "TOKEN")]
    pub token: String,
}

/// `pqguard pin`.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  curl -s … -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}' | pqguard pin")]
pub struct PinArgs {
    /// A tools/list answer (JSON or event stream; stdin when absent).
    #[arg(value_name = "ANSWER_FILE")]
    pub answer: Option<String>,
}

/// `pqguard proxy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example (then point the MCP client at http://127.0.0.1:8931/mcp):
  pqguard proxy --listen 127.0.0.1:8931 --upstream https://edge.example.com/mcp --token-file token

The proxy binds the token to a fresh ML-KEM-768 key (or --key, from `pqguard bind key`, for a token
whose cnf names that key), adds the token and a PQGuard-Binding proof to every request, binds again
when the edge answers pqguard_binding=\"rebind\", and speaks TLS 1.3 offering X25519MLKEM768 only.
Requests keep their path: the client uses the edge's path on the proxy's address."
)]
pub struct ProxyArgs {
    /// Where MCP clients connect (plain HTTP, loopback only unless --allow-remote).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8931")]
    pub listen: std::net::SocketAddr,
    /// Accept a --listen address that is not loopback. The proxy adds the
    /// token to whatever reaches it: anyone who can connect acts as you.
    #[arg(long)]
    pub allow_remote: bool,
    /// The edge (https://host[:port]/path).
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// The bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: String,
    /// CA certificates (PEM) for the edge; the system's roots when absent.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// The name the edge's certificate must carry (and the SNI), when not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// The ML-KEM key (`pqguard bind key`); a fresh one when absent.
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
}

/// `pqguard bind`.
#[derive(Debug, Args)]
#[command(
    after_help = "A bound session from a shell (the protocol: README, \"Bound sessions\"):
  pqguard bind key --out client.json                   # mode 0600: it holds the ML-KEM seed
  jq -c '{ek}' client.json | curl -s https://edge/.well-known/pqguard/bind \\
      -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d @- > answer.json
  pqguard bind open --key client.json answer.json > binding.json
  pqguard bind proof --binding binding.json --token-file token --method POST --path /mcp \\
      --authority edge --protocol-version 2025-11-25 body.json
      # -> the value of the PQGuard-Binding header for that request"
)]
pub struct BindArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BindCommand,
}

/// `pqguard bind` subcommands.
#[derive(Debug, Subcommand)]
pub enum BindCommand {
    /// A new ML-KEM-768 key: JSON with the seed (secret), the encapsulation key and its cnf thumbprint.
    Key(BindKeyArgs),
    /// Open the bind endpoint's answer with the key: JSON with the binding id, key and expiry.
    Open(BindOpenArgs),
    /// The PQGuard-Binding header value of one request.
    Proof(Box<BindProofArgs>),
}

/// `pqguard bind key`.
#[derive(Debug, Args)]
pub struct BindKeyArgs {
    /// Write the key to this file (created with mode 0600; an existing file
    /// is never replaced) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

/// `pqguard bind open`.
#[derive(Debug, Args)]
pub struct BindOpenArgs {
    /// The key file (`pqguard bind key`).
    #[arg(long, value_name = "FILE")]
    pub key: String,
    /// The bind endpoint's JSON answer (stdin when absent or `-`).
    #[arg(value_name = "ANSWER")]
    pub answer: Option<String>,
}

/// `pqguard bind proof`.
#[derive(Debug, Args)]
pub struct BindProofArgs {
    /// The binding (`pqguard bind open`).
    #[arg(long, value_name = "FILE")]
    pub binding: String,
    /// The bearer token the request carries.
    #[arg(long, value_name = "FILE")]
    pub token_file: String,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// `:path` exactly as sent, query included.
    #[arg(long)]
    pub path: String,
    /// Unix seconds (default: now).
    #[arg(long)]
    pub ts: Option<u64>,
    /// `:authority` (the `Host` header) exactly as sent.
    #[arg(long)]
    pub authority: Option<String>,
    /// `Mcp-Session-Id`, when the request carries one.
    #[arg(long)]
    pub session_id: Option<String>,
    /// `MCP-Protocol-Version`, when the request carries one.
    #[arg(long)]
    pub protocol_version: Option<String>,
    /// `Mcp-Method` (2026-07-28), when the request carries one.
    #[arg(long)]
    pub mcp_method: Option<String>,
    /// `Mcp-Name` (2026-07-28), when the request carries one.
    #[arg(long)]
    pub mcp_name: Option<String>,
    /// The request body (none when absent; `-` for stdin).
    #[arg(value_name = "BODY")]
    pub body: Option<String>,
}

/// `pqguard audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do with the audit trail.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `pqguard audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chains and signed checkpoints; exits 1 naming the first bad record.
    Verify(AuditVerifyArgs),
    /// The crypto inventory: who still uses classical cryptography.
    Report(AuditReportArgs),
}

/// `pqguard audit verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example (rotated logs, oldest first; gzip is read as it is):
  pqguard audit verify --jwks audit-jwks.json --max-unverified 0 envoy.log.2.gz envoy.log.1 envoy.log

Exit codes: 0 intact; 1 tampered, too many unverified records (--max-unverified), or no audit line;
2 usage or I/O error (a log unreadable to its end, a corrupt gzip stream: no verdict)."
)]
pub struct AuditVerifyArgs {
    /// The checkpoint keys (public JWKS).
    #[arg(long, value_name = "FILE")]
    pub jwks: String,
    /// A known chain position, `CHAIN:SEQ:HEAD` (repeatable).
    #[arg(long, value_name = "CHAIN:SEQ:HEAD")]
    pub anchor: Vec<String>,
    /// Fail when a chain ends with more unsigned records than this (0 for closed logs).
    #[arg(long, value_name = "N")]
    pub max_unverified: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Logs, oldest first, plain or gzip (stdin when absent).
    #[arg(value_name = "LOG")]
    pub logs: Vec<String>,
}

/// `pqguard audit report`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  pqguard audit report envoy.log
  pqguard audit report --html inventory.html envoy.log.2.gz envoy.log.1 envoy.log   # one self-contained page, no network

--html FILE is the page to write, not a log. It is written atomically (a temporary file renamed into
place) and never over an existing file without --force, nor over a file holding audit records even
with it.

Exit codes: 0 done; 2 usage or I/O error; 3 FILE exists and was not overwritten (checked before the
logs are read).")]
pub struct AuditReportArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the inventory as one self-contained HTML page (charts, no script) to FILE (the output, not a log).
    #[arg(long, value_name = "FILE")]
    pub html: Option<String>,
    /// With --html: replace FILE if it exists (never a file holding audit records, nor a LOG read).
    #[arg(long, requires = "html")]
    pub force: bool,
    /// Logs, plain or gzip (stdin when absent).
    #[arg(value_name = "LOG")]
    pub logs: Vec<String>,
}

/// `pqguard completions`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pqguard completions bash > /etc/bash_completion.d/pqguard")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
