//! Argument rules for `tools/call`, against "puppet attacks" that steer a
//! model into harmful calls: per argument, a JSON type, a maximum length,
//! allowed values, forbidden substrings and forbidden glob patterns; and
//! optionally the refusal of arguments the rules do not name.
//!
//! Strings are compared after JSON unescaping; for objects and arrays every
//! string inside (keys included) is checked, so escaping cannot hide a
//! forbidden substring. Substrings and patterns are case-insensitive unless
//! `case_sensitive: true`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::glob::glob_match;
use crate::inspect::json::{Document, Kind, Node};

/// JSON types an argument may be required to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A string.
    String,
    /// An integer (no fraction, no exponent).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An object.
    Object,
    /// An array.
    Array,
}

impl crate::config::read::FromJson for ArgType {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        crate::config::read::variant(
            v,
            &[
                ("string", Self::String),
                ("integer", Self::Integer),
                ("number", Self::Number),
                ("boolean", Self::Boolean),
                ("object", Self::Object),
                ("array", Self::Array),
            ],
        )
    }
}

impl ArgType {
    fn admits(self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Self::String, Kind::String)
                | (Self::Integer, Kind::Integer)
                | (Self::Number, Kind::Integer | Kind::Number)
                | (Self::Boolean, Kind::Bool)
                | (Self::Object, Kind::Object)
                | (Self::Array, Kind::Array)
        )
    }
}

#[derive(Debug, Clone, Default)]
struct RawArgRule {
    kind: Option<ArgType>,
    required: bool,
    max_length: Option<usize>,
    allowed_values: Vec<Value>,
    forbidden_substrings: Vec<String>,
    forbidden_patterns: Vec<String>,
    case_sensitive: bool,
}

impl crate::config::read::FromJson for RawArgRule {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawArgRule",
            &[
                "type",
                "required",
                "max_length",
                "allowed_values",
                "forbidden_substrings",
                "forbidden_patterns",
                "case_sensitive",
            ],
        )?;
        Ok(Self {
            kind: o.opt("type")?,
            required: o.or_default("required")?,
            max_length: o.opt("max_length")?,
            allowed_values: o.or_default("allowed_values")?,
            forbidden_substrings: o.or_default("forbidden_substrings")?,
            forbidden_patterns: o.or_default("forbidden_patterns")?,
            case_sensitive: o.or_default("case_sensitive")?,
        })
    }
}

/// The raw argument rules of one tool.
#[derive(Debug, Clone)]
pub struct RawToolArguments {
    tool: String,
    reject_unknown: bool,
    args: BTreeMap<String, RawArgRule>,
}

impl crate::config::read::FromJson for RawToolArguments {
    fn read(v: &serde_json::Value) -> Result<Self, crate::config::read::ReadError> {
        let o = crate::config::read::Object::strict(
            v,
            "struct RawToolArguments",
            &["tool", "reject_unknown", "args"],
        )?;
        Ok(Self {
            tool: o.req("tool")?,
            reject_unknown: o.or_default("reject_unknown")?,
            args: o.or_default("args")?,
        })
    }
}

/// A compiled rule for one argument.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgRule {
    kind: Option<ArgType>,
    required: bool,
    max_length: Option<usize>,
    allowed_values: Vec<Value>,
    /// Stored lower-cased unless case-sensitive.
    forbidden_substrings: Vec<String>,
    forbidden_patterns: Vec<String>,
    case_sensitive: bool,
}

/// Compiled argument rules of one tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolArguments {
    /// The tool (exact name).
    pub tool: String,
    /// Refuse arguments that no rule names.
    pub reject_unknown: bool,
    args: BTreeMap<String, ArgRule>,
}

