//! Identifiers: agency ids and message ids.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Maximum length of an agency identifier in bytes.
pub const MAX_AGENCY_ID_LEN: usize = 64;

/// A stable agency identifier such as `iq.moi.ahtd` (country.ministry.unit).
///
/// Grammar (see `spec/protocol.md` §2): two to four labels separated by `.`;
/// the first label is a two-letter lower-case ISO 3166-1 alpha-2 country code;
/// every other label is 1–16 characters of `a-z`, `0-9` and `-`, not starting
/// or ending with `-`; at most [`MAX_AGENCY_ID_LEN`] bytes in all.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgencyId(String);

/// Why a string is not a valid [`AgencyId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgencyIdError {
    /// Longer than [`MAX_AGENCY_ID_LEN`] bytes.
    #[error("agency id is longer than {MAX_AGENCY_ID_LEN} bytes")]
    TooLong,
    /// Fewer than two or more than four labels.
    #[error("agency id must have 2 to 4 dot-separated labels, e.g. iq.moi.ahtd")]
    LabelCount,
    /// The first label is not a two-letter lower-case country code.
    #[error("agency id must start with a two-letter lower-case country code, e.g. iq")]
    Country,
    /// A label is empty, too long, or has a character outside `a-z0-9-`.
    #[error("agency id label {0:?} must be 1-16 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    Label(String),
}

impl AgencyId {
    /// Parses and validates an agency id.
    pub fn new(s: &str) -> Result<Self, AgencyIdError> {
        if s.len() > MAX_AGENCY_ID_LEN {
            return Err(AgencyIdError::TooLong);
        }
        let labels: Vec<&str> = s.split('.').collect();
        if !(2..=4).contains(&labels.len()) {
            return Err(AgencyIdError::LabelCount);
        }
        let country = labels[0];
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(AgencyIdError::Country);
        }
        for label in &labels[1..] {
            let ok = (1..=16).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(AgencyIdError::Label((*label).to_owned()));
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-letter country code (first label), lower case.
    pub fn country(&self) -> &str {
        &self.0[..2]
    }
}

impl FromStr for AgencyId {
    type Err = AgencyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyId({})", self.0)
    }
}

/// The system random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// A message identifier: 16 bytes chosen by the sender, unique per sender
/// (spec/protocol.md §2.2). Ids made here are RFC 9562 UUIDv7 values
/// ([`MessageId::time_ordered`]); received ids are opaque and compared only.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 16]);

impl MessageId {
    /// Length of a message id in bytes.
    pub const LEN: usize = 16;

    /// Wraps 16 bytes as a message id.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A fresh random message id.
    #[cfg(feature = "ring")]
    pub fn random(rng: &dyn ring::rand::SecureRandom) -> Result<Self, RandomError> {
        let mut b = [0u8; 16];
        rng.fill(&mut b).map_err(|_| RandomError)?;
        Ok(Self(b))
    }

    /// A fresh time-ordered message id ([`MessageId::time_ordered_from`]
    /// with 10 bytes drawn from `rng`).
    #[cfg(feature = "ring")]
    pub fn time_ordered(
        unix_ms: u64,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Result<Self, RandomError> {
        let mut random = [0u8; 10];
        rng.fill(&mut random).map_err(|_| RandomError)?;
        Ok(Self::time_ordered_from(unix_ms, random))
    }

    /// A time-ordered message id in the RFC 9562 UUIDv7 layout: the low 48
    /// bits of `unix_ms` (Unix time in milliseconds) big-endian, the version
    /// (7) and variant (`10`) bits, and 74 bits of `random` (the caller
    /// draws it from a secure generator; 6 of its 80 bits are overwritten).
    /// Ids made this way sort by creation time, so a node's tables keyed by
    /// id grow at one end instead of touching a random page per message.
    pub const fn time_ordered_from(unix_ms: u64, random: [u8; 10]) -> Self {
        let t = unix_ms.to_be_bytes();
        let r = random;
        Self([
            t[2],
            t[3],
            t[4],
            t[5],
            t[6],
            t[7],
            0x70 | (r[0] & 0x0f),
            r[1],
            0x80 | (r[2] & 0x3f),
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            r[9],
        ])
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex form (32 characters), as shown to operators.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the 32-character hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::bstr::serialize(self.as_bytes(), s)
    }
}
impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::bstr::deserialize_array::<D, 16>(d).map(Self::from_bytes)
    }
}
impl Serialize for AgencyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for AgencyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AgencyId::new(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_ids() {
        for ok in ["iq.moi.ahtd", "fr.mj", "iq.moj.ca", "de.bka.sit-1.x"] {
            assert_eq!(AgencyId::new(ok).map(|a| a.to_string()), Ok(ok.to_owned()));
        }
        assert_eq!(AgencyId::new("iq"), Err(AgencyIdError::LabelCount));
        assert_eq!(AgencyId::new("a.b.c.d.e"), Err(AgencyIdError::LabelCount));
        assert_eq!(AgencyId::new("IQ.moi"), Err(AgencyIdError::Country));
        assert_eq!(AgencyId::new("irq.moi"), Err(AgencyIdError::Country));
        assert!(matches!(
            AgencyId::new("iq.Moi"),
            Err(AgencyIdError::Label(_))
        ));
        assert!(matches!(
            AgencyId::new("iq.-x"),
            Err(AgencyIdError::Label(_))
        ));
        assert!(matches!(
            AgencyId::new("iq..x"),
            Err(AgencyIdError::Label(_))
        ));
        assert_eq!(
            AgencyId::new("iq.moi.ahtd").map(|a| a.country().to_owned()),
            Ok("iq".into())
        );
    }

    #[test]
    fn time_ordered_ids_are_uuidv7() {
        // RFC 9562 Appendix A.6: 2022-02-22 19:22:22 UTC is 0x017F22E279B0 ms.
        let ms = 0x017F_22E2_79B0;
        let a = MessageId::time_ordered_from(ms, [0xff; 10]);
        assert_eq!(
            a.as_bytes(),
            &[
                0x01, 0x7f, 0x22, 0xe2, 0x79, 0xb0, 0x7f, 0xff, 0xbf, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff
            ]
        );
        let z = MessageId::time_ordered_from(ms, [0; 10]);
        assert_eq!(z.as_bytes()[6] >> 4, 7, "version");
        assert_eq!(z.as_bytes()[8] >> 6, 0b10, "variant");
        // Later milliseconds sort after, whatever the random bits.
        assert!(a < MessageId::time_ordered_from(ms + 1, [0; 10]));
        // Only the low 48 bits of the time are kept.
        let wrapped = MessageId::time_ordered_from((1 << 48) + ms, [0xff; 10]);
        assert_eq!(wrapped, a);
    }

    #[test]
    fn message_id_hex_round_trip() {
        let id = MessageId::from_bytes([0xab; 16]);
        assert_eq!(MessageId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(MessageId::from_hex("zz"), None);
        assert_eq!(MessageId::from_hex(&"g".repeat(32)), None);
    }
}
