//! `parse-throughput`: how fast pqguard-core inspects MCP request bodies.
//!
//! For each body size it times three operations on the same deterministic
//! `tools/call` body (see `pqguard_bench::body`):
//!
//! 1. `pqguard_core::inspect::head::inspect_body`, the filter's whole body path,
//!    with `Config::default()` and a POST head of type `application/json`;
//! 2. `pqguard_core::inspect::json::scan`, the strict scanner alone, with the same limits;
//! 3. `serde_json::from_slice::<serde_json::Value>`, for comparison: what
//!    building a full value tree costs.
//!
//! It builds and runs natively and for `wasm32-wasip1` (run the latter with
//! `node bench/run-wasm.mjs`). See `bench/README.md`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use pqguard_bench::body::{self, TOOL_NAME};
use pqguard_bench::timing::{measure_interleaved, op, Plan, Sample};
use pqguard_core::config::Config;
use pqguard_core::inspect::head::{inspect_body, RequestHead};
use pqguard_core::inspect::json;

const USAGE: &str = "\
usage: parse-throughput [--json] [--sizes BYTES,...] [--batches N] [--batch-ms MS] [--warmup-ms MS]
       parse-throughput --emit-body BYTES

Times pqguard-core's request inspection (inspect_body), its strict JSON scanner
alone (json::scan) and serde_json::Value on realistic MCP tools/call bodies.
Prints one line per body size; --json prints a JSON summary instead.

  --sizes       body sizes in bytes (default 1024,65536,1048576)
  --batches     timed batches per operation; the median is reported (default 15)
  --batch-ms    target duration of one batch (default 40)
  --warmup-ms   warm-up before the batches (default 200)
  --emit-body   write the body of that size to standard output and exit";

const DEFAULT_SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];

/// What the command line asks for.
enum Command {
    Run(Options),
    EmitBody(usize),
    Help,
}

struct Options {
    json: bool,
    sizes: Vec<usize>,
    plan: Plan,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parse-throughput: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::EmitBody(size) => emit_body(size),
        Command::Run(options) => run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parse-throughput: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut options = Options {
        json: false,
        sizes: DEFAULT_SIZES.to_vec(),
        plan: Plan::default(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--json" => options.json = true,
            "--emit-body" => return Ok(Command::EmitBody(number(value(arg)?, arg)?)),
            "--sizes" => {
                options.sizes = value(arg)?
                    .split(',')
                    .map(|s| number(s, arg))
                    .collect::<Result<_, _>>()?;
            }
            "--batches" => options.plan.batches = number(value(arg)?, arg)?.max(1),
            "--batch-ms" => options.plan.batch = millis(value(arg)?, arg)?,
            "--warmup-ms" => options.plan.warmup = millis(value(arg)?, arg)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Command::Run(options))
}

fn number(s: &str, name: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{name}: {s:?} is not a number"))
}

fn millis(s: &str, name: &str) -> Result<Duration, String> {
    number(s, name).map(|ms| Duration::from_millis(ms as u64))
}

fn emit_body(size: usize) -> Result<(), String> {
    let body = body::tools_call(size).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&body)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the body: {e}"))
}

/// The three timings of one body size.
struct Row {
    size: usize,
    inspect: Sample,
    scan: Sample,
    value: Sample,
}

fn run(options: &Options) -> Result<(), String> {
    let config = Config::default();
    let head = RequestHead::post_json("/mcp");
    let limits = config.parse.scan;
    let platform = platform();

    if !options.json {
        println!(
            "parse-throughput on {platform}: median of {} batches of ~{} ms after {} ms warm-up; MB = 10^6 bytes",
            options.plan.batches,
            options.plan.batch.as_millis(),
            options.plan.warmup.as_millis()
        );
        println!(
            "{:>8}  {:>22}  {:>22}  {:>22}  {:>13}",
            "body", "inspect_body", "json::scan", "serde_json::Value", "Value/inspect"
        );
    }

    let mut rows = Vec::new();
    for &size in &options.sizes {
        let body = body::tools_call(size).map_err(|e| e.to_string())?;
        check_body(&config, &head, &body)?;

        let mut ops = [
            op(|| inspect_body(&config, &head, &body).map(|i| i.messages.len())),
            op(|| json::scan(&body, limits).map(|d| d.root())),
            op(|| serde_json::from_slice::<serde_json::Value>(&body).map(|v| v.is_object())),
        ];
        let [inspect, scan, value]: [Sample; 3] = measure_interleaved(options.plan, &mut ops)
            .try_into()
            .map_err(|_| "the timing returned the wrong number of samples".to_owned())?;
        let row = Row {
            size,
            inspect,
            scan,
            value,
        };
        if !options.json {
            print_row(&row);
        }
        rows.push(row);
    }

    if options.json {
        println!("{}", summary(options, &platform, &rows));
    }
    Ok(())
}

