//! Bounded CBOR well-formedness scan and deterministic encoding.
//!
//! Every byte string that comes from a peer is first walked by
//! [`scan`]: one complete data item, no trailing bytes, no indefinite
//! lengths, declared lengths no larger than the bytes that remain, nesting and
//! container sizes within [`Limits`]. Only then is it handed to a decoder that
//! allocates, so a hostile length prefix can never make us allocate more than
//! the input size.

use ciborium::value::Value;

use crate::Limits;

/// Why a byte string is not an acceptable CBOR data item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ended inside a data item.
    #[error("CBOR item is truncated")]
    Truncated,
    /// Bytes follow the single expected data item.
    #[error("trailing bytes after the CBOR item")]
    TrailingBytes,
    /// Indefinite-length items, reserved additional-information values or a
    /// stray "break" byte.
    #[error("CBOR item uses an indefinite length or a reserved encoding")]
    Unsupported,
    /// Arrays and maps nest deeper than [`Limits::max_depth`].
    #[error("CBOR nesting is deeper than allowed")]
    TooDeep,
    /// An array or map has more entries than [`Limits::max_items`].
    #[error("CBOR array or map has too many entries")]
    TooManyItems,
}

/// Checks that `bytes` is exactly one well-formed CBOR data item within
/// `limits`. Does not allocate.
pub fn scan(bytes: &[u8], limits: &Limits) -> Result<(), CborError> {
    let mut pos = 0usize;
    scan_item(bytes, &mut pos, 0, limits)?;
    if pos != bytes.len() {
        return Err(CborError::TrailingBytes);
    }
    Ok(())
}

fn read_arg(bytes: &[u8], pos: &mut usize, info: u8) -> Result<u64, CborError> {
    let n = match info {
        0..=23 => return Ok(u64::from(info)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Err(CborError::Unsupported),
    };
    let end = pos.checked_add(n).ok_or(CborError::Truncated)?;
    let slice = bytes.get(*pos..end).ok_or(CborError::Truncated)?;
    *pos = end;
    Ok(slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn scan_item(
    bytes: &[u8],
    pos: &mut usize,
    depth: usize,
    limits: &Limits,
) -> Result<(), CborError> {
    let initial = *bytes.get(*pos).ok_or(CborError::Truncated)?;
    *pos += 1;
    let major = initial >> 5;
    let info = initial & 0x1f;
    if info == 31 {
        return Err(CborError::Unsupported);
    }
    let arg = read_arg(bytes, pos, info)?;
    match major {
        0 | 1 => Ok(()),
        2 | 3 => {
            let remaining = (bytes.len() - *pos) as u64;
            if arg > remaining {
                return Err(CborError::Truncated);
            }
            *pos += arg as usize;
            Ok(())
        }
        4 | 5 => {
            if depth + 1 > limits.max_depth {
                return Err(CborError::TooDeep);
            }
            if arg > limits.max_items as u64 {
                return Err(CborError::TooManyItems);
            }
            // Every item takes at least one byte: a count larger than what is
            // left is truncated input, found before the loop runs long.
            let per = if major == 5 { 2 } else { 1 };
            if arg.saturating_mul(per) > (bytes.len() - *pos) as u64 {
                return Err(CborError::Truncated);
            }
            for _ in 0..arg * per {
                scan_item(bytes, pos, depth + 1, limits)?;
            }
            Ok(())
        }
        6 => {
            if depth + 1 > limits.max_depth {
                return Err(CborError::TooDeep);
            }
            scan_item(bytes, pos, depth + 1, limits)
        }
        _ => {
            // Major type 7: simple values and floats; the argument was read.
            if info == 24 && arg < 32 {
                return Err(CborError::Unsupported);
            }
            Ok(())
        }
    }
}

/// Encodes `value` with RFC 8949 §4.2.1 core deterministic encoding: map keys
/// sorted by the bytewise order of their encodings, shortest-form integers
/// and lengths, definite lengths only.
pub fn to_deterministic_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

fn head(major: u8, arg: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.push(m | 24);
        out.push(arg as u8);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                head(0, i as u64, out);
            } else {
                head(1, (-1 - i) as u64, out);
            }
        }
        Value::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(3, t.len() as u64, out);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(4, items.len() as u64, out);
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut kb = Vec::new();
                    encode(k, &mut kb);
                    let mut vb = Vec::new();
                    encode(v, &mut vb);
                    (kb, vb)
                })
                .collect();
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            head(5, encoded.len() as u64, out);
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                out.extend_from_slice(&v);
            }
        }
        Value::Tag(tag, inner) => {
            head(6, *tag, out);
            encode(inner, out);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(f) => {
            // Not used by Isnad messages; encoded as a 64-bit float.
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        // `Value` is non-exhaustive; the remaining variant is `undefined`-like.
        _ => out.push(0xf7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    #[test]
    fn scan_accepts_one_item_and_rejects_trailing() {
        assert_eq!(scan(&[0x01], &lim()), Ok(()));
        assert_eq!(scan(&[0x01, 0x02], &lim()), Err(CborError::TrailingBytes));
        assert_eq!(scan(&[], &lim()), Err(CborError::Truncated));
    }

    #[test]
    fn scan_rejects_lying_lengths_without_allocating() {
        // bstr claiming 2^63 bytes.
        let mut b = vec![0x5b];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(scan(&b, &lim()), Err(CborError::Truncated));
        // array claiming 1000 items with 2 bytes left.
        assert_eq!(
            scan(&[0x99, 0x03, 0xe8, 0x01, 0x01], &lim()),
            Err(CborError::Truncated)
        );
    }

    #[test]
    fn scan_rejects_deep_nesting_and_indefinite() {
        let deep = vec![0x81; 100];
        assert_eq!(scan(&deep, &lim()), Err(CborError::TooDeep));
        assert_eq!(scan(&[0x9f, 0xff], &lim()), Err(CborError::Unsupported));
        assert_eq!(scan(&[0xff], &lim()), Err(CborError::Unsupported));
    }

    #[test]
    fn deterministic_sorts_keys_by_encoding() {
        let v = Value::Map(vec![
            (Value::Text("bb".into()), Value::Integer(1.into())),
            (Value::Text("a".into()), Value::Integer(500.into())),
            (Value::Integer((-1).into()), Value::Bool(true)),
            (Value::Integer(1.into()), Value::Null),
        ]);
        let out = to_deterministic_vec(&v);
        assert_eq!(
            out,
            [0xa4, 0x01, 0xf6, 0x20, 0xf5, 0x61, b'a', 0x19, 0x01, 0xf4, 0x62, b'b', b'b', 0x01]
        );
    }
}
