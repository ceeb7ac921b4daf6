//! The state's indexes kept in step with every outbox and inbox write:
//! the retention queue (records whose content is held, by kind and age,
//! spec/audit-log.md §2.6) and the outbox records whose `sent` entry index
//! is not noted yet (start-up reads only those). The retention pass itself
//! is [`super::retention`].

use isnad_envelope::{AgencyId, Kind, MessageId};
use redb::{TableDefinition, WriteTransaction};

use super::codec::inbox_key;
use super::{InboxRecord, OutboxRecord, StoreError};

/// Outbox records whose `sent` entry index is not noted yet: message id → ().
pub(super) const UNLOGGED: TableDefinition<'_, &[u8], ()> = TableDefinition::new("outbox_unlogged");
/// Records whose content is held, by kind and age (module docs).
pub(super) const QUEUE: TableDefinition<'_, &[u8], ()> = TableDefinition::new("retention_queue");

/// A record to purge, by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// An outbox record.
    Out(MessageId),
    /// An inbox record: message id and sender.
    In(MessageId, AgencyId),
}

impl PurgeTarget {
    pub(super) fn mark_key(&self) -> Vec<u8> {
        match self {
            Self::Out(id) => [b"o".as_slice(), id.as_bytes()].concat(),
            Self::In(id, sender) => [b"i".as_slice(), &inbox_key(id, sender)].concat(),
        }
    }
}

/// The queue key prefix of `kind`: its name's length and the name.
pub(super) fn kind_prefix(kind: Kind) -> Vec<u8> {
    let name = kind.as_str().as_bytes();
    let mut k = Vec::with_capacity(1 + name.len() + 8 + 1 + 40);
    k.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(name);
    k
}

/// The queue key of a record.
pub(super) fn queue_key(kind: Kind, since: u64, t: &PurgeTarget) -> Vec<u8> {
    let mut k = kind_prefix(kind);
    k.extend_from_slice(&since.to_be_bytes());
    k.extend_from_slice(&t.mark_key());
    k
}

pub(super) fn out_queue_key(rec: &OutboxRecord) -> Vec<u8> {
    queue_key(rec.kind, rec.created, &PurgeTarget::Out(rec.id))
}

pub(super) fn in_queue_key(rec: &InboxRecord) -> Vec<u8> {
    queue_key(
        rec.kind,
        rec.received_ms / 1000,
        &PurgeTarget::In(rec.id, rec.sender.clone()),
    )
}

/// Inside a transaction: queues a new outbox record for retention.
pub(super) fn enqueue_outbox(txn: &WriteTransaction, rec: &OutboxRecord) -> Result<(), StoreError> {
    txn.open_table(QUEUE)?
        .insert(out_queue_key(rec).as_slice(), ())?;
    Ok(())
}

/// Inside a transaction: moves an outbox record whose creation time or
/// kind changed (a re-seal) to its new place in the queue, unless purged.
pub(super) fn requeue_outbox(
    txn: &WriteTransaction,
    old: &OutboxRecord,
    new: &OutboxRecord,
) -> Result<(), StoreError> {
    let mut q = txn.open_table(QUEUE)?;
    if q.remove(out_queue_key(old).as_slice())?.is_some() {
        q.insert(out_queue_key(new).as_slice(), ())?;
    }
    Ok(())
}

/// Inside a transaction: queues a new inbox record for retention.
pub(super) fn enqueue_inbox(txn: &WriteTransaction, rec: &InboxRecord) -> Result<(), StoreError> {
    txn.open_table(QUEUE)?
        .insert(in_queue_key(rec).as_slice(), ())?;
    Ok(())
}

/// Keeps [`UNLOGGED`] in step with an outbox record written inside `txn`.
pub(super) fn note_unlogged(txn: &WriteTransaction, rec: &OutboxRecord) -> Result<(), StoreError> {
    let mut t = txn.open_table(UNLOGGED)?;
    if rec.sent_index.is_none() {
        t.insert(&rec.id.as_bytes()[..], ())?;
    } else {
        t.remove(&rec.id.as_bytes()[..])?;
    }
    Ok(())
}
