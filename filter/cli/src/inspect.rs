//! `inspect` and `check-config`: the filter's own request engine and
//! configuration checks, run natively.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use pqguard_core::config::Config;
use pqguard_core::engine::{
    Action, ConnectionFacts, Effects, Exchange, Level, MemoryStore, RequestStart, Worker,
};
use pqguard_core::outcome::log::REQUEST_MARKER;
use pqguard_core::token::KeySet;
use serde_json::{json, Value};

use crate::cli::{CheckConfigArgs, InspectArgs, PinArgs};
use crate::read_input;

/// `pqguard inspect`: runs one request through the engine exactly as the
/// shim does inside Envoy (head, body, decision) and prints the decision,
/// the local reply and every log line the filter would write.
pub fn inspect(a: &InspectArgs) -> Result<ExitCode, String> {
    let config = match &a.config {
        Some(p) => read_input(Some(p))?,
        None => b"{}".to_vec(),
    };
    let now_ms = match a.now {
        Some(s) => s.checked_mul(1000).ok_or("--now is too large")?,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970")?
            .as_millis()
            .try_into()
            .map_err(|_| "the system clock is too far ahead")?,
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness from the system: {e}"))?;
    let store = MemoryStore::new();
    let mut out = Effects::new();
    let mut worker = match Worker::start(&config, Some(now_ms), Some(nonce), &store, &mut out) {
        Ok(w) => w,
        Err(e) => {
            return Err(format!(
                "{}: {e}",
                a.config.as_deref().unwrap_or("configuration")
            ))
        }
    };
    if let Some(path) = &a.jwks {
        let keys = KeySet::parse(&read_input(Some(path))?).map_err(|e| format!("{path}: {e}"))?;
        worker.install_keys(keys, "file", &mut out);
    }
    // What the worker logged at start is not part of this request.
    let mut out = Effects::new();
    let body = a.body.as_deref().map(|p| read_input(Some(p))).transpose()?;
    let start = RequestStart {
        headers: Ok(request_headers(a, body.as_deref())?),
        end_of_stream: body.is_none(),
        now_ms: Some(now_ms),
        connection: ConnectionFacts {
            tls_version: a
                .tls_version
                .clone()
                .or_else(|| a.tls_group.as_ref().map(|_| "TLSv1.3".to_owned())),
            tls_group: a.tls_group.clone(),
            tls_cipher: a.tls_cipher.clone(),
            ..ConnectionFacts::default()
        },
        request_id: Some("pqguard-inspect".to_owned()),
    };
    let mut exchange = Exchange::new();
    let mut action = exchange.request_head(&mut worker, &store, start, &mut out);
    if let (Action::Pause, Some(b)) = (&action, &body) {
        action = exchange.request_body_progress(&mut worker, b.len(), true, &mut out);
    }
    if let Action::ReadRequestBody(n) = action {
        let b = body.as_deref().unwrap_or_default();
        let b = b
            .get(..n)
            .ok_or("the engine asked for more body than there is")?;
        action = exchange.request_body(&mut worker, &store, Ok(b), &mut out);
    }
    if exchange.forwarded() {
        // The answer starts: a forwarded request's audit record is written now.
        exchange.finish(&mut worker, Some(now_ms), &mut out);
    }
    let (outcome, reply) = match &action {
        Action::Continue | Action::ContinueWithRequestHeader(..) => ("forwarded", None),
        Action::Reply(r) if exchange.refused() && r.status < 400 => ("served", Some(r)),
        Action::Reply(r) => ("refused", Some(r)),
        other => return Err(format!("the engine stopped at {other:?}")),
    };
    let record: Value = out
        .lines_with(REQUEST_MARKER)
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let reply_json = reply.map(|r| {
        json!({
            "status": r.status,
            "headers": r.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": serde_json::from_str::<Value>(&r.body).unwrap_or_else(|_| Value::String(r.body.clone())),
        })
    });
    let logs: Vec<Value> = out
        .logs
        .iter()
        .map(|(level, line)| json!({"level": level_name(*level), "line": line}))
        .collect();
    if a.json {
        let doc = json!({
            "outcome": outcome,
            "reply": reply_json,
            "record": record,
            "logs": logs,
            "counters": counters(&out),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        print!(
            "{}",
            report(
                outcome,
                reply.map(|r| (r.status, r.body.as_str())),
                &record,
                &out
            )
        );
    }
    Ok(if outcome == "refused" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The request headers as a client would send them.
fn request_headers(a: &InspectArgs, body: Option<&[u8]>) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut headers = vec![
        (":method".to_owned(), a.method.as_bytes().to_vec()),
        (":path".to_owned(), a.path.as_bytes().to_vec()),
        (":authority".to_owned(), b"pqguard-inspect".to_vec()),
        (":scheme".to_owned(), b"https".to_vec()),
    ];
    let mut given = Vec::new();
    for h in &a.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected NAME: VALUE"))?;
        given.push((
            name.trim().to_ascii_lowercase(),
            value.trim().as_bytes().to_vec(),
        ));
    }
    if let Some(v) = &a.protocol_version {
        given.push(("mcp-protocol-version".to_owned(), v.as_bytes().to_vec()));
    }
    if let Some(path) = &a.token {
        let token =
            String::from_utf8(read_input(Some(path))?).map_err(|_| format!("{path}: not UTF-8"))?;
        given.push((
            "authorization".to_owned(),
            format!("Bearer {}", token.trim()).into_bytes(),
        ));
    }
    if let Some(b) = body {
        if !given.iter().any(|(k, _)| k == "content-type") {
            given.push(("content-type".to_owned(), b"application/json".to_vec()));
        }
        given.push((
            "content-length".to_owned(),
            b.len().to_string().into_bytes(),
        ));
    }
    headers.extend(given);
    Ok(headers)
}

/// The counters the request incremented, summed by name.
fn counters(out: &Effects) -> Value {
    let mut m = serde_json::Map::new();
    for (name, by) in &out.counts {
        if *by != 0 {
            let sum = m.get(name.as_ref()).and_then(Value::as_i64).unwrap_or(0) + by;
            m.insert(name.to_string(), json!(sum));
        }
    }
    Value::Object(m)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// The readable report: the decision, why, and what the filter would log.
fn report(outcome: &str, reply: Option<(u16, &str)>, record: &Value, out: &Effects) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let field = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
    match (outcome, reply) {
        ("refused", Some((status, body))) => {
            let _ = writeln!(s, "decision  REFUSED  HTTP {status}");
            let _ = writeln!(s, "reply     {body}");
            if let Some(reason) = field("reason") {
                let code = field("reason_code").map_or(String::new(), |c| format!(" ({c})"));
                let _ = writeln!(s, "reason    {reason}{code}");
            }
            if let Some(detail) = field("detail") {
                let _ = writeln!(s, "detail    {detail}");
            }
        }
        ("served", Some((status, _))) => {
            let _ = writeln!(s, "decision  SERVED BY THE FILTER  HTTP {status}");
        }
        _ => {
            let _ = writeln!(s, "decision  FORWARDED");
        }
    }
    if let Some(method) = field("method") {
        let target = ["tool", "resource", "prompt"]
            .iter()
            .find_map(|k| field(k).map(|v| format!(" {k} {v}")))
            .unwrap_or_default();
        let _ = writeln!(s, "message   {method}{target}");
    }
    let crypto = format!(
        "{} ({})",
        field("tls_group").unwrap_or_else(|| "no TLS group".into()),
        field("kex_class").unwrap_or_default()
    );
    let _ = writeln!(s, "crypto    {crypto}");
    if let Some(alg) = field("token_alg") {
        let who = field("subject").unwrap_or_default();
        let _ = writeln!(s, "token     {alg} {who}");
    }
    let _ = writeln!(s, "log lines the filter would write:");
    for (level, line) in &out.logs {
        let _ = writeln!(s, "  [{}] {line}", level_name(*level));
    }
    s
}

/// `pqguard check-config FILE`.
pub fn check_config(a: &CheckConfigArgs) -> Result<ExitCode, String> {
    match Config::from_json(&read_input(Some(&a.file))?) {
        Ok(config) => {
            println!("ok: {config:?}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `pqguard pin [ANSWER_FILE]`: the pins of every tool in a `tools/list`
/// answer (JSON, or an event stream as servers send it), ready to paste
/// under `policy.pins`. Feed it a live answer, for example
/// `curl -s … -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' | pqguard pin`.
pub fn pin(a: &PinArgs) -> Result<ExitCode, String> {
    let bytes = super::read_input(a.answer.as_deref())?;
    let answer = tools_list_answer(&bytes)?;
    let mut pins = serde_json::Map::new();
    for tool in answer.tools() {
        pins.insert(
            tool.name.clone(),
            serde_json::Value::String(tool.digest_hex()),
        );
    }
    let doc = serde_json::json!({ "pins": pins });
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
    );
    Ok(ExitCode::SUCCESS)
}

/// The `tools/list` answer in a JSON body or in the events of a stream.
fn tools_list_answer(
    bytes: &[u8],
) -> Result<pqguard_core::inspect::tools::ToolsListAnswer, String> {
    use pqguard_core::inspect::sse::SseParser;
    use pqguard_core::inspect::tools::ToolsListAnswer;
    if let Ok(a) = ToolsListAnswer::parse(bytes) {
        return Ok(a);
    }
    let mut parser = SseParser::new(bytes.len().max(1));
    let mut events = parser.push(bytes).map_err(|e| e.to_string())?;
    events.extend(parser.finish().map_err(|e| e.to_string())?);
    events
        .iter()
        .find_map(|e| ToolsListAnswer::parse(&e.data).ok())
        .ok_or_else(|| "no tools/list answer found (JSON or event stream)".to_owned())
}
