//! The canonical JSON writer and a typed reader for audit lines.
//!
//! The writer emits members in the order it is called, so each record kind
//! lists its members in exactly one place. The reader is lenient about
//! order; [`super::record::Line::parse`] re-serialises what it read and
//! refuses any line that differs from its canonical form.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::record::LineError;

/// Writes `s` as a JSON string literal in the canonical escaping.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    crate::text::quote_into(out, s);
}

/// Builds one JSON object, members in call order.
pub(crate) struct Obj {
    out: String,
    first: bool,
}

impl Obj {
    pub(crate) fn new() -> Self {
        Self::with_capacity(256)
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut out = String::with_capacity(n);
        out.push('{');
        Self { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    pub(crate) fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        escape_into(&mut self.out, v);
        self
    }

    pub(crate) fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    pub(crate) fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    pub(crate) fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u64(k, v),
            None => self.null(k),
        }
    }

    /// A member whose value is already canonical JSON (a nested object or a number).
    pub(crate) fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(json);
        self
    }

    pub(crate) fn opt_raw(&mut self, k: &str, json: Option<&str>) -> &mut Self {
        match json {
            Some(j) => self.raw(k, j),
            None => self.null(k),
        }
    }

    pub(crate) fn null(&mut self, k: &str) -> &mut Self {
        self.key(k);
        self.out.push_str("null");
        self
    }

    pub(crate) fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// Typed access to the members of a parsed JSON object. Missing members
/// and members of the wrong type are errors; `null` is `None` for the
/// optional accessors.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a>(pub(crate) &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, k: &'static str) -> Result<&'a Value, LineError> {
        self.0.get(k).ok_or(LineError::Missing(k))
    }

    pub(crate) fn str(&self, k: &'static str) -> Result<&'a str, LineError> {
        self.get(k)?.as_str().ok_or(LineError::WrongType(k))
    }

    pub(crate) fn opt_str(&self, k: &'static str) -> Result<Option<&'a str>, LineError> {
        match self.get(k)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(LineError::WrongType(k)),
        }
    }

    pub(crate) fn u64(&self, k: &'static str) -> Result<u64, LineError> {
        self.get(k)?.as_u64().ok_or(LineError::WrongType(k))
    }

    pub(crate) fn opt_u64(&self, k: &'static str) -> Result<Option<u64>, LineError> {
        match self.get(k)? {
            Value::Null => Ok(None),
            v => v.as_u64().map(Some).ok_or(LineError::WrongType(k)),
        }
    }

    pub(crate) fn opt_obj(&self, k: &'static str) -> Result<Option<Fields<'a>>, LineError> {
        match self.get(k)? {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(Fields(m))),
            _ => Err(LineError::WrongType(k)),
        }
    }

    pub(crate) fn obj(&self, k: &'static str) -> Result<Fields<'a>, LineError> {
        self.opt_obj(k)?.ok_or(LineError::WrongType(k))
    }

    pub(crate) fn value(&self, k: &'static str) -> Result<&'a Value, LineError> {
        self.get(k)
    }

    pub(crate) fn digest(&self, k: &'static str) -> Result<super::Digest, LineError> {
        super::parse_hex(self.str(k)?).ok_or(LineError::BadValue(k))
    }

    pub(crate) fn opt_digest(&self, k: &'static str) -> Result<Option<super::Digest>, LineError> {
        self.opt_str(k)?
            .map(|s| super::parse_hex(s).ok_or(LineError::BadValue(k)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_character_and_beyond() {
        let mut samples: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(String::from)
            .collect();
        samples.extend(
            [
                "é",
                "ключ",
                "\u{2028}",
                "\u{7f}",
                "🦀",
                "a\"b\\c/d",
                "\u{1f}",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        for s in samples {
            let mut ours = String::new();
            escape_into(&mut ours, &s);
            assert_eq!(ours, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn objects_keep_call_order_and_write_null() {
        let line = Obj::new()
            .u64("z", 1)
            .opt_str("a", None)
            .str("m", "x")
            .raw("o", "{\"k\":2}")
            .finish();
        assert_eq!(line, r#"{"z":1,"a":null,"m":"x","o":{"k":2}}"#);
    }
}
