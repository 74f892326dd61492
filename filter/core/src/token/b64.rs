//! Strict base64url without padding (RFC 7515 §2, RFC 4648 §5).
//!
//! Every byte string has exactly one accepted encoding: padding (`=`), the
//! standard alphabet (`+`, `/`), whitespace, a length of `4n + 1`, and
//! non-zero unused trailing bits are all refused. Two parsers can therefore
//! never read one token two ways.

use std::fmt;

/// Why a string is not canonical base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Error {
    /// A byte outside `A-Z a-z 0-9 - _` (this includes `=` and `+`, `/`).
    InvalidByte {
        /// Offset of the byte.
        offset: usize,
    },
    /// The length leaves a single dangling character (`len % 4 == 1`).
    InvalidLength,
    /// The last character carries bits that a canonical encoder sets to zero.
    NonCanonical,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidByte { offset } => write!(f, "invalid base64url byte at {offset}"),
            Self::InvalidLength => f.write_str("invalid base64url length"),
            Self::NonCanonical => f.write_str("non-canonical base64url trailing bits"),
        }
    }
}

impl std::error::Error for Base64Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes canonical unpadded base64url.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if input.len() % 4 == 1 {
        return Err(Base64Error::InvalidLength);
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    for (chunk_index, chunk) in input.chunks(4).enumerate() {
        let mut acc: u32 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or(Base64Error::InvalidByte {
                offset: chunk_index * 4 + i,
            })?;
            acc |= v << (18 - 6 * i);
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&[b0, b1, b2]),
            3 => {
                if b2 != 0 {
                    return Err(Base64Error::NonCanonical);
                }
                out.extend_from_slice(&[b0, b1]);
            }
            2 => {
                if b1 != 0 || b2 != 0 {
                    return Err(Base64Error::NonCanonical);
                }
                out.push(b0);
            }
            // `len % 4 == 1` was refused above and chunks are never empty.
            _ => return Err(Base64Error::InvalidLength),
        }
    }
    Ok(out)
}

/// Encodes bytes as unpadded base64url.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..70 {
            let enc = encode(&data[..len]);
            assert!(!enc.contains('='));
            assert_eq!(decode(enc.as_bytes()).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn matches_rfc4648_vectors_in_url_alphabet() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn refuses_padding_standard_alphabet_whitespace_and_bad_lengths() {
        for bad in [
            "Zg==", "Zm8=", "+/8", "Zm 9v", "Zm9v\n", "Z", "Zm9vY", "Zm9v.", "é",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // "Zg" is canonical for "f"; "Zh" decodes to the same byte with a stray bit.
        assert_eq!(decode(b"Zh"), Err(Base64Error::NonCanonical));
        assert_eq!(decode(b"Zm9"), Err(Base64Error::NonCanonical));
        assert!(decode(b"Zm8").is_ok());
    }
}
