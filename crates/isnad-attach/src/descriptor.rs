//! The attachment descriptor (inside the signed, encrypted message body)
//! and the relay-visible metadata (spec/attachments.md §6), with their
//! deterministic CBOR codec. Decoding yields only consistent values: the
//! sizes fit the chunk size, the file name is a plain name, the media type
//! is `type/subtype`.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::error::DecodeError;
use crate::stream::{
    AttachmentKey, ChunkSize, ContentDigest, Layout, NoncePrefix, Sealed, KEY_LEN, NONCE_PREFIX_LEN,
};
use crate::tree::TreeHash;

/// Largest encoded descriptor accepted, in bytes.
pub const MAX_DESCRIPTOR_LEN: usize = 1024;
/// Largest encoded relay metadata accepted, in bytes.
pub const MAX_META_LEN: usize = 128;
/// Longest file name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// A file name as the sender called the file: 1 to 255 bytes of UTF-8,
/// no `/`, `\`, control characters (U+0000–U+001F, U+007F), and not `.` or
/// `..`. It is a name, never a path; a receiver saving the file still
/// chooses where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    /// Checks a file name.
    pub fn new(name: &str) -> Result<Self, DecodeError> {
        let bad = |reason| DecodeError::Field {
            field: "name",
            reason,
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad("must be 1 to 255 bytes"));
        }
        if name == "." || name == ".." {
            return Err(bad("must not be . or .."));
        }
        if name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_ascii_control())
        {
            return Err(bad("must not hold /, \\ or control characters"));
        }
        Ok(Self(name.to_owned()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A media type `type/subtype` (RFC 6838 §4.2 restricted names, no
/// parameters), at most 255 bytes, e.g. `application/pdf`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

impl MediaType {
    /// Checks a media type.
    pub fn new(media_type: &str) -> Result<Self, DecodeError> {
        let restricted = |s: &str| {
            let b = s.as_bytes();
            !b.is_empty()
                && b.len() <= 127
                && b[0].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(c))
        };
        match media_type.split_once('/') {
            Some((t, s))
                if media_type.len() <= MAX_MEDIA_TYPE_LEN && restricted(t) && restricted(s) =>
            {
                Ok(Self(media_type.to_owned()))
            }
            _ => Err(DecodeError::Field {
                field: "media-type",
                reason: "must be type/subtype (RFC 6838 restricted names, no parameters)",
            }),
        }
    }
    /// The media type.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the recipient needs to check and decrypt one attachment; carried
/// inside the signed and encrypted message body. Every value is
/// consistent: the ciphertext size is the one the plaintext size and the
/// chunk size give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentDescriptor {
    name: FileName,
    media_type: MediaType,
    key: AttachmentKey,
    nonce_prefix: NoncePrefix,
    digest: ContentDigest,
    layout: Layout,
    ciphertext_root: TreeHash,
}

impl AttachmentDescriptor {
    pub(crate) fn from_sealed(s: Sealed, name: FileName, media_type: MediaType) -> Self {
        Self {
            name,
            media_type,
            key: s.key,
            nonce_prefix: s.nonce_prefix,
            digest: s.digest,
            layout: s.layout,
            ciphertext_root: s.ciphertext_root,
        }
    }

    /// Decodes a descriptor from its deterministic CBOR encoding (the
    /// `attachment` rule of spec/messages.cddl).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw: RawDescriptor = decode_strict(bytes, MAX_DESCRIPTOR_LEN)?;
        let d = Self::try_from(raw)?;
        if d.encode() != bytes {
            return Err(DecodeError::NotDeterministic);
        }
        Ok(d)
    }

    /// The deterministic CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The relay-visible part: ciphertext root, sizes, chunk size.
    pub fn meta(&self) -> AttachmentMeta {
        AttachmentMeta {
            layout: self.layout,
            ciphertext_root: self.ciphertext_root,
        }
    }

    /// The file name.
    pub fn name(&self) -> &FileName {
        &self.name
    }
    /// The media type.
    pub fn media_type(&self) -> &MediaType {
        &self.media_type
    }
    /// Plaintext bytes.
    pub fn size(&self) -> u64 {
        self.layout.size()
    }
    /// SHA-256 of the plaintext.
    pub fn digest(&self) -> ContentDigest {
        self.digest
    }
    /// The attachment key.
    pub fn key(&self) -> &AttachmentKey {
        &self.key
    }
    /// The nonce prefix.
    pub fn nonce_prefix(&self) -> NoncePrefix {
        self.nonce_prefix
    }
    /// The chunking.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The root of the hash tree over the ciphertext chunks.
    pub fn ciphertext_root(&self) -> TreeHash {
        self.ciphertext_root
    }
}

/// The relay-visible metadata of one attachment: enough to check every
/// ciphertext chunk, nothing to decrypt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentMeta {
    layout: Layout,
    ciphertext_root: TreeHash,
}

impl AttachmentMeta {
    /// Metadata from its parts; `Err` if no plaintext size gives
    /// `ciphertext_size` in chunks of `chunk_size`.
    pub fn new(
        chunk_size: ChunkSize,
        ciphertext_size: u64,
        ciphertext_root: TreeHash,
    ) -> Result<Self, DecodeError> {
        let layout =
            Layout::for_ciphertext(chunk_size, ciphertext_size).ok_or(DecodeError::Sizes {
                ciphertext: ciphertext_size,
            })?;
        Ok(Self {
            layout,
            ciphertext_root,
        })
    }

