//! Audit-log entries: a closed schema in RFC 8949 §4.2.1 core deterministic CBOR.
//!
//! The entry is a CBOR map with small unsigned integer keys (schema in
//! `spec/audit-log.cddl`). The encoder writes the one deterministic form;
//! the decoder accepts only that form: shortest-form integers and lengths,
//! definite lengths, keys in strictly increasing bytewise order, no unknown
//! keys, no trailing bytes, nothing at or above [`MAX_ENTRY_LEN`] bytes. Every
//! length read from the input is checked against the bytes remaining before
//! anything is allocated.

use std::collections::BTreeMap;
use std::fmt;

use isnad_types::{AgencyId, MessageId};

use crate::attachments::{AttachmentsDetailError, LoggedAttachment, ATTACHMENTS_DETAIL_KEY};
use ring::digest;

/// Largest encoded entry, in bytes. Entries must be strictly below 64 KiB so
/// that their length fits the `uint16` prefix of C2SP entry bundles.
pub const MAX_ENTRY_LEN: usize = 65_535;

/// Schema version written in key 0.
pub const ENTRY_VERSION: u64 = 1;

/// Most pairs in the `detail` map (key 11).
pub const MAX_DETAIL_PAIRS: usize = 16;

/// Longest `detail` key, in bytes.
pub const MAX_DETAIL_KEY_LEN: usize = 64;

/// Longest `reason` or `detail` value, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// What happened. Encoded as a lower-case text string (key 3).
///
/// The set is closed per schema version: a decoder rejects a name it does
/// not know with [`EntryError::UnknownEventType`]. New event types are added
/// only together with a new entry version and spec revision, so an auditor
/// whose verifier reports an unknown event type knows to upgrade the
/// verifier rather than suspect tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventType {
    /// An envelope was sent to a peer.
    Sent,
    /// An envelope was received from a peer and accepted.
    Received,
    /// A receipt for a received envelope was sent.
    ReceiptSent,
    /// A receipt for a sent envelope was received.
    ReceiptReceived,
    /// An envelope was rejected (reason in key 10).
    Rejected,
    /// A request's status changed.
    StatusChanged,
    /// The federation directory changed.
    DirectoryChanged,
    /// A key of this node was rotated.
    KeyRotated,
    /// A key was revoked.
    KeyRevoked,
    /// A witness cosigned one of this log's checkpoints.
    CheckpointCosigned,
    /// A delivery attempt failed.
    DeliveryFailed,
    /// A message expired undelivered.
    DeliveryExpired,
    /// A local user accessed a message.
    LocalAccess,
    /// This node, as a witness, cosigned a partner's checkpoint.
    WitnessCosigned,
    /// This node, as a witness, refused a partner's checkpoint that
    /// contradicts one it cosigned, and kept fork evidence.
    ForkDetected,
    /// A relayed envelope was checked and forwarded to the next hop
    /// (metadata only: inner message id, originator, final recipient, inner
    /// digest; previous and next hop in `detail`).
    Relayed,
    /// The content of a settled message (its envelope) was deleted from
    /// the node's state under its retention rules; the entry names the
    /// message and its digests only, never content.
    Purged,
    /// A person did something in the web console (login, logout, …):
    /// pseudonymous user id, role and action in `detail`, never content.
    UserAction,
}

