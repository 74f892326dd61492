//! Property tests over generated inputs (deterministic PRNG, no extra
//! dependencies, so they run natively and as wasm in V8 alike):
//!
//! - arbitrary bytes and mutated JSON never panic the scanner or the MCP
//!   inspection, and captured state stays proportional to the input;
//! - everything the strict scanner accepts, serde_json accepts too (the
//!   scanner is never more lenient than the JSON grammar);
//! - well-formed JSON without duplicate keys and within the depth limit is
//!   always accepted, and what it captures matches serde_json's reading.

use serde_json::{Map, Value};

use crate::config::Config;
use crate::inspect::head::{inspect_body, RequestHead};
use crate::inspect::json::{scan, ScanLimits};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// xorshift64*: small, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const ALPHABET: &[u8] = b"{}[]:,\"\\ \n\t-+.0123456789eEtruefalsnabcu\x00\x1f\xff\xc3\xa9";

fn random_string(rng: &mut Rng) -> String {
    let pool = [
        "",
        "a",
        "name",
        "method",
        "\u{e9}",
        "\u{1F600}",
        "\"",
        "\\",
        "\n",
        "x y",
        "id",
    ];
    (0..rng.below(3))
        .map(|_| pool[rng.below(pool.len())])
        .collect()
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let pick = if depth == 0 {
        rng.below(5)
    } else {
        rng.below(7)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next() as i64 >> rng.below(60)),
        3 => Value::from((rng.below(1000) as f64) / 7.0),
        4 => Value::String(random_string(rng)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(5) {
                m.insert(random_string(rng), random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(3) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            _ if at < bytes.len() => bytes[at] = ALPHABET[rng.below(ALPHABET.len())],
            _ => {}
        }
    }
    bytes
}

fn check_no_panic_and_soundness(bytes: &[u8]) {
    if let Ok(doc) = scan(bytes, ScanLimits::default()) {
        // serde_json refuses numbers beyond f64's range, which the JSON
        // grammar (and the scanner) allow; anything else must agree.
        if let Err(e) = serde_json::from_slice::<Value>(bytes) {
            assert!(
                e.to_string().contains("number out of range"),
                "scanner accepted what serde_json rejects ({e}): {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(doc.members(doc.root()).count() <= bytes.len());
    }
    let head = RequestHead::post_json("/mcp");
    let _ = inspect_body(&Config::default(), &head, bytes);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        check_no_panic_and_soundness(&bytes);
    }
}

#[test]
fn mutated_json_never_panics_and_is_never_read_more_leniently_than_serde_json() {
    let mut rng = Rng(0x5eed_0002);
    for _ in 0..5_000 {
        let v = random_value(&mut rng, 4);
        let bytes = mutate(&mut rng, serde_json::to_vec(&v).unwrap_or_default());
        check_no_panic_and_soundness(&bytes);
    }
}

#[test]
fn well_formed_json_is_accepted_and_read_like_serde_json() {
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..5_000 {
        // serde_json's Map cannot hold duplicate keys, so the text has none.
        let v = random_value(&mut rng, 5);
        let text = if rng.below(2) == 0 {
            serde_json::to_string(&v).unwrap_or_default()
        } else {
            serde_json::to_string_pretty(&v).unwrap_or_default()
        };
        let doc = scan(text.as_bytes(), ScanLimits::default())
            .unwrap_or_else(|e| panic!("rejected well-formed JSON {text}: {e}"));
        if let Value::Object(map) = &v {
            let keys: Vec<String> = doc
                .members(doc.root())
                .filter_map(|m| m.key.as_deref().map(str::to_owned))
                .collect();
            let want: Vec<String> = map.keys().cloned().collect();
            assert_eq!(keys, want, "{text}");
            for (k, val) in map {
                let node = doc
                    .get(doc.root(), k)
                    .unwrap_or_else(|| panic!("{k} missing"));
                // Compare through the same text-to-number path (serde_json's
                // float parsing is not exactly round-trip).
                let reread: Value = serde_json::from_str(doc.raw(node)).unwrap_or(Value::Null);
                let expected: Value =
                    serde_json::from_str(&serde_json::to_string(val).unwrap_or_default())
                        .unwrap_or(Value::Null);
                assert_eq!(reread, expected);
            }
        }
    }
}

#[test]
fn deep_nesting_is_bounded_not_recursive() {
    // 100k levels: the scanner is iterative, so this is an error, not a stack overflow.
    let deep = "[".repeat(100_000);
    assert!(scan(deep.as_bytes(), ScanLimits::default()).is_err());
    let deep_obj = "{\"a\":".repeat(50_000);
    assert!(scan(deep_obj.as_bytes(), ScanLimits { max_depth: 512 }).is_err());
}
