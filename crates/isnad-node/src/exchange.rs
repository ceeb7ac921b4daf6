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
//!
//! This module is where the node's outbound and inbound paths build their
//! audit entries, one function per row of spec/audit-log.md §2 as the node
//! uses it (`sent`, `received`, `receipt-sent`, `receipt-received`,
//! `rejected`, `delivery-failed`, `delivery-expired`, `purged`), and where the layout
//! of an acknowledgement batch is fixed ([`acknowledgements`],
//! [`ack_index`], [`tail_index`]): the inbound path derives the receipt's
//! log index and the indexes of the entries that follow from these
//! functions, not from its own arithmetic.

use isnad_attach::{AttachmentDescriptor, AttachmentMeta};
use isnad_envelope::{
    AgencyId, Body, Digest, ErrorCode, Header, KeyId, Kind, Limits, Message, MessageId, Receipt,
    ReceivedAttachment,
};
use isnad_log::{Entry, EventType, LoggedAttachment};

use crate::store::OutboxRecord;

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

/// The detail key of an entry's attachments (spec/audit-log.md §2.5).
const ATTACHMENTS: &str = isnad_log::attachments::ATTACHMENTS_DETAIL_KEY;

/// What the log records of the attachments a message body lists
/// (spec/audit-log.md §2.5): ciphertext root and size, in body order. Set
/// on a `sent` or `received` entry with [`Entry::set_attachments`]; a
/// `receipt-sent` copies them from the entry it acknowledges.
pub fn logged_descriptors(list: &[AttachmentDescriptor]) -> Vec<LoggedAttachment> {
    logged_metas(
        &list
            .iter()
            .map(AttachmentDescriptor::meta)
            .collect::<Vec<_>>(),
    )
}

/// What the log records of the relay-visible metadata of a hop.
pub fn logged_metas(list: &[AttachmentMeta]) -> Vec<LoggedAttachment> {
    list.iter()
        .map(|m| LoggedAttachment {
            ciphertext_root: *m.ciphertext_root().as_bytes(),
            ciphertext_size: m.layout().ciphertext_size(),
        })
        .collect()
}

/// What the log records of the attachments a receipt acknowledges (the
/// sender's `receipt-received`).
pub fn logged_receipt(list: &[ReceivedAttachment]) -> Vec<LoggedAttachment> {
    list.iter()
        .map(|r| LoggedAttachment {
            ciphertext_root: r.ciphertext_root.0,
            ciphertext_size: r.ciphertext_size,
        })
        .collect()
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

/// The `received` entry for a relay hop envelope (kind `relay`; the inner
/// kind in `inner-kind`; the hop's attachment metadata in `attachments`).
pub fn hop_received(
    id: MessageId,
    from: &AgencyId,
    me: &AgencyId,
    digest: Digest,
    inner_kind: Kind,
    attachments: &[AttachmentMeta],
    ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::Received, ms);
    e.set_attachments(&logged_metas(attachments));
    e.message_id = Some(id);
    e.sender = Some(from.clone());
    e.recipient = Some(me.clone());
    e.envelope_sha256 = Some(digest.0);
    e.detail
        .insert("kind".into(), Kind::Relay.as_str().to_owned());
    e.detail
        .insert("inner-kind".into(), inner_kind.as_str().to_owned());
    e
}

/// For a relay hop record: marks its own `sent` entry as a hop (kind
/// `relay`, the inner kind in `inner-kind`) and, if this node originated
/// the message and it is not an end-to-end receipt, returns the end-to-end
/// `sent` entry (to the final recipient, over the inner envelope).
pub fn end_to_end_sent(e: &mut Entry, rec: &OutboxRecord, me: &AgencyId) -> Option<Entry> {
    let r = rec.relay.as_ref()?;
    e.detail
        .insert("kind".into(), Kind::Relay.as_str().to_owned());
    e.detail
        .insert("inner-kind".into(), rec.kind.as_str().to_owned());
    if r.route.first() != Some(me) || rec.kind == Kind::Receipt {
        return None;
    }
    let mut end = e.clone();
    end.recipient = r.route.last().cloned();
    end.envelope_sha256 = Some(r.inner_digest);
    end.detail.clear();
    end.detail
        .insert("kind".into(), rec.kind.as_str().to_owned());
    end.detail.insert("via".into(), r.route_text());
    Some(end)
}