impl EventType {
    /// Every event type of schema version 1.
    pub const ALL: [EventType; 18] = [
        Self::Sent,
        Self::Received,
        Self::ReceiptSent,
        Self::ReceiptReceived,
        Self::Rejected,
        Self::StatusChanged,
        Self::DirectoryChanged,
        Self::KeyRotated,
        Self::KeyRevoked,
        Self::CheckpointCosigned,
        Self::DeliveryFailed,
        Self::DeliveryExpired,
        Self::LocalAccess,
        Self::WitnessCosigned,
        Self::ForkDetected,
        Self::Relayed,
        Self::Purged,
        Self::UserAction,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::ReceiptSent => "receipt-sent",
            Self::ReceiptReceived => "receipt-received",
            Self::Rejected => "rejected",
            Self::StatusChanged => "status-changed",
            Self::DirectoryChanged => "directory-changed",
            Self::KeyRotated => "key-rotated",
            Self::KeyRevoked => "key-revoked",
            Self::CheckpointCosigned => "checkpoint-cosigned",
            Self::DeliveryFailed => "delivery-failed",
            Self::DeliveryExpired => "delivery-expired",
            Self::LocalAccess => "local-access",
            Self::WitnessCosigned => "witness-cosigned",
            Self::ForkDetected => "fork-detected",
            Self::Relayed => "relayed",
            Self::Purged => "purged",
            Self::UserAction => "user-action",
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Keys that must be present for this event type (besides 0–3).
    fn required(self) -> &'static [u64] {
        match self {
            Self::Sent | Self::Received | Self::Relayed | Self::Purged => {
                &[K_MSG, K_SENDER, K_RECIPIENT, K_ENVELOPE]
            }
            Self::ReceiptSent | Self::ReceiptReceived => &[K_MSG, K_SENDER, K_RECIPIENT, K_PEER],
            Self::Rejected => &[K_REASON],
            Self::DeliveryFailed | Self::DeliveryExpired => &[K_MSG, K_RECIPIENT],
            Self::LocalAccess => &[K_MSG],
            Self::WitnessCosigned | Self::ForkDetected => &[K_SENDER],
            Self::UserAction => &[K_DETAIL],
            _ => &[],
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A salted commitment `SHA-256(salt ‖ content)` binding content the log
/// must not reveal. The 32-byte salt is random per commitment and kept by
/// the node; revealing salt and content later lets an auditor check the
/// commitment. Never a bare hash of plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commitment([u8; 32]);

/// The secret salt of a [`Commitment`]. Keep it in the node's store; it is
/// not `Clone` so that it is not copied around by accident.
pub struct CommitmentSalt([u8; 32]);

impl Drop for CommitmentSalt {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.0.zeroize();
    }
}

impl fmt::Debug for CommitmentSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommitmentSalt(..)")
    }
}

impl CommitmentSalt {
    /// A fresh random salt.
    pub fn generate(rng: &dyn ring::rand::SecureRandom) -> Result<Self, EntryError> {
        let mut s = [0u8; 32];
        rng.fill(&mut s).map_err(|_| EntryError::Random)?;
        Ok(Self(s))
    }

    /// Restores a stored salt.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw salt, for storing it.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Commitment {
    /// Commits to `content` under `salt`: `SHA-256(salt ‖ content)`.
    pub fn commit(salt: &CommitmentSalt, content: &[u8]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&salt.0);
        ctx.update(content);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    /// Checks an opening of the commitment (constant time).
    pub fn verify(&self, salt: &CommitmentSalt, content: &[u8]) -> bool {
        let other = Self::commit(salt, content);
        ring_ct_eq(&self.0, &other.0)
    }

    /// Wraps 32 bytes read from an entry.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commitment({})", crate::hex_encode(&self.0))
    }
}

fn ring_ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One audit-log entry. Contains no message content: identifiers, hashes
/// and salted commitments only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log (key 1). `isnad_log::Log::append` overwrites it
    /// with the index it assigns; verifiers check `seq == index`.
    pub seq: u64,
    /// Time of the event, Unix time in **milliseconds** (key 2).
    pub time_ms: u64,
    /// What happened (key 3).
    pub event: EventType,
    /// The message concerned (key 4).
    pub message_id: Option<MessageId>,
    /// Sending agency (key 5).
    pub sender: Option<AgencyId>,
    /// Receiving agency (key 6).
    pub recipient: Option<AgencyId>,
    /// SHA-256 of the envelope bytes as sent or received (key 7).
    pub envelope_sha256: Option<[u8; 32]>,
    /// For receipts: the peer's log index for the same exchange (key 8).
    pub peer_index: Option<u64>,
    /// Salted commitment to content that must be bound but not revealed (key 9).
    pub commitment: Option<Commitment>,
    /// Reason, e.g. for `rejected` (key 10). At most [`MAX_TEXT_LEN`] bytes.
    pub reason: Option<String>,
    /// Small free-form detail (key 11): at most [`MAX_DETAIL_PAIRS`] pairs,
    /// keys at most [`MAX_DETAIL_KEY_LEN`] bytes, values at most
    /// [`MAX_TEXT_LEN`] bytes. Omitted from the encoding when empty.
    pub detail: BTreeMap<String, String>,
}

