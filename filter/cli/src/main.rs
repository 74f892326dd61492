//! `pqguard`: the native command line. It reuses pqguard-core, so what it
//! reports is exactly what the filter inside Envoy decides; `pqguard
//! inspect` runs the filter's own request engine.
//!
//! The grammar is in [`cli`] (`pqguard --help`, `pqguard COMMAND --help`).
//! Exit codes: 0 success, 1 refused (inspect, verify, check-config) or
//! tampered (audit verify), 2 usage or I/O error, 3 a file not overwritten
//! ([`output`]: no command replaces an existing file unless asked, nor an
//! audit log ever).
#![forbid(unsafe_code)]

mod audit;
mod binding;
mod cli;
mod inspect;
mod logs;
mod output;
mod proxy;
mod tokens;

use std::io::Read;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{AuditCommand, BindCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(a) => inspect::inspect(a),
        Command::CheckConfig(a) => inspect::check_config(a),
        Command::Pin(a) => inspect::pin(a),
        Command::Audit(a) => match &a.command {
            AuditCommand::Verify(v) => audit::verify(v),
            AuditCommand::Report(r) => audit::report(r),
        },
        Command::Bind(a) => match &a.command {
            BindCommand::Key(k) => binding::key(k),
            BindCommand::Open(o) => binding::open(o),
            BindCommand::Proof(p) => binding::proof(p),
        },
        Command::Proxy(a) => proxy::proxy(a),
        Command::Keygen(a) => tokens::keygen(a),
        Command::Jwks(a) => tokens::jwks(a),
        Command::Mint(a) => tokens::mint(a),
        Command::Verify(a) => tokens::verify(a),
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "pqguard",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("pqguard {}", pqguard_core::VERSION);
            Ok(ExitCode::SUCCESS)
        }
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