/// A central authority's `relayed` entry: it checked and forwarded message
/// `id` from `originator` to `last` (inner envelope `inner_sha256`, kind
/// `inner_kind`), received from `hops[0]` as the hop envelope `hop_sha256[0]`
/// and sent on to `hops[1]` as `hop_sha256[1]`, with the attachment metadata
/// it checked and forwarded (spec/relay.md §6, §9).
#[allow(clippy::too_many_arguments)] // one per entry key
pub fn relayed(
    id: MessageId,
    originator: AgencyId,
    last: AgencyId,
    inner_sha256: Digest,
    inner_kind: Kind,
    hops: [&AgencyId; 2],
    hop_sha256: [Digest; 2],
    attachments: &[AttachmentMeta],
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::Relayed, time_ms);
    e.set_attachments(&logged_metas(attachments));
    e.message_id = Some(id);
    e.sender = Some(originator);
    e.recipient = Some(last);
    e.envelope_sha256 = Some(inner_sha256.0);
    e.detail
        .insert("kind".into(), inner_kind.as_str().to_owned());
    e.detail.insert("previous-hop".into(), hops[0].to_string());
    e.detail.insert("next-hop".into(), hops[1].to_string());
    e.detail.insert("hop-sha256".into(), hop_sha256[0].to_hex());
    e.detail
        .insert("forward-sha256".into(), hop_sha256[1].to_hex());
    e
}

/// The originator's `receipt-received` entry for the end-to-end receipt of
/// its relayed message `id` (inner envelope `inner_sha256`) signed by the
/// final recipient `signer`, naming its entry `peer_index`; `receipt_sha256`
/// is the SHA-256 of the receipt (spec/relay.md §8).
pub fn end_to_end_receipt_received(
    me: &AgencyId,
    id: MessageId,
    signer: AgencyId,
    inner_sha256: Digest,
    peer_index: u64,
    receipt_sha256: Digest,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::ReceiptReceived, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = Some(signer);
    e.envelope_sha256 = Some(inner_sha256.0);
    e.peer_index = Some(peer_index);
    e.detail.insert("end-to-end".into(), "true".into());
    e.detail
        .insert("receipt-sha256".into(), receipt_sha256.to_hex());
    e
}

/// What a `purged` entry says about the message whose content went
/// (spec/audit-log.md §2.3, "Retention").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedMessage {
    /// The message id.
    pub id: MessageId,
    /// Its sender (this node for an outgoing message).
    pub sender: AgencyId,
    /// Its recipient (this node for an incoming message).
    pub recipient: AgencyId,
    /// SHA-256 of the envelope deleted.
    pub envelope_sha256: [u8; 32],
    /// Its kind.
    pub kind: Kind,
    /// `out` (an outbox record) or `in` (an inbox record).
    pub direction: &'static str,
    /// Index of this node's `sent` or `received` entry for the envelope.
    pub logged_at: Option<u64>,
    /// For a relayed message: SHA-256 of the inner (end-to-end) envelope.
    pub inner_sha256: Option<[u8; 32]>,
    /// The retention rule that applied, e.g. `kind mla-request`.
    pub rule: String,
    /// Its period, seconds.
    pub period_secs: u64,
}

/// The `purged` entry: the content of message `m` was deleted from this
/// node's state at `time_ms`. It holds digests and metadata only.
pub fn purged(m: &PurgedMessage, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::Purged, time_ms);
    e.message_id = Some(m.id);
    e.sender = Some(m.sender.clone());
    e.recipient = Some(m.recipient.clone());
    e.envelope_sha256 = Some(m.envelope_sha256);
    e.detail.insert("kind".into(), m.kind.as_str().to_owned());
    e.detail.insert("direction".into(), m.direction.to_owned());
    if let Some(i) = m.logged_at {
        e.detail.insert("logged-at".into(), i.to_string());
    }
    if let Some(d) = m.inner_sha256 {
        e.detail.insert("inner-sha256".into(), Digest(d).to_hex());
    }
    e.detail.insert("rule".into(), m.rule.clone());
    e.detail
        .insert("retention-secs".into(), m.period_secs.to_string());
    e
}

/// A witness's `witness-cosigned` entry: it cosigned `peer`'s checkpoint
/// of log `origin` at `size` with root `root_b64` (spec/witness.md).
pub fn witness_cosigned(
    peer: &AgencyId,
    origin: &str,
    size: u64,
    root_b64: &str,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::WitnessCosigned, time_ms);
    e.sender = Some(peer.clone());
    e.detail.insert("origin".into(), origin.to_owned());
    e.detail.insert("size".into(), size.to_string());
    e.detail.insert("root".into(), root_b64.to_owned());
    e
}

