//! The verifier: checks every chain of a log against the checkpoint keys.
//!
//! Lines are grouped by chain; each chain is checked in log order:
//! - its first line is its genesis (`seq` 0, `prev` all zeros);
//! - every record has the next `seq` and names the previous record's digest
//!   as `prev`; a record carrying `args` matches its `args_sha3`;
//! - every checkpoint is ML-DSA-65, names the genesis `kid`, verifies under
//!   that key of the JWKS, and covers exactly the chain's current head
//!   (the writer signs on its timer, over the head it has then, and writes
//!   the checkpoint after the records it covers, from the same thread).
//!
//! A chain stops being checked at its first problem (everything after it is
//! suspect); the other chains go on. Records after a chain's last valid
//! checkpoint are counted as unverified, which is not an error. What these
//! checks can and cannot detect is set out in [`crate::audit`].

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};

use crate::audit::chain::{CheckpointPolicy, CheckpointSigner, CHECKPOINT_ALG};
use crate::audit::record::{peek, AuditRecord, Checkpoint, Genesis, Line, LineError, RecordBody};
use crate::audit::{
    audit_lines, digest, extract, parse_hex, sha3, to_hex, valid_chain_id, Digest, ZERO_DIGEST,
};
use crate::token::KeySet;

/// Where a line is: its source (file name) and 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or `-` for standard input).
    pub source: String,
    /// 1-based line number in that source.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// What is wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The line is not a valid audit line (edited so that it no longer
    /// parses or is no longer canonical).
    Malformed(LineError),
    /// The chain's first line is not its genesis.
    MissingGenesis {
        /// The `seq` of the first record found.
        found_seq: u64,
    },
    /// A genesis record where none may be (a second one, or one with a
    /// `seq` or `prev` a genesis cannot have).
    UnexpectedGenesis,
    /// `seq` is not the next number.
    Sequence {
        /// The number due.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// `prev` is not the digest of the previous record's line.
    BrokenLink,
    /// `args` does not match `args_sha3`.
    ArgumentsDigest,
    /// A checkpoint before the chain's genesis.
    CheckpointWithoutGenesis,
    /// A checkpoint with another algorithm than ML-DSA-65.
    CheckpointAlgorithm(String),
    /// A checkpoint naming another key than the genesis.
    CheckpointKid {
        /// The genesis `kid`.
        expected: String,
        /// The checkpoint's `kid`.
        found: String,
    },
    /// The JWKS has no ML-DSA-65 key with this `kid`.
    UnknownKey(String),
    /// The checkpoint signature does not verify.
    BadSignature,
    /// A validly signed checkpoint that does not match the chain at its
    /// place in the log.
    CheckpointMismatch {
        /// The checkpoint's `seq`.
        seq: u64,
        /// The chain's last `seq` at that point.
        chain_seq: Option<u64>,
    },
    /// A second checkpoint over the same chain position: the writer signs
    /// a checkpoint only over new records, so a repeated one was copied
    /// (a log is evidence as written: every repeated line is reported).
    RepeatedCheckpoint {
        /// The `seq` both checkpoints cover.
        seq: u64,
    },
    /// The record at an anchor's `seq` has another digest.
    AnchorMismatch {
        /// The anchor's `seq`.
        seq: u64,
    },
    /// The chain ends before an anchor's `seq`, or is absent.
    AnchorNotReached {
        /// The anchor's `seq`.
        seq: u64,
        /// The chain's last `seq` (`None`: the chain is absent).
        last_seq: Option<u64>,
    },
}

