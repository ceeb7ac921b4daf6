//! Byte strings in messages: a CBOR bstr on the wire, lower-case hex in
//! JSON; and the SHA-256 [`Digest`] carried that way.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `data`.
    #[cfg(feature = "ring")]
    pub fn sha256(data: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// Serializes a byte string: a CBOR bstr, or lower-case hex in a
/// human-readable format such as JSON.
pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
    } else {
        s.serialize_bytes(b)
    }
}

/// Deserializes exactly `N` bytes written by [`serialize`]: a CBOR bstr of
/// `N` bytes, or `2 * N` hex characters in a human-readable format.
pub fn deserialize_array<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    struct V<const N: usize>(bool);
    impl<const N: usize> de::Visitor<'_> for V<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0 {
                write!(f, "{} hex characters", N * 2)
            } else {
                write!(f, "a byte string of {N} bytes")
            }
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            if self.0 {
                return Err(E::invalid_type(de::Unexpected::Bytes(v), &self));
            }
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if !self.0 || v.len() != N * 2 || !v.is_ascii() {
                return Err(E::invalid_value(de::Unexpected::Str(v), &self));
            }
            let mut out = [0u8; N];
            for (i, c) in v.as_bytes().chunks(2).enumerate() {
                let hex = std::str::from_utf8(c).map_err(E::custom)?;
                out[i] = u8::from_str_radix(hex, 16)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
            }
            Ok(out)
        }
    }
    let human = d.is_human_readable();
    if human {
        d.deserialize_str(V::<N>(true))
    } else {
        d.deserialize_bytes(V::<N>(false))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}
impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_array::<D, 32>(d).map(Self)
    }
}