/// A witness's `fork-detected` entry: it refused `peer`'s checkpoint that
/// contradicts one it cosigned and kept the evidence in file `evidence`
/// (SHA-256 `evidence_sha256_hex`); `summary` says what contradicts what.
pub fn fork_detected(
    peer: &AgencyId,
    summary: String,
    evidence: String,
    evidence_sha256_hex: &str,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::ForkDetected, time_ms);
    e.sender = Some(peer.clone());
    e.reason = Some(summary);
    e.detail.insert("evidence".into(), evidence);
    e.detail
        .insert("evidence-sha256".into(), evidence_sha256_hex.to_owned());
    e
}

/// The `checkpoint-cosigned` entry: `witness`'s verified cosignature of
/// this log's checkpoint at `size` signed at `timestamp`.
pub fn checkpoint_cosigned(witness: &str, size: u64, timestamp: u64, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::CheckpointCosigned, time_ms);
    e.detail.insert("witness".into(), witness.to_owned());
    e.detail.insert("size".into(), size.to_string());
    e.detail.insert("timestamp".into(), timestamp.to_string());
    e
}

/// An audit entry to acknowledge with a `receipt-sent`, with the receipt's
/// addressee, message id and acknowledged digest.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The entry acknowledged (`received`, for a message or a relay hop).
    pub entry: Entry,
    /// The message id the receipt names.
    pub id: MessageId,
    /// Who gets the receipt (the TLS peer that handed the message over).
    pub to: AgencyId,
    /// SHA-256 of the bytes the receipt acknowledges.
    pub digest: Digest,
}

/// Entries per acknowledgement in a batch: the acknowledged entry and its
/// `receipt-sent`.
pub const ENTRIES_PER_ACK: u64 = 2;

/// The entries of one acknowledgement batch appended at index `first`: each
/// acknowledged entry followed by its `receipt-sent` (peer index: that
/// entry), then `tail` (spec/transport.md §4 step 6). The index of the
/// `n`-th acknowledged entry is [`ack_index`]`(first, n)`; `tail` starts at
/// [`tail_index`]`(first, acks.len())`.
pub fn acknowledgements(
    me: &AgencyId,
    acks: Vec<Ack>,
    tail: Vec<Entry>,
    first: u64,
    time_ms: u64,
) -> Vec<Entry> {
    let mut out = Vec::with_capacity(acks.len() * ENTRIES_PER_ACK as usize + tail.len());
    for (n, a) in acks.into_iter().enumerate() {
        let peer_index = ack_index(first, n);
        let mut receipt = receipt_sent(me, a.id, a.to, a.digest, peer_index, time_ms);
        // The receipt acknowledges the attachments the entry records.
        if let Some(list) = a.entry.detail.get(ATTACHMENTS) {
            receipt.detail.insert(ATTACHMENTS.into(), list.clone());
        }
        out.push(a.entry);
        out.push(receipt);
    }
    out.extend(tail);
    out
}

/// The log index of the `n`-th acknowledged entry of a batch appended at
/// `first` (what the `n`-th receipt names as its `log-index`).
pub fn ack_index(first: u64, n: usize) -> u64 {
    first.saturating_add((n as u64).saturating_mul(ENTRIES_PER_ACK))
}

/// The log index of the first `tail` entry of a batch of `acks`
/// acknowledgements appended at `first`.
pub fn tail_index(first: u64, acks: usize) -> u64 {
    ack_index(first, acks)
}

/// The sender's `delivery-expired` entry: message `id` (envelope
/// `envelope_sha256`) to `recipient` expired undelivered; `reason` is the
/// last error seen, if any.
pub fn delivery_expired(
    me: &AgencyId,
    id: MessageId,
    recipient: AgencyId,
    envelope_sha256: [u8; 32],
    reason: Option<String>,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::DeliveryExpired, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = Some(recipient);
    e.envelope_sha256 = Some(envelope_sha256);
    e.reason = reason;
    e
}

/// The originator's `delivery-expired` entry for a relayed message that
/// expired without its end-to-end receipt (spec/relay.md §8); `route` is
/// the route, originator first.
pub fn end_to_end_missing(
    me: &AgencyId,
    id: MessageId,
    route: &[AgencyId],
    inner_sha256: [u8; 32],
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::DeliveryExpired, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = route.last().cloned();
    e.envelope_sha256 = Some(inner_sha256);
    e.reason = Some("no end-to-end receipt".into());
    e.detail.insert("end-to-end".into(), "true".into());
    let via: Vec<&str> = route.iter().map(AgencyId::as_str).collect();
    e.detail.insert("via".into(), via.join(" "));
    e
}

