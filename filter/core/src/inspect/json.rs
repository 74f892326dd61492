//! Strict, single-pass JSON validation that captures the shallow members a
//! policy needs, without building a value tree.
//!
//! Why not `serde_json::Value`: a security filter must read a body exactly the
//! way the MCP server will, and must refuse every body two parsers could read
//! two ways. This scanner therefore rejects what lenient parsers accept
//! differently:
//!
//! * duplicate object keys **at any depth**, compared after unescaping
//!   (`{"a":1,"\u0061":2}` is a duplicate);
//! * lone UTF-16 surrogates in `\u` escapes, raw control characters in strings;
//! * a byte-order mark, trailing data after the document, invalid UTF-8;
//! * nesting deeper than [`ScanLimits::max_depth`].
//!
//! It allocates only for what it captures: the members of objects at depth
//! ≤ [`CAPTURE_DEPTH`] (the root is depth 1) and the elements of a root array
//! (a JSON-RPC batch). Keys that contain escapes are decoded; all other keys
//! and all values are borrowed spans of the input.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// Objects at this depth or shallower have their members recorded
/// (root = 1, `params` = 2, `params.arguments` = 3, and one more level for
/// the elements of a batch).
pub const CAPTURE_DEPTH: usize = 4;

/// Above this many keys, an object's duplicate check switches from a linear
/// scan to an ordered set (no hashing, so no hash-flooding).
const LINEAR_KEY_SCAN: usize = 24;

/// Limits enforced while scanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Maximum nesting of arrays and objects (the root container is depth 1).
    pub max_depth: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        Self { max_depth: 64 }
    }
}

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The body is empty or only whitespace.
    Empty,
    /// The bytes are not UTF-8.
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The document ends in the middle of a value.
    UnexpectedEnd,
    /// A byte that cannot appear here.
    UnexpectedByte {
        /// Offset of the byte.
        offset: usize,
    },
    /// A malformed escape sequence, or a `\u` escape that is a lone surrogate.
    InvalidEscape {
        /// Offset of the backslash.
        offset: usize,
    },
    /// An unescaped control character inside a string.
    ControlCharacter {
        /// Offset of the character.
        offset: usize,
    },
    /// A number that does not follow the JSON grammar, or whose value is
    /// beyond the range of a 64-bit float.
    InvalidNumber {
        /// Offset where the number starts.
        offset: usize,
    },
    /// Something other than whitespace follows the document.
    TrailingData {
        /// Offset of the first trailing byte.
        offset: usize,
    },
    /// The same key appears twice in one object (after unescaping).
    DuplicateKey {
        /// Offset of the second occurrence.
        offset: usize,
    },
    /// Nesting exceeds [`ScanLimits::max_depth`].
    TooDeep {
        /// Offset of the container that went over the limit.
        offset: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl JsonError {
    /// True for errors that make the body not JSON at all (JSON-RPC -32700);
    /// false for well-formed JSON that is refused as a request
    /// (duplicate keys, excessive depth: -32600).
    pub fn is_syntax_error(&self) -> bool {
        !matches!(self, Self::DuplicateKey { .. } | Self::TooDeep { .. })
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty body"),
            Self::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            Self::UnexpectedEnd => f.write_str("unexpected end of JSON"),
            Self::UnexpectedByte { offset } => write!(f, "unexpected byte at {offset}"),
            Self::InvalidEscape { offset } => write!(f, "invalid escape at byte {offset}"),
            Self::ControlCharacter { offset } => {
                write!(f, "unescaped control character at byte {offset}")
            }
            Self::InvalidNumber { offset } => write!(f, "invalid number at byte {offset}"),
            Self::TrailingData { offset } => write!(f, "trailing data at byte {offset}"),
            Self::DuplicateKey { offset } => write!(f, "duplicate object key at byte {offset}"),
            Self::TooDeep { offset, limit } => {
                write!(f, "nesting deeper than {limit} at byte {offset}")
            }
        }
    }
}

impl std::error::Error for JsonError {}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number with no fraction and no exponent.
    Integer,
    /// Any other number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// A value in the scanned document: its kind and its byte span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The value's JSON type.
    pub kind: Kind,
    /// Offset of the first byte of the value.
    pub start: usize,
    /// Offset one past the last byte of the value.
    pub end: usize,
    /// For a captured container: its index, usable with [`Document::members`].
    pub container: Option<u32>,
}

