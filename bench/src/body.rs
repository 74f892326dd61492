//! Realistic MCP `tools/call` request bodies, generated deterministically.
//!
//! A body is one JSON-RPC request calling the tool `index_documents` with
//! arguments an agent could plausibly send: a collection name, an options
//! object of about thirty members (enough for the scanner's ordered-set
//! duplicate check), and an array of documents, each with nested objects and
//! arrays, numbers, booleans, `null`, and strings that mix plain ASCII, raw
//! multi-byte UTF-8 (accents, CJK, emoji), and escapes (`\"`, `\\`, `\n`,
//! `\t`, `\/`, `\u00e9`, a `\ud83d\ude80` surrogate pair). A few object keys
//! are escaped too, so the duplicate check has to decode them.
//!
//! Documents are added while they fit; a final `note` string pads the body to
//! exactly the requested size. The same size always gives the same bytes.

use std::fmt::Write as _;

/// The tool every generated body calls.
pub const TOOL_NAME: &str = "index_documents";

/// The smallest size [`tools_call`] accepts: room for the envelope, the
/// options and one short document.
pub const MIN_BODY_BYTES: usize = 1024;

/// Why a body cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError {
    /// The requested size.
    pub requested: usize,
}

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot generate a {} byte body: the smallest is {MIN_BODY_BYTES} bytes",
            self.requested
        )
    }
}

impl std::error::Error for SizeError {}