/// The sender's `delivery-failed` entry: the recipient refused message
/// `id` with the final error `code`.
pub fn delivery_failed(
    me: &AgencyId,
    id: MessageId,
    recipient: AgencyId,
    envelope_sha256: [u8; 32],
    code: ErrorCode,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::DeliveryFailed, time_ms);
    e.message_id = Some(id);
    e.sender = Some(me.clone());
    e.recipient = Some(recipient);
    e.envelope_sha256 = Some(envelope_sha256);
    e.reason = Some(code.as_str().to_owned());
    e
}

/// The sender's `delivery-failed` entry (reason `replayed`) for a valid
/// receipt that acknowledges other envelope bytes under this message id
/// (spec/transport.md §6): `receipt` is its bytes, `acknowledged` the
/// digest it names, `peer_index` its log index.
#[allow(clippy::too_many_arguments)] // one per entry key
pub fn delivery_failed_other_bytes(
    me: &AgencyId,
    id: MessageId,
    recipient: AgencyId,
    envelope_sha256: [u8; 32],
    peer_index: u64,
    receipt: &[u8],
    acknowledged: Digest,
    time_ms: u64,
) -> Entry {
    let mut e = delivery_failed(
        me,
        id,
        recipient,
        envelope_sha256,
        ErrorCode::Replayed,
        time_ms,
    );
    e.peer_index = Some(peer_index);
    e.detail
        .insert("receipt-sha256".into(), Digest::sha256(receipt).to_hex());
    e.detail
        .insert("acknowledged-sha256".into(), acknowledged.to_hex());
    e
}

/// A `rejected` entry: something `peer` sent to `me` was refused with
/// `code` at `stage` (`digest`: SHA-256 of the refused envelope, if read).
pub fn rejected(
    peer: &AgencyId,
    me: &AgencyId,
    code: ErrorCode,
    stage: &str,
    digest: Option<Digest>,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::Rejected, time_ms);
    e.sender = Some(peer.clone());
    e.recipient = Some(me.clone());
    e.envelope_sha256 = digest.map(|d| d.0);
    e.reason = Some(code.as_str().to_owned());
    e.detail.insert("stage".into(), stage.to_owned());
    e
}

/// A `rejected` entry for a message the workflow refused (stage
/// `workflow`): `refusal` names the rule, `detail` says why (clipped by the
/// caller).
pub fn workflow_rejected(
    h: &Header,
    code: ErrorCode,
    refusal: &str,
    detail: String,
    digest: [u8; 32],
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::Rejected, time_ms);
    e.message_id = Some(h.id);
    e.sender = Some(h.sender.clone());
    e.recipient = Some(h.recipient.clone());
    e.envelope_sha256 = Some(digest);
    e.reason = Some(code.as_str().to_owned());
    e.detail.insert("stage".into(), "workflow".into());
    e.detail.insert("refusal".into(), refusal.to_owned());
    e.detail.insert("detail".into(), detail);
    e
}

/// A `status-changed` entry of a request or share (`subject`:
/// `mla-request` or `intel-share`); the caller adds the subject's details
/// (crate::workflow's plan).
pub fn status_changed(
    subject: &str,
    message_id: Option<MessageId>,
    sender: &AgencyId,
    recipient: &AgencyId,
    reason: Option<String>,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::StatusChanged, time_ms);
    e.message_id = message_id;
    e.sender = Some(sender.clone());
    e.recipient = Some(recipient.clone());
    e.reason = reason;
    e.detail.insert("subject".into(), subject.to_owned());
    e
}

/// The `user-action` entry of a person's action in the web console
/// (spec/audit-log.md §2.3): pseudonymous user id, role and action in
/// `detail`, nothing else.
pub fn user_action(user: &str, role: &str, action: &str, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::UserAction, time_ms);
    e.detail.insert("user".into(), user.into());
    e.detail.insert("role".into(), role.into());
    e.detail.insert("action".into(), action.into());
    e
}

/// A `directory-changed` entry: `country`'s directory accepted at
/// `version`, with `changes` key changes (each its own entry).
pub fn directory_changed(country: &str, version: u64, changes: usize, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::DirectoryChanged, time_ms);
    e.detail.insert("country".into(), country.to_owned());
    e.detail.insert("version".into(), version.to_string());
    e.detail.insert("changes".into(), changes.to_string());
    e
}

