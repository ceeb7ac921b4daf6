//! Isnad transport framing: what travels on one QUIC bidirectional stream
//! (spec/transport.md).
//!
//! ```text
//!  client ── request frame ──▶ server      (client finishes its send side)
//!  client ◀── response frame ── server     (server finishes its send side)
//!  frame = u32 big-endian length ‖ one CBOR map of that length
//! ```
//!
//! What it does: encodes and strictly decodes request and response frames,
//! with the size bound checked from the 4-byte prefix before the body is read.
//! What it does not do: no sockets, no QUIC, no envelope cryptography — the
//! node reads bytes from quinn and hands them here. Its only Isnad dependency
//! is isnad-types (error codes, message ids, limits, bounded CBOR).
//!
//! ```
//! use isnad_wire::*;
//! # fn main() -> Result<(), FrameError> {
//! let frame = Request { op: Op::Deliver, payload: b"envelope".to_vec() }.encode();
//! let len = body_len(frame[..4].try_into().expect("4 bytes"), MAX_REQUEST_BODY)?;
//! let req = Request::decode(&frame[4..4 + len])?;
//! assert_eq!(req.payload, b"envelope");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attach;

use ciborium::value::{Integer, Value};
use isnad_types::cbor::{scan, to_deterministic_vec};
use isnad_types::{ErrorCode, Limits, MessageId, UnknownErrorCode};

/// The ALPN protocol id.
pub const ALPN: &[u8] = b"isnad/1";
/// Version carried in every frame.
pub const WIRE_VERSION: u64 = 1;
/// Largest request body: the envelope limit plus room for the outer map.
pub const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024 + 1024;
/// Largest response body.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Why a frame is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the limit for this direction.
    #[error("frame body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Not one well-formed CBOR item within limits.
    #[error("frame body is not well-formed CBOR: {0}")]
    Cbor(#[from] isnad_types::CborError),
    /// Well-formed CBOR but not a frame of this version's schema.
    #[error("frame does not follow the schema: {0}")]
    Schema(&'static str),
    /// An error response whose code (key 4) is not one of [`ErrorCode::ALL`].
    #[error("error response: {0}")]
    UnknownCode(#[from] UnknownErrorCode),
    /// A version other than [`WIRE_VERSION`].
    #[error("unsupported wire version {0}")]
    Version(u64),
}

impl FrameError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::Version(_) => ErrorCode::UnsupportedVersion,
            Self::Cbor(_) | Self::Schema(_) | Self::UnknownCode(_) => ErrorCode::Malformed,
        }
    }
}

/// Checks a 4-byte length prefix against `max` and returns the body length.
pub fn body_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len as usize > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(len as usize)
}

/// Operations a request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Deliver an envelope (payload: COSE_Encrypt bytes); answered by a receipt.
    Deliver,
    /// Ask the server to witness the client's audit log (payload: a C2SP
    /// tlog-witness add-checkpoint request body); answered by
    /// [`Response::Cosigned`] or [`Response::WitnessRefused`].
    AddCheckpoint,
}

impl Op {
    const fn code(self) -> u64 {
        match self {
            Self::Deliver => 1,
            Self::AddCheckpoint => 2,
        }
    }
    fn from_code(c: u64) -> Option<Self> {
        match c {
            1 => Some(Self::Deliver),
            2 => Some(Self::AddCheckpoint),
            _ => None,
        }
    }
}

/// A request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The payload bytes (for `Deliver`, the envelope exactly as sealed).
    pub payload: Vec<u8>,
}

/// A response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Accepted: the payload is the recipient's signed receipt (tagged COSE_Sign1).
    Receipt(Vec<u8>),
    /// Refused or failed.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message concerned, when known.
        message_id: Option<MessageId>,
        /// A short human-readable detail (never which cryptographic check failed).
        detail: Option<String>,
    },
    /// The witness cosigned: the payload is the C2SP tlog-witness response
    /// body, one or more cosignature lines (UTF-8, each ending in a newline).
    Cosigned(Vec<u8>),
    /// The witness refused an add-checkpoint request (spec/witness.md §3).
    WitnessRefused {
        /// Why.
        code: WitnessCode,
        /// For [`WitnessCode::Conflict`] (and only then): the size of the
        /// latest checkpoint the witness cosigned for this log.
        known_size: Option<u64>,
        /// A short detail for the operator (never which signature check failed).
        detail: Option<String>,
    },
}

