//! The outbox (spec/transport.md §6): one [`OutboxRecord`] per outgoing
//! message or relay hop, the due index the delivery loop reads, and the
//! watch list of relayed messages awaiting their end-to-end receipt.
//!
//! | table | key | value |
//! |---|---|---|
//! | `outbox` | message id | [`OutboxRecord`] (CBOR) |
//! | `outbox_due` | next attempt (ms, u64 BE) ‖ message id | () — pending records only |
//! | `outbox_awaiting_end_to_end` | expiry (s, u64 BE) ‖ message id | () |
//!
//! Every write of a record also keeps `outbox_unlogged` in step
//! ([`super::queue`]).

use isnad_envelope::{AgencyId, Digest, Kind, MessageId};
use redb::{
    ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode, split_time_id_key, time_id_key};
use super::idempotency::{self, Claim};
use super::{CaseWrite, Durability, Store, StoreError};

/// Outbox: message id → [`OutboxRecord`].
pub(super) const OUTBOX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("outbox");
/// Due index: next attempt (u64 BE) ‖ message id → ().
pub(super) const DUE: TableDefinition<'_, &[u8], ()> = TableDefinition::new("outbox_due");
/// Relayed messages this node originated that await their end-to-end
/// receipt: expiry (seconds, big-endian) ‖ message id → ().
pub(super) const AWAITING: TableDefinition<'_, &[u8], ()> =
    TableDefinition::new("outbox_awaiting_end_to_end");

/// Delivery state of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutState {
    /// Waiting for delivery or a retry.
    Pending,
    /// Delivered; the receipt is stored.
    Delivered,
    /// Refused by the recipient with a final error.
    Failed,
    /// Expired before it could be delivered.
    Expired,
}

/// An outgoing message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Message id.
    #[serde(with = "codec::message_id")]
    pub id: MessageId,
    /// Recipient agency.
    #[serde(with = "codec::agency")]
    pub recipient: AgencyId,
    /// Message kind.
    #[serde(with = "codec::kind")]
    pub kind: Kind,
    /// The sealed envelope, exactly as sent.
    #[serde(with = "codec::bytes")]
    pub envelope: Vec<u8>,
    /// SHA-256 of the envelope.
    pub digest: [u8; 32],
    /// Creation time (seconds).
    pub created: u64,
    /// Expiry time (seconds).
    pub expires: u64,
    /// Current state.
    pub state: OutState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt time in milliseconds since the epoch (when pending).
    pub next_attempt_ms: u64,
    /// Last error seen, for operators.
    pub last_error: Option<String>,
    /// Index of our `sent` audit entry, once written.
    pub sent_index: Option<u64>,
    /// The recipient's signed receipt, once received.
    #[serde(with = "codec::opt_bytes")]
    pub receipt: Option<Vec<u8>>,
    /// The recipient's audit-log index from the receipt.
    pub peer_log_index: Option<u64>,
    /// When the receipt arrived (milliseconds).
    pub delivered_ms: Option<u64>,
    /// Index of our `receipt-received` / `delivery-failed` / `delivery-expired` entry.
    pub final_index: Option<u64>,
    /// For one hop of a relayed message: its end-to-end part
    /// (spec/relay.md); `recipient` and `envelope` are the hop's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayedOut>,
    /// What re-sealing the message under a new signing key needs, if this
    /// node's key that signed `envelope` is revoked (spec/protocol.md §9):
    /// kept for the messages this node originates, direct or relayed; absent
    /// for hops it forwards for others, end-to-end receipts and records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseal: Option<ResealCopy>,
}

/// The sender's own copy of an outgoing message, for re-sealing it when the
/// signing key that sealed it is revoked (spec/protocol.md §9, federation.md
/// §12.5). The plaintext never sits at rest unencrypted: the copy is an
/// ordinary envelope sealed by this node to its own encryption key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealCopy {
    /// Key id of the signing key that signed the record's `envelope`.
    pub signer: [u8; 32],
    /// The message as sent, signed with that key and sealed to this node's
    /// encryption key.
    #[serde(with = "codec::bytes")]
    pub own_copy: Vec<u8>,
    /// SHA-256 of the envelope this one superseded, if it is a re-seal: its
    /// `sent` entry names it (`resealed-from`, spec/audit-log.md §2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resealed_from: Option<[u8; 32]>,
    /// For a relayed message, SHA-256 of the inner (end-to-end) envelope
    /// this re-seal superseded: the end-to-end `sent` entry names it
    /// (`resealed-from`, spec/relay.md §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_resealed_from: Option<[u8; 32]>,
}

