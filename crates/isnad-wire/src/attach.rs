//! Attachment transfer frames (spec/transport.md §10): the binary frames
//! of an attachment stream, sans-IO.
//!
//! ```text
//! sender                                         receiver
//!   │ open = magic ‖ meta-len ‖ attachment-meta     │
//!   │ ─────────────────────────────────────────────▶│ quota, space, resume point
//!   │◀──────────────────────────── answer: resume(n) │
//!   │ chunk = 0x10 ‖ index ‖ len ‖ k ‖ proof ‖ bytes │
//!   │ ─────────────────────────────────────────────▶│ check (isnad-attach §4.3), write
//!   │◀──────────────── answer: again(i, why) (a bad one)
//!   │ chunk i again ───────────────────────────────▶│
//!   │◀───────────────────────────── answer: complete │ every chunk verified and durable
//!   │ FIN                                            │
//! ```
//!
//! Fixed binary layouts, not CBOR: every field has one width, so a frame
//! has one encoding and its header is read with one fixed-size read
//! before anything is allocated. The chunk bytes are not copied by the
//! encoder: [`ChunkHead::encode`] gives the header and the caller writes
//! the proof and the chunk after it.

use isnad_attach::{AttachmentMeta, InclusionProof, MAX_META_LEN, MAX_PROOF_HASHES};
use isnad_types::ErrorCode;

/// First bytes of an attachment stream. Read as a request frame's length
/// prefix (§3) it announces more than any request limit, so a node that
/// does not know attachment streams refuses the stream as `too-large`.
pub const MAGIC: [u8; 4] = [0xFF, b'I', b'A', 0x01];

/// Bytes of the open frame before the metadata: magic and its length.
pub const OPEN_HEAD_LEN: usize = 6;

/// Bytes of a chunk frame's header: type, index, length, proof hashes.
pub const CHUNK_HEAD_LEN: usize = 14;

/// Type byte of a chunk frame.
pub const CHUNK_TYPE: u8 = 0x10;

/// Largest body of an answer frame (its 2-byte length excluded).
pub const MAX_ANSWER_LEN: usize = 1 + 1 + 32 + 2 + MAX_DETAIL_LEN;

/// Largest detail text of a `refused` answer, in bytes.
pub const MAX_DETAIL_LEN: usize = 512;