impl Problem {
    /// Stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::MissingGenesis { .. } => "missing_genesis",
            Self::UnexpectedGenesis => "unexpected_genesis",
            Self::Sequence { .. } => "sequence",
            Self::BrokenLink => "broken_link",
            Self::ArgumentsDigest => "arguments_digest",
            Self::CheckpointWithoutGenesis => "checkpoint_without_genesis",
            Self::CheckpointAlgorithm(_) => "checkpoint_algorithm",
            Self::CheckpointKid { .. } => "checkpoint_kid",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Self::RepeatedCheckpoint { .. } => "repeated_checkpoint",
            Self::AnchorMismatch { .. } => "anchor_mismatch",
            Self::AnchorNotReached { .. } => "anchor_not_reached",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not a valid audit line: {e}"),
            Self::MissingGenesis { found_seq } => write!(
                f,
                "the chain starts at seq {found_seq} without its genesis record (records removed from its start, or the log begins mid-chain: give the earlier log files first)"
            ),
            Self::UnexpectedGenesis => {
                f.write_str("a genesis record where none may be (inserted or edited)")
            }
            Self::Sequence { expected, found } if found > expected => write!(
                f,
                "expected seq {expected}, found {found}: {} record(s) missing (deleted, reordered, or never reached this copy)",
                found - expected
            ),
            Self::Sequence { expected, found } => write!(
                f,
                "expected seq {expected}, found {found}: records repeated or reordered"
            ),
            Self::BrokenLink => f.write_str(
                "prev is not the digest of the previous record: that record was edited, or records were replaced or spliced from elsewhere",
            ),
            Self::ArgumentsDigest => f.write_str("args does not match args_sha3 (edited)"),
            Self::CheckpointWithoutGenesis => f.write_str("a checkpoint before the chain's genesis"),
            Self::CheckpointAlgorithm(a) => write!(
                f,
                "checkpoint algorithm {a:?}, expected {}",
                CHECKPOINT_ALG.name()
            ),
            Self::CheckpointKid { expected, found } => write!(
                f,
                "checkpoint signed with key {found:?}, but the genesis names {expected:?} (re-signed with another key)"
            ),
            Self::UnknownKey(kid) => write!(
                f,
                "no {} key {kid:?} in the JWKS (re-signed with another key, or the JWKS lacks this chain's key)",
                CHECKPOINT_ALG.name()
            ),
            Self::BadSignature => f.write_str(
                "checkpoint signature does not verify (forged, edited, or signed with another key)",
            ),
            Self::RepeatedCheckpoint { seq } => write!(
                f,
                "a second checkpoint over seq {seq}: the filter never signs the same position twice, so this line was repeated"
            ),
            Self::CheckpointMismatch { seq, chain_seq } => match chain_seq {
                Some(c) if c == seq => write!(
                    f,
                    "checkpoint for seq {seq} names another head: the records it covers were edited"
                ),
                Some(c) => write!(
                    f,
                    "checkpoint for seq {seq} found after seq {c}: records were deleted, inserted or moved"
                ),
                None => write!(f, "checkpoint for seq {seq} found before any record"),
            },
            Self::AnchorMismatch { seq } => write!(
                f,
                "record {seq} differs from the anchor: the log was rewritten"
            ),
            Self::AnchorNotReached { seq, last_seq: Some(last) } => write!(
                f,
                "the chain ends at seq {last}, before the anchor at seq {seq}: the log was truncated"
            ),
            Self::AnchorNotReached { seq, last_seq: None } => write!(
                f,
                "the chain is absent, but an anchor names its seq {seq}: its lines were removed"
            ),
        }
    }
}

/// A problem found: the first bad line of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    /// The chain (`None` when the line does not say).
    pub chain: Option<String>,
    /// The record's or checkpoint's `seq`, when readable.
    pub seq: Option<u64>,
    /// Where the line is (`None` for problems found at the end, such as an
    /// anchor not reached).
    pub at: Option<Location>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain {}", self.chain.as_deref().unwrap_or("?"))?;
        if let Some(seq) = self.seq {
            write!(f, " seq {seq}")?;
        }
        if let Some(at) = &self.at {
            write!(f, " ({at})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl Tamper {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "chain": self.chain,
            "seq": self.seq,
            "source": self.at.as_ref().map(|a| a.source.clone()),
            "line": self.at.as_ref().map(|a| a.line),
            "problem": self.problem.code(),
            "message": self.problem.to_string(),
        })
    }
}

/// A point a chain must still reach, with the digest it must have there:
/// `CHAIN:SEQ:HEAD`, as an earlier verification printed it. Detects
/// truncation and rewriting since then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Chain id.
    pub chain: String,
    /// Sequence number.
    pub seq: u64,
    /// Digest of that record's line.
    pub head: Digest,
}