/// Why a witness refused an add-checkpoint request; each maps to one HTTP
/// status of C2SP tlog-witness (spec/witness.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WitnessCode {
    /// 400 Bad Request: malformed request or checkpoint, or old size larger than the checkpoint.
    BadRequest,
    /// 403 Forbidden: the checkpoint carries no valid signature by the log's key.
    Unauthentic,
    /// 404 Not Found: the origin is not a log this witness serves for this peer.
    UnknownLog,
    /// 409 Conflict: the old size is not the size the witness last cosigned (carried in key 7).
    Conflict,
    /// 422 Unprocessable Entity: the checkpoint is not consistent with the one the witness cosigned.
    Inconsistent,
    /// 503 Service Unavailable: the witness could not record its state; try again later.
    Unavailable,
}

impl WitnessCode {
    const ALL: [Self; 6] = [
        Self::BadRequest,
        Self::Unauthentic,
        Self::UnknownLog,
        Self::Conflict,
        Self::Inconsistent,
        Self::Unavailable,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Unauthentic => "unauthentic",
            Self::UnknownLog => "unknown-log",
            Self::Conflict => "conflict",
            Self::Inconsistent => "inconsistent",
            Self::Unavailable => "unavailable",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for WitnessCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn int(i: u64) -> Value {
    Value::Integer(Integer::from(i))
}

fn frame(map: Vec<(Value, Value)>) -> Vec<u8> {
    let body = to_deterministic_vec(&Value::Map(map));
    let mut out = Vec::with_capacity(body.len() + 4);
    // Bodies we build are far below 4 GiB.
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a frame body into its integer-keyed map, refusing duplicate or
/// unknown keys (`allowed`), and checks the version.
fn decode_map(body: &[u8], max: usize, allowed: &[u64]) -> Result<Vec<Option<Value>>, FrameError> {
    let limits = Limits {
        max_envelope_bytes: max,
        max_depth: 4,
        max_items: 16,
        ..Limits::default()
    };
    scan(body, &limits)?;
    let value: Value =
        ciborium::de::from_reader(body).map_err(|_| FrameError::Schema("undecodable CBOR"))?;
    let Value::Map(entries) = value else {
        return Err(FrameError::Schema("frame body must be a map"));
    };
    let mut slots: Vec<Option<Value>> = vec![None; allowed.len()];
    for (k, v) in entries {
        let key = k
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or(FrameError::Schema("keys must be unsigned integers"))?;
        let pos = allowed
            .iter()
            .position(|a| *a == key)
            .ok_or(FrameError::Schema("unknown key"))?;
        if slots[pos].replace(v).is_some() {
            return Err(FrameError::Schema("duplicate key"));
        }
    }
    let version = slots[0]
        .take()
        .and_then(|v| v.as_integer().and_then(|i| u64::try_from(i).ok()))
        .ok_or(FrameError::Schema(
            "version (key 1) missing or not an unsigned integer",
        ))?;
    if version != WIRE_VERSION {
        return Err(FrameError::Version(version));
    }
    Ok(slots)
}

fn uint(v: Option<Value>, what: &'static str) -> Result<u64, FrameError> {
    v.and_then(|v| v.as_integer().and_then(|i| u64::try_from(i).ok()))
        .ok_or(FrameError::Schema(what))
}

impl Request {
    /// The complete frame: length prefix and body.
    pub fn encode(&self) -> Vec<u8> {
        frame(vec![
            (int(1), int(WIRE_VERSION)),
            (int(2), int(self.op.code())),
            (int(3), Value::Bytes(self.payload.clone())),
        ])
    }

    /// Decodes a request body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        if body.len() > MAX_REQUEST_BODY {
            return Err(FrameError::TooLarge {
                len: body.len() as u64,
                max: MAX_REQUEST_BODY,
            });
        }
        let mut s = decode_map(body, MAX_REQUEST_BODY, &[1, 2, 3])?;
        let op = Op::from_code(uint(
            s[1].take(),
            "op (key 2) missing or not an unsigned integer",
        )?)
        .ok_or(FrameError::Schema("unknown op"))?;
        let payload = s[2]
            .take()
            .and_then(|v| v.into_bytes().ok())
            .ok_or(FrameError::Schema(
                "payload (key 3) missing or not a byte string",
            ))?;
        Ok(Self { op, payload })
    }
}

impl Response {
    /// The complete frame: length prefix and body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Receipt(r) => frame(vec![
                (int(1), int(WIRE_VERSION)),
                (int(2), int(0)),
                (int(3), Value::Bytes(r.clone())),
            ]),
            Self::Error {
                code,
                message_id,
                detail,
            } => {
                let mut m = refusal_map(1, code.as_str(), detail.as_deref());
                if let Some(id) = message_id {
                    m.push((int(6), Value::Bytes(id.as_bytes().to_vec())));
                }
                frame(m)
            }
            Self::Cosigned(lines) => frame(vec![
                (int(1), int(WIRE_VERSION)),
                (int(2), int(2)),
                (int(3), Value::Bytes(lines.clone())),
            ]),
            Self::WitnessRefused {
                code,
                known_size,
                detail,
            } => {
                let mut m = refusal_map(3, code.as_str(), detail.as_deref());
                if let Some(k) = known_size {
                    m.push((int(7), int(*k)));
                }
                frame(m)
            }
        }
    }

    /// Decodes a response body (the bytes after the length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        if body.len() > MAX_RESPONSE_BODY {
            return Err(FrameError::TooLarge {
                len: body.len() as u64,
                max: MAX_RESPONSE_BODY,
            });
        }
        let mut s = decode_map(body, MAX_RESPONSE_BODY, &[1, 2, 3, 4, 5, 6, 7])?;
        if s[6].is_some() && !matches!(s[1], Some(Value::Integer(i)) if i == Integer::from(3)) {
            return Err(FrameError::Schema(
                "key 7 belongs to a witness refusal only",
            ));
        }
        match uint(
            s[1].take(),
            "status (key 2) missing or not an unsigned integer",
        )? {
            0 => {
                if s[3].is_some() || s[4].is_some() || s[5].is_some() {
                    return Err(FrameError::Schema(
                        "a receipt response has only keys 1, 2, 3",
                    ));
                }
                let r = s[2]
                    .take()
                    .and_then(|v| v.into_bytes().ok())
                    .ok_or(FrameError::Schema(
                        "receipt (key 3) missing or not a byte string",
                    ))?;
                Ok(Self::Receipt(r))
            }
            1 => {
                if s[2].is_some() {
                    return Err(FrameError::Schema("an error response has no key 3"));
                }
                let code_text = s[3]
                    .take()
                    .and_then(|v| v.into_text().ok())
                    .ok_or(FrameError::Schema("code (key 4) missing or not text"))?;
                let code = ErrorCode::parse(&code_text)?;
                let detail = opt_text(s[4].take())?;
                let message_id = match s[5].take() {
                    None => None,
                    Some(v) => Some(
                        v.into_bytes()
                            .ok()
                            .and_then(|b| <[u8; 16]>::try_from(b).ok())
                            .map(MessageId::from_bytes)
                            .ok_or(FrameError::Schema("message id must be 16 bytes"))?,
                    ),
                };
                Ok(Self::Error {
                    code,
                    message_id,
                    detail,
                })
            }
            2 => {
                if s[3].is_some() || s[4].is_some() || s[5].is_some() {
                    return Err(FrameError::Schema(
                        "a cosigned response has only keys 1, 2, 3",
                    ));
                }
                let lines =
                    s[2].take()
                        .and_then(|v| v.into_bytes().ok())
                        .ok_or(FrameError::Schema(
                            "cosignatures (key 3) missing or not a byte string",
                        ))?;
                if lines.is_empty() {
                    return Err(FrameError::Schema(
                        "a cosigned response needs a cosignature",
                    ));
                }
                Ok(Self::Cosigned(lines))
            }
            3 => {
                if s[2].is_some() || s[5].is_some() {
                    return Err(FrameError::Schema("a witness refusal has no key 3 or 6"));
                }
                let code = s[3]
                    .take()
                    .and_then(|v| v.into_text().ok())
                    .and_then(|t| WitnessCode::parse(&t))
                    .ok_or(FrameError::Schema(
                        "witness code (key 4) missing or unknown",
                    ))?;
                let detail = opt_text(s[4].take())?;
                let known_size = match s[6].take() {
                    None => None,
                    Some(v) => Some(uint(
                        Some(v),
                        "known size (key 7) must be an unsigned integer",
                    )?),
                };
                if (code == WitnessCode::Conflict) != known_size.is_some() {
                    return Err(FrameError::Schema(
                        "a conflict carries the known size (key 7), other refusals do not",
                    ));
                }
                Ok(Self::WitnessRefused {
                    code,
                    known_size,
                    detail,
                })
            }
            _ => Err(FrameError::Schema("unknown status")),
        }
    }
}

