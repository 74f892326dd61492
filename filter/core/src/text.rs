//! The one hex encoder and the one JSON string quoter of pqguard. Every log
//! line, audit record and metric label is written with these, so escaping
//! is the same everywhere (and canonical: see [`crate::audit`]).

use std::fmt::Write as _;

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Appends `s` as a JSON string literal: quotes, and exactly the escapes
/// `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t` and `\u00xx` (lower-case hex) for
/// the other control characters; everything else as UTF-8. This is the
/// audit trail's canonical escaping, and what serde_json writes too.
pub fn quote_into(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal (see [`quote_into`]).
pub fn json_string(s: &str) -> String {
    let mut out = String::new();
    quote_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn quoting_agrees_with_serde_json_on_every_ascii_and_some_unicode() {
        let mut all: String = (0u8..=0x7f).map(char::from).collect();
        all.push_str("é€😀\u{2028}");
        for s in [all.as_str(), "", "plain", "a\"b\\c"] {
            let ours = json_string(s);
            assert_eq!(ours, serde_json::Value::String(s.to_owned()).to_string());
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), s);
        }
    }
}
