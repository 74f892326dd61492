//! The audit trail: what the filter decided, in a form that cannot be edited
//! without it showing, now or after quantum computers arrive.
//!
//! - [`record`]: the records (genesis, decision, anomaly, checkpoint) and
//!   their canonical JSON lines;
//! - [`chain`]: the writer, one hash chain per VM, with ML-DSA-65 signed
//!   checkpoints;
//! - [`settings`]: the `audit` section of the plugin configuration;
//! - [`queue`]: the bounded queue and retry schedule for an HTTP collector;
//!
//! Offline, never on the request path ([`offline`]):
//! - [`offline::verify`]: the verifier behind `pqguard audit verify`;
//! - [`offline::inventory`]: the crypto inventory behind `pqguard audit report`.
//!
//! Everything here is pure and deterministic: time is passed in, signing is
//! deterministic ML-DSA (no random numbers), and nothing reads a clock.
//!
//! # Log lines
//!
//! Every line the filter writes is [`LINE_PREFIX`] (`pqguard.audit `) followed
//! by one canonical JSON object. The same line goes to Envoy's log and to the
//! collector. Envoy prefixes its own text (time, level, source) before the
//! marker; [`extract`] and [`audit_lines`] find the JSON after the first
//! `pqguard.audit {` of a line, and ignore trailing whitespace and `\r`.
//!
//! # Canonical form
//!
//! A line is one JSON object with **every** member of its kind present, in
//! the order listed below, no whitespace, absent values written as `null`.
//! Integers are unsigned decimal without leading zeros (JSON numbers). Strings
//! are written as UTF-8 with exactly these escapes: `\"`, `\\`, `\b`, `\f`,
//! `\n`, `\r`, `\t`, and `\u00xx` (lower-case hex) for the other code points
//! below U+0020; everything else, `/`, U+007F and non-ASCII included, is
//! written as is. This is what `serde_json::to_string` and Python's
//! `json.dumps(v, separators=(",", ":"), ensure_ascii=False)` write for strings.
//! Digests are 64 lower-case hex characters of SHA3-256.
//!
//! Members common to genesis, decision and anomaly records, in this order:
//!
//! | member | value |
//! |---|---|
//! | `v` | format version, `1` |
//! | `kind` | `"genesis"`, `"decision"` or `"anomaly"` |
//! | `chain` | chain id: 1 to 128 characters from `A-Z a-z 0-9 . _ -` |
//! | `seq` | 0 for the genesis, then +1 per record |
//! | `prev` | digest of the previous record's line; 64 zeros for the genesis |
//! | `time_ms` | milliseconds since the Unix epoch, from the host |
//!
//! then, for `genesis`: `vm_start_ms`, `config_sha3` (SHA3-256 of the plugin
//! configuration bytes exactly as Envoy hands them to the VM), `version`,
//! `build` (of pqguard), `kid` (the checkpoint key), `checkpoint_every`,
//! `checkpoint_ms` (the checkpoint policy, see below).
//!
//! For `decision`: `request_id` (Envoy's `x-request-id`), `rpc_id` (the
//! JSON-RPC id: a string, or an integer that fits a signed 64-bit integer;
//! other integers are written as their decimal text in a string), `identity` (`{"iss":…,"sub":…}`
//! of the verified token, or `null`), `method`, `target`
//! (`{"kind":"tool"|"resource"|"prompt","name":…}` or `null`), `batch` (number
//! of messages of a JSON-RPC batch, `null` otherwise; method, target, rpc id
//! and arguments are the first message's), `decision` (`"allowed"`,
//! `"denied"`: refused by authentication or policy, `"rejected"`: the request
//! itself is unacceptable), `reason` and `reason_code` (the refusal class and
//! its finer code, as in `pqguard.request`), `crypto`
//! (`{"tls_version","tls_group","tls_cipher","kex_class","token_alg","token_kid"}`,
//! in that order), `body_sha3` (of the request body, `null` when none was
//! read), `args_sha3` (of the raw JSON text of `params.arguments` as it
//! appears in the body), `args` (that text as a string, only when the
//! configuration sets `include_arguments`, `null` otherwise),
//! `upstream_status`, `latency_ms` (when known).
//!
//! For `anomaly`: `request_id`, `identity`, `anomaly` (`downgrade`,
//! `pin_violation`, `latency_spike`, `flagged`, …), `detail`.
//!
//! A record's digest is SHA3-256 of its line (the JSON object only: without
//! the prefix and without a line end). The next record's `prev` is that
//! digest.
//!
//! A **checkpoint** line is not a record (it has no `prev` and takes no
//! sequence number): it is a signed statement about the chain's head. Members,
//! in order: `v`, `kind` (`"checkpoint"`), `chain`, `seq` (of the last record
//! covered), `head` (that record's digest), `count` (records covered:
//! `seq + 1`), `time_ms`, `alg` (`"ML-DSA-65"`), `kid`, `sig`. `sig` is the
//! base64url (no padding) of an ML-DSA-65 signature (FIPS 204, deterministic
//! variant, empty context string, as RFC 9964 uses it for JOSE) over the UTF-8
//! bytes of the same object without `sig`: the canonical line up to and
//! including the `kid` value, followed by `}`.
//!
//! Not recorded, ever: the bearer token, `Mcp-Session-Id`, the request path
//! and query, header values, the refusal detail, and the tool arguments
//! unless `include_arguments` asks for them.
//!
//! # One chain per VM
//!
//! Envoy runs one VM per worker thread, and proxy-wasm shared data has no
//! ordered append (only compare-and-swap on single keys): serialising every
//! append of every worker through shared data would put a retry loop on the
//! request path and still not order the log lines, which each worker writes
//! itself. So each VM keeps its own chain, with an id chosen by the shim
//! (`<vm-start-ms>-<context-id>`), and its genesis binds the configuration
//! digest and the VM start. A log holds many chains interleaved; the
//! verifier groups lines by chain, and the lines of one chain are in order
//! because one VM writes them from one thread. A configuration change starts
//! new VMs, hence new chains.
//!
//! # Checkpoints and what they prove
//!
//! A checkpoint follows the genesis immediately (signed while the VM is
//! configured). After that, checkpoints are never signed while a request is
//! handled: appending a record only hashes it. The shim's timer (every
//! 500 ms) asks [`Chain::tick`], which signs one checkpoint over the current
//! head once `checkpoint_every` records were appended since the last
//! checkpoint, or once records have waited `checkpoint_ms` (0: no time
//! rule). One checkpoint covers every record appended until then, however
//! many, so signing costs at most one ML-DSA-65 signature per VM per tick
//! whatever the request rate. A last checkpoint is written when the VM
//! stops. The writer appends and signs from one thread, so a checkpoint
//! line always follows the records it covers.
//!
//! The genesis states the policy. Because signing waits for the timer, the
//! verifier cannot require a checkpoint after an exact record; it reports,
//! per chain, the records after the last checkpoint (unverified) and whether
//! that tail is long enough that the policy made a checkpoint due (the log
//! was cut there, or is still being written). `pqguard audit verify
//! --max-unverified N` turns a longer tail into a failure, for closed logs.
//!
//! With the checkpoint key kept secret, `pqguard audit verify` guarantees for
//! each chain that every record up to its last valid checkpoint is exactly
//! what the filter wrote, in order, with nothing removed or inserted. The
//! records after it are reported as unverified. In detail (each case is a
//! test in `audit/tests.rs`):
//!
//! | change to the log | detected? |
//! |---|---|
//! | a byte of a record edited | yes, up to the last checkpoint: the next record's `prev`, or the checkpoint's `head`, no longer matches; a line that is not in canonical form, or whose `args` does not match `args_sha3`, is refused on its own |
//! | a record deleted | yes: the sequence numbers jump; if the later records are renumbered and relinked, the covering checkpoint's `head` no longer matches |
//! | two records swapped | yes: sequence numbers, and (relinked) the covering checkpoint |
//! | a record inserted, or copied from another chain (spliced) | yes: its `chain`, `seq` and `prev` conflict with the chain it lands in, and editing them changes its digest |
//! | a checkpoint forged or edited | yes: the signature does not verify |
//! | a checkpoint re-signed with another key | yes: the signature does not verify under the JWKS key of that `kid`, the `kid` is not in the JWKS, or it is not the `kid` the genesis names (so even another trusted key, for example a retired one, cannot re-sign this chain) |
//! | a record or checkpoint line repeated | yes: a repeated record breaks the sequence; a repeated checkpoint covers a position already signed, which the writer never does (`repeated_checkpoint`) |
//! | a checkpoint deleted | nothing is hidden by it: a later checkpoint still covers every earlier record through the chain. Deleting a chain's last checkpoints turns the records they covered into unverified ones, reported as such, with the tail flagged as due a checkpoint when it is as long as the policy allows (`--max-unverified` fails on it) |
//! | the log truncated | not from the log alone: every prefix of a chain is a valid chain, and a cut after the last checkpoint removes unverified records only. A cut is detected against an anchor (`--anchor CHAIN:SEQ:HEAD`, printed by an earlier verification, or taken from the collector's copy): the log must still reach that record, with that digest |
//! | a whole chain deleted | only against an anchor for it |
//! | records after the last checkpoint rewritten, removed or appended | no: they carry no signature yet, so anyone with write access to the log can rewrite them consistently; they are reported as unverified. In a complete log their number is bounded by the policy plus one timer period (500 ms) of traffic |
//!
//! Key rotation: a chain keeps its key for life (the genesis names it). Keep
//! retired public keys in the JWKS given to the verifier as long as logs
//! signed with them are kept.
//!
//! # Collector
//!
//! [`queue::AuditQueue`] batches lines for an HTTP collector (the shim calls
//! `dispatch_http_call`), bounded: when full, new lines are dropped and
//! counted (the Envoy log still has them). The collector's copy then has gaps
//! that `verify` reports as missing records; the Envoy log is the complete
//! copy.