/// A `key-rotated` entry: `agency`'s key `kid` is valid until `until`.
pub fn key_rotated(agency: &AgencyId, kid: &KeyId, until: u64, time_ms: u64) -> Entry {
    let mut e = Entry::new(EventType::KeyRotated, time_ms);
    e.sender = Some(agency.clone());
    e.detail.insert("kid".into(), kid.to_hex());
    e.detail.insert("valid-until".into(), until.to_string());
    e
}

/// A `key-revoked` entry: `agency`'s key `kid` is revoked as of `at`.
pub fn key_revoked(
    agency: &AgencyId,
    kid: &KeyId,
    at: u64,
    reason: Option<String>,
    time_ms: u64,
) -> Entry {
    let mut e = Entry::new(EventType::KeyRevoked, time_ms);
    e.sender = Some(agency.clone());
    e.reason = reason;
    e.detail.insert("kid".into(), kid.to_hex());
    e.detail.insert("revoked-at".into(), at.to_string());
    e
}

/// Stage of the `rejected` entry that withdraws a logged receipt
/// ([`receipt_withdrawn`]).
pub const WITHDRAWN_STAGE: &str = "inbox";

/// The recipient's `rejected` entry (reason `unavailable`, stage `inbox`)
/// saying that the receipt logged as `receipt-sent` at
/// `receipt_sent_index` was never sent: the inbox write that must precede
/// it failed, or found the message changed or stored meanwhile, after the
/// `received`/`receipt-sent` pair was logged (spec/transport.md §7). Key 8
/// names the withdrawn `receipt-sent` entry; `why` says what failed.
pub fn receipt_withdrawn(
    peer: &AgencyId,
    me: &AgencyId,
    id: MessageId,
    digest: Digest,
    receipt_sent_index: u64,
    why: &str,
    time_ms: u64,
) -> Entry {
    let mut e = rejected(
        peer,
        me,
        ErrorCode::Unavailable,
        WITHDRAWN_STAGE,
        Some(digest),
        time_ms,
    );
    e.message_id = Some(id);
    e.peer_index = Some(receipt_sent_index);
    e.detail.insert("withdrawn".into(), "receipt-sent".into());
    e.detail.insert("why".into(), why.to_owned());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).expect("valid agency")
    }

    fn ack(n: u8, to: &AgencyId) -> Ack {
        Ack {
            entry: Entry::new(EventType::Received, 1),
            id: MessageId::from_bytes([n; 16]),
            to: to.clone(),
            digest: Digest([n; 32]),
        }
    }

    #[test]
    fn an_acknowledgement_batch_lays_out_pairs_then_the_tail() {
        let (me, peer) = (agency("xx.rcpt"), agency("yy.send"));
        let tail = vec![Entry::new(EventType::StatusChanged, 1)];
        for first in [0u64, 7, 1000] {
            for acks in 1..=3usize {
                let entries = acknowledgements(
                    &me,
                    (0..acks).map(|n| ack(n as u8, &peer)).collect(),
                    tail.clone(),
                    first,
                    5,
                );
                assert_eq!(entries.len(), acks * 2 + 1);
                for n in 0..acks {
                    let at = (ack_index(first, n) - first) as usize;
                    assert_eq!(entries[at].event, EventType::Received);
                    let sent = &entries[at + 1];
                    assert_eq!(sent.event, EventType::ReceiptSent);
                    assert_eq!(sent.peer_index, Some(ack_index(first, n)));
                    assert_eq!(sent.message_id, Some(MessageId::from_bytes([n as u8; 16])));
                }
                let t = (tail_index(first, acks) - first) as usize;
                assert_eq!(entries[t].event, EventType::StatusChanged);
                assert_eq!(t, entries.len() - 1);
            }
        }
        // The layout the inbound path relied on as `index + 2`.
        assert_eq!(tail_index(10, 1), 12);
        assert_eq!(ack_index(10, 1), 12);
        assert_eq!(tail_index(10, 2), 14);
    }

    #[test]
    fn a_withdrawal_names_the_receipt_sent_entry() {
        let (me, peer) = (agency("xx.rcpt"), agency("yy.send"));
        let id = MessageId::from_bytes([3; 16]);
        let e = receipt_withdrawn(&peer, &me, id, Digest([4; 32]), 41, "disk full", 9);
        assert_eq!(e.event, EventType::Rejected);
        assert_eq!(e.peer_index, Some(41));
        assert_eq!(e.message_id, Some(id));
        assert_eq!(e.reason.as_deref(), Some("unavailable"));
        assert_eq!(e.detail.get("stage").map(String::as_str), Some("inbox"));
    }
}