impl Anchor {
    /// Parses `CHAIN:SEQ:HEAD` (HEAD: 64 lower-case hex characters).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("anchor {s:?}: expected CHAIN:SEQ:HEAD");
        let mut parts = s.split(':');
        let (Some(chain), Some(seq), Some(head), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if !valid_chain_id(chain) {
            return Err(bad());
        }
        Ok(Self {
            chain: chain.to_owned(),
            seq: seq.parse().map_err(|_| bad())?,
            head: parse_hex(head).ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.chain, self.seq, to_hex(&self.head))
    }
}

/// What the verifier found about one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Chain id.
    pub chain: String,
    /// Where its first line is.
    pub first_line: Location,
    /// Its genesis record, when present.
    pub genesis: Option<Genesis>,
    /// Records checked (up to the first problem).
    pub records: u64,
    /// The last `seq` checked.
    pub last_seq: Option<u64>,
    /// Valid checkpoints.
    pub checkpoints: u64,
    /// The `seq` of the last valid checkpoint: every record up to it is
    /// verified.
    pub verified_through: Option<u64>,
    /// The head at that checkpoint.
    pub verified_head: Option<Digest>,
    /// Records after the last valid checkpoint (unverified).
    pub unverified: u64,
    /// The unverified tail is as long as the genesis policy allows (at
    /// least `checkpoint_every` records, or waiting `checkpoint_ms`): the
    /// log was cut after its last checkpoint, or is still being written.
    pub checkpoint_due_at_end: bool,
    /// Lines of this chain after its first problem, not checked.
    pub unchecked: u64,
    /// The first problem, if any.
    pub error: Option<Tamper>,
}

impl ChainSummary {
    /// The anchor of the last valid checkpoint, to pass to a later verification.
    pub fn anchor(&self) -> Option<Anchor> {
        Some(Anchor {
            chain: self.chain.clone(),
            seq: self.verified_through?,
            head: self.verified_head?,
        })
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        let g = self.genesis.as_ref();
        json!({
            "chain": self.chain,
            "first_line": self.first_line.to_string(),
            "vm_start_ms": g.map(|g| g.vm_start_ms),
            "config_sha3": g.map(|g| to_hex(&g.config_sha3)),
            "version": g.map(|g| g.version.clone()),
            "kid": g.map(|g| g.kid.clone()),
            "checkpoint_every": g.map(|g| g.checkpoint_every),
            "checkpoint_ms": g.map(|g| g.checkpoint_ms),
            "records": self.records,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "verified_through": self.verified_through,
            "anchor": self.anchor().map(|a| a.to_string()),
            "unverified": self.unverified,
            "checkpoint_due_at_end": self.checkpoint_due_at_end,
            "unchecked": self.unchecked,
            "error": self.error.as_ref().map(Tamper::to_json),
        })
    }
}

/// The verifier's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Audit lines read.
    pub audit_lines: u64,
    /// Every chain, in order of first appearance.
    pub chains: Vec<ChainSummary>,
    /// Every problem, in log order (at most one per chain, plus lines that
    /// name no chain, plus anchors not reached).
    pub errors: Vec<Tamper>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.errors.is_empty()
    }

    /// The first problem in log order.
    pub fn first_error(&self) -> Option<&Tamper> {
        self.errors.first()
    }

    /// Records checked, over all chains.
    pub fn records(&self) -> u64 {
        self.chains.iter().map(|c| c.records).sum()
    }

    /// Records covered by a valid checkpoint, over all chains.
    pub fn verified(&self) -> u64 {
        self.chains
            .iter()
            .map(|c| c.verified_through.map_or(0, |s| s + 1))
            .sum()
    }

    /// Records after their chain's last valid checkpoint, over all chains.
    pub fn unverified(&self) -> u64 {
        self.chains.iter().map(|c| c.unverified).sum()
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "intact": self.is_intact(),
            "audit_lines": self.audit_lines,
            "records": self.records(),
            "verified": self.verified(),
            "unverified": self.unverified(),
            "chains": self.chains.iter().map(ChainSummary::to_json).collect::<Vec<_>>(),
            "errors": self.errors.iter().map(Tamper::to_json).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug)]
struct ChainState {
    summary: ChainSummary,
    policy: CheckpointPolicy,
    head: Digest,
    next_seq: u64,
    since_checkpoint: u64,
    last_checkpoint_ms: u64,
    last_record_ms: u64,
}

impl ChainState {
    fn new(chain: &str, at: &Location) -> Self {
        Self {
            summary: ChainSummary {
                chain: chain.to_owned(),
                first_line: at.clone(),
                genesis: None,
                records: 0,
                last_seq: None,
                checkpoints: 0,
                verified_through: None,
                verified_head: None,
                unverified: 0,
                checkpoint_due_at_end: false,
                unchecked: 0,
                error: None,
            },
            policy: CheckpointPolicy::default(),
            head: ZERO_DIGEST,
            next_seq: 0,
            since_checkpoint: 0,
            last_checkpoint_ms: 0,
            last_record_ms: 0,
        }
    }