/// The keys of a refusal: version, `status`, code (key 4), optional detail (key 5).
fn refusal_map(status: u64, code: &str, detail: Option<&str>) -> Vec<(Value, Value)> {
    let mut m = vec![
        (int(1), int(WIRE_VERSION)),
        (int(2), int(status)),
        (int(4), Value::Text(code.to_owned())),
    ];
    if let Some(d) = detail {
        m.push((int(5), Value::Text(d.to_owned())));
    }
    m
}

/// An optional detail (key 5): text or absent.
fn opt_text(v: Option<Value>) -> Result<Option<String>, FrameError> {
    v.map(|v| {
        v.into_text()
            .map_err(|_| FrameError::Schema("detail must be text"))
    })
    .transpose()
}

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets.

    /// Decodes `data` as a request and as a response frame (prefix included).
    pub fn frames(data: &[u8]) {
        if data.len() >= 4 {
            let prefix = [data[0], data[1], data[2], data[3]];
            if let Ok(n) = super::body_len(prefix, super::MAX_REQUEST_BODY) {
                if let Some(body) = data.get(4..4 + n) {
                    let _ = super::Request::decode(body);
                    let _ = super::Response::decode(body);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[4..]
    }

    #[test]
    fn request_round_trip_and_exact_bytes() -> Result<(), FrameError> {
        let f = Request {
            op: Op::Deliver,
            payload: vec![0xaa, 0xbb],
        }
        .encode();
        assert_eq!(&f[..4], &[0, 0, 0, 9]);
        assert_eq!(
            body(&f),
            [0xa3, 0x01, 0x01, 0x02, 0x01, 0x03, 0x42, 0xaa, 0xbb]
        );
        assert_eq!(Request::decode(body(&f))?.payload, vec![0xaa, 0xbb]);
        Ok(())
    }

    /// The examples in spec/transport.md §3.
    #[test]
    fn spec_examples() {
        let e = Response::Error {
            code: ErrorCode::Replayed,
            message_id: None,
            detail: None,
        };
        let mut want = vec![0, 0, 0, 0x0f, 0xa3, 0x01, 0x01, 0x02, 0x01, 0x04, 0x68];
        want.extend_from_slice(b"replayed");
        assert_eq!(e.encode(), want);
        let r = Request {
            op: Op::Deliver,
            payload: vec![0xaa, 0xbb],
        }
        .encode();
        assert_eq!(
            r,
            [0, 0, 0, 9, 0xa3, 0x01, 0x01, 0x02, 0x01, 0x03, 0x42, 0xaa, 0xbb]
        );
    }

    /// spec/transport.md §3: a frame need not be in deterministic encoding
    /// (a frame is neither signed nor hashed): keys in another order and
    /// integers and lengths not in shortest form decode to the same frame;
    /// the data-model rules (duplicate keys, types) still apply.
    #[test]
    fn non_canonical_frames_are_accepted() -> Result<(), FrameError> {
        let canonical = Request::decode(&[0xa3, 0x01, 0x01, 0x02, 0x01, 0x03, 0x42, 0xaa, 0xbb])?;
        let reordered_long_forms = [
            0xb8, 0x03, // map(3), length in one extra byte
            0x03, 0x58, 0x02, 0xaa, 0xbb, // 3: h'aabb', length in one extra byte
            0x19, 0x00, 0x02, 0x1a, 0x00, 0x00, 0x00, 0x01, // 2: 1, key and value long
            0x18, 0x01, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0x01, // 1: 1
        ];
        assert_eq!(Request::decode(&reordered_long_forms)?, canonical);
        let refused = Response::decode(&[
            0xa3, 0x04, 0x68, b'r', b'e', b'p', b'l', b'a', b'y', b'e', b'd', 0x02, 0x18, 0x01,
            0x01, 0x01,
        ])?;
        assert_eq!(
            refused,
            Response::Error {
                code: ErrorCode::Replayed,
                message_id: None,
                detail: None
            }
        );
        // Still one item per key: key 1 twice, once in long form, is refused.
        assert!(Request::decode(&[
            0xa4, 0x01, 0x01, 0x18, 0x01, 0x01, 0x02, 0x01, 0x03, 0x42, 0xaa, 0xbb
        ])
        .is_err());
        Ok(())
    }

    #[test]
    fn response_round_trips() -> Result<(), FrameError> {
        let r = Response::Receipt(vec![1, 2, 3]);
        assert_eq!(Response::decode(body(&r.encode()))?, r);
        let e = Response::Error {
            code: ErrorCode::Replayed,
            message_id: Some(MessageId::from_bytes([5; 16])),
            detail: Some("seen".into()),
        };
        assert_eq!(Response::decode(body(&e.encode()))?, e);
        // Every error code, whatever its position in ErrorCode::ALL.
        for code in ErrorCode::ALL {
            let e = Response::Error {
                code,
                message_id: None,
                detail: None,
            };
            assert_eq!(Response::decode(body(&e.encode()))?, e);
        }
        let c = Response::Cosigned(b"\xe2\x80\x94 w AAAA\n".to_vec());
        assert_eq!(Response::decode(body(&c.encode()))?, c);
        let k = Response::WitnessRefused {
            code: WitnessCode::Conflict,
            known_size: Some(42),
            detail: None,
        };
        assert_eq!(Response::decode(body(&k.encode()))?, k);
        // The example in spec/witness.md §3.2.
        assert_eq!(
            k.encode(),
            [
                0, 0, 0, 0x12, 0xa4, 0x01, 0x01, 0x02, 0x03, 0x04, 0x68, b'c', b'o', b'n', b'f',
                b'l', b'i', b'c', b't', 0x07, 0x18, 0x2a
            ]
        );
        let i = Response::WitnessRefused {
            code: WitnessCode::Inconsistent,
            known_size: None,
            detail: Some("fork".into()),
        };
        assert_eq!(Response::decode(body(&i.encode()))?, i);
        Ok(())
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            body_len([0xff, 0, 0, 0], MAX_REQUEST_BODY),
            Err(FrameError::TooLarge { .. })
        ));
        // version 2
        assert_eq!(
            Request::decode(&[0xa3, 0x01, 0x02, 0x02, 0x01, 0x03, 0x40]),
            Err(FrameError::Version(2))
        );
        // unknown key 9
        assert!(matches!(
            Request::decode(&[0xa4, 0x01, 0x01, 0x02, 0x01, 0x03, 0x40, 0x09, 0x00]),
            Err(FrameError::Schema(_))
        ));
        // duplicate key
        assert!(matches!(
            Request::decode(&[0xa3, 0x01, 0x01, 0x01, 0x01, 0x03, 0x40]),
            Err(FrameError::Schema(_))
        ));
        // trailing byte
        assert!(matches!(
            Request::decode(&[0xa3, 0x01, 0x01, 0x02, 0x01, 0x03, 0x40, 0x00]),
            Err(FrameError::Cbor(_))
        ));
        // unknown op
        assert!(matches!(
            Request::decode(&[0xa3, 0x01, 0x01, 0x02, 0x07, 0x03, 0x40]),
            Err(FrameError::Schema(_))
        ));
        // a conflict without the known size, and a known size on an error
        assert!(matches!(
            Response::decode(&[
                0xa3, 0x01, 0x01, 0x02, 0x03, 0x04, 0x68, b'c', b'o', b'n', b'f', b'l', b'i', b'c',
                b't'
            ]),
            Err(FrameError::Schema(_))
        ));
        assert!(matches!(
            Response::decode(&[0xa4, 0x01, 0x01, 0x02, 0x01, 0x04, 0x61, 0x78, 0x07, 0x01]),
            Err(FrameError::Schema(_))
        ));
        // op 2 is add-checkpoint, op 3 is not (yet) known
        assert_eq!(
            Request::decode(&[0xa3, 0x01, 0x01, 0x02, 0x02, 0x03, 0x40]).map(|r| r.op),
            Ok(Op::AddCheckpoint)
        );
        // an error response with a code no version of the spec has: a
        // typed error the node answers with `malformed`
        let unknown = Response::decode(&[
            0xa3, 0x01, 0x01, 0x02, 0x01, 0x04, 0x6b, b'r', b'e', b't', b'r', b'y', b'-', b'l',
            b'a', b't', b'e', b'r',
        ]);
        assert!(matches!(
            &unknown,
            Err(FrameError::UnknownCode(e)) if e.name() == "retry-later"
        ));
        assert_eq!(unknown.map_err(|e| e.code()), Err(ErrorCode::Malformed));
        // receipt with an error code
        assert!(matches!(
            Response::decode(&[0xa4, 0x01, 0x01, 0x02, 0x00, 0x03, 0x40, 0x04, 0x61, 0x78]),
            Err(FrameError::Schema(_))
        ));
    }
}