/// Every timed operation must succeed on the body, or the figures would time
/// an early refusal.
fn check_body(config: &Config, head: &RequestHead, body: &[u8]) -> Result<(), String> {
    let size = body.len();
    let inspected = inspect_body(config, head, body)
        .map_err(|r| format!("the {size} byte body is refused by inspect_body: {r:?}"))?;
    let tool = inspected.messages.first().and_then(|m| m.tool());
    if tool != Some(TOOL_NAME) {
        return Err(format!(
            "the {size} byte body is inspected as calling {tool:?}, not {TOOL_NAME:?}"
        ));
    }
    json::scan(body, config.parse.scan)
        .map_err(|e| format!("the {size} byte body is refused by json::scan: {e}"))?;
    serde_json::from_slice::<serde_json::Value>(body)
        .map_err(|e| format!("the {size} byte body is refused by serde_json: {e}"))?;
    Ok(())
}

fn print_row(row: &Row) {
    let cell = |s: &Sample| {
        format!(
            "{:>9.1} MB/s {:>9} µs",
            s.mb_per_s(row.size),
            micros(s.median_ns())
        )
    };
    println!(
        "{:>8}  {}  {}  {}  {:>12.2}×",
        size_label(row.size),
        cell(&row.inspect),
        cell(&row.scan),
        cell(&row.value),
        row.value.median_ns() / row.inspect.median_ns()
    );
}

fn summary(options: &Options, platform: &str, rows: &[Row]) -> serde_json::Value {
    let sample = |s: &Sample, size: usize| {
        serde_json::json!({
            "mb_per_s": round(s.mb_per_s(size), 1),
            "median_us": round(s.median_ns() / 1e3, 3),
            "min_us": round(s.min_ns() / 1e3, 3),
            "max_us": round(s.max_ns() / 1e3, 3),
            "iterations_per_batch": s.iterations,
        })
    };
    let results: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "size_bytes": r.size,
                "size": size_label(r.size),
                "inspect_body": sample(&r.inspect, r.size),
                "json_scan": sample(&r.scan, r.size),
                "serde_json_value": sample(&r.value, r.size),
                "value_over_inspect": round(r.value.median_ns() / r.inspect.median_ns(), 2),
            })
        })
        .collect();
    serde_json::json!({
        "benchmark": "parse-throughput",
        "pqguard_version": pqguard_core::VERSION,
        "platform": platform,
        "mb": "10^6 bytes",
        "plan": {
            "warmup_ms": options.plan.warmup.as_millis() as u64,
            "batch_ms": options.plan.batch.as_millis() as u64,
            "batches": options.plan.batches,
        },
        "results": results,
    })
}

/// `x86_64-linux (native)`, or `wasm32-wasi` plus the engine the runner names
/// in `PQGUARD_BENCH_ENGINE` (`bench/run-wasm.mjs` sets it).
fn platform() -> String {
    let os = if cfg!(target_os = "wasi") {
        "wasip1"
    } else {
        std::env::consts::OS
    };
    let target = format!("{}-{os}", std::env::consts::ARCH);
    match std::env::var("PQGUARD_BENCH_ENGINE") {
        Ok(engine) if !engine.is_empty() => format!("{target} ({engine})"),
        _ if cfg!(target_family = "wasm") => target,
        _ => format!("{target} (native)"),
    }
}

fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

fn micros(ns: f64) -> String {
    let us = ns / 1e3;
    if us < 100.0 {
        format!("{us:.2}")
    } else {
        format!("{us:.0}")
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