/// A captured member of an object (with a key) or element of the root array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// Index of the container the member belongs to.
    pub parent: u32,
    /// The unescaped key (`None` for an array element).
    pub key: Option<Cow<'a, str>>,
    /// The member's value.
    pub value: Node,
}

/// A validated JSON document and its captured shallow members.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    text: &'a str,
    root: Node,
    members: Vec<Member<'a>>,
}

impl<'a> Document<'a> {
    /// The root value.
    pub fn root(&self) -> Node {
        self.root
    }

    /// The document text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The raw JSON text of a node.
    pub fn raw(&self, node: Node) -> &'a str {
        self.text.get(node.start..node.end).unwrap_or("")
    }

    /// The members (or root-array elements) of a captured container, in order.
    /// A container deeper than the capture depth yields nothing.
    pub fn members(&self, container: Node) -> impl Iterator<Item = &Member<'a>> + '_ {
        let id = container.container;
        // Members of one container are recorded in document order, interleaved
        // with members of its captured descendants.
        self.members.iter().filter(move |m| Some(m.parent) == id)
    }

    /// The value of `key` in a captured object.
    pub fn get(&self, object: Node, key: &str) -> Option<Node> {
        if object.kind != Kind::Object {
            return None;
        }
        self.members(object)
            .find(|m| m.key.as_deref() == Some(key))
            .map(|m| m.value)
    }

    /// The unescaped content of a string node.
    pub fn string(&self, node: Node) -> Option<Cow<'a, str>> {
        if node.kind != Kind::String {
            return None;
        }
        let inner = self.text.get(node.start + 1..node.end.saturating_sub(1))?;
        decode_string_content(inner)
    }
}

/// Validates `bytes` as one strict JSON document and captures its shallow members.
pub fn scan(bytes: &[u8], limits: ScanLimits) -> Result<Document<'_>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|e| JsonError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    Scanner {
        b: bytes,
        text,
        pos: 0,
        limits,
        members: Vec::new(),
        containers: 0,
        keys: Vec::new(),
    }
    .run()
}

/// One open container while scanning.
struct Frame<'a> {
    is_object: bool,
    start: usize,
    /// Index of this container if its members are captured.
    id: Option<u32>,
    /// Index of the member whose value this container is, if captured.
    slot: Option<usize>,
    /// Where this object's keys begin in the shared key stack.
    key_start: usize,
    /// Ordered set used once the object has many keys.
    big_keys: Option<BTreeSet<Cow<'a, str>>>,
}

struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    pos: usize,
    limits: ScanLimits,
    members: Vec<Member<'a>>,
    containers: u32,
    /// Keys of all open objects, innermost last (for duplicate detection).
    keys: Vec<Cow<'a, str>>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_more(&self) -> Result<u8, JsonError> {
        self.peek().ok_or(JsonError::UnexpectedEnd)
    }

    fn run(mut self) -> Result<Document<'a>, JsonError> {
        self.skip_ws();
        if self.pos >= self.b.len() {
            return Err(JsonError::Empty);
        }
        let mut stack: Vec<Frame<'a>> = Vec::new();
        // The member slot awaiting the next value, if captured.
        let mut slot: Option<usize> = None;
        let root: Node;
        'value: loop {
            self.skip_ws();
            let start = self.pos;
            let c = self.expect_more()?;
            let finished: Node = match c {
                b'{' | b'[' => {
                    let depth = stack.len() + 1;
                    if depth > self.limits.max_depth {
                        return Err(JsonError::TooDeep {
                            offset: start,
                            limit: self.limits.max_depth,
                        });
                    }
                    let is_object = c == b'{';
                    let captured = if is_object {
                        depth <= CAPTURE_DEPTH
                    } else {
                        depth == 1
                    };
                    let id = if captured {
                        let id = self.containers;
                        self.containers = self.containers.saturating_add(1);
                        Some(id)
                    } else {
                        None
                    };
                    self.pos += 1;
                    self.skip_ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        Node {
                            kind: if is_object { Kind::Object } else { Kind::Array },
                            start,
                            end: self.pos,
                            container: id,
                        }
                    } else {
                        stack.push(Frame {
                            is_object,
                            start,
                            id,
                            slot: slot.take(),
                            key_start: self.keys.len(),
                            big_keys: None,
                        });
                        slot = self.begin_entry(&mut stack)?;
                        continue 'value;
                    }
                }
                b'"' => {
                    self.string()?;
                    Node {
                        kind: Kind::String,
                        start,
                        end: self.pos,
                        container: None,
                    }
                }
                b't' => self.literal(b"true", Kind::Bool)?,
                b'f' => self.literal(b"false", Kind::Bool)?,
                b'n' => self.literal(b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(JsonError::UnexpectedByte { offset: start }),
            };
            // A value just ended; close containers as far as the input says.
            let mut ended = finished;
            loop {
                if let Some(m) = slot.take() {
                    if let Some(member) = self.members.get_mut(m) {
                        member.value = ended;
                    }
                }
                let Some(frame) = stack.last() else {
                    root = ended;
                    break 'value;
                };
                self.skip_ws();
                let c = self.expect_more()?;
                let close = if frame.is_object { b'}' } else { b']' };
                if c == b',' {
                    self.pos += 1;
                    slot = self.begin_entry(&mut stack)?;
                    continue 'value;
                }
                if c != close {
                    return Err(JsonError::UnexpectedByte { offset: self.pos });
                }
                self.pos += 1;
                let Some(frame) = stack.pop() else {
                    return Err(JsonError::UnexpectedByte { offset: self.pos });
                };
                self.keys.truncate(frame.key_start);
                ended = Node {
                    kind: if frame.is_object {
                        Kind::Object
                    } else {
                        Kind::Array
                    },
                    start: frame.start,
                    end: self.pos,
                    container: frame.id,
                };
                slot = frame.slot;
            }
        }
        self.skip_ws();
        if self.pos != self.b.len() {
            return Err(JsonError::TrailingData { offset: self.pos });
        }
        Ok(Document {
            text: self.text,
            root,
            members: self.members,
        })
    }

    /// Starts the next entry of the innermost container: for an object, reads
    /// the key and the colon. Returns the member slot to fill, if captured.
    fn begin_entry(&mut self, stack: &mut [Frame<'a>]) -> Result<Option<usize>, JsonError> {
        let Some(frame) = stack.last_mut() else {
            return Ok(None);
        };
        if !frame.is_object {
            return Ok(frame.id.map(|parent| {
                self.members.push(Member {
                    parent,
                    key: None,
                    value: PLACEHOLDER,
                });
                self.members.len() - 1
            }));
        }
        self.skip_ws();
        let key_offset = self.pos;
        if self.expect_more()? != b'"' {
            return Err(JsonError::UnexpectedByte { offset: self.pos });
        }
        let escaped = self.string()?;
        let inner = self
            .text
            .get(key_offset + 1..self.pos - 1)
            .ok_or(JsonError::UnexpectedEnd)?;
        let key: Cow<'a, str> = if escaped {
            Cow::Owned(
                decode_string_content(inner)
                    .ok_or(JsonError::InvalidEscape { offset: key_offset })?
                    .into_owned(),
            )
        } else {
            Cow::Borrowed(inner)
        };
        // Duplicate detection among this object's keys.
        let own = self.keys.get(frame.key_start..).unwrap_or(&[]);
        let duplicate = match &frame.big_keys {
            Some(set) => set.contains(&key),
            None => own.contains(&key),
        };
        if duplicate {
            return Err(JsonError::DuplicateKey { offset: key_offset });
        }
        if let Some(set) = &mut frame.big_keys {
            set.insert(key.clone());
        } else if own.len() >= LINEAR_KEY_SCAN {
            let mut set: BTreeSet<Cow<'a, str>> = own.iter().cloned().collect();
            set.insert(key.clone());
            frame.big_keys = Some(set);
        }
        self.skip_ws();
        if self.expect_more()? != b':' {
            return Err(JsonError::UnexpectedByte { offset: self.pos });
        }
        self.pos += 1;
        let slot = frame.id.map(|parent| {
            self.members.push(Member {
                parent,
                key: Some(key.clone()),
                value: PLACEHOLDER,
            });
            self.members.len() - 1
        });
        self.keys.push(key);
        Ok(slot)
    }

    /// Validates a string starting at the opening quote; leaves `pos` after the
    /// closing quote. Returns whether it contained escapes.
    fn string(&mut self) -> Result<bool, JsonError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            // Fast path: skip ordinary bytes (UTF-8 continuation bytes are ≥ 0x80
            // and never equal to '"' or '\\').
            let rest = self.b.get(self.pos..).unwrap_or(&[]);
            let run = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .ok_or(JsonError::UnexpectedEnd)?;
            self.pos += run;
            match self.expect_more()? {
                b'"' => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return Err(JsonError::ControlCharacter { offset: self.pos }),
            }
        }
    }

    /// Validates one escape sequence at `pos` (the backslash).
    fn escape(&mut self) -> Result<(), JsonError> {
        let at = self.pos;
        let bad = JsonError::InvalidEscape { offset: at };
        match self.b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = hex4(self.b.get(at + 2..at + 6)).ok_or(bad.clone())?;
                self.pos += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by a low one.
                        if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(bad);
                        }
                        let low =
                            hex4(self.b.get(self.pos + 2..self.pos + 6)).ok_or(bad.clone())?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(bad);
                        }
                        self.pos += 6;
                        Ok(())
                    }
                    0xDC00..=0xDFFF => Err(bad),
                    _ => Ok(()),
                }
            }
            Some(_) => Err(bad),
            None => Err(JsonError::UnexpectedEnd),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Node, JsonError> {
        let start = self.pos;
        match self.b.get(start..start + word.len()) {
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(Node {
                    kind,
                    start,
                    end: self.pos,
                    container: None,
                })
            }
            Some(_) => Err(JsonError::UnexpectedByte { offset: start }),
            None => Err(JsonError::UnexpectedEnd),
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - from
    }

    fn number(&mut self) -> Result<Node, JsonError> {
        let start = self.pos;
        let bad = JsonError::InvalidNumber { offset: start };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(bad),
        }
        let mut integer = true;
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(bad);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            integer = false;
            exponent = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(bad);
            }
        }
        // A value beyond a 64-bit float (`1e999`, or more than 308 digits) is
        // read as infinity by some parsers and refused by others (serde_json):
        // refuse it, so no two readers of this body disagree. Only such
        // numbers can overflow, so only they are converted.
        if exponent || self.pos - start > 308 {
            let text = std::str::from_utf8(&self.b[start..self.pos]).map_err(|_| bad.clone())?;
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(bad);
            }
        }
        Ok(Node {
            kind: if integer { Kind::Integer } else { Kind::Number },
            start,
            end: self.pos,
            container: None,
        })
    }
}

