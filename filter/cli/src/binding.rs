//! `pqguard bind`: the client side of ML-KEM bound sessions for scripts,
//! on the core's own `bind` module (the math the filter checks). HTTP is
//! left to curl or any client.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pqguard_core::bind::{self, BoundHeaders, ClientKey, Covered, Issued, Proof};
use pqguard_core::token::{base64url_decode, base64url_encode, token_digest};
use serde_json::{json, Value};

use crate::cli::{BindKeyArgs, BindOpenArgs, BindProofArgs};
use crate::read_input;

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn field(doc: &Value, name: &str, file: &str) -> Result<Vec<u8>, String> {
    doc.get(name)
        .and_then(Value::as_str)
        .and_then(|s| base64url_decode(s.as_bytes()).ok())
        .ok_or_else(|| format!("{file}: no base64url {name:?}"))
}

fn json_file(path: &str) -> Result<Value, String> {
    serde_json::from_slice(&read_input(Some(path))?).map_err(|e| format!("{path}: {e}"))
}

/// `pqguard bind key [--out FILE]`: a fresh ML-KEM-768 seed from the
/// system's CSPRNG. With `--out`, the file is created with mode 0600 and an
/// existing file is never replaced.
pub fn key(a: &BindKeyArgs) -> Result<ExitCode, String> {
    let mut seed = zeroize::Zeroizing::new([0u8; 64]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| format!("no randomness from the system: {e}"))?;
    let ek = ClientKey::from_seed(&seed).encapsulation_key();
    let doc = zeroize::Zeroizing::new(
        serde_json::to_string_pretty(&json!({
            "kem": "ML-KEM-768",
            "seed": base64url_encode(seed.as_slice()),
            "ek": base64url_encode(&ek),
            "cnf": {bind::CNF_MEMBER: bind::thumbprint(&ek)},
        }))
        .map_err(|e| e.to_string())?,
    );
    match &a.out {
        None => println!("{}", doc.as_str()),
        Some(path) => write_secret(path, doc.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (never replacing a file) readable by its owner only.
fn write_secret(path: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!("{path} exists: a key file is never replaced (remove it first)")
        }
        _ => format!("{path}: {e}"),
    })?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{path}: {e}"))
}

/// `pqguard bind open --key KEY [ANSWER]`: decapsulates and checks.
pub fn open(a: &BindOpenArgs) -> Result<ExitCode, String> {
    let key_doc = json_file(&a.key)?;
    let seed: [u8; 64] = field(&key_doc, "seed", &a.key)?
        .try_into()
        .map_err(|_| format!("{}: the seed is not 64 bytes", a.key))?;
    let answer = read_input(a.answer.as_deref())?;
    let issued = Issued::from_json(&answer).map_err(|e| e.to_string())?;
    let key = ClientKey::from_seed(&seed)
        .open(&issued)
        .map_err(|e| e.to_string())?;
    print(&json!({
        "binding_id": issued.id,
        "key": base64url_encode(&key),
        "expires_at": issued.expires_at,
    }));
    Ok(ExitCode::SUCCESS)
}

/// `pqguard bind proof`: the header value of one request.
pub fn proof(a: &BindProofArgs) -> Result<ExitCode, String> {
    let binding = json_file(&a.binding)?;
    let id = binding
        .get("binding_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: no binding_id", a.binding))?;
    let key: [u8; 32] = field(&binding, "key", &a.binding)?
        .try_into()
        .map_err(|_| format!("{}: the key is not 32 bytes", a.binding))?;
    let token = String::from_utf8(read_input(Some(&a.token_file))?)
        .map_err(|_| format!("{}: not UTF-8", a.token_file))?;
    let body = match a.body.as_deref() {
        Some(path) => read_input(Some(path))?,
        None => Vec::new(),
    };
    let ts = match a.ts {
        Some(ts) => ts,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970".to_owned())?
            .as_secs(),
    };
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness from the system: {e}"))?;
    let covered = Covered {
        method: &a.method,
        path: &a.path,
        headers: BoundHeaders {
            authority: a.authority.as_deref(),
            session_id: a.session_id.as_deref(),
            protocol_version: a.protocol_version.as_deref(),
            mcp_method: a.mcp_method.as_deref(),
            mcp_name: a.mcp_name.as_deref(),
        },
        body_digest: &bind::sha3(&body),
        token_digest: &token_digest(token.trim()),
    };
    let header = Proof::new(id, &key, &covered, ts, &nonce).to_header();
    println!("{header}");
    Ok(ExitCode::SUCCESS)
}
