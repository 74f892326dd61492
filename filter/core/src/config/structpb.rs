//! Decoding of a serialized `google.protobuf.Struct`.
//!
//! Envoy hands a wasm plugin its `configuration` as bytes: the contents of
//! a `StringValue`/`BytesValue`, or, for any other type, the serialized
//! protobuf message. Operators want to write the configuration as plain
//! YAML in envoy.yaml, which means a `google.protobuf.Struct`, so pqguard
//! decodes that wire format into JSON here.
//!
//! Protobuf numbers in a Struct are doubles; integral values that fit in
//! 2^53 become JSON integers so that `max_body_bytes: 4096` reads as an
//! integer.

use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 64;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(len).ok_or("length overflow")?;
        let s = self.b.get(self.pos..end).ok_or("truncated field")?;
        self.pos = end;
        Ok(s)
    }

    /// The next field: (number, wire type, payload for length-delimited or
    /// fixed64 fields, value for varints).
    fn field(&mut self) -> Result<(u64, Field<'a>), String> {
        let tag = self.varint()?;
        let number = tag >> 3;
        let f = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(self.bytes(8)?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Field::Bytes(self.bytes(len)?)
            }
            5 => {
                self.bytes(4)?;
                Field::Fixed32
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok((number, f))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Fixed32,
    Bytes(&'a [u8]),
}

/// Decodes a serialized `google.protobuf.Struct` into a JSON object.
pub fn decode_struct(bytes: &[u8]) -> Result<Value, String> {
    struct_value(bytes, 0)
}

fn struct_value(bytes: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("configuration nested too deeply".into());
    }
    let mut r = Reader { b: bytes, pos: 0 };
    let mut map = Map::new();
    while !r.done() {
        match r.field()? {
            (1, Field::Bytes(entry)) => {
                let mut e = Reader { b: entry, pos: 0 };
                let mut key = None;
                let mut value = Value::Null;
                while !e.done() {
                    match e.field()? {
                        (1, Field::Bytes(k)) => {
                            key = Some(
                                String::from_utf8(k.to_vec()).map_err(|_| "key is not UTF-8")?,
                            )
                        }
                        (2, Field::Bytes(v)) => value = value_of(v, depth + 1)?,
                        _ => return Err("unexpected field in a Struct entry".into()),
                    }
                }
                let key = key.unwrap_or_default();
                if map.insert(key.clone(), value).is_some() {
                    return Err(format!("duplicate key {key:?}"));
                }
            }
            _ => return Err("unexpected field in a Struct".into()),
        }
    }
    Ok(Value::Object(map))
}

fn value_of(bytes: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("configuration nested too deeply".into());
    }
    let mut r = Reader { b: bytes, pos: 0 };
    let mut out = Value::Null;
    while !r.done() {
        out = match r.field()? {
            (1, Field::Varint(_)) => Value::Null,
            (2, Field::Fixed64(b)) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                number(f64::from_le_bytes(a))?
            }
            (3, Field::Bytes(s)) => {
                Value::String(String::from_utf8(s.to_vec()).map_err(|_| "string is not UTF-8")?)
            }
            (4, Field::Varint(v)) => Value::Bool(v != 0),
            (5, Field::Bytes(s)) => struct_value(s, depth + 1)?,
            (6, Field::Bytes(l)) => {
                let mut lr = Reader { b: l, pos: 0 };
                let mut items = Vec::new();
                while !lr.done() {
                    match lr.field()? {
                        (1, Field::Bytes(v)) => items.push(value_of(v, depth + 1)?),
                        _ => return Err("unexpected field in a ListValue".into()),
                    }
                }
                Value::Array(items)
            }
            _ => return Err("unexpected field in a Value".into()),
        };
    }
    Ok(out)
}

fn number(n: f64) -> Result<Value, String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // Integral and exactly representable: a JSON integer.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Value::Number(Number::from(n as i64)));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| "number is not finite".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Minimal encoder for the tests (field numbers as in struct.proto).
    fn len_field(n: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2];
        let mut len = payload.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend_from_slice(payload);
        v
    }
    fn entry(k: &str, value: &[u8]) -> Vec<u8> {
        len_field(
            1,
            &[len_field(1, k.as_bytes()), len_field(2, value)].concat(),
        )
    }
    fn num(n: f64) -> Vec<u8> {
        [vec![(2 << 3) | 1], n.to_le_bytes().to_vec()].concat()
    }
    fn string(s: &str) -> Vec<u8> {
        len_field(3, s.as_bytes())
    }
    fn boolean(b: bool) -> Vec<u8> {
        vec![4 << 3, u8::from(b)]
    }

    #[test]
    fn decodes_nested_structs_lists_and_scalars() {
        let limits = [
            entry("max_body_bytes", &num(4096.0)),
            entry("ratio", &num(1.5)),
        ]
        .concat();
        let list = len_field(
            6,
            &[
                len_field(1, &string("ML-KEM-768")),
                len_field(1, &string("ML-DSA-65")),
            ]
            .concat(),
        );
        let top = [
            entry("limits", &len_field(5, &limits)),
            entry("allowed_algos", &list),
            entry("enforce_pqc", &boolean(true)),
            entry("nothing", &[1 << 3, 0]),
        ]
        .concat();
        let v = decode_struct(&top).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "limits": {"max_body_bytes": 4096, "ratio": 1.5},
                "allowed_algos": ["ML-KEM-768", "ML-DSA-65"],
                "enforce_pqc": true,
                "nothing": null
            })
        );
        assert!(v["limits"]["max_body_bytes"].is_u64());
    }

    #[test]
    fn empty_bytes_are_an_empty_object_and_garbage_is_an_error() {
        assert_eq!(decode_struct(b"").unwrap(), serde_json::json!({}));
        assert!(decode_struct(b"\x0a\x05ab").is_err());
        assert!(decode_struct(b"\x0f").is_err());
        let dup = [entry("a", &boolean(true)), entry("a", &boolean(false))].concat();
        assert!(decode_struct(&dup).is_err());
    }
}
