//! `Mcp-Param-*` headers (MCP 2026-07-28, SEP-2243): a tool's `inputSchema`
//! may annotate properties with `x-mcp-header`, and clients then mirror those
//! arguments of a `tools/call` into `Mcp-Param-{Name}` headers so routers can
//! act without parsing the body. Whoever reads the body must refuse a call
//! whose headers disagree with it (400, -32020 `HeaderMismatch`): otherwise a
//! router acts on one value and the server on another.
//!
//! Only `tools/list` reveals the annotations, so the shim learns them from
//! the answers it already reads ([`ParamHeaders::from_input_schema`] per
//! tool), keeps them in shared data ([`ParamHeaders::encode`]), and checks
//! each `tools/call` against them ([`ParamHeaders::check`]).
//!
//! Annotation rules (the spec's constraints; a tool breaking one is invalid,
//! clients must drop it, and the filter removes it from `tools/list` and
//! refuses calls to it):
//! - the annotation sits on a property reached from the schema root through
//!   `properties` members only (any depth); anywhere else it is invalid;
//! - its value is a non-empty RFC 9110 token (`1*tchar`);
//! - the property's `type` is `"string"`, `"integer"` or `"boolean"`;
//! - names are unique ignoring ASCII case.
//!
//! Call rules, for each annotated property: an argument present (and not
//! `null`) must come with its header, carrying the same value (strings
//! exactly after `=?base64?…?=` decoding, integers compared as numbers,
//! booleans as `true`/`false`); an absent or `null` argument, or one with no
//! header rendering (an object, an array, a fraction), must come without it.
//! An `Mcp-Param-*` header that names no annotated property is refused too:
//! it would carry a value the body never had. Before 2026-07-28 clients send
//! no such headers, so a missing one is only required from 2026-07-28 on.

use std::fmt;

use serde_json::Value;

use crate::inspect::json::{Document, Node};
use crate::inspect::mirror::{decode_value, HeaderMismatch};

/// Deepest `properties` chain followed in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// The annotation key in a JSON Schema.
pub const ANNOTATION: &str = "x-mcp-header";

/// The JSON type an annotated property declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// `"string"`: compared exactly after decoding.
    String,
    /// `"integer"`: compared as numbers.
    Integer,
    /// `"boolean"`: `true` or `false`.
    Boolean,
}

impl ParamType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "string" => Some(Self::String),
            "integer" => Some(Self::Integer),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        }
    }
}

/// One annotated property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The annotation value: the header is `Mcp-Param-{name}`.
    pub name: String,
    /// The chain of `properties` keys from the schema root.
    pub path: Vec<String>,
    /// The declared type.
    pub kind: ParamType,
}

/// The `Mcp-Param-*` headers one tool declares (possibly none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamHeaders {
    params: Vec<ParamHeader>,
}

/// Why a tool's `x-mcp-header` annotations are invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAnnotation(pub String);

impl fmt::Display for InvalidAnnotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {ANNOTATION} annotation: {}", self.0)
    }
}

impl std::error::Error for InvalidAnnotation {}

