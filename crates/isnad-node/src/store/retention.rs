//! What retention leaves of a message (spec/audit-log.md §2.5): the marks
//! of purged records, the compaction of a record whose content went, and
//! the index of the outbox records start-up must look at.
//!
//! | table | key | value |
//! |---|---|---|
//! | `purged` | `o` ‖ message id, or `i` ‖ inbox key | index of the `purged` entry (u64 BE) ‖ when (ms, u64 BE) |
//! | `outbox_unlogged` | message id | () — outbox records whose `sent` entry is not noted yet |
//!
//! A purged record stays in its table, compacted to the fields audits and
//! replay protection need: its envelope (and for an outgoing message the
//! own copy kept for re-sealing, and the last delivery error) is emptied;
//! ids, parties, kind, digests, times, state, log indexes and receipts
//! stay. Only settled records are purged: an outgoing message still
//! pending, or a relayed one still awaiting its end-to-end receipt, is
//! never touched (checked again inside the purging transaction).
//! Everything that is content goes in one place, `purge_in`: attachments
//! held for a message, once the node stores them, are deleted there under
//! the same mark and the same `purged` entry.

use std::collections::BTreeSet;

use isnad_envelope::{AgencyId, MessageId};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};

use super::codec::{decode, encode, split_time_id_key};
use super::inbox::{inbox_key, INBOX};
use super::outbox::{AWAITING, DUE, OUTBOX};
use super::{InboxRecord, OutState, OutboxRecord, Store, StoreError};

/// Purge marks: `o` ‖ message id or `i` ‖ inbox key → entry index ‖ time.
pub(super) const PURGED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("purged");
/// Outbox records whose `sent` entry index is not noted yet: message id → ().
pub(super) const UNLOGGED: TableDefinition<'_, &[u8], ()> = TableDefinition::new("outbox_unlogged");

/// When and under which audit entry a record's content was purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeMark {
    /// Index of the `purged` audit entry.
    pub index: u64,
    /// When the content was deleted (ms since the epoch).
    pub at_ms: u64,
}

/// A record to purge, by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// An outbox record.
    Out(MessageId),
    /// An inbox record: message id and sender.
    In(MessageId, AgencyId),
}

impl PurgeTarget {
    fn mark_key(&self) -> Vec<u8> {
        match self {
            Self::Out(id) => [b"o".as_slice(), id.as_bytes()].concat(),
            Self::In(id, sender) => [b"i".as_slice(), &inbox_key(id, sender)].concat(),
        }
    }
}

impl Store {
    /// The purge mark of outbox record `id`, if its content was purged.
    pub fn outbox_purged(&self, id: &MessageId) -> Result<Option<PurgeMark>, StoreError> {
        self.purge_mark(&PurgeTarget::Out(*id))
    }

    /// The purge mark of the inbox record (`id`, `sender`), if purged.
    pub fn inbox_purged(
        &self,
        id: &MessageId,
        sender: &AgencyId,
    ) -> Result<Option<PurgeMark>, StoreError> {
        self.purge_mark(&PurgeTarget::In(*id, sender.clone()))
    }

    fn purge_mark(&self, t: &PurgeTarget) -> Result<Option<PurgeMark>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let marks = txn.open_table(PURGED)?;
        let v = marks.get(t.mark_key().as_slice())?;
        v.map(|v| parse_mark(v.value())).transpose()
    }

    /// The ids of relayed messages still awaiting their end-to-end
    /// receipt (their records are not settled).
    pub fn awaited_ids(&self) -> Result<BTreeSet<MessageId>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(AWAITING)?;
        let mut out = BTreeSet::new();
        for item in t.iter()? {
            let (k, _) = item?;
            let (_, id) = split_time_id_key(k.value())
                .ok_or_else(|| StoreError::Corrupt("end-to-end watch key".into()))?;
            out.insert(MessageId::from_bytes(id));
        }
        Ok(out)
    }

    /// The outbox records start-up must look at: those pending (to be
    /// delivered, perhaps re-sealed) and those whose `sent` entry is not
    /// noted (perhaps never logged). Settled records are not read: start-up
    /// does not grow with the history.
    pub fn unsettled_outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let mut ids = BTreeSet::new();
        for item in txn.open_table(DUE)?.iter()? {
            let (k, _) = item?;
            let (_, id) = split_time_id_key(k.value())
                .ok_or_else(|| StoreError::Corrupt("outbox due key".into()))?;
            ids.insert(id);
        }
        for item in txn.open_table(UNLOGGED)?.iter()? {
            let (k, _) = item?;
            let id = <[u8; 16]>::try_from(k.value())
                .map_err(|_| StoreError::Corrupt("unlogged outbox key".into()))?;
            ids.insert(id);
        }
        let out = txn.open_table(OUTBOX)?;
        let mut recs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = out.get(&id[..])? {
                recs.push(decode(v.value())?);
            }
        }
        Ok(recs)
    }

    /// Deletes the content of each target and marks it purged under the
    /// audit entry at `first_index + i` (the `purged` entries were appended
    /// before, in the same order), in one durable transaction. A target
    /// that is gone, already purged, or no longer settled (checked here
    /// again) is left alone. Returns how many were purged.
    pub async fn purge(
        &self,
        targets: Vec<PurgeTarget>,
        first_index: u64,
        at_ms: u64,
    ) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut n = 0;
            for (i, t) in targets.iter().enumerate() {
                if purge_in(txn, t)? {
                    let mut v = Vec::with_capacity(16);
                    v.extend_from_slice(&(first_index + i as u64).to_be_bytes());
                    v.extend_from_slice(&at_ms.to_be_bytes());
                    txn.open_table(PURGED)?
                        .insert(t.mark_key().as_slice(), v.as_slice())?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }
}

