//! `pqguard`: the native command line. It reuses pqguard-core, so what it
//! reports is exactly what the filter inside Envoy decides.
//!
//! Commands:
//! - `pqguard inspect [--protocol-version V] [--config FILE] [BODY_FILE]`:
//!   inspect an MCP POST body (stdin by default) as the filter would; prints
//!   the request record, or the local reply and exits 1 when refused.
//! - `pqguard check-config FILE`: validate a plugin configuration (JSON).
//! - `pqguard keygen --alg ALG [--kid ID]`: a new private JWK.
//! - `pqguard jwks KEYFILE...`: the public JWKS of JWK or JWKS files.
//! - `pqguard mint --key KEYFILE --iss I --aud A --ttl SECONDS ...`: a signed token.
//! - `pqguard verify --jwks FILE [--aud A] [--iss I] TOKEN`: check a token as
//!   the filter would; prints the claims, or the precise reason and exits 1.
//! - `pqguard pin [ANSWER_FILE]`: SHA3-256 pins of the tools in a
//!   `tools/list` answer, for `policy.pins`.
//! - `pqguard audit verify --jwks FILE [LOG...]`: check the audit trail's
//!   hash chains and signed checkpoints; exits 1 naming the first bad record.
//! - `pqguard audit report [--json] [LOG...]`: the crypto inventory of the
//!   audit trail (who still uses classical cryptography).
//! - `pqguard version`.
//!
//! Exit codes: 0 success, 1 refused (inspect, verify, check-config) or
//! tampered (audit verify), 2 usage or I/O error.
#![forbid(unsafe_code)]

mod args;
mod audit;
mod inspect;
mod tokens;

use std::io::Read;
use std::process::ExitCode;

const USAGE: &str = "usage:
  pqguard inspect [--protocol-version V] [--config FILE] [BODY_FILE]
  pqguard check-config FILE
  pqguard keygen --alg ALG [--kid ID]
  pqguard jwks KEYFILE...
  pqguard mint --key KEYFILE --iss ISSUER --aud AUDIENCE --ttl SECONDS
               [--sub SUBJECT] [--scope \"a b\"] [--claim NAME=VALUE]...
  pqguard verify --jwks FILE [--aud AUDIENCE] [--iss ISSUER]... [--leeway SECONDS]
                 [--alg ALG]... TOKEN|-
  pqguard pin [ANSWER_FILE]
  pqguard audit verify --jwks FILE [--anchor CHAIN:SEQ:HEAD]... [--max-unverified N] [--json] [LOG...]
  pqguard audit report [--json] [LOG...]
  pqguard version

algorithms: ML-DSA-44 ML-DSA-65 ML-DSA-87 ML-DSA-65-Ed25519 ML-DSA-65-ES256 EdDSA ES256";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    let result = match args.first().map(String::as_str) {
        Some("inspect") => inspect::inspect(rest),
        Some("check-config") => inspect::check_config(rest),
        Some("pin") => inspect::pin(rest),
        Some("audit") => audit::audit(rest),
        Some("keygen") => tokens::keygen(rest),
        Some("jwks") => tokens::jwks(rest),
        Some("mint") => tokens::mint(rest),
        Some("verify") => tokens::verify(rest),
        Some("version" | "--version" | "-V") => {
            println!("pqguard {}", pqguard_core::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("pqguard: {message}");
            ExitCode::from(2)
        }
    }
}

/// Reads a file, or stdin for `None` and `-`.
fn read_input(path: Option<&str>) -> Result<Vec<u8>, String> {
    match path {
        None | Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(buf)
        }
        Some(p) => std::fs::read(p).map_err(|e| format!("reading {p}: {e}")),
    }
}