pub mod chain;
pub mod offline;
pub mod queue;
pub mod record;
pub mod settings;

mod canon;

#[cfg(test)]
mod tests;

pub use chain::{
    Chain, ChainError, CheckpointPolicy, CheckpointSigner, SignerError, CHECKPOINT_ALG,
};
pub use offline::inventory::{IdentityUsage, Inventory};
pub use offline::verify::{
    verify, Anchor, ChainSummary, Location, Problem, Tamper, Verifier, VerifyReport,
};
pub use queue::{batch_body, AuditQueue, Backoff, Push};
pub use record::{
    digest, AnomalyRecord, AuditRecord, Checkpoint, CryptoContext, DecisionRecord, Genesis,
    Identity, Line, LineError, Outcome, RecordBody, RpcId, TargetKind, TargetRef,
};
pub use settings::{AuditSettings, CollectorSettings, RawAudit};

/// Marker that starts every audit line: the canonical JSON follows it.
pub const LINE_PREFIX: &str = "pqguard.audit ";

/// The format version written in every line (`"v":1`).
pub const FORMAT_VERSION: u64 = 1;

/// A SHA3-256 digest.
pub type Digest = [u8; 32];

/// The `prev` of a genesis record: 32 zero bytes.
pub const ZERO_DIGEST: Digest = [0; 32];

