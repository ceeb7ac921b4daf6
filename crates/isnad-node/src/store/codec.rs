//! How records are encoded in their tables: deterministic CBOR through
//! serde, with the typed fields of a record (message ids, agency ids,
//! kinds) written exactly as the untyped fields before them were (a
//! 16-integer array, text, the kind's wire name), so the bytes on disk do
//! not change (`format_tests` proves it against bytes written by earlier
//! code). A stored value that does not parse into its type (an invalid
//! agency id, an unknown kind) is a damaged record: [`StoreError::Corrupt`].

use serde::Serialize;

use super::StoreError;

/// Encodes a record.
pub(super) fn encode<T: Serialize>(t: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(t, &mut out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Decodes a record.
pub(super) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    ciborium::de::from_reader(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `at` (big-endian) ‖ `id`: keys of the time indexes, in time order.
pub(super) fn time_id_key(at: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// The parts of a [`time_id_key`]; `None` if the key is not one.
pub(super) fn split_time_id_key(k: &[u8]) -> Option<(u64, [u8; 16])> {
    let (at, id) = k.split_at_checked(8)?;
    Some((u64::from_be_bytes(at.try_into().ok()?), id.try_into().ok()?))
}

/// A byte string (CBOR major type 2), not an array of integers.
pub(super) mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        let v = ciborium::value::Value::deserialize(d)?;
        v.into_bytes()
            .map_err(|_| serde::de::Error::custom("expected bytes"))
    }
}

/// An optional byte string (`null` when absent).
pub(super) mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(
        v: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match ciborium::value::Value::deserialize(d)? {
            ciborium::value::Value::Null => Ok(None),
            v => v
                .into_bytes()
                .map(Some)
                .map_err(|_| serde::de::Error::custom("expected bytes")),
        }
    }
}

/// A [`MessageId`](isnad_envelope::MessageId) as the array of 16 integers
/// that `[u8; 16]` is in serde (the envelope's own encoding is a byte
/// string; the store keeps the format it always had).
pub(super) mod message_id {
    use isnad_envelope::MessageId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(
        v: &MessageId,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_bytes().serialize(s)
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<MessageId, D::Error> {
        <[u8; 16]>::deserialize(d).map(MessageId::from_bytes)
    }
}

/// An [`AgencyId`](isnad_envelope::AgencyId) as text, checked when read.
pub(super) mod agency {
    use isnad_envelope::AgencyId;
    use serde::{Deserialize, Deserializer, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(
        v: &AgencyId,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<AgencyId, D::Error> {
        let s = String::deserialize(d)?;
        AgencyId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A list of [`AgencyId`](isnad_envelope::AgencyId)s as a list of text.
pub(super) mod agencies {
    use isnad_envelope::AgencyId;
    use serde::{Deserialize, Deserializer, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(
        v: &[AgencyId],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(AgencyId::as_str))
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<AgencyId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| AgencyId::new(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A [`Kind`](isnad_envelope::Kind) as its wire name, checked when read.
pub(super) mod kind {
    use isnad_envelope::Kind;
    use serde::{Deserialize, Deserializer, Serializer};
    pub(in crate::store) fn serialize<S: Serializer>(v: &Kind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub(in crate::store) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        let s = String::deserialize(d)?;
        Kind::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown kind {s:?}")))
    }
}

/// The key of an inbox record (and of its purge mark): message id, then
/// the sender's name.
pub(super) fn inbox_key(
    id: &isnad_envelope::MessageId,
    sender: &isnad_envelope::AgencyId,
) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(sender.as_str().as_bytes());
    k
}