    fn record(&mut self, r: &AuditRecord, d: Digest) -> Result<(), Problem> {
        match (&self.summary.genesis, &r.body) {
            (None, RecordBody::Genesis(g)) if r.seq == 0 && r.prev == ZERO_DIGEST => {
                self.policy = CheckpointPolicy {
                    every_records: g.checkpoint_every,
                    interval_ms: g.checkpoint_ms,
                };
                self.summary.genesis = Some(g.clone());
                self.last_checkpoint_ms = r.time_ms;
            }
            (None, RecordBody::Genesis(_)) => return Err(Problem::UnexpectedGenesis),
            (None, _) => return Err(Problem::MissingGenesis { found_seq: r.seq }),
            (Some(_), body) => {
                if r.seq != self.next_seq {
                    return Err(Problem::Sequence {
                        expected: self.next_seq,
                        found: r.seq,
                    });
                }
                if matches!(body, RecordBody::Genesis(_)) {
                    return Err(Problem::UnexpectedGenesis);
                }
                if r.prev != self.head {
                    return Err(Problem::BrokenLink);
                }
                if let RecordBody::DecisionRecord(dec) = body {
                    if let Some(args) = &dec.args {
                        if dec.args_sha3 != Some(sha3(args.as_bytes())) {
                            return Err(Problem::ArgumentsDigest);
                        }
                    }
                }
            }
        }
        self.last_record_ms = r.time_ms;
        self.head = d;
        self.next_seq = r.seq + 1;
        self.since_checkpoint += 1;
        self.summary.records += 1;
        self.summary.last_seq = Some(r.seq);
        Ok(())
    }

    fn checkpoint(&mut self, c: &Checkpoint, keys: &KeySet) -> Result<(), Problem> {
        let Some(genesis) = &self.summary.genesis else {
            return Err(Problem::CheckpointWithoutGenesis);
        };
        if c.alg != CHECKPOINT_ALG.name() {
            return Err(Problem::CheckpointAlgorithm(c.alg.clone()));
        }
        if c.kid != genesis.kid {
            return Err(Problem::CheckpointKid {
                expected: genesis.kid.clone(),
                found: c.kid.clone(),
            });
        }
        let key = keys
            .keys()
            .iter()
            .find(|k| k.kid() == Some(c.kid.as_str()) && k.alg() == CHECKPOINT_ALG)
            .ok_or_else(|| Problem::UnknownKey(c.kid.clone()))?;
        if !CheckpointSigner::verifies(key, c) {
            return Err(Problem::BadSignature);
        }
        let chain_seq = self.next_seq.checked_sub(1);
        if chain_seq != Some(c.seq) || c.head != self.head || c.count != self.next_seq {
            return Err(Problem::CheckpointMismatch {
                seq: c.seq,
                chain_seq,
            });
        }
        if self.summary.verified_through == Some(c.seq) {
            return Err(Problem::RepeatedCheckpoint { seq: c.seq });
        }
        self.summary.verified_through = Some(c.seq);
        self.summary.verified_head = Some(c.head);
        self.summary.checkpoints += 1;
        self.since_checkpoint = 0;
        self.last_checkpoint_ms = c.time_ms;
        Ok(())
    }
}

/// Checks audit lines as they are fed, then reports ([`Verifier::finish`]).
#[derive(Debug)]
pub struct Verifier<'k> {
    keys: &'k KeySet,
    anchors: BTreeMap<String, BTreeMap<u64, Digest>>,
    chains: BTreeMap<String, ChainState>,
    order: Vec<String>,
    errors: Vec<Tamper>,
    audit_lines: u64,
}

impl<'k> Verifier<'k> {
    /// A verifier trusting the ML-DSA-65 keys of `keys` for checkpoints.
    pub fn new(keys: &'k KeySet) -> Self {
        Self {
            keys,
            anchors: BTreeMap::new(),
            chains: BTreeMap::new(),
            order: Vec::new(),
            errors: Vec::new(),
            audit_lines: 0,
        }
    }

    /// Adds anchors the log must still reach.
    pub fn with_anchors(mut self, anchors: impl IntoIterator<Item = Anchor>) -> Self {
        for a in anchors {
            self.anchors
                .entry(a.chain)
                .or_default()
                .insert(a.seq, a.head);
        }
        self
    }

    /// Feeds every audit line of a log (other lines are ignored), naming
    /// the log `source` in locations. The whole text at once: a reader of
    /// large files feeds them line by line ([`Verifier::feed_log_line`]).
    pub fn feed_log(&mut self, source: &str, log: &str) {
        for (line, json) in audit_lines(log) {
            self.feed(
                Location {
                    source: source.to_owned(),
                    line,
                },
                json,
            );
        }
    }