/// A frame of an attachment stream that does not follow spec/transport.md
/// §10. The peer that sent it is at fault; a receiver answers `malformed`
/// (or `too-large` for [`TransferError::TooLarge`]) and ends the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The stream does not start with [`MAGIC`].
    #[error("not an attachment stream (bad magic)")]
    Magic,
    /// A length field exceeds its limit (metadata, chunk, proof, answer).
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Its value.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The metadata does not decode (isnad-attach §6.2).
    #[error("attachment metadata: {0}")]
    Meta(#[from] isnad_attach::DecodeError),
    /// A frame type this version does not know.
    #[error("unknown frame type 0x{0:02x}")]
    Type(u8),
    /// A frame shorter or longer than its type requires.
    #[error("frame of type 0x{0:02x} has the wrong length")]
    Length(u8),
    /// A field value outside its range (a reason byte, a code, a detail
    /// that is not UTF-8).
    #[error("bad field: {0}")]
    Field(&'static str),
}

/// Encodes the open frame: [`MAGIC`], the metadata's length (2 bytes,
/// big-endian), the metadata (attachment-meta, spec/attachments.md §6.2).
pub fn encode_open(meta: &AttachmentMeta) -> Vec<u8> {
    let m = meta.encode();
    let mut out = Vec::with_capacity(OPEN_HEAD_LEN + m.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(&m);
    out
}

/// Checks the open frame's head and returns the metadata length to read.
pub fn open_meta_len(head: [u8; OPEN_HEAD_LEN]) -> Result<usize, TransferError> {
    if head[..4] != MAGIC {
        return Err(TransferError::Magic);
    }
    let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
    if len > MAX_META_LEN {
        return Err(TransferError::TooLarge {
            what: "metadata",
            len: len as u64,
            max: MAX_META_LEN as u64,
        });
    }
    Ok(len)
}

/// Decodes the open frame's metadata.
pub fn decode_open_meta(bytes: &[u8]) -> Result<AttachmentMeta, TransferError> {
    Ok(AttachmentMeta::decode(bytes)?)
}

/// The header of a chunk frame; the proof (`hashes` × 32 bytes) and then
/// the chunk (`len` bytes) follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHead {
    /// The chunk's index.
    pub index: u64,
    /// The chunk's length in bytes.
    pub len: u32,
    /// Hashes in the inclusion proof that follows.
    pub hashes: u8,
}

impl ChunkHead {
    /// The header of chunk `index` of `len` bytes with `proof`.
    pub fn new(index: u64, len: u32, proof: &InclusionProof) -> Self {
        Self {
            index,
            len,
            hashes: proof.hashes().len() as u8,
        }
    }

    /// Decodes a header, refusing a chunk longer than `max_len` (the
    /// ciphertext length of a full chunk of the attachment) and a proof of
    /// more than 32 hashes before either is read.
    pub fn decode(bytes: [u8; CHUNK_HEAD_LEN], max_len: u64) -> Result<Self, TransferError> {
        if bytes[0] != CHUNK_TYPE {
            return Err(TransferError::Type(bytes[0]));
        }
        let mut index = [0u8; 8];
        index.copy_from_slice(&bytes[1..9]);
        let len = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
        let hashes = bytes[13];
        if u64::from(len) > max_len {
            return Err(TransferError::TooLarge {
                what: "chunk",
                len: u64::from(len),
                max: max_len,
            });
        }
        if usize::from(hashes) > MAX_PROOF_HASHES {
            return Err(TransferError::TooLarge {
                what: "proof",
                len: u64::from(hashes),
                max: MAX_PROOF_HASHES as u64,
            });
        }
        Ok(Self {
            index: u64::from_be_bytes(index),
            len,
            hashes,
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; CHUNK_HEAD_LEN] {
        let mut out = [0u8; CHUNK_HEAD_LEN];
        out[0] = CHUNK_TYPE;
        out[1..9].copy_from_slice(&self.index.to_be_bytes());
        out[9..13].copy_from_slice(&self.len.to_be_bytes());
        out[13] = self.hashes;
        out
    }

    /// Bytes of the proof that follows the header.
    pub fn proof_len(&self) -> usize {
        usize::from(self.hashes) * 32
    }
}

/// Why a chunk is asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgainReason {
    /// The chunk does not lead to the root with its proof (a flipped bit,
    /// another attachment's chunk, another position): `chunk-mismatch`.
    Mismatch,
    /// The chunk is not as long as its position requires (a truncated
    /// final chunk): `chunk-length`.
    Length,
}

impl AgainReason {
    /// The name used in logs (spec/attachments.md §8).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mismatch => "chunk-mismatch",
            Self::Length => "chunk-length",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Mismatch => 1,
            Self::Length => 2,
        }
    }
}

/// A frame from the receiver to the sender. On the wire: its body length
/// (2 bytes, big-endian), then the body: a type byte and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// `0x01 ‖ next (8)`: the receiver holds chunks `0 .. next` durably;
    /// send from `next`.
    Resume {
        /// The first chunk to send.
        next: u64,
    },
    /// `0x02 ‖ index (8) ‖ reason (1)`: chunk `index` was refused and not
    /// written; send it again.
    Again {
        /// The refused chunk.
        index: u64,
        /// Why.
        reason: AgainReason,
    },
    /// `0x03`: every chunk is verified and durable; the attachment is
    /// staged. The sender finishes its side.
    Complete,
    /// `0x04 ‖ code-len (1) ‖ code ‖ detail-len (2) ‖ detail`: the
    /// transfer is refused (protocol.md §7 codes: `too-large`,
    /// `unavailable`, `malformed`, `unauthentic`); the receiver ends the
    /// stream. Chunks already durable stay for a later resume unless the
    /// code is final.
    Refused {
        /// The error code.
        code: ErrorCode,
        /// Detail for the operator (at most 512 bytes).
        detail: String,
    },
}