/// Compiles one tool's argument rules.
pub fn compile(raw: RawToolArguments) -> Result<ToolArguments, String> {
    if raw.tool.is_empty() {
        return Err("tool must not be empty".into());
    }
    let mut args = BTreeMap::new();
    for (name, r) in raw.args {
        if r.max_length == Some(0) {
            return Err(format!("args.{name}.max_length must be positive"));
        }
        if r.forbidden_substrings.iter().any(String::is_empty) {
            return Err(format!("args.{name}.forbidden_substrings: empty entry"));
        }
        let fold = |v: Vec<String>| {
            if r.case_sensitive {
                v
            } else {
                v.into_iter().map(|s| s.to_lowercase()).collect()
            }
        };
        args.insert(
            name,
            ArgRule {
                kind: r.kind,
                required: r.required,
                max_length: r.max_length,
                allowed_values: r.allowed_values,
                forbidden_substrings: fold(r.forbidden_substrings),
                forbidden_patterns: fold(r.forbidden_patterns),
                case_sensitive: r.case_sensitive,
            },
        );
    }
    Ok(ToolArguments {
        tool: raw.tool,
        reject_unknown: raw.reject_unknown,
        args,
    })
}

/// Why an argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgViolation {
    /// The argument.
    pub arg: String,
    /// What is wrong (for the log; never sent to the client).
    pub problem: String,
}

impl fmt::Display for ArgViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argument {:?}: {}", self.arg, self.problem)
    }
}

impl ToolArguments {
    /// Checks the `arguments` object of a `tools/call` (`None` when absent).
    pub fn check(&self, doc: &Document<'_>, arguments: Option<Node>) -> Result<(), ArgViolation> {
        let violation = |arg: &str, problem: String| ArgViolation {
            arg: arg.to_owned(),
            problem,
        };
        let mut present: Vec<&str> = Vec::new();
        if let Some(node) = arguments {
            for m in doc.members(node) {
                let Some(key) = m.key.as_deref() else {
                    continue;
                };
                present.push(key);
                match self.args.get(key) {
                    None if self.reject_unknown => {
                        return Err(violation(key, "not allowed by the argument rules".into()))
                    }
                    None => {}
                    Some(rule) => rule.check(doc, m.value).map_err(|p| violation(key, p))?,
                }
            }
        }
        for (name, rule) in &self.args {
            if rule.required && !present.contains(&name.as_str()) {
                return Err(violation(name, "required but absent".into()));
            }
        }
        Ok(())
    }
}

impl ArgRule {
    fn check(&self, doc: &Document<'_>, value: Node) -> Result<(), String> {
        if let Some(kind) = self.kind {
            if !kind.admits(value.kind) {
                return Err(format!("must be of type {kind:?}"));
            }
        }
        let raw = doc.raw(value);
        if let Some(max) = self.max_length {
            let len = match value.kind {
                Kind::String => doc
                    .string(value)
                    .map(|s| s.chars().count())
                    .unwrap_or(usize::MAX),
                _ => raw.len(),
            };
            if len > max {
                return Err(format!("length {len} exceeds {max}"));
            }
        }
        let needs_value = !self.allowed_values.is_empty()
            || !self.forbidden_substrings.is_empty()
            || !self.forbidden_patterns.is_empty();
        if !needs_value {
            return Ok(());
        }
        let parsed: Value = serde_json::from_str(raw).map_err(|_| "unreadable value".to_owned())?;
        if !self.allowed_values.is_empty() && !self.allowed_values.contains(&parsed) {
            return Err("value not in allowed_values".into());
        }
        let mut strings = Vec::new();
        collect_strings(&parsed, &mut strings);
        for s in strings {
            let folded;
            let s = if self.case_sensitive {
                s
            } else {
                folded = s.to_lowercase();
                folded.as_str()
            };
            if let Some(bad) = self
                .forbidden_substrings
                .iter()
                .find(|f| s.contains(f.as_str()))
            {
                return Err(format!("contains forbidden substring {bad:?}"));
            }
            if let Some(bad) = self.forbidden_patterns.iter().find(|p| glob_match(p, s)) {
                return Err(format!("matches forbidden pattern {bad:?}"));
            }
        }
        Ok(())
    }
}

fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => {
            for (k, i) in map {
                out.push(k);
                collect_strings(i, out);
            }
        }
        _ => {}
    }
}
