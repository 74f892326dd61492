//! `audit-big-log`: writes a large Envoy log with valid pqguard audit chains,
//! to measure `pqguard audit verify` and `pqguard audit report` on logs the
//! size operators keep (`just audit-big-log` runs it and the measurements).
//!
//! ```text
//! audit-big-log --out envoy.log --jwks audit-jwks.json --bytes 1073741824
//! ```
//!
//! What it writes: the log of four Envoy workers, each VM's chain written by
//! pqguard-core's own [`Chain`] (the code that runs in the filter) with the
//! default checkpoint policy (a checkpoint every 100 records, signed with
//! ML-DSA-65 on the timer), interleaved record by record; between records,
//! Envoy's other lines (access log lines, `pqguard.request` lines), about a
//! third of the bytes. Callers mix post-quantum, hybrid and classical key
//! exchanges; one request in five is denied. Each chain ends with the
//! checkpoint its VM signs when it stops, so the log is closed: `audit
//! verify --max-unverified 0` passes. The key comes from a fixed seed;
//! its public JWKS goes to `--jwks`. Neither file is ever overwritten.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use pqguard_core::audit::{
    sha3, Chain, CheckpointPolicy, CheckpointSigner, DecisionRecord, Identity, Outcome, RpcId,
    TargetKind, TargetRef,
};
use pqguard_core::tls::TlsFacts;
use pqguard_core::token::{Algorithm, KeySet, PrivateKey};

const WORKERS: u64 = 4;
const START_MS: u64 = 1_790_000_000_000;
const POLICY: CheckpointPolicy = CheckpointPolicy {
    every_records: 100,
    interval_ms: 10_000,
};
const CALLERS: [(&str, &str, &str); 5] = [
    ("alice", "X25519MLKEM768", "hybrid-pq"),
    ("bob", "X25519", "classical"),
    ("carol", "X25519MLKEM768", "hybrid-pq"),
    ("ci-runner", "SecP256r1MLKEM768", "hybrid-pq"),
    ("legacy-batch", "secp256r1", "classical"),
];

