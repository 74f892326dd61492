//! The writer: one hash chain per VM, with ML-DSA-65 signed checkpoints.
//!
//! The shim creates a [`Chain`] when the VM is configured, appends one
//! record per decision and per anomaly, and writes every line it gets back
//! (to Envoy's log, and to the collector queue). Lines come back complete,
//! [`super::LINE_PREFIX`] included. A chain never fails once created:
//! signing is deterministic and needs no randomness.

use super::record::{record_line, AnomalyRecord, Checkpoint, DecisionRecord, Genesis};
use super::{digest, sha3, valid_chain_id, Digest, LINE_PREFIX, ZERO_DIGEST};
use crate::token::{read_private_jwk, Algorithm, KeyError, MlDsa65Signer, PublicKey};

#[cfg(any(test, feature = "sign"))]
use crate::token::PrivateKey;

/// The only checkpoint signature algorithm: ML-DSA-65 (FIPS 204, RFC 9964).
pub const CHECKPOINT_ALG: Algorithm = Algorithm::MlDsa65;

/// When checkpoints are due. Both rules apply; the first that holds wins.
///
/// Checkpoints are signed by [`Chain::tick`], which the shim calls from its
/// timer, never while a request is being handled: a due checkpoint is made
/// at the next tick and covers every record appended until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// A checkpoint once this many records were appended since the last
    /// one (at least 1).
    pub every_records: u64,
    /// A checkpoint once records have waited this long (ms) since the last
    /// checkpoint; 0 disables the time rule.
    pub interval_ms: u64,
}

impl Default for CheckpointPolicy {
    /// Every 100 records or 10 seconds.
    fn default() -> Self {
        Self {
            every_records: 100,
            interval_ms: 10_000,
        }
    }
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due at `now_ms`, with `since` records
    /// appended since the last checkpoint (made at `last_checkpoint_ms`).
    pub fn due(&self, since: u64, now_ms: u64, last_checkpoint_ms: u64) -> bool {
        since > 0
            && (since >= self.every_records
                || (self.interval_ms > 0
                    && now_ms.saturating_sub(last_checkpoint_ms) >= self.interval_ms))
    }
}

/// Why a chain cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain id is empty, too long, or has characters outside `A-Z a-z 0-9 . _ -`.
    InvalidChainId,
    /// `every_records` is 0.
    InvalidPolicy,
}

impl std::fmt::Display for ChainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidChainId => {
                f.write_str("chain id must be 1 to 128 characters from A-Z a-z 0-9 . _ -")
            }
            Self::InvalidPolicy => f.write_str("checkpoints must be due after at least 1 record"),
        }
    }
}

impl std::error::Error for ChainError {}

/// Why a key cannot sign checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerError {
    /// The JWK is not a valid private key.
    Key(crate::token::KeyError),
    /// The key is not an ML-DSA-65 key.
    WrongAlgorithm(Algorithm),
    /// The key has no `kid`: the verifier finds the public key by `kid`.
    MissingKid,
}

impl std::fmt::Display for SignerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(e) => write!(f, "{e}"),
            Self::WrongAlgorithm(a) => {
                write!(f, "checkpoints are signed with {CHECKPOINT_ALG}, not {a}")
            }
            Self::MissingKid => f.write_str("the signing key needs a kid"),
        }
    }
}

impl std::error::Error for SignerError {}

/// The checkpoint signing key: an ML-DSA-65 private key with a `kid`.
///
/// It holds an ML-DSA-65 signer only, not the generic token
/// [`PrivateKey`](crate::token): the filter signs checkpoints and nothing
/// else, so it carries no other algorithm's signing code.
#[derive(Clone)]
pub struct CheckpointSigner {
    kid: String,
    signer: MlDsa65Signer,
    public: PublicKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("kid", &self.kid)
            .field("alg", &CHECKPOINT_ALG.name())
            .finish_non_exhaustive()
    }
}

impl PartialEq for CheckpointSigner {
    /// Same `kid` and same public key.
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.public.bytes() == other.public.bytes()
    }
}