/// Why bytes are not a valid entry, or an entry cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    // --- The bytes are not deterministic CBOR of the right shape ---
    /// The entry is [`MAX_ENTRY_LEN`] bytes or more... or empty.
    #[error("entry is {len} bytes; entries must be 1 to {MAX_ENTRY_LEN} bytes")]
    Size {
        /// The length found.
        len: usize,
    },
    /// The CBOR ends early.
    #[error("entry CBOR is truncated at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// Bytes follow the entry map.
    #[error("{count} trailing bytes after the entry")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Not the deterministic encoding: a longer-than-needed integer or
    /// length, an indefinite length, or a reserved additional-info value.
    #[error("entry CBOR is not in deterministic form at byte {offset}")]
    NotDeterministic {
        /// Offset of the offending item.
        offset: usize,
    },
    /// Map keys are not in strictly increasing bytewise order (or repeat).
    #[error("map keys out of order or repeated at byte {offset}")]
    KeyOrder {
        /// Offset of the offending key.
        offset: usize,
    },
    /// An item has the wrong CBOR type or length for its key.
    #[error("wrong type or size for {field}")]
    WrongType {
        /// Which field.
        field: &'static str,
    },
    /// A key outside the schema.
    #[error("unknown entry key {key}")]
    UnknownKey {
        /// The key.
        key: u64,
    },
    /// The version (key 0) is not [`ENTRY_VERSION`].
    #[error(
        "entry version {version} is not supported (this verifier knows version {ENTRY_VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// The event type is not one this schema version knows; upgrade the verifier.
    #[error("unknown event type {0:?}; a newer verifier may know it")]
    UnknownEventType(String),
    /// A field the event type requires is missing.
    #[error("event {event} requires field {field}")]
    MissingField {
        /// The event type.
        event: EventType,
        /// The missing field.
        field: &'static str,
    },
    /// An agency id is not valid.
    #[error("invalid agency id in {field}")]
    AgencyId {
        /// Which field.
        field: &'static str,
    },
    /// A text value, detail map or the entry exceeds its limit.
    #[error("{field} exceeds its size limit")]
    TooLong {
        /// Which field.
        field: &'static str,
    },

    /// The `attachments` detail is not a list of attachments
    /// (spec/audit-log.md §2.5).
    #[error("detail attachments: {0}")]
    Attachments(#[from] AttachmentsDetailError),

    // --- The environment failed ---
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

const K_VERSION: u64 = 0;
const K_SEQ: u64 = 1;
const K_TIME: u64 = 2;
const K_EVENT: u64 = 3;
const K_MSG: u64 = 4;
const K_SENDER: u64 = 5;
const K_RECIPIENT: u64 = 6;
const K_ENVELOPE: u64 = 7;
const K_PEER: u64 = 8;
const K_COMMITMENT: u64 = 9;
const K_REASON: u64 = 10;
const K_DETAIL: u64 = 11;

fn field_name(key: u64) -> &'static str {
    match key {
        K_VERSION => "version",
        K_SEQ => "seq",
        K_TIME => "time",
        K_EVENT => "event",
        K_MSG => "message-id",
        K_SENDER => "sender",
        K_RECIPIENT => "recipient",
        K_ENVELOPE => "envelope-sha256",
        K_PEER => "peer-index",
        K_COMMITMENT => "commitment",
        K_REASON => "reason",
        K_DETAIL => "detail",
        _ => "unknown",
    }
}

impl Entry {
    /// A new entry with only the mandatory fields set; `seq` is 0 until the
    /// log assigns it.
    pub fn new(event: EventType, time_ms: u64) -> Self {
        Self {
            seq: 0,
            time_ms,
            event,
            message_id: None,
            sender: None,
            recipient: None,
            envelope_sha256: None,
            peer_index: None,
            commitment: None,
            reason: None,
            detail: BTreeMap::new(),
        }
    }