    /// Decodes the deterministic CBOR encoding (the `attachment-meta` rule
    /// of spec/messages.cddl).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let raw: RawMeta = decode_strict(bytes, MAX_META_LEN)?;
        let m = Self::try_from(raw)?;
        if m.encode() != bytes {
            return Err(DecodeError::NotDeterministic);
        }
        Ok(m)
    }

    /// The deterministic CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// The chunking (the plaintext size follows from the ciphertext size).
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The root of the hash tree over the ciphertext chunks.
    pub fn ciphertext_root(&self) -> TreeHash {
        self.ciphertext_root
    }
}

// ---------------------------------------------------------------------------
// wire forms: CBOR maps with text keys in deterministic order (RFC 8949
// §4.2.1: shorter keys first, then bytewise); byte strings as bstr in CBOR
// and lower-case hex in JSON.

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WireDescriptor<'a> {
    key: Bytes<KEY_LEN>,
    name: &'a str,
    size: u64,
    digest: Bytes<32>,
    chunk_size: u32,
    media_type: &'a str,
    nonce_prefix: Bytes<NONCE_PREFIX_LEN>,
    ciphertext_root: Bytes<32>,
    ciphertext_size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawDescriptor {
    key: Bytes<KEY_LEN>,
    name: String,
    size: u64,
    digest: Bytes<32>,
    chunk_size: u32,
    media_type: String,
    nonce_prefix: Bytes<NONCE_PREFIX_LEN>,
    ciphertext_root: Bytes<32>,
    ciphertext_size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawMeta {
    chunk_size: u32,
    ciphertext_root: Bytes<32>,
    ciphertext_size: u64,
}

impl TryFrom<RawDescriptor> for AttachmentDescriptor {
    type Error = DecodeError;
    fn try_from(r: RawDescriptor) -> Result<Self, DecodeError> {
        let chunk_size = ChunkSize::new(r.chunk_size)?;
        let layout = Layout::for_plaintext(chunk_size, r.size).ok_or(DecodeError::Field {
            field: "size",
            reason: "more than 2^32 chunks",
        })?;
        if layout.ciphertext_size() != r.ciphertext_size {
            return Err(DecodeError::Sizes {
                ciphertext: r.ciphertext_size,
            });
        }
        Ok(Self {
            name: FileName::new(&r.name)?,
            media_type: MediaType::new(&r.media_type)?,
            key: AttachmentKey::less_safe_from_bytes(r.key.0),
            nonce_prefix: NoncePrefix::from_bytes(r.nonce_prefix.0),
            digest: ContentDigest::from_bytes(r.digest.0),
            layout,
            ciphertext_root: TreeHash::from_bytes(r.ciphertext_root.0),
        })
    }
}

impl TryFrom<RawMeta> for AttachmentMeta {
    type Error = DecodeError;
    fn try_from(r: RawMeta) -> Result<Self, DecodeError> {
        Self::new(
            ChunkSize::new(r.chunk_size)?,
            r.ciphertext_size,
            TreeHash::from_bytes(r.ciphertext_root.0),
        )
    }
}

impl Serialize for AttachmentDescriptor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireDescriptor {
            key: Bytes(*self.key.as_bytes()),
            name: self.name.as_str(),
            size: self.layout.size(),
            digest: Bytes(*self.digest.as_bytes()),
            chunk_size: self.layout.chunk_size().get(),
            media_type: self.media_type.as_str(),
            nonce_prefix: Bytes(*self.nonce_prefix.as_bytes()),
            ciphertext_root: Bytes(*self.ciphertext_root.as_bytes()),
            ciphertext_size: self.layout.ciphertext_size(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AttachmentDescriptor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawDescriptor::deserialize(d)?;
        Self::try_from(raw).map_err(de::Error::custom)
    }
}

impl Serialize for AttachmentMeta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawMeta {
            chunk_size: self.layout.chunk_size().get(),
            ciphertext_root: Bytes(*self.ciphertext_root.as_bytes()),
            ciphertext_size: self.layout.ciphertext_size(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AttachmentMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawMeta::deserialize(d)?;
        Self::try_from(raw).map_err(de::Error::custom)
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail, and every value here serializes.
    if ciborium::into_writer(v, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Bounds the length, parses one CBOR item, rejects trailing bytes.
fn decode_strict<T: de::DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max,
        });
    }
    let mut rest = bytes;
    let v: T = ciborium::from_reader(&mut rest).map_err(|e| DecodeError::Schema(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Schema(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(v)
}

/// N bytes: a bstr in CBOR, lower-case hex in JSON.
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Serialize for Bytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&crate::hex(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `true` in JSON (hex digits), `false` in CBOR (a bstr only).
        struct V<const N: usize>(bool);
        impl<const N: usize> de::Visitor<'_> for V<N> {
            type Value = Bytes<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes (a byte string, or {} hex digits)", 2 * N)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes<N>, E> {
                if self.0 {
                    return Err(E::invalid_type(de::Unexpected::Bytes(v), &self));
                }
                v.try_into()
                    .map(Bytes)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes<N>, E> {
                if !self.0 {
                    return Err(E::invalid_type(de::Unexpected::Str(v), &self));
                }
                crate::unhex(v)
                    .and_then(|b| <[u8; N]>::try_from(b).ok())
                    .map(Bytes)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V::<N>(true))
        } else {
            d.deserialize_bytes(V::<N>(false))
        }
    }
}