impl CheckpointSigner {
    /// Parses an RFC 9964 private JWK
    /// (`{"kty":"AKP","alg":"ML-DSA-65","kid":…,"priv":<seed>}`, `pub`
    /// optional and checked when present), as `pqguard keygen --alg
    /// ML-DSA-65` writes it.
    pub fn parse(jwk: &[u8]) -> Result<Self, SignerError> {
        let jwk = read_private_jwk(jwk).map_err(SignerError::Key)?;
        let alg = jwk.alg;
        if alg != CHECKPOINT_ALG {
            return Err(SignerError::WrongAlgorithm(alg));
        }
        let seed: &[u8; 32] = jwk.private.as_slice().try_into().map_err(|_| {
            SignerError::Key(KeyError::InvalidKeyMaterial {
                index: 0,
                alg,
                member: "priv",
            })
        })?;
        let signer = MlDsa65Signer::from_seed(seed);
        let encoded = signer.public_bytes();
        if jwk.public.is_some_and(|p| p != encoded) {
            return Err(SignerError::Key(KeyError::PublicKeyMismatch));
        }
        Self::from_parts(jwk.kid, signer, &encoded)
    }

    fn from_parts(
        kid: Option<String>,
        signer: MlDsa65Signer,
        public: &[u8],
    ) -> Result<Self, SignerError> {
        let kid = kid
            .filter(|k| !k.is_empty())
            .ok_or(SignerError::MissingKid)?;
        let public = PublicKey::from_bytes(CHECKPOINT_ALG, Some(kid.clone()), public).ok_or(
            SignerError::Key(KeyError::InvalidKeyMaterial {
                index: 0,
                alg: CHECKPOINT_ALG,
                member: "priv",
            }),
        )?;
        Ok(Self {
            kid,
            signer,
            public,
        })
    }

    /// Wraps a private key: it must be ML-DSA-65 and have a `kid`.
    #[cfg(any(test, feature = "sign"))]
    pub fn new(key: PrivateKey) -> Result<Self, SignerError> {
        if key.alg() != CHECKPOINT_ALG {
            return Err(SignerError::WrongAlgorithm(key.alg()));
        }
        let seed: [u8; 32] = key
            .private_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| SignerError::WrongAlgorithm(key.alg()))?;
        let signer = MlDsa65Signer::from_seed(&seed);
        Self::from_parts(
            key.kid().map(str::to_owned),
            signer,
            key.public_key().bytes(),
        )
    }

    /// The key id written in the genesis and every checkpoint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key (for the JWKS given to the verifier).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Checks that the public key verifies a checkpoint: the same test the
    /// verifier applies.
    pub fn verifies(key: &PublicKey, checkpoint: &Checkpoint) -> bool {
        key.alg() == CHECKPOINT_ALG
            && key.verify(checkpoint.signed_bytes().as_bytes(), &checkpoint.sig)
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        self.signer.sign(msg)
    }
}

/// One VM's chain: its head, its position, and when the next checkpoint is due.
#[derive(Debug, Clone)]
pub struct Chain {
    id: String,
    next_seq: u64,
    head: Digest,
    since_checkpoint: u64,
    last_checkpoint_ms: u64,
    checkpoints: u64,
    policy: CheckpointPolicy,
    signer: CheckpointSigner,
}

impl Chain {
    /// Starts a chain: returns it with its first lines, the genesis record
    /// (binding the configuration digest, the VM start, pqguard's version,
    /// the signing key's `kid` and the checkpoint policy) and a checkpoint
    /// signing it.
    ///
    /// `chain_id` must be unique per VM, for example
    /// `<vm_start_ms>-<root context id>`; `config` is the plugin
    /// configuration exactly as the host handed it over; `now_ms` is the
    /// genesis time.
    pub fn new(
        chain_id: &str,
        config: &[u8],
        vm_start_ms: u64,
        now_ms: u64,
        policy: CheckpointPolicy,
        signer: CheckpointSigner,
    ) -> Result<(Self, Vec<String>), ChainError> {
        if !valid_chain_id(chain_id) {
            return Err(ChainError::InvalidChainId);
        }
        if policy.every_records == 0 {
            return Err(ChainError::InvalidPolicy);
        }
        let genesis = Genesis {
            vm_start_ms,
            config_sha3: sha3(config),
            version: crate::VERSION.to_owned(),
            build: crate::BUILD.to_owned(),
            kid: signer.kid().to_owned(),
            checkpoint_every: policy.every_records,
            checkpoint_ms: policy.interval_ms,
        };
        let mut chain = Self {
            id: chain_id.to_owned(),
            next_seq: 0,
            head: ZERO_DIGEST,
            since_checkpoint: 0,
            last_checkpoint_ms: now_ms,
            checkpoints: 0,
            policy,
            signer,
        };
        let mut lines = vec![chain.push(now_ms, "genesis", |o| genesis.write_to(o))];
        lines.extend(chain.checkpoint(now_ms));
        Ok((chain, lines))
    }