    /// Encodes the entry in deterministic CBOR, checking the schema.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        let mut out = Vec::with_capacity(160);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the deterministic encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EntryError> {
        self.check_schema()?;
        let start = out.len();
        let mut pairs = 4u64;
        pairs += u64::from(self.message_id.is_some())
            + u64::from(self.sender.is_some())
            + u64::from(self.recipient.is_some())
            + u64::from(self.envelope_sha256.is_some())
            + u64::from(self.peer_index.is_some())
            + u64::from(self.commitment.is_some())
            + u64::from(self.reason.is_some())
            + u64::from(!self.detail.is_empty());
        head(out, MAJOR_MAP, pairs);
        head(out, MAJOR_UINT, K_VERSION);
        head(out, MAJOR_UINT, ENTRY_VERSION);
        head(out, MAJOR_UINT, K_SEQ);
        head(out, MAJOR_UINT, self.seq);
        head(out, MAJOR_UINT, K_TIME);
        head(out, MAJOR_UINT, self.time_ms);
        head(out, MAJOR_UINT, K_EVENT);
        text(out, self.event.as_str());
        if let Some(m) = &self.message_id {
            head(out, MAJOR_UINT, K_MSG);
            bytes(out, m.as_bytes());
        }
        if let Some(a) = &self.sender {
            head(out, MAJOR_UINT, K_SENDER);
            text(out, a.as_str());
        }
        if let Some(a) = &self.recipient {
            head(out, MAJOR_UINT, K_RECIPIENT);
            text(out, a.as_str());
        }
        if let Some(h) = &self.envelope_sha256 {
            head(out, MAJOR_UINT, K_ENVELOPE);
            bytes(out, h);
        }
        if let Some(p) = self.peer_index {
            head(out, MAJOR_UINT, K_PEER);
            head(out, MAJOR_UINT, p);
        }
        if let Some(c) = &self.commitment {
            head(out, MAJOR_UINT, K_COMMITMENT);
            bytes(out, c.as_bytes());
        }
        if let Some(r) = &self.reason {
            head(out, MAJOR_UINT, K_REASON);
            text(out, r);
        }
        if !self.detail.is_empty() {
            head(out, MAJOR_UINT, K_DETAIL);
            head(out, MAJOR_MAP, self.detail.len() as u64);
            // Deterministic order is bytewise order of the *encoded* keys,
            // i.e. shorter keys first, then lexicographic.
            let mut keys: Vec<&String> = self.detail.keys().collect();
            keys.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
            for k in keys {
                text(out, k);
                text(out, &self.detail[k]);
            }
        }
        let len = out.len() - start;
        if len > MAX_ENTRY_LEN {
            out.truncate(start);
            return Err(EntryError::Size { len });
        }
        Ok(())
    }

    fn check_schema(&self) -> Result<(), EntryError> {
        for &key in self.event.required() {
            let present = match key {
                K_MSG => self.message_id.is_some(),
                K_SENDER => self.sender.is_some(),
                K_RECIPIENT => self.recipient.is_some(),
                K_ENVELOPE => self.envelope_sha256.is_some(),
                K_PEER => self.peer_index.is_some(),
                K_REASON => self.reason.is_some(),
                K_DETAIL => !self.detail.is_empty(),
                _ => true,
            };
            if !present {
                return Err(EntryError::MissingField {
                    event: self.event,
                    field: field_name(key),
                });
            }
        }
        if self.reason.as_ref().is_some_and(|r| r.len() > MAX_TEXT_LEN) {
            return Err(EntryError::TooLong { field: "reason" });
        }
        if self.detail.len() > MAX_DETAIL_PAIRS
            || self
                .detail
                .iter()
                .any(|(k, v)| k.len() > MAX_DETAIL_KEY_LEN || v.len() > MAX_TEXT_LEN)
        {
            return Err(EntryError::TooLong { field: "detail" });
        }
        self.attachments()?;
        Ok(())
    }

    /// The attachments this entry records (the `attachments` detail,
    /// spec/audit-log.md §2.5); empty when it records none.
    pub fn attachments(&self) -> Result<Vec<LoggedAttachment>, AttachmentsDetailError> {
        match self.detail.get(ATTACHMENTS_DETAIL_KEY) {
            Some(v) => crate::attachments::parse(v),
            None => Ok(Vec::new()),
        }
    }

    /// Records `list` in the `attachments` detail (nothing for an empty list).
    pub fn set_attachments(&mut self, list: &[LoggedAttachment]) {
        match crate::attachments::format(list) {
            Some(v) => self.detail.insert(ATTACHMENTS_DETAIL_KEY.to_owned(), v),
            None => self.detail.remove(ATTACHMENTS_DETAIL_KEY),
        };
    }

    /// Decodes and validates an entry. Accepts only the deterministic
    /// encoding of a schema-valid entry.
    pub fn decode(input: &[u8]) -> Result<Self, EntryError> {
        if input.is_empty() || input.len() > MAX_ENTRY_LEN {
            return Err(EntryError::Size { len: input.len() });
        }
        let mut r = Reader { buf: input, pos: 0 };
        let (major, pairs) = r.head()?;
        if major != MAJOR_MAP {
            return Err(EntryError::WrongType { field: "entry" });
        }
        // Each pair is at least 2 bytes: bound the count before looping.
        if pairs > 12 || pairs > (input.len() as u64) / 2 {
            return Err(EntryError::WrongType { field: "entry" });
        }
        let mut entry = Entry::new(EventType::Sent, 0);
        let mut last_key: Option<u64> = None;
        let mut seen = [false; 12];
        for _ in 0..pairs {
            let key_at = r.pos;
            let (km, key) = r.head()?;
            if km != MAJOR_UINT {
                return Err(EntryError::WrongType { field: "entry key" });
            }
            if last_key.is_some_and(|l| key <= l) {
                return Err(EntryError::KeyOrder { offset: key_at });
            }
            last_key = Some(key);
            if key > K_DETAIL {
                return Err(EntryError::UnknownKey { key });
            }
            seen[key as usize] = true;
            let field = field_name(key);
            match key {
                K_VERSION => {
                    let v = r.uint(field)?;
                    if v != ENTRY_VERSION {
                        return Err(EntryError::UnsupportedVersion { version: v });
                    }
                }
                K_SEQ => entry.seq = r.uint(field)?,
                K_TIME => entry.time_ms = r.uint(field)?,
                K_EVENT => {
                    let s = r.text(field)?;
                    entry.event = EventType::from_name(s)
                        .ok_or_else(|| EntryError::UnknownEventType(s.to_owned()))?;
                }
                K_MSG => {
                    let b = r.fixed_bytes::<16>(field)?;
                    entry.message_id = Some(MessageId::from_bytes(b));
                }
                K_SENDER | K_RECIPIENT => {
                    let s = r.text(field)?;
                    let a = AgencyId::new(s).map_err(|_| EntryError::AgencyId { field })?;
                    if key == K_SENDER {
                        entry.sender = Some(a);
                    } else {
                        entry.recipient = Some(a);
                    }
                }
                K_ENVELOPE => entry.envelope_sha256 = Some(r.fixed_bytes::<32>(field)?),
                K_PEER => entry.peer_index = Some(r.uint(field)?),
                K_COMMITMENT => {
                    entry.commitment = Some(Commitment(r.fixed_bytes::<32>(field)?));
                }
                K_REASON => {
                    let s = r.text(field)?;
                    if s.len() > MAX_TEXT_LEN {
                        return Err(EntryError::TooLong { field });
                    }
                    entry.reason = Some(s.to_owned());
                }
                _ => {
                    // K_DETAIL
                    let (m, n) = r.head()?;
                    if m != MAJOR_MAP {
                        return Err(EntryError::WrongType { field });
                    }
                    if n == 0 || n > MAX_DETAIL_PAIRS as u64 {
                        return Err(EntryError::TooLong { field });
                    }
                    let mut last: Option<&[u8]> = None;
                    for _ in 0..n {
                        let k_at = r.pos;
                        let k = r.text("detail key")?;
                        let encoded_key = &input[k_at..r.pos];
                        if last.is_some_and(|l| encoded_key <= l) {
                            return Err(EntryError::KeyOrder { offset: k_at });
                        }
                        last = Some(encoded_key);
                        let v = r.text("detail value")?;
                        if k.len() > MAX_DETAIL_KEY_LEN || v.len() > MAX_TEXT_LEN {
                            return Err(EntryError::TooLong { field });
                        }
                        entry.detail.insert(k.to_owned(), v.to_owned());
                    }
                }
            }
        }
        if r.pos != input.len() {
            return Err(EntryError::TrailingBytes {
                count: input.len() - r.pos,
            });
        }
        for key in [K_VERSION, K_SEQ, K_TIME, K_EVENT] {
            if !seen[key as usize] {
                return Err(EntryError::MissingField {
                    event: entry.event,
                    field: field_name(key),
                });
            }
        }
        entry.check_schema()?;
        Ok(entry)
    }
}