const PLACEHOLDER: Node = Node {
    kind: Kind::Null,
    start: 0,
    end: 0,
    container: None,
};

fn hex4(bytes: Option<&[u8]>) -> Option<u32> {
    let bytes = bytes?;
    if bytes.len() != 4 {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc * 16 + d)
    })
}

/// Decodes the content of an already validated JSON string (without quotes).
fn decode_string_content(inner: &str) -> Option<Cow<'_, str>> {
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    let bytes = inner.as_bytes();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (_, e) = chars.next()?;
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = hex4(bytes.get(i + 2..i + 6))?;
                for _ in 0..4 {
                    chars.next();
                }
                let code = if (0xD800..=0xDBFF).contains(&hi) {
                    let lo = hex4(bytes.get(i + 8..i + 12))?;
                    for _ in 0..6 {
                        chars.next();
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo.checked_sub(0xDC00)?)
                } else {
                    hi
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ok(s: &str) -> Document<'_> {
        scan(s.as_bytes(), ScanLimits::default()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &[u8]) -> JsonError {
        match scan(s, ScanLimits::default()) {
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(s)),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_all_value_kinds() {
        let d = ok(r#" {"a":[1,-2.5e3,true,false,null,"x\n\u00e9\ud83d\ude00"],"b":{}} "#);
        assert_eq!(d.root().kind, Kind::Object);
        let a = d.get(d.root(), "a").unwrap();
        assert_eq!(a.kind, Kind::Array);
        assert_eq!(
            d.raw(a),
            r#"[1,-2.5e3,true,false,null,"x\n\u00e9\ud83d\ude00"]"#
        );
    }

    #[test]
    fn captures_members_and_decodes_escaped_strings() {
        let d = ok(
            r#"{"method":"tools/call","params":{"name":"\u0070ython","arguments":{"code":"1"}}}"#,
        );
        let params = d.get(d.root(), "params").unwrap();
        let name = d.get(params, "name").unwrap();
        assert_eq!(d.string(name).unwrap(), "python");
        let args = d.get(params, "arguments").unwrap();
        let keys: Vec<_> = d.members(args).map(|m| m.key.clone().unwrap()).collect();
        assert_eq!(keys, vec!["code"]);
    }

    #[test]
    fn rejects_duplicate_keys_at_every_depth_even_when_escaped() {
        for body in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"p":{"x":{"y":{"z":{"k":1,"k":2}}}}}"#,
            r#"[{"id":1,"id":2}]"#,
        ] {
            assert!(
                matches!(err(body.as_bytes()), JsonError::DuplicateKey { .. }),
                "{body}"
            );
        }
        // The same key in sibling objects is fine.
        ok(r#"{"a":{"k":1},"b":{"k":2}}"#);
    }

    #[test]
    fn rejects_duplicates_in_objects_with_many_keys() {
        let mut body = String::from("{");
        for i in 0..100 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"k57\":0}");
        assert!(matches!(
            err(body.as_bytes()),
            JsonError::DuplicateKey { .. }
        ));
        body.truncate(body.len() - 8);
        body.push_str("\"k100\":0}");
        ok(&body);
    }

    #[test]
    fn refuses_numbers_beyond_a_64_bit_float_as_serde_json_does() {
        // Found by the json_scan fuzz target (fuzz/README.md): the scanner
        // accepted a number serde_json refuses.
        let long = "7".repeat(400);
        for n in [
            "1e999",
            "-1e309",
            "777777777777777777777777e777777777",
            long.as_str(),
        ] {
            let body = format!("{{\"a\":{n}}}");
            assert!(
                matches!(
                    scan(body.as_bytes(), ScanLimits::default()),
                    Err(JsonError::InvalidNumber { .. })
                ),
                "{n}"
            );
            assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_err(),
                "{n}"
            );
        }
        for n in [
            "1e308",
            "-1.7976931348623157e308",
            "1e-999",
            "0.5E+3",
            "12345678901234567890123",
        ] {
            let body = format!("{{\"a\":{n}}}");
            assert!(scan(body.as_bytes(), ScanLimits::default()).is_ok(), "{n}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn rejects_syntax_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"[1,]",
            b"{\"a\":1}x",
            b"{\"a\":1}{}",
            b"\xEF\xBB\xBF{}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":1e}",
            b"{\"a\":tru}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\udc00\"}",
            b"{\"a\":\"\\ud800\\u0041\"}",
            b"{\"a\":\"tab\there\"}",
            b"{'a':1}",
            b"{a:1}",
            b"NaN",
        ];
        for case in cases {
            let e = err(case);
            assert!(
                e.is_syntax_error(),
                "{:?}: {e:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn enforces_depth_limit() {
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(matches!(
            err(deep.as_bytes()),
            JsonError::TooDeep { limit: 64, .. }
        ));
        let fine = "[".repeat(64) + &"]".repeat(64);
        ok(&fine);
        let limits = ScanLimits { max_depth: 3 };
        assert!(scan(br#"{"a":{"b":{"c":{}}}}"#, limits).is_err());
        assert!(scan(br#"{"a":{"b":{"c":1}}}"#, limits).is_ok());
    }

    #[test]
    fn distinguishes_integers_from_other_numbers() {
        let d = ok(r#"{"a":12,"b":1.0,"c":1e2,"d":-0}"#);
        let kinds: Vec<_> = d.members(d.root()).map(|m| m.value.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Integer, Kind::Number, Kind::Number, Kind::Integer]
        );
    }

    #[test]
    fn captures_root_array_elements() {
        let d = ok(r#"[{"a":1},{"b":2}]"#);
        let elems: Vec<_> = d.members(d.root()).collect();
        assert_eq!(elems.len(), 2);
        assert!(elems
            .iter()
            .all(|m| m.key.is_none() && m.value.kind == Kind::Object));
        assert_eq!(d.raw(elems[1].value), r#"{"b":2}"#);
    }
}