    /// Appends a decision record and returns its line. Never signs: a
    /// checkpoint that becomes due waits for [`Chain::tick`].
    pub fn append_decision(&mut self, time_ms: u64, decision: &DecisionRecord) -> String {
        self.push(time_ms, "decision", |o| decision.write_to(o))
    }

    /// Appends an anomaly record and returns its line. Never signs.
    pub fn append_anomaly(&mut self, time_ms: u64, anomaly: &AnomalyRecord) -> String {
        self.push(time_ms, "anomaly", |o| anomaly.write_to(o))
    }

    /// A checkpoint over the current head, now (at VM shutdown, or when
    /// [`Chain::tick`] finds one due). `None` if the last record is already
    /// covered (or, which cannot happen with a valid key, signing failed:
    /// the next call retries).
    pub fn checkpoint(&mut self, now_ms: u64) -> Option<String> {
        if self.since_checkpoint == 0 {
            return None;
        }
        let seq = self.next_seq.checked_sub(1)?;
        let mut cp = Checkpoint {
            chain: self.id.clone(),
            seq,
            head: self.head,
            count: self.next_seq,
            time_ms: now_ms,
            alg: CHECKPOINT_ALG.name().to_owned(),
            kid: self.signer.kid().to_owned(),
            sig: Vec::new(),
        };
        cp.sig = self.signer.sign(cp.signed_bytes().as_bytes())?;
        self.since_checkpoint = 0;
        self.last_checkpoint_ms = now_ms;
        self.checkpoints += 1;
        Some(format!("{LINE_PREFIX}{}", cp.to_line()))
    }

