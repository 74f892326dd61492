//! `inspect` and `check-config`: the filter's request inspection and
//! configuration checks, run natively.

use std::process::ExitCode;

use pqguard_core::config::Config;
use pqguard_core::crypto::CryptoFacts;
use pqguard_core::record::RequestRecord;
use pqguard_core::request::{self, HeadVerdict, RequestHead};
use pqguard_core::wire;

use crate::read_input;

/// `pqguard inspect [--protocol-version V] [--config FILE] [BODY_FILE]`.
pub fn inspect(args: &[String]) -> Result<ExitCode, String> {
    let mut version = None;
    let mut config_path = None;
    let mut body_path = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--protocol-version" => {
                version = Some(it.next().ok_or("--protocol-version needs a value")?.clone())
            }
            "--config" => config_path = Some(it.next().ok_or("--config needs a value")?.clone()),
            other if body_path.is_none() && !other.starts_with("--") => {
                body_path = Some(other.to_owned())
            }
            other => return Err(format!("unexpected argument {other:?}\n{}", crate::USAGE)),
        }
    }
    let config = match config_path {
        Some(p) => Config::from_json(&read_input(Some(&p))?).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let body = read_input(body_path.as_deref())?;
    let head = RequestHead {
        content_length: Some(body.len() as u64),
        protocol_version: version,
        ..RequestHead::post_json("/mcp")
    };
    let facts = CryptoFacts::default();
    let outcome = match request::check_head(&config, &head) {
        HeadVerdict::Reject(r) => Err(r),
        HeadVerdict::Forward | HeadVerdict::InspectBody => {
            request::inspect_body(&config, &head, &body)
                .map(|i| RequestRecord::new(&head, &facts).with_inspected(&i))
        }
    };
    match outcome {
        Ok(record) => {
            println!("{}", record.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            let record = RequestRecord::new(&head, &facts).with_rejection(&rejection);
            println!("{}", record.to_json());
            let reply = wire::local_reply(&rejection);
            eprintln!("refused: HTTP {} {}", reply.status, reply.body);
            Ok(ExitCode::from(1))
        }
    }
}

/// `pqguard check-config FILE`.
pub fn check_config(args: &[String]) -> Result<ExitCode, String> {
    let [path] = args else {
        return Err(format!("check-config takes one FILE\n{}", crate::USAGE));
    };
    match Config::from_json(&read_input(Some(path))?) {
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
pub fn pin(args: &[String]) -> Result<ExitCode, String> {
    if args.len() > 1 {
        return Err("pin takes at most one ANSWER_FILE".into());
    }
    let bytes = super::read_input(args.first().map(String::as_str))?;
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
fn tools_list_answer(bytes: &[u8]) -> Result<pqguard_core::tools::ToolsListAnswer, String> {
    use pqguard_core::sse::SseParser;
    use pqguard_core::tools::ToolsListAnswer;
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