const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_MAP: u8 = 5;

fn head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        out.push(m | v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[m | 24, v as u8]);
    } else if v <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EntryError::Truncated { offset: self.pos })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads an item head: (major type, argument), enforcing shortest form.
    fn head(&mut self) -> Result<(u8, u64), EntryError> {
        let at = self.pos;
        let b = self.take(1)?[0];
        let major = b >> 5;
        let ai = b & 0x1f;
        let v = match ai {
            0..=23 => u64::from(ai),
            24 => {
                let v = u64::from(self.take(1)?[0]);
                if v < 24 {
                    return Err(EntryError::NotDeterministic { offset: at });
                }
                v
            }
            25 => {
                let s = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([s[0], s[1]]));
                if v <= 0xff {
                    return Err(EntryError::NotDeterministic { offset: at });
                }
                v
            }
            26 => {
                let s = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
                if v <= 0xffff {
                    return Err(EntryError::NotDeterministic { offset: at });
                }
                v
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                let v = u64::from_be_bytes(a);
                if v <= 0xffff_ffff {
                    return Err(EntryError::NotDeterministic { offset: at });
                }
                v
            }
            // 28–30 reserved, 31 indefinite length or break.
            _ => return Err(EntryError::NotDeterministic { offset: at }),
        };
        Ok((major, v))
    }

    fn uint(&mut self, field: &'static str) -> Result<u64, EntryError> {
        match self.head()? {
            (MAJOR_UINT, v) => Ok(v),
            _ => Err(EntryError::WrongType { field }),
        }
    }

    fn text(&mut self, field: &'static str) -> Result<&'a str, EntryError> {
        let (m, len) = self.head()?;
        if m != MAJOR_TEXT {
            return Err(EntryError::WrongType { field });
        }
        let len = usize::try_from(len).map_err(|_| EntryError::Truncated { offset: self.pos })?;
        let b = self.take(len)?;
        std::str::from_utf8(b).map_err(|_| EntryError::WrongType { field })
    }

    fn fixed_bytes<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EntryError> {
        let (m, len) = self.head()?;
        if m != MAJOR_BYTES || len != N as u64 {
            return Err(EntryError::WrongType { field });
        }
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;

    pub(crate) fn sample() -> Entry {
        let mut e = Entry::new(EventType::Sent, 1_790_000_000_123);
        e.seq = 7;
        e.message_id = Some(MessageId::from_bytes([0x11; 16]));
        e.sender = AgencyId::new("iq.moi.ahtd").ok();
        e.recipient = AgencyId::new("fr.mj.bepi").ok();
        e.envelope_sha256 = Some([0xab; 32]);
        e.detail.insert("zz".into(), "1".into());
        e.detail.insert("b".into(), "2".into());
        e.detail.insert("aaa".into(), "3".into());
        e
    }

    #[test]
    fn round_trip_and_deterministic_detail_order() {
        let e = sample();
        let enc = e.encode().unwrap();
        assert_eq!(Entry::decode(&enc).unwrap(), e);
        // "b" (0x61 0x62) < "zz" (0x62 ...) < "aaa" (0x63 ...).
        let pos = |s: &[u8]| enc.windows(s.len()).position(|w| w == s).unwrap();
        assert!(pos(b"\x61b") < pos(b"\x62zz"));
        assert!(pos(b"\x62zz") < pos(b"\x63aaa"));
    }

    #[test]
    fn user_action_needs_its_detail() {
        let mut e = Entry::new(EventType::UserAction, 1_790_000_000_123);
        assert!(matches!(
            e.encode(),
            Err(EntryError::MissingField {
                field: "detail",
                ..
            })
        ));
        e.detail.insert("user".into(), "u-0123456789abcdef".into());
        e.detail.insert("role".into(), "officer".into());
        e.detail.insert("action".into(), "login".into());
        let enc = e.encode().unwrap();
        assert_eq!(Entry::decode(&enc).unwrap(), e);
        assert_eq!(
            EventType::from_name("user-action"),
            Some(EventType::UserAction)
        );
    }

    #[test]
    fn rejects_non_canonical_forms() {
        let enc = sample().encode().unwrap();
        // Trailing byte.
        let mut t = enc.clone();
        t.push(0);
        assert!(matches!(
            Entry::decode(&t),
            Err(EntryError::TrailingBytes { count: 1 })
        ));
        // Truncated.
        assert!(matches!(
            Entry::decode(&enc[..enc.len() - 1]),
            Err(EntryError::Truncated { .. })
        ));
        // Non-shortest integer for key 0: 0x18 0x00.
        let mut n = vec![enc[0], 0x18, 0x00];
        n.extend_from_slice(&enc[2..]);
        assert!(matches!(
            Entry::decode(&n),
            Err(EntryError::NotDeterministic { offset: 1 })
        ));
        // Indefinite-length map.
        let mut i = enc.clone();
        i[0] = 0xbf;
        assert!(matches!(
            Entry::decode(&i),
            Err(EntryError::NotDeterministic { offset: 0 })
        ));
        // Every single-bit flip is either rejected or decodes to something
        // that re-encodes to exactly the flipped bytes (no malleability).
        for byte in 0..enc.len() {
            for bit in 0..8 {
                let mut f = enc.clone();
                f[byte] ^= 1 << bit;
                if let Ok(d) = Entry::decode(&f) {
                    assert_eq!(d.encode().unwrap(), f, "byte {byte} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn rejects_unknown_event_and_missing_fields() {
        let mut e = Entry::new(EventType::Rejected, 5);
        assert!(matches!(
            e.encode(),
            Err(EntryError::MissingField {
                field: "reason",
                ..
            })
        ));
        e.reason = Some("bad signature".into());
        let enc = e.encode().unwrap();
        let at = enc.windows(8).position(|w| w == b"rejected").unwrap();
        let mut s = enc.clone();
        s[at + 7] = b'x';
        assert_eq!(
            Entry::decode(&s),
            Err(EntryError::UnknownEventType("rejectex".into()))
        );
    }

    #[test]
    fn size_limit() {
        let mut e = Entry::new(EventType::StatusChanged, 1);
        for i in 0..16 {
            e.detail.insert(format!("k{i}"), "v".repeat(1024));
        }
        assert!(e.encode().is_ok());
        assert!(Entry::decode(&vec![0xa0; MAX_ENTRY_LEN + 1]).is_err());
        assert!(Entry::decode(&[]).is_err());
    }

    #[test]
    fn commitment_is_salted() {
        let rng = ring::rand::SystemRandom::new();
        let s1 = CommitmentSalt::generate(&rng).unwrap();
        let s2 = CommitmentSalt::generate(&rng).unwrap();
        let c = Commitment::commit(&s1, b"request text");
        assert!(c.verify(&s1, b"request text"));
        assert!(!c.verify(&s2, b"request text"));
        assert!(!c.verify(&s1, b"request texT"));
        assert_ne!(c, Commitment::commit(&s2, b"request text"));
    }
}