    /// Whether the policy makes a checkpoint due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.policy
            .due(self.since_checkpoint, now_ms, self.last_checkpoint_ms)
    }

    /// For the shim's periodic timer: a checkpoint over the current head
    /// when the policy makes one due (enough records, or records waiting
    /// for `interval_ms`), `None` otherwise. One checkpoint covers every
    /// record appended since the last one, however many.
    pub fn tick(&mut self, now_ms: u64) -> Option<String> {
        if self.due(now_ms) {
            return self.checkpoint(now_ms);
        }
        None
    }

    /// The chain id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sequence number the next record gets (= records so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Digest of the last record's line.
    pub fn head(&self) -> &Digest {
        &self.head
    }

    /// Records appended since the last checkpoint (not yet signed for).
    pub fn pending(&self) -> u64 {
        self.since_checkpoint
    }

    /// Checkpoints made so far.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    fn push(
        &mut self,
        time_ms: u64,
        kind: &str,
        body: impl FnOnce(&mut super::canon::Obj),
    ) -> String {
        let json = record_line(&self.id, self.next_seq, &self.head, time_ms, kind, body);
        self.head = digest(&json);
        self.next_seq += 1;
        self.since_checkpoint += 1;
        format!("{LINE_PREFIX}{json}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Line;
    use crate::audit::{extract, FORMAT_VERSION};
    use crate::token::KeySet;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn signer(byte: u8, kid: &str) -> CheckpointSigner {
        CheckpointSigner::new(
            PrivateKey::generate(Algorithm::MlDsa65, Some(kid.into()), &[byte; 64]).unwrap(),
        )
        .unwrap()
    }

    fn parse(line: &str) -> Line {
        Line::parse(extract(line).unwrap()).unwrap()
    }

    #[test]
    fn starts_with_a_signed_genesis_binding_the_configuration() {
        let s = signer(1, "audit-1");
        let public = s.public_key().clone();
        let (chain, lines) = Chain::new(
            "1700-1",
            b"{\"audit\":{}}",
            1700,
            1701,
            CheckpointPolicy::default(),
            s,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.starts_with(LINE_PREFIX)));
        let Line::Record(genesis) = parse(&lines[0]) else {
            panic!("genesis expected")
        };
        assert_eq!(genesis.seq, 0);
        assert_eq!(genesis.prev, ZERO_DIGEST);
        let crate::audit::RecordBody::Genesis(g) = &genesis.body else {
            panic!("genesis body expected")
        };
        assert_eq!(g.config_sha3, sha3(b"{\"audit\":{}}"));
        assert_eq!(g.vm_start_ms, 1700);
        assert_eq!(g.kid, "audit-1");
        assert_eq!(g.version, crate::VERSION);
        let Line::Checkpoint(cp) = parse(&lines[1]) else {
            panic!("checkpoint expected")
        };
        assert_eq!((cp.seq, cp.count, cp.head), (0, 1, *chain.head()));
        assert_eq!(cp.head, digest(extract(&lines[0]).unwrap()));
        assert!(CheckpointSigner::verifies(&public, &cp));
        assert_eq!(chain.pending(), 0);
        assert!(extract(&lines[0])
            .unwrap()
            .starts_with(&format!("{{\"v\":{FORMAT_VERSION},\"kind\":\"genesis\"")));
    }

    #[test]
    fn checkpoint_signature_is_ml_dsa_65_over_the_line_without_sig() {
        let s = signer(2, "k");
        let keys = KeySet::from_keys(vec![s.public_key().clone()]).unwrap();
        let (_, lines) = Chain::new("c", b"", 0, 0, CheckpointPolicy::default(), s).unwrap();
        let json = extract(&lines[1]).unwrap();
        let (unsigned, sig) = json.split_once(",\"sig\":\"").unwrap();
        let sig = crate::token::base64url_decode(sig.trim_end_matches("\"}").as_bytes()).unwrap();
        assert_eq!(sig.len(), 3309);
        let signed = format!("{unsigned}}}");
        assert!(keys.keys()[0].verify(signed.as_bytes(), &sig));
        // Deterministic: the same chain signs the same bytes the same way.
        let (_, again) =
            Chain::new("c", b"", 0, 0, CheckpointPolicy::default(), signer(2, "k")).unwrap();
        assert_eq!(lines, again);
    }

    #[test]
    fn appends_never_sign_and_the_tick_signs_what_is_due() {
        let policy = CheckpointPolicy {
            every_records: 3,
            interval_ms: 1000,
        };
        let (mut chain, _) = Chain::new("c", b"", 0, 0, policy, signer(3, "k")).unwrap();
        let d = DecisionRecord::new(&Default::default(), None);
        for i in 1..=2 {
            assert!(matches!(
                parse(&chain.append_decision(i, &d)),
                Line::Record(_)
            ));
        }
        assert!(!chain.due(2), "2 of 3 records, interval not reached");
        assert_eq!(chain.tick(2), None);
        chain.append_decision(3, &d);
        chain.append_decision(4, &d);
        assert_eq!(chain.pending(), 4, "appends past the count never sign");
        assert!(chain.due(4));
        let Line::Checkpoint(cp) = parse(&chain.tick(5).unwrap()) else {
            panic!("checkpoint expected")
        };
        assert_eq!((cp.seq, cp.count, cp.time_ms), (4, 5, 5), "covers all four");
        assert_eq!(cp.head, *chain.head());
        assert_eq!(chain.pending(), 0);
        assert_eq!(chain.tick(5000), None, "nothing pending");
        // The time rule: one record waiting 1000 ms after the last checkpoint.
        chain.append_anomaly(1100, &AnomalyRecord::new("flagged", "x"));
        assert_eq!(chain.tick(1004), None, "interval not reached");
        assert!(chain.tick(1005).is_some());
        assert_eq!(chain.checkpoint(1006), None, "head already covered");
        assert_eq!(chain.next_seq(), 6);
        assert_eq!(chain.checkpoints(), 3);
    }

    #[test]
    fn refuses_bad_chain_ids_policies_and_keys() {
        let p = CheckpointPolicy::default();
        assert_eq!(
            Chain::new("a:b", b"", 0, 0, p, signer(1, "k")).unwrap_err(),
            ChainError::InvalidChainId
        );
        assert_eq!(
            Chain::new("", b"", 0, 0, p, signer(1, "k")).unwrap_err(),
            ChainError::InvalidChainId
        );
        let zero = CheckpointPolicy {
            every_records: 0,
            interval_ms: 0,
        };
        assert_eq!(
            Chain::new("c", b"", 0, 0, zero, signer(1, "k")).unwrap_err(),
            ChainError::InvalidPolicy
        );
        let ed = PrivateKey::generate(Algorithm::EdDsa, Some("e".into()), &[1; 64]).unwrap();
        assert_eq!(
            CheckpointSigner::new(ed).unwrap_err(),
            SignerError::WrongAlgorithm(Algorithm::EdDsa)
        );
        let no_kid = PrivateKey::generate(Algorithm::MlDsa65, None, &[1; 64]).unwrap();
        assert_eq!(
            CheckpointSigner::new(no_kid).unwrap_err(),
            SignerError::MissingKid
        );
        let jwk = PrivateKey::generate(Algorithm::MlDsa65, Some("j".into()), &[9; 64])
            .unwrap()
            .to_jwk()
            .to_string();
        assert_eq!(CheckpointSigner::parse(jwk.as_bytes()).unwrap().kid(), "j");
        let debug = format!("{:?}", CheckpointSigner::parse(jwk.as_bytes()).unwrap());
        assert!(!debug.contains("priv"), "{debug}");
    }
}
