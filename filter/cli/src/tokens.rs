//! Key and token commands: `keygen`, `jwks`, `mint`, `verify`.
//!
//! Interchange formats are the standard ones (RFC 7517 JWK/JWKS, RFC 9964
//! `AKP` keys, RFC 7515 compact JWS), so other tools can read what these
//! commands write and the other way round.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pqguard_core::token::{
    self, Algorithm, AlgorithmSet, KeyError, KeySet, PrivateKey, PublicKey, ValidationOptions,
};
use serde_json::{Map, Value};

use crate::cli::{JwksArgs, KeygenArgs, MintArgs, VerifyArgs};
use crate::read_input;

fn now() -> Result<u64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| "the system clock is before 1970".to_owned())
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness from the system: {e}"))?;
    Ok(buf)
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(name).ok_or_else(|| {
        let names: Vec<_> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        format!("unknown algorithm {name:?}; one of: {}", names.join(", "))
    })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `pqguard keygen --alg ALG [--kid ID]`: a private JWK on stdout. The seed
/// (and the classical private key of composites) comes from the operating
/// system's CSPRNG. Without `--kid`, the key id is the key's thumbprint.
pub fn keygen(a: &KeygenArgs) -> Result<ExitCode, String> {
    let alg = algorithm(&a.alg)?;
    let kid = a.kid.clone();
    let mut attempts = 0;
    let (entropy, key) = loop {
        let entropy: [u8; 64] = random()?;
        match PrivateKey::generate(alg, kid.clone(), &entropy) {
            Ok(key) => break (entropy, key),
            // A P-256 scalar out of range (probability ~2^-32): draw again.
            Err(KeyError::InvalidEntropy) if attempts < 8 => attempts += 1,
            Err(e) => return Err(e.to_string()),
        }
    };
    let key = match kid {
        Some(_) => key,
        // The thumbprint does not depend on the kid: same material, new kid.
        None => PrivateKey::generate(alg, Some(key.public_key().thumbprint()), &entropy)
            .map_err(|e| e.to_string())?,
    };
    println!("{}", pretty(&key.to_jwk()));
    Ok(ExitCode::SUCCESS)
}

/// The public keys in a file: a private JWK gives its public key, a public
/// JWK or JWKS gives its usable keys.
fn public_keys(path: &str) -> Result<Vec<PublicKey>, String> {
    let bytes = read_input(Some(path))?;
    let set = match KeySet::parse(&bytes) {
        Ok(set) => set,
        Err(KeyError::PrivateKeyMaterial { .. }) => {
            let key = PrivateKey::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
            return Ok(vec![key.public_key().clone()]);
        }
        Err(e) => return Err(format!("{path}: {e}")),
    };
    for s in set.skipped() {
        eprintln!(
            "pqguard: {path}: key {} ({}) left out: {}",
            s.index,
            s.kid.as_deref().unwrap_or("no kid"),
            s.reason.as_str()
        );
    }
    Ok(set.keys().to_vec())
}

/// `pqguard jwks KEYFILE...`: the public JWKS of the given key files.
pub fn jwks(a: &JwksArgs) -> Result<ExitCode, String> {
    let mut keys = Vec::new();
    for path in &a.keyfiles {
        keys.extend(public_keys(path)?);
    }
    let set = KeySet::from_keys(keys).map_err(|e| e.to_string())?;
    println!("{}", pretty(&set.to_jwks()));
    Ok(ExitCode::SUCCESS)
}

/// Claims that `mint` sets from its own options; `--claim` may not set them.
const MANAGED: [&str; 7] = ["iss", "aud", "sub", "scope", "exp", "iat", "jti"];