struct Options {
    out: String,
    jwks: String,
    bytes: u64,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut out, mut jwks, mut bytes) = (None, None, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(value()?),
            "--jwks" => jwks = Some(value()?),
            "--bytes" => {
                let v = value()?;
                bytes = Some(
                    v.parse()
                        .map_err(|_| format!("--bytes {v}: not a number"))?,
                );
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(Options {
        out: out.ok_or("--out FILE is required")?,
        jwks: jwks.ok_or("--jwks FILE is required")?,
        bytes: bytes.unwrap_or(1 << 30),
    })
}

fn decision(i: u64) -> DecisionRecord {
    let (sub, group, _) = CALLERS[(i % CALLERS.len() as u64) as usize];
    let facts = TlsFacts::new(
        Some("TLSv1.3".into()),
        Some(group.into()),
        Some("TLS_AES_256_GCM_SHA384".into()),
    );
    let mut d = DecisionRecord::new(&facts, None).with_request_id(Some(format!(
        "{:08x}-7c1e-4f7a-9d2b-{:012x}",
        i >> 16,
        i
    )));
    d.identity = Some(Identity {
        iss: Some("https://issuer.example".into()),
        sub: Some(sub.into()),
    });
    d.method = Some("tools/call".into());
    d.target = Some(TargetRef {
        kind: TargetKind::Tool,
        name: ["search", "run_python", "read_file"][(i % 3) as usize].into(),
    });
    d.rpc_id = Some(RpcId::Integer(i as i64));
    d.body_sha3 = Some(sha3(format!("body {i}").as_bytes()));
    d.args_sha3 = Some(sha3(format!("{{\"query\":\"q{i}\"}}").as_bytes()));
    if i.is_multiple_of(5) {
        d.outcome = Outcome::Denied;
        d.reason = Some("forbidden".into());
        d.reason_code = Some("pqc_required".into());
    } else {
        d = d.with_upstream(Some(200), Some(3 + i % 40));
    }
    d
}

fn envoy(time_ms: u64, worker: u64, what: &str) -> String {
    let s = time_ms / 1000;
    format!(
        "[2026-09-21 {:02}:{:02}:{:02}.{:03}][{}][info][wasm] [source/extensions/common/wasm/context.cc:1192] wasm log pqguard pqguard: {what}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        time_ms % 1000,
        17 + worker
    )
}

fn run(o: &Options) -> Result<u64, String> {
    let key = PrivateKey::generate(Algorithm::MlDsa65, Some("audit-1".into()), &[42; 64])
        .map_err(|e| format!("key: {e}"))?;
    let jwks = KeySet::from_keys(vec![key.public_key().clone()])
        .map_err(|e| format!("jwks: {e}"))?
        .to_jwks();
    let signer = CheckpointSigner::new(key).map_err(|e| format!("signer: {e:?}"))?;
    let create =
        |path: &str| File::create_new(path).map_err(|e| format!("{path}: {e} (never overwritten)"));
    let mut jwks_file = create(&o.jwks)?;
    writeln!(jwks_file, "{jwks}").map_err(|e| format!("{}: {e}", o.jwks))?;
    let mut out = Out {
        file: BufWriter::with_capacity(1 << 20, create(&o.out)?),
        path: &o.out,
        written: 0,
    };
    let mut chains = Vec::new();
    for w in 0..WORKERS {
        let start = START_MS + w;
        let (chain, lines) = Chain::new(
            &format!("{start}-{w}"),
            b"{\"audit\":{\"checkpoint_every\":100}}",
            start,
            start,
            POLICY,
            signer.clone(),
        )
        .map_err(|e| format!("chain: {e:?}"))?;
        for l in lines {
            out.line(&envoy(start, w, &l))?;
        }
        chains.push(chain);
    }
    let mut i = 0u64;
    let mut now = START_MS;
    while out.written < o.bytes {
        i += 1;
        now += 1 + i % 7;
        let w = i % WORKERS;
        let Some(chain) = chains.get_mut(w as usize) else {
            break;
        };
        let (sub, _, class) = CALLERS[(i % CALLERS.len() as u64) as usize];
        out.line(&envoy(
            now,
            w,
            &format!("pqguard.request {{\"sub\":\"{sub}\",\"kex\":\"{class}\",\"rpc_id\":{i}}}"),
        ))?;
        let line = chain.append_decision(now, &decision(i));
        out.line(&envoy(now, w, &line))?;
        if let Some(cp) = chain.tick(now) {
            out.line(&envoy(now, w, &cp))?;
        }
        out.line(&format!(
                "[{now}] \"POST /mcp HTTP/2\" {} - 412 {} {} \"python-httpx/0.28.1\" \"{:012x}\" \"mcp.example.com\" \"10.0.3.{}:8000\"",
                if i.is_multiple_of(5) { 403 } else { 200 },
                300 + i % 900,
                3 + i % 40,
                i,
                w + 10
            ))?;
    }
    for (w, chain) in chains.iter_mut().enumerate() {
        if let Some(cp) = chain.checkpoint(now + 500) {
            out.line(&envoy(now + 500, w as u64, &cp))?;
        }
    }
    out.file.flush().map_err(|e| format!("{}: {e}", o.out))?;
    Ok(i)
}

struct Out<'a> {
    file: BufWriter<File>,
    path: &'a str,
    written: u64,
}

impl Out<'_> {
    fn line(&mut self, line: &str) -> Result<(), String> {
        self.written += line.len() as u64 + 1;
        writeln!(self.file, "{line}").map_err(|e| format!("{}: {e}", self.path))
    }
}

fn main() -> ExitCode {
    match options().and_then(|o| run(&o).map(|n| (o, n))) {
        Ok((o, n)) => {
            eprintln!(
                "{}: {n} decision records in {WORKERS} chains; keys in {}",
                o.out, o.jwks
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit-big-log: {e}");
            ExitCode::from(2)
        }
    }
}