    /// Feeds one line of a log as read (without its line ending): an audit
    /// line is checked, any other line ignored. `line` is its 1-based
    /// number in `source`. Returns whether it was an audit line. Feeding
    /// every line of a log in order is [`Verifier::feed_log`].
    pub fn feed_log_line(&mut self, source: &str, line: usize, log_line: &str) -> bool {
        let Some(json) = extract(log_line) else {
            return false;
        };
        self.feed(
            Location {
                source: source.to_owned(),
                line,
            },
            json,
        );
        true
    }

    /// Feeds one audit line (the JSON after the prefix).
    pub fn feed(&mut self, at: Location, json: &str) {
        self.audit_lines += 1;
        let parsed = Line::parse(json);
        let (chain, seq) = match &parsed {
            Ok(Line::Record(r)) => (Some(r.chain.clone()), Some(r.seq)),
            Ok(Line::Checkpoint(c)) => (Some(c.chain.clone()), Some(c.seq)),
            Err(_) => peek(json),
        };
        let Some(chain) = chain else {
            if let Err(e) = parsed {
                self.errors.push(Tamper {
                    chain: None,
                    seq,
                    at: Some(at),
                    problem: Problem::Malformed(e),
                });
            }
            return;
        };
        if !self.chains.contains_key(&chain) {
            self.order.push(chain.clone());
        }
        let state = self
            .chains
            .entry(chain.clone())
            .or_insert_with(|| ChainState::new(&chain, &at));
        if state.summary.error.is_some() {
            state.summary.unchecked += 1;
            return;
        }
        let result = match &parsed {
            Err(e) => Err(Problem::Malformed(e.clone())),
            Ok(Line::Record(r)) => {
                let d = digest(json);
                state.record(r, d).and_then(|()| {
                    match self.anchors.get_mut(&chain).and_then(|m| m.remove(&r.seq)) {
                        Some(head) if head != d => Err(Problem::AnchorMismatch { seq: r.seq }),
                        _ => Ok(()),
                    }
                })
            }
            Ok(Line::Checkpoint(c)) => state.checkpoint(c, self.keys),
        };
        if let Err(problem) = result {
            let t = Tamper {
                chain: Some(chain),
                seq,
                at: Some(at),
                problem,
            };
            state.summary.error = Some(t.clone());
            self.errors.push(t);
        }
    }

    /// The report: per chain, and every problem (anchors not reached included).
    pub fn finish(mut self) -> VerifyReport {
        let mut chains = Vec::with_capacity(self.order.len());
        for id in &self.order {
            let Some(mut state) = self.chains.remove(id) else {
                continue;
            };
            let s = &mut state.summary;
            let verified = s.verified_through.map_or(0, |v| v + 1);
            s.unverified = state.next_seq.saturating_sub(verified);
            s.checkpoint_due_at_end = s.error.is_none()
                && state.policy.due(
                    state.since_checkpoint,
                    state.last_record_ms,
                    state.last_checkpoint_ms,
                );
            if s.error.is_none() {
                if let Some(pending) = self.anchors.remove(id) {
                    if let Some((&seq, _)) = pending.iter().next() {
                        let t = Tamper {
                            chain: Some(id.clone()),
                            seq: Some(seq),
                            at: None,
                            problem: Problem::AnchorNotReached {
                                seq,
                                last_seq: s.last_seq,
                            },
                        };
                        s.error = Some(t.clone());
                        self.errors.push(t);
                    }
                }
            }
            chains.push(state.summary);
        }
        for (id, pending) in std::mem::take(&mut self.anchors) {
            if self.order.contains(&id) {
                continue;
            }
            if let Some((&seq, _)) = pending.iter().next() {
                self.errors.push(Tamper {
                    chain: Some(id),
                    seq: Some(seq),
                    at: None,
                    problem: Problem::AnchorNotReached {
                        seq,
                        last_seq: None,
                    },
                });
            }
        }
        VerifyReport {
            audit_lines: self.audit_lines,
            chains,
            errors: self.errors,
        }
    }
}

/// Verifies one log text (see [`Verifier`] for several files and anchors).
pub fn verify(log: &str, keys: &KeySet) -> VerifyReport {
    let mut v = Verifier::new(keys);
    v.feed_log("log", log);
    v.finish()
}
