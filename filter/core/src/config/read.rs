//! Reads configuration JSON (a [`Value`]) into the typed `Raw*` sections.
//!
//! Written by hand instead of `#[derive(serde::Deserialize)]`: the derived
//! code for the configuration's two dozen types was about 130 KB of the
//! 1 MB module, and every byte of code is compiled by V8's optimising
//! compiler when Envoy loads the filter (start-up time and memory). The
//! rules are serde's, and so is the wording of the errors a user sees:
//! unknown members are refused (`unknown field `x`, expected one of …`),
//! a required member that is missing is named, a member of the wrong type
//! says what was expected. An absent member takes its default; `null` is
//! accepted only where the member is optional.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a section cannot be read: the message for the user.
pub type ReadError = String;

/// A type read from a configuration value.
pub trait FromJson: Sized {
    /// Reads `v`, or says what was expected instead.
    fn read(v: &Value) -> Result<Self, ReadError>;
}

/// serde's description of a value that has the wrong type.
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i < 0) => {
            format!("integer `{n}`")
        }
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

/// `invalid type: …, expected …`.
pub fn invalid_type(v: &Value, expected: &str) -> ReadError {
    format!("invalid type: {}, expected {expected}", unexpected(v))
}

/// serde's list of alternatives: `` `a` ``, `` `a` or `b` ``,
/// `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".into(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", list.join(", "))
        }
    }
}

/// Reads a string into one of `variants` (an enum's snake_case names).
pub fn variant<T: Copy>(v: &Value, variants: &[(&str, T)]) -> Result<T, ReadError> {
    let Value::String(s) = v else {
        return Err(invalid_type(v, "a variant name"));
    };
    variants
        .iter()
        .find(|(name, _)| name == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
            format!("unknown variant `{s}`, expected {}", one_of(&names))
        })
}

/// An object being read member by member.
pub struct Object<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// `v` must be an object whose members are all among `fields`
    /// (`what` names it in the error when it is not an object).
    pub fn strict(v: &'a Value, what: &str, fields: &[&str]) -> Result<Self, ReadError> {
        let object = Self::lenient(v, what)?;
        if let Some(k) = object.map.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(format!("unknown field `{k}`, expected {}", one_of(fields)));
        }
        Ok(object)
    }

    /// `v` must be an object; members other than those read are ignored.
    pub fn lenient(v: &'a Value, what: &str) -> Result<Self, ReadError> {
        match v {
            Value::Object(map) => Ok(Self { map }),
            other => Err(invalid_type(other, what)),
        }
    }

    /// An optional member: absent or `null` is `None`.
    pub fn opt<T: FromJson>(&self, key: &str) -> Result<Option<T>, ReadError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::read(v).map(Some),
        }
    }

    /// A member with a default for when it is absent.
    pub fn or<T: FromJson>(&self, key: &str, default: T) -> Result<T, ReadError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => T::read(v),
        }
    }

    /// A member whose default is `T::default()`.
    pub fn or_default<T: FromJson + Default>(&self, key: &str) -> Result<T, ReadError> {
        self.or(key, T::default())
    }

    /// A member that must be there.
    pub fn req<T: FromJson>(&self, key: &str) -> Result<T, ReadError> {
        match self.map.get(key) {
            None => Err(format!("missing field `{key}`")),
            Some(v) => T::read(v),
        }
    }
}

impl FromJson for bool {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_bool().ok_or_else(|| invalid_type(v, "a boolean"))
    }
}

impl FromJson for u64 {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_u64().ok_or_else(|| invalid_type(v, "u64"))
    }
}

impl FromJson for u32 {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid_type(v, "u32"))
    }
}

impl FromJson for usize {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| invalid_type(v, "usize"))
    }
}

impl FromJson for f64 {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_f64().ok_or_else(|| invalid_type(v, "f64"))
    }
}

impl FromJson for String {
    fn read(v: &Value) -> Result<Self, ReadError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_type(v, "a string"))
    }
}

impl FromJson for Value {
    fn read(v: &Value) -> Result<Self, ReadError> {
        Ok(v.clone())
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn read(v: &Value) -> Result<Self, ReadError> {
        match v {
            Value::Array(items) => items.iter().map(T::read).collect(),
            other => Err(invalid_type(other, "a sequence")),
        }
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn read(v: &Value) -> Result<Self, ReadError> {
        match v {
            Value::Object(map) => {
                // Inserted one by one: collecting into a `BTreeMap` sorts
                // first, and each such sort is another 3 to 4 KB of module
                // (the keys of a JSON object are unique already).
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    out.insert(k.clone(), T::read(v)?);
                }
                Ok(out)
            }
            other => Err(invalid_type(other, "a map")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn errors_read_like_serde() {
        let fields = ["rules", "arguments", "pins"];
        let v = json!({"rulez": []});
        let e = Object::strict(&v, "struct RawPolicy", &fields);
        assert_eq!(
            e.err().as_deref(),
            Some("unknown field `rulez`, expected one of `rules`, `arguments`, `pins`")
        );
        let v = json!({"b": 1});
        let e = Object::strict(&v, "x", &["a"]).err();
        assert_eq!(e.as_deref(), Some("unknown field `b`, expected `a`"));
        let v = json!("x");
        let e = Object::strict(&v, "struct RawPolicy", &fields).err();
        assert_eq!(
            e.as_deref(),
            Some("invalid type: string \"x\", expected struct RawPolicy")
        );
        assert_eq!(
            bool::read(&json!(1)).err().as_deref(),
            Some("invalid type: integer `1`, expected a boolean")
        );
        assert_eq!(
            u64::read(&json!(-1)).err().as_deref(),
            Some("invalid type: integer `-1`, expected u64")
        );
        assert_eq!(
            variant(&json!("some"), &[("all", 0), ("refused", 1)])
                .err()
                .as_deref(),
            Some("unknown variant `some`, expected `all` or `refused`")
        );
        let v = json!({"a": null});
        let o = Object::strict(&v, "x", &["a"]).unwrap();
        assert_eq!(
            o.req::<String>("b").err().as_deref(),
            Some("missing field `b`")
        );
        assert_eq!(o.opt::<String>("a"), Ok(None));
        assert!(o.or::<bool>("a", true).is_err(), "null is not a boolean");
        assert_eq!(o.or::<bool>("c", true), Ok(true));
    }

    #[test]
    fn reads_numbers_strings_lists_and_maps() {
        assert_eq!(u32::read(&json!(7)), Ok(7));
        assert!(u32::read(&json!(1u64 << 40)).is_err());
        assert!(u64::read(&json!(1.5)).is_err());
        assert_eq!(f64::read(&json!(2)), Ok(2.0));
        assert_eq!(Vec::<String>::read(&json!(["a", "b"])).unwrap(), ["a", "b"]);
        assert!(Vec::<String>::read(&json!(["a", 1])).is_err());
        let m = BTreeMap::<String, u64>::read(&json!({"x": 1})).unwrap();
        assert_eq!(m.get("x"), Some(&1));
    }
}