/// A JSON-RPC `tools/call` request body of exactly `size` bytes
/// (`size >= MIN_BODY_BYTES`). Deterministic: the same size gives the same bytes.
pub fn tools_call(size: usize) -> Result<Vec<u8>, SizeError> {
    if size < MIN_BODY_BYTES {
        return Err(SizeError { requested: size });
    }
    let mut rng = Rng(0x005e_ed0f_9c9a_2d00 ^ size as u64);
    let mut head = String::new();
    head.push_str(r#"{"jsonrpc":"2.0","id":4711,"method":"tools/call","params":{"name":""#);
    head.push_str(TOOL_NAME);
    head.push_str(r#"","arguments":{"collection":"research-notes/post-quantum","options":"#);
    // Small calls carry a few options; larger ones thirty.
    options(&mut head, &mut rng, if size < 4096 { 4 } else { 24 });
    head.push_str(r#","documents":["#);
    let tail_start = r#"],"note":""#;
    let tail_end = r#""},"_meta":{"progressToken":"bench-7f3a9c"}}}"#;
    let fixed = head.len() + tail_start.len() + tail_end.len();
    if fixed > size {
        return Err(SizeError { requested: size });
    }

    // Small calls carry a short document or two.
    let compact = size < 4096;
    let mut documents = String::new();
    let mut doc = String::new();
    for n in 0.. {
        doc.clear();
        if n > 0 {
            doc.push(',');
        }
        document(&mut doc, n, compact, &mut rng);
        if fixed + documents.len() + doc.len() > size {
            break;
        }
        documents.push_str(&doc);
    }

    let mut body = String::with_capacity(size);
    body.push_str(&head);
    body.push_str(&documents);
    body.push_str(tail_start);
    let pad = size - fixed - documents.len();
    filler(&mut body, pad, &mut rng);
    body.push_str(tail_end);
    Ok(body.into_bytes())
}

/// splitmix64: small, fast and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

/// Words as they appear inside JSON strings: plain, raw UTF-8, and escaped.
const WORDS: &[&str] = &[
    "lattice",
    "key",
    "exchange",
    "hybrid",
    "agent",
    "tool",
    "policy",
    "envoy",
    "module",
    "handshake",
    "the",
    "of",
    "and",
    "for",
    "with",
    "résumé",
    "naïve",
    "Zürich",
    "東京",
    "データ",
    "🚀",
    "Ωmega",
    "caf\\u00e9",
    "\\\"quoted\\\"",
    "C:\\\\temp\\\\notes",
    "line\\nbreak",
    "tab\\tseparated",
    "https:\\/\\/example.org\\/paper",
    "launch\\ud83d\\ude80",
    "ML-KEM-768",
    "X25519MLKEM768",
    "2026-11-23T20:24:00Z",
];

const TAGS: &[&str] = &[
    "pq", "tls", "kem", "mcp", "jose", "wasm", "audit", "policy", "agents", "crypto",
];

const NAMES: &[&str] = &[
    "Ada Lovelace",
    "Émilie du Châtelet",
    "Grace Hopper",
    "Alan Turing",
    "Sofia Kovalevskaya",
    "渡辺 健",
];

fn sentence(out: &mut String, rng: &mut Rng, words: usize) {
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
}

/// A JSON string of `min` to `min + spread - 1` words.
fn string(out: &mut String, rng: &mut Rng, min: usize, spread: usize) {
    let words = min + rng.below(spread.max(1));
    out.push('"');
    sentence(out, rng, words);
    out.push('"');
}

/// An options object of `6 + extra` members; with thirty, more than the
/// scanner's linear duplicate check handles, so its ordered-set path runs
/// too. Two keys are escaped.
fn options(out: &mut String, rng: &mut Rng, extra: usize) {
    out.push_str(r#"{"dedupe":true,"language":"en","chunk_size":512,"overlap":64"#);
    out.push_str(r#","caf\u00e9_mode":"strict","max_\u0074okens":4096"#);
    for i in 0..extra {
        let _ = write!(out, r#","opt_{i:02}":"#);
        match rng.below(4) {
            0 => out.push_str(if rng.below(2) == 0 { "true" } else { "false" }),
            1 => {
                let _ = write!(out, "{}", rng.below(100_000));
            }
            2 => out.push_str("null"),
            _ => string(out, rng, 2, 1),
        }
    }
    out.push('}');
}

/// One document: 500 to 1,200 bytes of nested objects, arrays and strings
/// (`compact`: 300 to 600, one section of one paragraph).
fn document(out: &mut String, n: usize, compact: bool, rng: &mut Rng) {
    let (abstract_words, sections, paragraphs) = if compact { (4, 1, 1) } else { (12, 3, 2) };
    let _ = write!(out, r#"{{"id":"doc-{n:06}","title":"#);
    string(out, rng, 3, 5);
    out.push_str(r#","tags":["#);
    for t in 0..1 + rng.below(4) {
        if t > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", rng.pick(TAGS));
    }
    let _ = write!(
        out,
        r#"],"score":0.{:04},"published":{},"author":{{"name":"{}","orcid":null,"h_index":{}}}"#,
        rng.below(10_000),
        rng.below(2) == 0,
        rng.pick(NAMES),
        rng.below(80)
    );
    out.push_str(r#","abstract":"#);
    string(out, rng, abstract_words, abstract_words + 8);
    out.push_str(r#","sections":["#);
    for s in 0..1 + rng.below(sections) {
        if s > 0 {
            out.push(',');
        }
        out.push_str(r#"{"heading":"#);
        string(out, rng, 2, 3);
        out.push_str(r#","paragraphs":["#);
        for p in 0..1 + rng.below(paragraphs) {
            if p > 0 {
                out.push(',');
            }
            string(out, rng, 2 * abstract_words / 3, 4 * abstract_words / 3);
        }
        let _ = write!(
            out,
            r#"],"refs":[{},{},{}],"figure":{{"w":{},"h":{},"alt\u0020text":"#,
            rng.below(200),
            rng.below(200),
            rng.below(200),
            320 + rng.below(1600),
            240 + rng.below(900),
        );
        string(out, rng, 3, 1);
        out.push_str("}}");
    }
    out.push_str("]}");
}

/// Exactly `bytes` bytes of string content (ASCII words), so the body hits its size.
fn filler(out: &mut String, bytes: usize, rng: &mut Rng) {
    const PLAIN: &[&str] = &["padding", "to", "the", "requested", "size", "of", "body"];
    let start = out.len();
    while out.len() - start < bytes {
        if out.len() > start {
            out.push(' ');
        }
        out.push_str(rng.pick(PLAIN));
    }
    out.truncate(start + bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqguard_core::config::Config;
    use pqguard_core::inspect::head::{inspect_body, RequestHead};

    fn post() -> RequestHead {
        RequestHead::post_json("/mcp")
    }

    #[test]
    fn bodies_have_the_exact_size_and_are_accepted_by_the_filter() {
        for size in [MIN_BODY_BYTES, 4096, 65_536, 1_048_576] {
            let body = tools_call(size).unwrap();
            assert_eq!(body.len(), size);
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["params"]["name"], TOOL_NAME);
            let inspected = inspect_body(&Config::default(), &post(), &body).unwrap();
            assert_eq!(inspected.messages.len(), 1);
            assert_eq!(inspected.messages[0].tool(), Some(TOOL_NAME));
        }
    }

    #[test]
    fn bodies_are_deterministic() {
        assert_eq!(tools_call(65_536).unwrap(), tools_call(65_536).unwrap());
    }

    #[test]
    fn bodies_contain_documents_escapes_and_unicode() {
        let body = String::from_utf8(tools_call(MIN_BODY_BYTES).unwrap()).unwrap();
        assert!(body.contains(r#""id":"doc-000000""#), "{body}");
        let big = String::from_utf8(tools_call(65_536).unwrap()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&big).unwrap();
        let docs = value["params"]["arguments"]["documents"]
            .as_array()
            .unwrap();
        assert!(docs.len() > 40, "{}", docs.len());
        for needle in ["\\u00e9", "\\\"", "\\n", "\\ud83d\\ude80", "東京", "🚀"] {
            assert!(big.contains(needle), "{needle}");
        }
    }

    #[test]
    fn refuses_sizes_below_the_minimum() {
        assert_eq!(
            tools_call(MIN_BODY_BYTES - 1),
            Err(SizeError {
                requested: MIN_BODY_BYTES - 1
            })
        );
    }
}