/// JSON Schema keywords whose values are schemas (or lists or maps of
/// schemas) other than `properties`: an annotation under one of them is off
/// the `properties` chain, hence invalid.
const SUBSCHEMA_SINGLE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
const SUBSCHEMA_LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
const SUBSCHEMA_MAP: [&str; 4] = [
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ParamHeaders {
    /// Reads the annotations of a tool's `inputSchema` (`None`: the tool
    /// has none). Fails on any annotation that breaks the rules above.
    pub fn from_input_schema(schema: Option<&Value>) -> Result<Self, InvalidAnnotation> {
        let mut out = Self::default();
        if let Some(schema) = schema {
            // (path from the root through `properties` only, or None once
            // another keyword was crossed; schema; depth)
            let mut stack: Vec<(Option<Vec<String>>, &Value, usize)> =
                vec![(Some(Vec::new()), schema, 0)];
            while let Some((path, node, depth)) = stack.pop() {
                let Value::Object(map) = node else { continue };
                if depth > MAX_SCHEMA_DEPTH {
                    return Err(InvalidAnnotation(format!(
                        "schema nested deeper than {MAX_SCHEMA_DEPTH} levels"
                    )));
                }
                if let Some(annotation) = map.get(ANNOTATION) {
                    out.add(path.as_deref(), annotation, map.get("type"))?;
                }
                for (keyword, value) in map {
                    let k = keyword.as_str();
                    match value {
                        Value::Object(props) if k == "properties" => {
                            for (name, sub) in props {
                                let sub_path = path.as_ref().map(|p| {
                                    let mut p = p.clone();
                                    p.push(name.clone());
                                    p
                                });
                                stack.push((sub_path, sub, depth + 1));
                            }
                        }
                        _ if SUBSCHEMA_SINGLE.contains(&k) => stack.push((None, value, depth + 1)),
                        Value::Array(items) if SUBSCHEMA_LIST.contains(&k) => {
                            stack.extend(items.iter().map(|s| (None, s, depth + 1)));
                        }
                        Value::Object(m) if SUBSCHEMA_MAP.contains(&k) => {
                            stack.extend(m.values().map(|s| (None, s, depth + 1)));
                        }
                        _ => {}
                    }
                }
            }
        }
        // Stable order whatever the schema's member order.
        out.params.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn add(
        &mut self,
        path: Option<&[String]>,
        annotation: &Value,
        kind: Option<&Value>,
    ) -> Result<(), InvalidAnnotation> {
        let bad = |why: String| Err(InvalidAnnotation(why));
        let path = match path {
            Some(p) if !p.is_empty() => p,
            _ => return bad("an annotation outside a chain of `properties`".into()),
        };
        let at = path.join(".");
        let Some(name) = annotation.as_str() else {
            return bad(format!("property {at:?}: the annotation is not a string"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return bad(format!(
                "property {at:?}: {name:?} is not an RFC 9110 token"
            ));
        }
        let Some(kind) = kind.and_then(Value::as_str).and_then(ParamType::parse) else {
            return bad(format!(
                "property {at:?}: only string, integer and boolean properties may be mirrored"
            ));
        };
        if let Some(other) = self
            .params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            return bad(format!(
                "property {at:?}: {name:?} repeats the header of {:?}",
                other.path.join(".")
            ));
        }
        self.params.push(ParamHeader {
            name: name.to_owned(),
            path: path.to_vec(),
            kind,
        });
        Ok(())
    }

    /// The annotated properties, ordered by path.
    pub fn params(&self) -> &[ParamHeader] {
        &self.params
    }

    /// True when the tool declares no header.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// A compact form for shared data: `[[name,[path…],type],…]`.
    pub fn encode(&self) -> String {
        let items: Vec<Value> = self
            .params
            .iter()
            .map(|p| {
                Value::Array(vec![
                    Value::String(p.name.clone()),
                    Value::Array(p.path.iter().cloned().map(Value::String).collect()),
                    Value::String(p.kind.as_str().to_owned()),
                ])
            })
            .collect();
        Value::Array(items).to_string()
    }

    /// Reads [`ParamHeaders::encode`]'s form back (`None`: not that form).
    pub fn decode(s: &str) -> Option<Self> {
        let Value::Array(items) = serde_json::from_str(s).ok()? else {
            return None;
        };
        let mut params = Vec::with_capacity(items.len());
        for item in items {
            let Value::Array(parts) = item else {
                return None;
            };
            let [Value::String(name), Value::Array(path), Value::String(kind)] = parts.as_slice()
            else {
                return None;
            };
            let path = path
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?;
            params.push(ParamHeader {
                name: name.clone(),
                path,
                kind: ParamType::parse(kind)?,
            });
        }
        Some(Self { params })
    }

    /// Checks a `tools/call`'s `Mcp-Param-*` headers (`(name after the
    /// prefix, value)`, names in any case) against its `arguments`.
    /// `required`: whether a present argument needs its header (2026-07-28).
    pub fn check(
        &self,
        headers: &[(String, String)],
        doc: &Document<'_>,
        arguments: Option<Node>,
        required: bool,
    ) -> Result<(), HeaderMismatch> {
        let mismatch = |name: &str, problem| HeaderMismatch {
            header: format!("Mcp-Param-{name}"),
            problem,
            missing_in_body: false,
        };
        if let Some((name, _)) = headers
            .iter()
            .find(|(n, _)| !self.params.iter().any(|p| p.name.eq_ignore_ascii_case(n)))
        {
            return Err(mismatch(
                name,
                "names no x-mcp-header parameter of the tool",
            ));
        }
        if self.params.is_empty() {
            return Ok(());
        }
        // Only tools that declare headers pay for reading their arguments.
        let args: Option<Value> = match arguments {
            Some(node) => Some(
                serde_json::from_str(doc.raw(node))
                    .map_err(|_| mismatch("*", "cannot be compared: unreadable arguments"))?,
            ),
            None => None,
        };
        for p in &self.params {
            let header = headers
                .iter()
                .find(|(n, _)| p.name.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str());
            let value = args.as_ref().and_then(|a| value_at(a, &p.path));
            let rendered = value.and_then(render);
            match (header, rendered) {
                (None, None) => {}
                (None, Some(_)) if !required => {}
                (None, Some(_)) => {
                    return Err(mismatch(&p.name, "is missing but the argument is present"))
                }
                (Some(_), None) if value.is_some() => {
                    return Err(mismatch(
                        &p.name,
                        "is present but the argument has no header form",
                    ))
                }
                (Some(_), None) => {
                    return Err(mismatch(&p.name, "is present but the argument is absent"))
                }
                (Some(h), Some(body)) => {
                    let decoded =
                        decode_value(h).ok_or_else(|| mismatch(&p.name, "is malformed"))?;
                    if !same(p.kind, &decoded, &body) {
                        return Err(mismatch(&p.name, "does not match the body's argument"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What happens to a `tools/call` carrying `Mcp-Param-*` headers for a
/// tool whose `tools/list` entry the filter has not seen (since it started,
/// or since the list changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSchema {
    /// Forward it; the server still checks (the default). Counted as
    /// `pqguard.param_headers.unchecked`.
    #[default]
    Forward,
    /// Refuse it with -32020: a conforming client then lists the tools
    /// again (through the filter, which learns the schema) and retries.
    Refuse,
}

impl crate::config::read::FromJson for UnknownSchema {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        crate::config::read::variant(v, &[("forward", Self::Forward), ("refuse", Self::Refuse)])
    }
}

/// What the filter knows of a tool's headers, as the shim stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownSchema {
    /// Never seen in a `tools/list` answer.
    Unknown,
    /// Seen, with invalid annotations (the reason).
    Invalid(String),
    /// Seen: its headers (possibly none).
    Known(ParamHeaders),
}

const INVALID_PREFIX: &str = "invalid:";

impl KnownSchema {
    /// The stored form of what a `tools/list` entry says.
    pub fn stored_form(read: &Result<ParamHeaders, InvalidAnnotation>) -> String {
        match read {
            Ok(p) => p.encode(),
            Err(e) => format!("{INVALID_PREFIX}{}", e.0),
        }
    }

    /// Reads a stored form back (`None` stored: [`KnownSchema::Unknown`]).
    /// Anything unreadable counts as invalid: never as "no headers".
    pub fn from_stored(stored: Option<&[u8]>) -> Self {
        let Some(bytes) = stored else {
            return Self::Unknown;
        };
        let text = String::from_utf8_lossy(bytes);
        if let Some(why) = text.strip_prefix(INVALID_PREFIX) {
            return Self::Invalid(why.to_owned());
        }
        match ParamHeaders::decode(&text) {
            Some(p) => Self::Known(p),
            None => Self::Invalid("unreadable stored schema".into()),
        }
    }
}

/// The outcome of [`check_call`] when the call may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCheck {
    /// Checked against the tool's schema.
    Checked,
    /// `Mcp-Param-*` headers present, schema unknown: forwarded unchecked.
    Unchecked,
    /// No headers and no known schema: nothing to check.
    Nothing,
}

/// Checks one `tools/call`'s `Mcp-Param-*` headers against what is known of
/// the tool. `required`: the request's version is 2026-07-28 or later.
pub fn check_call(
    known: &KnownSchema,
    unknown: UnknownSchema,
    headers: &[(String, String)],
    doc: &Document<'_>,
    arguments: Option<Node>,
    required: bool,
) -> Result<CallCheck, HeaderMismatch> {
    match known {
        KnownSchema::Known(p) => p
            .check(headers, doc, arguments, required)
            .map(|()| CallCheck::Checked),
        KnownSchema::Invalid(_) => Err(HeaderMismatch {
            header: "Mcp-Param-*".into(),
            problem: "cannot be checked: the tool's x-mcp-header annotations are invalid",
            missing_in_body: false,
        }),
        KnownSchema::Unknown if headers.is_empty() => Ok(CallCheck::Nothing),
        KnownSchema::Unknown => match unknown {
            UnknownSchema::Forward => Ok(CallCheck::Unchecked),
            UnknownSchema::Refuse => Err(HeaderMismatch {
                header: "Mcp-Param-*".into(),
                problem: "cannot be checked yet: list the tools again, then retry",
                missing_in_body: false,
            }),
        },
    }
}

/// The value at a path of object keys; `None` when a step is missing, not
/// an object, or the value is `null`.
fn value_at<'v>(args: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut node = args;
    for key in path {
        node = node.as_object()?.get(key)?;
    }
    (!node.is_null()).then_some(node)
}

/// How a client writes an argument into its header, before encoding.
fn render(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Header and body agree: integers as numbers, everything else exactly.
fn same(kind: ParamType, header: &str, body: &str) -> bool {
    if kind == ParamType::Integer {
        if let (Ok(h), Ok(b)) = (header.parse::<i128>(), body.parse::<i128>()) {
            return h == b;
        }
    }
    header == body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::json::{scan, ScanLimits};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "query": {"type": "string"},
                "limit": {"type": "integer", "x-mcp-header": "Limit"},
                "opts": {"type": "object", "properties": {
                    "dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"}
                }}
            }
        })
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check(args: &str, pairs: &[(&str, &str)]) -> Result<(), HeaderMismatch> {
        let p = ParamHeaders::from_input_schema(Some(&schema())).unwrap();
        let body = format!(r#"{{"arguments":{args}}}"#);
        let doc = scan(body.as_bytes(), ScanLimits::default()).unwrap();
        let node = doc.get(doc.root(), "arguments");
        p.check(&headers(pairs), &doc, node, true)
    }

    #[test]
    fn reads_annotations_at_any_depth_of_properties() {
        let p = ParamHeaders::from_input_schema(Some(&schema())).unwrap();
        let got: Vec<(&str, String, ParamType)> = p
            .params()
            .iter()
            .map(|h| (h.name.as_str(), h.path.join("."), h.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("Limit", "limit".into(), ParamType::Integer),
                ("Dry-Run", "opts.dry_run".into(), ParamType::Boolean),
                ("Region", "region".into(), ParamType::String),
            ]
        );
        assert_eq!(ParamHeaders::decode(&p.encode()), Some(p));
        assert!(ParamHeaders::from_input_schema(None).unwrap().is_empty());
        let plain = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(ParamHeaders::from_input_schema(Some(&plain))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_annotations_the_spec_forbids() {
        let cases = [
            json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "object", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A:B"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "Ä"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": 7}}}),
            json!({"properties": {
                "a": {"type": "string", "x-mcp-header": "Same"},
                "b": {"type": "string", "x-mcp-header": "sAME"}}}),
            json!({"type": "string", "x-mcp-header": "Root"}),
            json!({"properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "I"}}}}),
            json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
            json!({"$defs": {"d": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}}}),
        ];
        for schema in cases {
            assert!(
                ParamHeaders::from_input_schema(Some(&schema)).is_err(),
                "{schema}"
            );
        }
        // Data keywords are not schemas: an "x-mcp-header" inside them is data.
        let data = json!({"properties": {"a": {"type": "object",
            "default": {"x-mcp-header": "NotOne"}, "enum": [{"x-mcp-header": 1}]}}});
        assert!(ParamHeaders::from_input_schema(Some(&data))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn accepts_headers_that_mirror_the_arguments() {
        check(
            r#"{"region":"us-west1","query":"x","limit":10,"opts":{"dry_run":true}}"#,
            &[("region", "us-west1"), ("limit", "10"), ("dry-run", "true")],
        )
        .unwrap();
        // Base64 for values that are not plain ASCII; integers as numbers.
        check(
            r#"{"region":"Zürich","limit":10}"#,
            &[("Region", "=?base64?WsO8cmljaA==?="), ("Limit", "010")],
        )
        .unwrap();
        // Absent and null arguments: no header.
        check(r#"{"query":"x","region":null,"opts":{}}"#, &[]).unwrap();
        check(r#"{}"#, &[]).unwrap();
    }

    #[test]
    fn refuses_headers_that_disagree_with_the_arguments() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 9] = [
            (
                r#"{"region":"us-west1"}"#,
                &[("region", "eu-west1")],
                "Mcp-Param-Region",
            ),
            (r#"{"region":"us-west1"}"#, &[], "Mcp-Param-Region"),
            (
                r#"{"query":"x"}"#,
                &[("region", "us-west1")],
                "Mcp-Param-Region",
            ),
            (
                r#"{"region":null}"#,
                &[("region", "null")],
                "Mcp-Param-Region",
            ),
            (r#"{"limit":10}"#, &[("limit", "11")], "Mcp-Param-Limit"),
            (r#"{"limit":1.5}"#, &[("limit", "1.5")], "Mcp-Param-Limit"),
            (
                r#"{"opts":{"dry_run":false}}"#,
                &[("dry-run", "true")],
                "Mcp-Param-Dry-Run",
            ),
            (
                r#"{"region":"a"}"#,
                &[("region", "a"), ("Tenant", "b")],
                "Mcp-Param-Tenant",
            ),
            (
                r#"{"region":"a"}"#,
                &[("region", "=?base64?!!?=")],
                "Mcp-Param-Region",
            ),
        ];
        for (args, pairs, header) in cases {
            let e = check(args, pairs).unwrap_err();
            assert_eq!(e.header, header, "{args} {pairs:?}: {e}");
        }
    }

    #[test]
    fn before_2026_a_missing_header_is_not_required_but_a_wrong_one_is_refused() {
        let p = ParamHeaders::from_input_schema(Some(&schema())).unwrap();
        let body = r#"{"arguments":{"region":"us-west1"}}"#;
        let doc = scan(body.as_bytes(), ScanLimits::default()).unwrap();
        let node = doc.get(doc.root(), "arguments");
        p.check(&[], &doc, node, false).unwrap();
        assert!(p
            .check(&headers(&[("region", "x")]), &doc, node, false)
            .is_err());
        // A tool without annotations accepts no Mcp-Param header at all.
        let none = ParamHeaders::default();
        none.check(&[], &doc, node, true).unwrap();
        assert!(none
            .check(&headers(&[("region", "us-west1")]), &doc, node, true)
            .is_err());
    }

    #[test]
    fn unknown_and_invalid_schemas_follow_the_configuration() {
        let body = r#"{"arguments":{"region":"us-west1"}}"#;
        let doc = scan(body.as_bytes(), ScanLimits::default()).unwrap();
        let node = doc.get(doc.root(), "arguments");
        let h = headers(&[("region", "us-west1")]);
        let unknown = KnownSchema::from_stored(None);
        assert_eq!(unknown, KnownSchema::Unknown);
        let run = |k: &KnownSchema, mode, h: &[(String, String)]| {
            check_call(k, mode, h, &doc, node, true)
        };
        assert_eq!(
            run(&unknown, UnknownSchema::Forward, &h),
            Ok(CallCheck::Unchecked)
        );
        assert!(run(&unknown, UnknownSchema::Refuse, &h).is_err());
        assert_eq!(
            run(&unknown, UnknownSchema::Refuse, &[]),
            Ok(CallCheck::Nothing)
        );
        let read = ParamHeaders::from_input_schema(Some(&schema()));
        let known = KnownSchema::from_stored(Some(KnownSchema::stored_form(&read).as_bytes()));
        assert_eq!(
            run(&known, UnknownSchema::Refuse, &h),
            Ok(CallCheck::Checked)
        );
        assert!(
            run(&known, UnknownSchema::Forward, &[]).is_err(),
            "header missing"
        );
        let bad = json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}});
        let read = ParamHeaders::from_input_schema(Some(&bad));
        let invalid = KnownSchema::from_stored(Some(KnownSchema::stored_form(&read).as_bytes()));
        assert!(matches!(invalid, KnownSchema::Invalid(_)));
        assert!(run(&invalid, UnknownSchema::Forward, &[]).is_err());
        assert!(matches!(
            KnownSchema::from_stored(Some(b"{garbage")),
            KnownSchema::Invalid(_)
        ));
    }
}
