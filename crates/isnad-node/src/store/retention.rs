//! What retention leaves of a message (spec/audit-log.md §2.6): the marks
//! of purged records, the compaction of a record whose content went, and
//! the index of the outbox records start-up must look at.
//!
//! | table | key | value |
//! |---|---|---|
//! | `purged` | `o` ‖ message id, or `i` ‖ inbox key | index of the `purged` entry (u64 BE) ‖ when (ms, u64 BE) |
//! | `outbox_unlogged` | message id | () — outbox records whose `sent` entry is not noted yet |
//! | `retention_queue` | kind name length (u8) ‖ kind name ‖ since (s, u64 BE) ‖ `o` ‖ message id, or `i` ‖ inbox key | () — records whose content is still held |
//!
//! The retention queue orders the records not purged by kind and by the
//! time their period runs from (creation of an outgoing message, reception
//! of an incoming one): a pass reads, per kind with a rule, only the
//! records older than that kind's shortest period, not the history.
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

use isnad_envelope::{AgencyId, Kind, MessageId};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};

use super::codec::{decode, encode, inbox_key, split_time_id_key};
use super::inbox::INBOX;
use super::outbox::{AWAITING, DUE, OUTBOX};
use super::queue::{in_queue_key, kind_prefix, out_queue_key, PurgeTarget, QUEUE, UNLOGGED};
use super::{InboxRecord, OutState, OutboxRecord, Store, StoreError};

/// Purge marks: `o` ‖ message id or `i` ‖ inbox key → entry index ‖ time.
pub(super) const PURGED: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("purged");
/// A record the retention queue names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// An outbox record.
    Out(Box<OutboxRecord>),
    /// An inbox record.
    In(Box<InboxRecord>),
}

/// When and under which audit entry a record's content was purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeMark {
    /// Index of the `purged` audit entry.
    pub index: u64,
    /// When the content was deleted (ms since the epoch).
    pub at_ms: u64,
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

    /// Records of `kind` whose content is held and whose period started at
    /// or before `until_secs`, oldest first, at most `limit`, starting after
    /// the queue key `after` (the second element of the last one returned).
    pub fn retention_queue(
        &self,
        kind: Kind,
        until_secs: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Held, Vec<u8>)>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let queue = txn.open_table(QUEUE)?;
        let prefix = kind_prefix(kind);
        let mut start = after.map(<[u8]>::to_vec).unwrap_or_else(|| prefix.clone());
        if after.is_some() {
            start.push(0);
        }
        let mut end = prefix.clone();
        end.extend_from_slice(&until_secs.to_be_bytes());
        end.push(0xff);
        let (out, inbox) = (txn.open_table(OUTBOX)?, txn.open_table(INBOX)?);
        let mut found = Vec::new();
        for item in queue.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            if found.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let key = k.value().to_vec();
            let rest = key
                .get(prefix.len() + 8..)
                .ok_or_else(|| StoreError::Corrupt("retention queue key".into()))?;
            let held = match rest.split_first() {
                Some((b'o', id)) => out
                    .get(id)?
                    .map(|v| decode(v.value()).map(|r| Held::Out(Box::new(r))))
                    .transpose()?,
                Some((b'i', ik)) => inbox
                    .get(ik)?
                    .map(|v| decode(v.value()).map(|r| Held::In(Box::new(r))))
                    .transpose()?,
                _ => return Err(StoreError::Corrupt("retention queue key".into())),
            };
            if let Some(h) = held {
                found.push((h, key));
            }
        }
        Ok(found)
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
            txn.open_table(QUEUE)?
                .remove(out_queue_key(&rec).as_slice())?;
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
            txn.open_table(QUEUE)?
                .remove(in_queue_key(&rec).as_slice())?;
            Ok(true)
        }
    }
}

/// Migration 2 → 3: indexes the outbox records whose `sent` entry is not
/// noted (read once, here, instead of at every start) and queues every
/// record for retention.
pub(super) fn index_unlogged(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(PURGED)?;
    let mut unlogged = Vec::new();
    let mut queued = Vec::new();
    for item in txn.open_table(OUTBOX)?.iter()? {
        let (_, v) = item?;
        let rec: OutboxRecord = decode(v.value())?;
        if rec.sent_index.is_none() {
            unlogged.push(*rec.id.as_bytes());
        }
        queued.push(out_queue_key(&rec));
    }
    for item in txn.open_table(INBOX)?.iter()? {
        let (_, v) = item?;
        queued.push(in_queue_key(&decode(v.value())?));
    }
    let mut t = txn.open_table(UNLOGGED)?;
    for id in unlogged {
        t.insert(&id[..], ())?;
    }
    let mut q = txn.open_table(QUEUE)?;
    for k in queued {
        q.insert(k.as_slice(), ())?;
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
    /// the records are unchanged, the index of unlogged outbox records is
    /// built (every fixture message was logged and delivered, so start-up
    /// has no outbox record to read) and every record is queued for
    /// retention.
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
        // Every record is queued for retention by the migration: the
        // request and the share sent, the status change received.
        for kind in [Kind::MlaRequest, Kind::IntelShare, Kind::MlaStatus] {
            let queued = store.retention_queue(kind, u64::MAX, None, 10)?;
            assert_eq!(queued.len(), 1, "{kind}");
        }
        drop(store);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let db = redb::Database::open(&path)?;
        assert_eq!(
            super::super::format::state_version(&db)?,
            Some(super::super::format::STATE_FORMAT)
        );
        Ok(())
    }

    /// The queue gives, per kind, the records whose period started by
    /// `until`, oldest first, in pages; a purged record leaves it, and a
    /// re-seal's new creation time moves it.
    #[tokio::test]
    async fn the_retention_queue_reads_only_old_records_of_a_kind(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.redb"))?;
        for (i, created) in [(1u8, 300), (2, 100), (3, 200), (4, 900)] {
            let mut r = out(i);
            r.created = created;
            store.insert_outbox(r).await?;
        }
        let mut other = out(5);
        other.kind = Kind::MlaStatus;
        other.created = 50;
        store.insert_outbox(other).await?;
        let ids = |v: &[(Held, Vec<u8>)]| -> Vec<u8> {
            v.iter()
                .map(|(h, _)| match h {
                    Held::Out(r) => r.id.as_bytes()[0],
                    Held::In(r) => r.id.as_bytes()[0],
                })
                .collect()
        };
        let all = store.retention_queue(Kind::MlaRequest, 300, None, 10)?;
        assert_eq!(ids(&all), [2, 3, 1]);
        let first = store.retention_queue(Kind::MlaRequest, 300, None, 2)?;
        assert_eq!(ids(&first), [2, 3]);
        let next = store.retention_queue(Kind::MlaRequest, 300, Some(&first[1].1), 2)?;
        assert_eq!(ids(&next), [1]);
        // Settle and purge 2: it leaves the queue.
        store
            .modify_outbox(MessageId::from_bytes([2; 16]), Durability::Durable, |r| {
                r.state = OutState::Delivered;
            })
            .await?;
        store
            .purge(vec![PurgeTarget::Out(MessageId::from_bytes([2; 16]))], 1, 1)
            .await?;
        // 3 re-sealed: created again at 400.
        store
            .modify_outbox(MessageId::from_bytes([3; 16]), Durability::Durable, |r| {
                r.created = 400;
            })
            .await?;
        assert_eq!(
            ids(&store.retention_queue(Kind::MlaRequest, 1000, None, 10)?),
            [1, 3, 4]
        );
        assert_eq!(
            ids(&store.retention_queue(Kind::MlaStatus, 1000, None, 10)?),
            [5]
        );
        Ok(())
    }
}