/// Lower-case hex of a digest.
pub fn to_hex(d: &Digest) -> String {
    crate::text::hex(d)
}

/// Parses exactly 64 lower-case hex characters.
pub fn parse_hex(s: &str) -> Option<Digest> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (*pair.first()?, *pair.get(1)?);
        *o = (nibble(hi)? << 4) | nibble(lo)?;
    }
    Some(out)
}

/// SHA3-256 of `bytes`.
pub fn sha3(bytes: &[u8]) -> Digest {
    use sha3::{Digest as _, Sha3_256};
    Sha3_256::digest(bytes).into()
}

/// True if `id` is a valid chain id: 1 to 128 characters from
/// `A-Z a-z 0-9 . _ -` (so it never needs escaping and `:` can separate it
/// from the rest of an anchor).
pub fn valid_chain_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The canonical JSON of one log line, if the line carries an audit record:
/// the text after the first `pqguard.audit {` (the `{` included), without
/// trailing whitespace.
pub fn extract(log_line: &str) -> Option<&str> {
    let marker = "pqguard.audit {";
    let start = log_line.find(marker)? + LINE_PREFIX.len();
    log_line
        .get(start..)
        .map(|s| s.trim_end_matches(|c: char| c.is_ascii_whitespace()))
}

/// The audit lines of a log, with their 1-based line numbers.
pub fn audit_lines(log: &str) -> impl Iterator<Item = (usize, &str)> {
    log.lines()
        .enumerate()
        .filter_map(|(i, l)| extract(l).map(|json| (i + 1, json)))
}