/// `pqguard mint --key KEYFILE --iss I --aud A --ttl SECONDS [--sub S]
/// [--scope "a b"] [--claim NAME=VALUE]...`: a compact JWS on stdout, with
/// `iat` = now, `exp` = now + ttl and a random `jti`. A `--claim` value that
/// parses as JSON is used as JSON (`tools=["echo"]`, `n=3`), otherwise as a string.
pub fn mint(a: &MintArgs) -> Result<ExitCode, String> {
    let key_path = a.key.as_str();
    let key =
        PrivateKey::parse(&read_input(Some(key_path))?).map_err(|e| format!("{key_path}: {e}"))?;
    let ttl = a.ttl;
    let now = now()?;
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::String(a.iss.clone()));
    match a.aud.as_slice() {
        [] => return Err("--aud is required".into()),
        [one] => claims.insert("aud".into(), Value::String(one.clone())),
        many => claims.insert(
            "aud".into(),
            Value::Array(many.iter().cloned().map(Value::String).collect()),
        ),
    };
    if let Some(sub) = &a.sub {
        claims.insert("sub".into(), Value::String(sub.clone()));
    }
    if let Some(scope) = &a.scope {
        claims.insert("scope".into(), Value::String(scope.clone()));
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert(
        "exp".into(),
        Value::from(now.checked_add(ttl).ok_or("--ttl is too large")?),
    );
    claims.insert(
        "jti".into(),
        Value::String(token::base64url_encode(&random::<16>()?)),
    );
    for claim in &a.claim {
        let (name, value) = claim
            .split_once('=')
            .ok_or_else(|| format!("--claim {claim:?}: expected NAME=VALUE"))?;
        if MANAGED.contains(&name) {
            return Err(format!("--claim cannot set {name:?}: use its own option"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        if claims.insert(name.to_owned(), value).is_some() {
            return Err(format!("--claim {name:?} given twice"));
        }
    }
    if let Some(path) = &a.bind_ek {
        if claims.contains_key("cnf") {
            return Err("--bind-ek and --claim cnf=...: give one".into());
        }
        let ek = bind_ek(path)?;
        claims.insert(
            "cnf".into(),
            serde_json::json!({ pqguard_core::bind::CNF_MEMBER: pqguard_core::bind::thumbprint(&ek) }),
        );
    }
    let jws = token::mint(&key, &claims).ok_or("signing failed")?;
    println!("{jws}");
    Ok(ExitCode::SUCCESS)
}

/// The encapsulation key in `path`: a `pqguard bind key` file (its `ek`)
/// or the base64url key alone; 1184 bytes (ML-KEM-768).
fn bind_ek(path: &str) -> Result<Vec<u8>, String> {
    let bytes = read_input(Some(path))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{path}: not UTF-8"))?;
    let text = text.trim();
    let encoded = match serde_json::from_str::<Value>(text) {
        Ok(doc) => doc
            .get("ek")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{path}: no \"ek\" (a pqguard bind key file)"))?
            .to_owned(),
        Err(_) => text.to_owned(),
    };
    let ek = token::base64url_decode(encoded.as_bytes())
        .map_err(|_| format!("{path}: the encapsulation key is not base64url"))?;
    if ek.len() != pqguard_core::bind::EK_LEN {
        return Err(format!(
            "{path}: an ML-KEM-768 encapsulation key has {} bytes, not {}",
            pqguard_core::bind::EK_LEN,
            ek.len()
        ));
    }
    Ok(ek)
}

/// `pqguard verify --jwks FILE [--aud A] [--iss I]... [--leeway S] [--alg ALG]... TOKEN|-`:
/// verifies as the filter does (same code), at the current time. Prints the
/// claims as JSON and exits 0, or prints the precise reason and exits 1.
pub fn verify(a: &VerifyArgs) -> Result<ExitCode, String> {
    let token_arg = &a.token;
    let token = if token_arg == "-" {
        String::from_utf8(read_input(None)?).map_err(|_| "the token is not UTF-8".to_owned())?
    } else {
        token_arg.clone()
    };
    let token = token.trim();
    let jwks_path = a.jwks.as_str();
    let keys =
        KeySet::from_keys(public_keys(jwks_path)?).map_err(|e| format!("{jwks_path}: {e}"))?;
    let mut opts = ValidationOptions {
        audience: a.aud.clone(),
        ..ValidationOptions::default()
    };
    if !a.iss.is_empty() {
        opts.issuers = Some(a.iss.clone());
    }
    if let Some(leeway) = a.leeway {
        opts.leeway_secs = leeway;
    }
    if !a.alg.is_empty() {
        opts.algorithms = a
            .alg
            .iter()
            .map(|n| algorithm(n))
            .collect::<Result<AlgorithmSet, _>>()?;
    }
    match token::verify(token, &keys, &opts, now()?) {
        Ok(v) => {
            eprintln!(
                "pqguard: valid: alg {} ({}), kid {}",
                v.alg,
                v.class(),
                v.kid.as_deref().unwrap_or("-")
            );
            println!("{}", pretty(&Value::Object(v.claims.all.clone())));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("pqguard: invalid token: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