impl Answer {
    /// The frame's bytes, its length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Self::Resume { next } => {
                body.push(0x01);
                body.extend_from_slice(&next.to_be_bytes());
            }
            Self::Again { index, reason } => {
                body.push(0x02);
                body.extend_from_slice(&index.to_be_bytes());
                body.push(reason.byte());
            }
            Self::Complete => body.push(0x03),
            Self::Refused { code, detail } => {
                let code = code.as_str().as_bytes();
                let mut detail = detail.as_str();
                while detail.len() > MAX_DETAIL_LEN {
                    // Cut at a character boundary.
                    let mut end = MAX_DETAIL_LEN;
                    while !detail.is_char_boundary(end) {
                        end -= 1;
                    }
                    detail = &detail[..end];
                }
                body.push(0x04);
                body.push(code.len() as u8);
                body.extend_from_slice(code);
                body.extend_from_slice(&(detail.len() as u16).to_be_bytes());
                body.extend_from_slice(detail.as_bytes());
            }
        }
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// The body length an answer's 2-byte prefix announces, refused above
    /// [`MAX_ANSWER_LEN`] before the body is read.
    pub fn body_len(prefix: [u8; 2]) -> Result<usize, TransferError> {
        let len = usize::from(u16::from_be_bytes(prefix));
        if len > MAX_ANSWER_LEN {
            return Err(TransferError::TooLarge {
                what: "answer",
                len: len as u64,
                max: MAX_ANSWER_LEN as u64,
            });
        }
        Ok(len)
    }

    /// Decodes an answer's body (without its length prefix); refuses
    /// trailing bytes.
    pub fn decode(body: &[u8]) -> Result<Self, TransferError> {
        let (&kind, rest) = body.split_first().ok_or(TransferError::Length(0))?;
        let u64_at = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            u64::from_be_bytes(a)
        };
        match kind {
            0x01 if rest.len() == 8 => Ok(Self::Resume { next: u64_at(rest) }),
            0x02 if rest.len() == 9 => {
                let reason = match rest[8] {
                    1 => AgainReason::Mismatch,
                    2 => AgainReason::Length,
                    _ => return Err(TransferError::Field("again reason")),
                };
                Ok(Self::Again {
                    index: u64_at(rest),
                    reason,
                })
            }
            0x03 if rest.is_empty() => Ok(Self::Complete),
            0x04 => {
                let (&n, rest) = rest.split_first().ok_or(TransferError::Length(kind))?;
                let n = usize::from(n);
                let code = rest.get(..n).ok_or(TransferError::Length(kind))?;
                let rest = &rest[n..];
                let d = rest.get(..2).ok_or(TransferError::Length(kind))?;
                let d = usize::from(u16::from_be_bytes([d[0], d[1]]));
                if d > MAX_DETAIL_LEN {
                    return Err(TransferError::Field("detail too long"));
                }
                if rest.len() != 2 + d {
                    return Err(TransferError::Length(kind));
                }
                let code = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| ErrorCode::parse(c).ok())
                    .ok_or(TransferError::Field("error code"))?;
                let detail = std::str::from_utf8(&rest[2..])
                    .map_err(|_| TransferError::Field("detail is not UTF-8"))?
                    .to_owned();
                Ok(Self::Refused { code, detail })
            }
            0x01..=0x04 => Err(TransferError::Length(kind)),
            other => Err(TransferError::Type(other)),
        }
    }
}