impl OutboxRecord {
    /// A new record, pending and due at `due_ms`, with nothing logged or
    /// received yet; `digest` is computed from `envelope`.
    pub fn pending(
        id: MessageId,
        recipient: &AgencyId,
        kind: Kind,
        envelope: Vec<u8>,
        created: u64,
        expires: u64,
        due_ms: u64,
    ) -> Self {
        Self {
            id,
            recipient: recipient.clone(),
            kind,
            digest: Digest::sha256(&envelope).0,
            envelope,
            created,
            expires,
            state: OutState::Pending,
            attempts: 0,
            next_attempt_ms: due_ms,
            last_error: None,
            sent_index: None,
            receipt: None,
            peer_log_index: None,
            delivered_ms: None,
            final_index: None,
            relay: None,
            reseal: None,
        }
    }
}

/// The end-to-end part of an outgoing relay hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedOut {
    /// The route, originator first, final recipient last.
    #[serde(with = "codec::agencies")]
    pub route: Vec<AgencyId>,
    /// SHA-256 of the inner (end-to-end) envelope.
    pub inner_digest: [u8; 32],
    /// The final recipient's end-to-end receipt (originator only), once routed back.
    #[serde(default, with = "codec::opt_bytes")]
    pub end_to_end_receipt: Option<Vec<u8>>,
    /// The final recipient's audit-log index from that receipt.
    #[serde(default)]
    pub end_to_end_index: Option<u64>,
    /// Index of the `delivery-expired` entry logged when the message expired
    /// without its end-to-end receipt (originator only, spec/relay.md §8).
    #[serde(default)]
    pub end_to_end_missing_index: Option<u64>,
}

impl RelayedOut {
    /// The route as text, agencies separated by spaces (as audit entries
    /// name it).
    pub fn route_text(&self) -> String {
        let names: Vec<&str> = self.route.iter().map(AgencyId::as_str).collect();
        names.join(" ")
    }
}

/// What a submission writes with its outbox record, in one transaction.
#[derive(Debug, Default)]
pub struct Submission {
    /// The case writes of the message's workflow plan.
    pub cases: Vec<CaseWrite>,
    /// The client's idempotency key, bound to the message.
    pub claim: Option<Claim>,
    /// When it was submitted (ms): the key's binding time.
    pub now_ms: u64,
}