/// Whether an outbox record is settled: not pending and not awaiting an
/// end-to-end receipt (`awaited`).
pub fn outbox_settled(rec: &OutboxRecord, awaited: &BTreeSet<MessageId>) -> bool {
    rec.state != OutState::Pending && !awaited.contains(&rec.id)
}

/// [`Store::purge`] of one target inside a transaction: `true` if its
/// content was deleted now.
fn purge_in(txn: &WriteTransaction, t: &PurgeTarget) -> Result<bool, StoreError> {
    if txn
        .open_table(PURGED)?
        .get(t.mark_key().as_slice())?
        .is_some()
    {
        return Ok(false);
    }
    match t {
        PurgeTarget::Out(id) => {
            let key = *id.as_bytes();
            let awaited = txn
                .open_table(AWAITING)?
                .iter()?
                .filter_map(Result::ok)
                .any(|(k, _)| split_time_id_key(k.value()).is_some_and(|(_, i)| i == key));
            let mut out = txn.open_table(OUTBOX)?;
            let mut rec: OutboxRecord = match out.get(&key[..])? {
                Some(v) => decode(v.value())?,
                None => return Ok(false),
            };
            if rec.state == OutState::Pending || awaited {
                return Ok(false);
            }
            rec.envelope = Vec::new();
            rec.reseal = None;
            rec.last_error = None;
            out.insert(&key[..], encode(&rec)?.as_slice())?;
            Ok(true)
        }
        PurgeTarget::In(id, sender) => {
            let key = inbox_key(id, sender);
            // A relay hop whose forward is still pending keeps its content.
            if txn
                .open_table(OUTBOX)?
                .get(&id.as_bytes()[..])?
                .map(|v| decode::<OutboxRecord>(v.value()))
                .transpose()?
                .is_some_and(|r| r.state == OutState::Pending)
            {
                return Ok(false);
            }
            let mut inbox = txn.open_table(INBOX)?;
            let mut rec: InboxRecord = match inbox.get(key.as_slice())? {
                Some(v) => decode(v.value())?,
                None => return Ok(false),
            };
            rec.envelope = Vec::new();
            inbox.insert(key.as_slice(), encode(&rec)?.as_slice())?;
            Ok(true)
        }
    }
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

/// Migration 2 → 3: indexes the outbox records whose `sent` entry is not
/// noted (read once, here, instead of at every start).
pub(super) fn index_unlogged(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(PURGED)?;
    let unlogged: Vec<[u8; 16]> = {
        let out = txn.open_table(OUTBOX)?;
        let mut ids = Vec::new();
        for item in out.iter()? {
            let (_, v) = item?;
            let rec: OutboxRecord = decode(v.value())?;
            if rec.sent_index.is_none() {
                ids.push(*rec.id.as_bytes());
            }
        }
        ids
    };
    let mut t = txn.open_table(UNLOGGED)?;
    for id in unlogged {
        t.insert(&id[..], ())?;
    }
    Ok(())
}

fn parse_mark(v: &[u8]) -> Result<PurgeMark, StoreError> {
    let bad = || StoreError::Corrupt("purge mark".into());
    let (i, at) = v.split_at_checked(8).ok_or_else(bad)?;
    Ok(PurgeMark {
        index: u64::from_be_bytes(i.try_into().map_err(|_| bad())?),
        at_ms: u64::from_be_bytes(at.try_into().map_err(|_| bad())?),
    })
}

#[cfg(test)]
mod tests {
    use isnad_envelope::Kind;

    use super::*;
    use crate::store::{Durability, InboxInsert};

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn out(id: u8) -> OutboxRecord {
        OutboxRecord::pending(
            MessageId::from_bytes([id; 16]),
            &agency("fr.mj.bepi"),
            Kind::MlaRequest,
            vec![id; 64],
            1,
            100,
            u64::from(id),
        )
    }

    #[tokio::test]
    async fn purge_empties_settled_content_keeps_proof_fields_and_never_touches_pending(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.redb"))?;
        store.insert_outbox(out(1)).await?;
        store.insert_outbox(out(2)).await?;
        let settled = store
            .modify_outbox(MessageId::from_bytes([1; 16]), Durability::Durable, |r| {
                r.state = OutState::Delivered;
                r.sent_index = Some(4);
                r.receipt = Some(vec![9; 8]);
                r.final_index = Some(7);
            })
            .await?
            .ok_or("record 1 missing")?;
        let inbox = InboxRecord {
            id: MessageId::from_bytes([3; 16]),
            sender: agency("iq.moi.ahtd"),
            kind: Kind::MlaRequest,
            envelope: vec![5; 40],
            digest: [6; 32],
            expires: 100,
            received_ms: 5,
            log_index: 3,
            receipt: vec![8; 5],
            via: Vec::new(),
        };
        assert_eq!(
            store.insert_inbox(inbox.clone()).await?,
            InboxInsert::Stored
        );
        let targets = vec![
            PurgeTarget::Out(MessageId::from_bytes([1; 16])),
            PurgeTarget::Out(MessageId::from_bytes([2; 16])),
            PurgeTarget::In(inbox.id, inbox.sender.clone()),
        ];
        assert_eq!(store.purge(targets.clone(), 10, 1234).await?, 2);
        let one = store
            .outbox(&MessageId::from_bytes([1; 16]))?
            .ok_or("gone")?;
        assert!(one.envelope.is_empty());
        assert_eq!(
            (
                one.digest,
                one.receipt.clone(),
                one.sent_index,
                one.final_index
            ),
            (settled.digest, settled.receipt, Some(4), Some(7))
        );
        assert_eq!(
            store.outbox_purged(&one.id)?,
            Some(PurgeMark {
                index: 10,
                at_ms: 1234
            })
        );
        // The pending one keeps its envelope and no mark.
        let two = store
            .outbox(&MessageId::from_bytes([2; 16]))?
            .ok_or("gone")?;
        assert_eq!(two.envelope, vec![2; 64]);
        assert_eq!(store.outbox_purged(&two.id)?, None);
        // The inbox record keeps its receipt and digest (duplicates are
        // still answered) under the third entry's index.
        let got = store
            .inbox_get(&inbox.id, &inbox.sender)?
            .ok_or("inbox gone")?;
        assert!(got.envelope.is_empty());
        assert_eq!((got.receipt, got.digest), (inbox.receipt, inbox.digest));
        assert_eq!(
            store
                .inbox_purged(&inbox.id, &inbox.sender)?
                .map(|m| m.index),
            Some(12)
        );
        // Purging again changes nothing.
        assert_eq!(store.purge(targets, 20, 9999).await?, 0);
        assert_eq!(store.outbox_purged(&one.id)?.map(|m| m.index), Some(10));
        Ok(())
    }

    #[tokio::test]
    async fn start_up_reads_only_pending_and_unlogged_outbox_records(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.redb"))?;
        for i in 1..=4u8 {
            store.insert_outbox(out(i)).await?;
        }
        // 1: settled and logged; 2: settled, its sent index not noted;
        // 3: pending and logged; 4: pending, not logged.
        for (i, state, sent) in [
            (1u8, OutState::Delivered, Some(1)),
            (2, OutState::Failed, None),
            (3, OutState::Pending, Some(3)),
        ] {
            store
                .modify_outbox(
                    MessageId::from_bytes([i; 16]),
                    Durability::Durable,
                    move |r| {
                        r.state = state;
                        r.sent_index = sent;
                    },
                )
                .await?;
        }
        let ids: Vec<u8> = store
            .unsettled_outbox()?
            .iter()
            .map(|r| r.id.as_bytes()[0])
            .collect();
        assert_eq!(ids, [2, 3, 4]);
        Ok(())
    }

    /// The state database of release 0.1.0 (the fixture `tests/upgrade.rs`
    /// starts from) is migrated to this format: the version is recorded,
    /// the records are unchanged, and the index of unlogged outbox records
    /// is built (every fixture message was logged and delivered, so
    /// start-up has no outbox record to read).
    #[tokio::test]
    async fn the_release_0_1_0_fixture_migrates_to_format_3(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/nodes-0.1.0/iq.moi.ahtd/state/state.redb");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.redb");
        std::fs::copy(&fixture, &path)?;
        {
            let db = redb::Database::open(&path)?;
            assert_eq!(super::super::format::state_version(&db)?, Some(1));
        }
        let store = Store::open(&path)?;
        let all = store.all_outbox()?;
        assert_eq!(all.len(), 2, "the fixture's request and share");
        assert!(all
            .iter()
            .all(|r| r.state == OutState::Delivered && r.sent_index.is_some()));
        assert!(store.unsettled_outbox()?.is_empty());
        assert_eq!(store.outbox_purged(&all[0].id)?, None);
        drop(store);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let db = redb::Database::open(&path)?;
        assert_eq!(
            super::super::format::state_version(&db)?,
            Some(super::super::format::STATE_FORMAT)
        );
        Ok(())
    }
}