/// Fuzzing entry point: every decoder of this module on `data`.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Some(head) = data.get(..OPEN_HEAD_LEN) {
        let mut h = [0u8; OPEN_HEAD_LEN];
        h.copy_from_slice(head);
        if let Ok(n) = open_meta_len(h) {
            if let Some(m) = data.get(OPEN_HEAD_LEN..OPEN_HEAD_LEN + n) {
                if let Ok(meta) = decode_open_meta(m) {
                    assert_eq!(encode_open(&meta), data[..OPEN_HEAD_LEN + n]);
                }
            }
        }
    }
    if let Some(head) = data.get(..CHUNK_HEAD_LEN) {
        let mut h = [0u8; CHUNK_HEAD_LEN];
        h.copy_from_slice(head);
        if let Ok(c) = ChunkHead::decode(h, 1 << 24) {
            assert_eq!(c.encode(), h);
        }
    }
    if let Some(p) = data.get(..2) {
        if let Ok(n) = Answer::body_len([p[0], p[1]]) {
            if let Some(body) = data.get(2..2 + n) {
                if let Ok(a) = Answer::decode(body) {
                    assert_eq!(Answer::decode(&a.encode()[2..]), Ok(a));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isnad_attach::{ChunkSize, TreeHash};

    fn meta() -> AttachmentMeta {
        AttachmentMeta::new(
            ChunkSize::DEFAULT,
            262_160 + 116,
            TreeHash::from_bytes([7; 32]),
        )
        .expect("valid sizes")
    }

    #[test]
    fn open_roundtrips_and_bad_magic_is_refused() {
        let open = encode_open(&meta());
        let mut head = [0u8; OPEN_HEAD_LEN];
        head.copy_from_slice(&open[..OPEN_HEAD_LEN]);
        let n = open_meta_len(head).expect("head");
        assert_eq!(decode_open_meta(&open[OPEN_HEAD_LEN..]), Ok(meta()));
        assert_eq!(n, open.len() - OPEN_HEAD_LEN);
        head[0] = 0;
        assert_eq!(open_meta_len(head), Err(TransferError::Magic));
        // A metadata length over 128 is refused before it is read.
        let big = [0xFF, b'I', b'A', 0x01, 0, 129];
        assert!(matches!(
            open_meta_len(big),
            Err(TransferError::TooLarge { .. })
        ));
    }

    #[test]
    fn chunk_head_bounds_are_checked_before_reading() {
        let h = ChunkHead {
            index: 5,
            len: 262_160,
            hashes: 3,
        };
        assert_eq!(ChunkHead::decode(h.encode(), 262_160), Ok(h));
        assert!(matches!(
            ChunkHead::decode(h.encode(), 262_159),
            Err(TransferError::TooLarge { what: "chunk", .. })
        ));
        let mut b = h.encode();
        b[13] = 33;
        assert!(matches!(
            ChunkHead::decode(b, 1 << 24),
            Err(TransferError::TooLarge { what: "proof", .. })
        ));
        b[0] = 0x11;
        assert_eq!(
            ChunkHead::decode(b, 1 << 24),
            Err(TransferError::Type(0x11))
        );
    }

    #[test]
    fn answers_roundtrip_and_trailing_bytes_are_refused() {
        for a in [
            Answer::Resume { next: 42 },
            Answer::Again {
                index: 9,
                reason: AgainReason::Mismatch,
            },
            Answer::Again {
                index: 0,
                reason: AgainReason::Length,
            },
            Answer::Complete,
            Answer::Refused {
                code: ErrorCode::TooLarge,
                detail: "over the per-peer quota".into(),
            },
        ] {
            let bytes = a.encode();
            let n = Answer::body_len([bytes[0], bytes[1]]).expect("len");
            assert_eq!(n, bytes.len() - 2);
            assert_eq!(Answer::decode(&bytes[2..]), Ok(a));
            let mut longer = bytes[2..].to_vec();
            longer.push(0);
            assert!(Answer::decode(&longer).is_err());
        }
        assert_eq!(
            Answer::decode(&[0x01, 0, 0, 0, 0, 0, 0, 0, 1]).ok(),
            Some(Answer::Resume { next: 1 })
        );
        assert_eq!(
            Answer::encode(&Answer::Resume { next: 1 }),
            [0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(Answer::decode(&[0x05]), Err(TransferError::Type(5)));
        assert!(Answer::decode(&[0x04, 3, b'b', b'a', b'd', 0, 0]).is_err());
    }

    proptest::proptest! {
        /// The fuzz entry point (every decoder, re-encoding what decodes)
        /// holds on arbitrary bytes and on bytes that start like each frame.
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), kind in 0u8..4) {
            let head: &[u8] = match kind {
                0 => &MAGIC,
                1 => &[CHUNK_TYPE],
                2 => &[0, 9, 1],
                _ => &[],
            };
            fuzz(&[head, &data].concat());
        }
    }
}