impl Store {
    /// Stores a submitted message in one durable transaction with its
    /// case writes, its idempotency key and, for a relayed message this
    /// node originates, its place on the end-to-end watch list
    /// ([`Store::awaiting_end_to_end`]). Everything is checked before
    /// anything is written: `false` (nothing stored) when the key was bound
    /// or a case record changed since the check.
    pub async fn insert_submission(
        &self,
        rec: OutboxRecord,
        sub: Submission,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            if let Some(claim) = &sub.claim {
                if !idempotency::is_free(txn, claim, sub.now_ms)? {
                    return Ok(false);
                }
            }
            if !Self::apply_cases(txn, &sub.cases)? {
                return Ok(false);
            }
            if rec.relay.is_some() {
                txn.open_table(AWAITING)?
                    .insert(&time_id_key(rec.expires, rec.id.as_bytes())[..], ())?;
            }
            if let Some(claim) = &sub.claim {
                idempotency::remember(txn, claim, &rec.id, sub.now_ms)?;
            }
            put_outbox(txn, &rec)?;
            Ok(true)
        })
        .await
    }

    /// Stores a new outgoing message, due at its `next_attempt_ms`.
    pub async fn insert_outbox(&self, rec: OutboxRecord) -> Result<(), StoreError> {
        self.write(move |txn| put_outbox(txn, &rec)).await
    }

    /// Reads, changes and writes one outbox record inside one transaction,
    /// keeping the due index in step. Returns the new record, or `None` if
    /// there is no such message. Concurrent changes cannot interleave: all
    /// writes run one after another on the writer thread.
    pub async fn modify_outbox(
        &self,
        id: MessageId,
        durability: Durability,
        f: impl FnOnce(&mut OutboxRecord) + Send + 'static,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.write_with(durability, move |txn| modify_outbox_in(txn, id, f))
            .await
    }

    /// Relayed messages noted by [`Store::insert_submission`] whose expiry
    /// is at or before `now_secs`: (expiry, id), earliest first, at most
    /// `limit`.
    pub(crate) fn awaiting_end_to_end(
        &self,
        now_secs: u64,
        limit: usize,
    ) -> Result<Vec<(u64, MessageId)>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(AWAITING)?;
        let end = time_id_key(now_secs, &[0xff; 16]);
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(..=&end[..])?.take(limit) {
            let (k, _) = item?;
            let (at, id) = split_time_id_key(k.value())
                .ok_or_else(|| StoreError::Corrupt("end-to-end watch key".into()))?;
            out.push((at, MessageId::from_bytes(id)));
        }
        Ok(out)
    }

    /// Ends the wait for message `id`'s end-to-end receipt noted at
    /// `expires`, after applying `f` to its outbox record (if it is still
    /// there), in one durable transaction.
    pub(crate) async fn settle_end_to_end(
        &self,
        id: MessageId,
        expires: u64,
        f: impl FnOnce(&mut OutboxRecord) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(AWAITING)?
                .remove(&time_id_key(expires, id.as_bytes())[..])?;
            modify_outbox_in(txn, id, f).map(|_| ())
        })
        .await
    }

    /// Inside a transaction: records the index of a message's `sent` audit
    /// entry in its outbox record (nothing if the record is gone).
    pub(super) fn note_sent_index(
        txn: &WriteTransaction,
        id: MessageId,
        index: u64,
    ) -> Result<(), StoreError> {
        modify_outbox_in(txn, id, |rec| rec.sent_index = Some(index)).map(|_| ())
    }

    /// One outbox record.
    pub fn outbox(&self, id: &MessageId) -> Result<Option<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        t.get(&id.as_bytes()[..])?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The ids of pending messages due at or before `now_ms`, earliest
    /// first, at most `limit`, leaving out those `skip` names. Only the due
    /// index is read: whoever delivers one reads its record then.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(&MessageId) -> bool,
    ) -> Result<Vec<MessageId>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let due = txn.open_table(DUE)?;
        let end = time_id_key(now_ms, &[0xff; 16]);
        let mut ids = Vec::new();
        for item in due.range::<&[u8]>(..=&end[..])? {
            let (k, _) = item?;
            let (_, id) = split_time_id_key(k.value())
                .ok_or_else(|| StoreError::Corrupt("outbox due key".into()))?;
            let id = MessageId::from_bytes(id);
            if skip(&id) {
                continue;
            }
            ids.push(id);
            if ids.len() >= limit {
                break;
            }
        }
        Ok(ids)
    }

    /// The earliest next-attempt time of any pending message.
    pub fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let due = txn.open_table(DUE)?;
        let first = due.first()?;
        first
            .map(|(k, _)| {
                split_time_id_key(k.value())
                    .map(|(at, _)| at)
                    .ok_or_else(|| StoreError::Corrupt("outbox due key".into()))
            })
            .transpose()
    }

    /// Every outbox record (for listings and recovery).
    pub fn all_outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        t.iter()?.map(|i| decode(i?.1.value())).collect()
    }

    /// At most `limit` outbox records in id order, starting after `after`.
    /// Ids made by this node are time-ordered, so this is oldest first.
    pub fn outbox_page(
        &self,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        // Keys are 16 bytes, so `id ‖ 0x00` is the first key after `id`.
        let start: Vec<u8> = after
            .map(|a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0);
                k
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(start.as_slice()..)? {
            if out.len() >= limit {
                break;
            }
            out.push(decode(item?.1.value())?);
        }
        Ok(out)
    }

    /// Counts of pending outbox messages.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        Ok(txn.open_table(DUE)?.len()?)
    }
}

/// Inside a transaction: writes a new record and its due entry (new
/// records are pending).
pub(super) fn put_outbox(txn: &WriteTransaction, rec: &OutboxRecord) -> Result<(), StoreError> {
    let bytes = encode(rec)?;
    txn.open_table(OUTBOX)?
        .insert(&rec.id.as_bytes()[..], bytes.as_slice())?;
    txn.open_table(DUE)?
        .insert(&time_id_key(rec.next_attempt_ms, rec.id.as_bytes())[..], ())?;
    super::queue::enqueue_outbox(txn, rec)?;
    super::queue::note_unlogged(txn, rec)
}

/// [`Store::modify_outbox`] inside a transaction.
fn modify_outbox_in(
    txn: &WriteTransaction,
    id: MessageId,
    f: impl FnOnce(&mut OutboxRecord),
) -> Result<Option<OutboxRecord>, StoreError> {
    let key = *id.as_bytes();
    let mut out = txn.open_table(OUTBOX)?;
    let old: OutboxRecord = match out.get(&key[..])? {
        Some(v) => decode(v.value())?,
        None => return Ok(None),
    };
    let mut new = old.clone();
    f(&mut new);
    new.id = id;
    let bytes = encode(&new)?;
    out.insert(&key[..], bytes.as_slice())?;
    if old.sent_index.is_none() != new.sent_index.is_none() {
        super::queue::note_unlogged(txn, &new)?;
    }
    if (old.created, old.kind) != (new.created, new.kind) {
        super::queue::requeue_outbox(txn, &old, &new)?;
    }
    let was = (old.state == OutState::Pending).then_some(old.next_attempt_ms);
    let is = (new.state == OutState::Pending).then_some(new.next_attempt_ms);
    if was != is {
        let mut due = txn.open_table(DUE)?;
        if let Some(at) = was {
            due.remove(&time_id_key(at, &key)[..])?;
        }
        if let Some(at) = is {
            due.insert(&time_id_key(at, &key)[..], ())?;
        }
    }
    Ok(Some(new))
}
