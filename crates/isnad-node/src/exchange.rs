//! One direct exchange as data: the audit entries each side logs and the
//! receipt the recipient signs, as pure functions of their inputs (no
//! clock, no randomness, no I/O).
//!
//! ```text
//!  sender                                        recipient
//!  sent(i)        ── request frame (envelope) ──▶
//!                                                 received(j), receipt-sent(j+1, peer j)
//!                 ◀── response frame (receipt) ── receipt names j
//!  receipt-received(i', peer j)
//! ```
//!
//! The node's outbound and inbound paths build their entries and receipts
//! here, and the exchange vector in `spec/vectors/exchange/` is generated
//! from these functions with fixed keys, randomness and time
//! (`crates/isnad-node/tests/vectors.rs`), so the vector is what the node
//! does. Entries of relayed messages add their relay details on top
//! (spec/relay.md §9).

use isnad_envelope::{AgencyId, Body, Digest, Header, Kind, Limits, Message, MessageId, Receipt};
use isnad_log::{Entry, EventType};

/// The sender's `sent` entry for a message it committed to its outbox.
pub fn sent(
    me: &AgencyId,
    id: MessageId,
    recipient: Option<AgencyId>,
    kind: &str,
    envelope_sha256: [u8; 32],
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::Sent, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = recipient;
    e.envelope_sha256 = Some(envelope_sha256);
    e.detail.insert("kind".into(), kind.to_owned());
    e
}

/// The recipient's `received` entry for an accepted message (`h`, its
/// envelope's SHA-256 `digest`).
pub fn received(h: &Header, kind: Kind, digest: Digest, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::Received, time_ms);
    e.message_id = Some(h.id);
    e.sender = Some(h.sender.clone());
    e.recipient = Some(h.recipient.clone());
    e.envelope_sha256 = Some(digest.0);
    e.detail.insert("kind".into(), kind.as_str().to_owned());
    e
}

/// The recipient's `receipt-sent` entry: the receipt for message `id`
/// (envelope `digest`) to `to`, acknowledging the entry at `peer_index`.
pub fn receipt_sent(
    me: &AgencyId,
    id: MessageId,
    to: AgencyId,
    digest: Digest,
    peer_index: u64,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::ReceiptSent, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = Some(to);
    e.envelope_sha256 = Some(digest.0);
    e.peer_index = Some(peer_index);
    e
}

/// The sender's `receipt-received` entry: `receipt` (its bytes) came back
/// for message `id`, naming the recipient's entry `peer_index`.
pub fn receipt_received(
    me: &AgencyId,
    id: MessageId,
    recipient: AgencyId,
    envelope_sha256: [u8; 32],
    peer_index: u64,
    receipt: &[u8],
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::ReceiptReceived, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = Some(recipient);
    e.envelope_sha256 = Some(envelope_sha256);
    e.peer_index = Some(peer_index);
    e.detail
        .insert("receipt-sha256".into(), Digest::sha256(receipt).to_hex());
    e
}

/// The `exp` of a receipt signed at `secs`: the longest lifetime a message
/// may have, so a receipt returned to a retry made before the message
/// expired still verifies (spec/protocol.md §4.4).
pub fn receipt_expires(secs: u64, limits: &Limits) -> u64 {
    secs.saturating_add(limits.max_lifetime_secs)
}

/// The receipt message `me` signs for a message from `to`: `body` says
/// which message, which envelope bytes (SHA-256), the log index and the
/// time (`received-at`, which is also the receipt's `iat`); `id` is the
/// receipt's own fresh id (spec/protocol.md §4.4).
pub fn receipt(
    me: &AgencyId,
    to: &AgencyId,
    id: MessageId,
    body: Receipt,
    limits: &Limits,
) -> Message {
    let secs = body.received_at;
    Message {
        header: Header {
            id,
            sender: me.clone(),
            recipient: to.clone(),
            created: secs,
            expires: receipt_expires(secs, limits),
        },
        body: Body::Receipt(body),
    }
}
