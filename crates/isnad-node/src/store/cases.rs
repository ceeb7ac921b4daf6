//! Case records: MLA requests and intel shares (spec/protocol.md §13), as
//! [`isnad_mla`] defines and encodes them. The store reads them for the
//! workflow check ([`CaseView`]) and carries out the check's plan: a list
//! of [`CaseWrite`]s, each valid only if the record still has the events
//! it had when it was checked, committed with the message that made them.
//!
//! | table | key | value |
//! |---|---|---|
//! | `mla_requests` | request id | [`RequestRecord`] (CBOR) |
//! | `intel_shares` | share id ‖ originator agency id | [`ShareRecord`] (CBOR) |
//!
//! Share ids are chosen by originators, so they are unique per originator.

use isnad_envelope::{AgencyId, MessageId};
use isnad_mla::{RequestRecord, ShareRecord};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};

use super::{Durability, Store, StoreError};

/// MLA requests: request id → [`RequestRecord`] (CBOR).
pub(super) const REQUESTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("mla_requests");
/// Intel shares: share id ‖ originator agency id → [`ShareRecord`] (CBOR).
pub(super) const SHARES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("intel_shares");

/// Which case record: a request by id, a share by id and originator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaseKey {
    /// The request with this id.
    Request(MessageId),
    /// The share with this id, of this originator.
    Share(MessageId, AgencyId),
}

impl CaseKey {
    fn table(&self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Self::Request(_) => REQUESTS,
            Self::Share(..) => SHARES,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Request(id) => id.as_bytes().to_vec(),
            Self::Share(id, originator) => share_key(id, originator),
        }
    }
}

/// A case record, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Case {
    /// An MLA request.
    Request(RequestRecord),
    /// An intel share.
    Share(ShareRecord),
}

impl Case {
    /// Where it is stored.
    pub fn key(&self) -> CaseKey {
        match self {
            Self::Request(r) => CaseKey::Request(r.request_id),
            Self::Share(s) => CaseKey::Share(s.share_id, s.originator.clone()),
        }
    }

    /// How many events its history holds.
    pub fn events(&self) -> usize {
        match self {
            Self::Request(r) => r.history.len(),
            Self::Share(s) => s.events.len(),
        }
    }

    /// Notes that event `pos` was logged at `index` (nothing if there is
    /// no such event).
    pub fn set_log_index(&mut self, pos: usize, index: u64) {
        let slot = match self {
            Self::Request(r) => r.history.get_mut(pos).map(|e| &mut e.log_index),
            Self::Share(s) => s.events.get_mut(pos).map(|e| &mut e.log_index),
        };
        if let Some(slot) = slot {
            *slot = Some(index);
        }
    }

    fn to_cbor(&self) -> Vec<u8> {
        match self {
            Self::Request(r) => r.to_cbor(),
            Self::Share(s) => s.to_cbor(),
        }
    }

    fn from_cbor(key: &CaseKey, bytes: &[u8]) -> Result<Self, StoreError> {
        Ok(match key {
            CaseKey::Request(_) => Self::Request(RequestRecord::from_cbor(bytes).map_err(corrupt)?),
            CaseKey::Share(..) => Self::Share(ShareRecord::from_cbor(bytes).map_err(corrupt)?),
        })
    }
}

/// One record write of a plan: `record` replaces the stored one, if that
/// still has `expect` events (`None`: it must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseWrite {
    /// The record as it will be stored.
    pub record: Case,
    /// The number of events the stored record must have.
    pub expect: Option<usize>,
}

impl CaseWrite {
    /// Whether the write still applies to a record stored with `events`
    /// events (`None`: no record).
    pub fn is_current(&self, events: Option<usize>) -> bool {
        events == self.expect
    }
}

/// After a plan's entries were appended: event `pos` of record `key` was
/// logged at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNote {
    /// The record.
    pub key: CaseKey,
    /// The event's position in its history.
    pub pos: usize,
    /// Its audit-log index.
    pub index: u64,
}

/// A read view of the case records: what the workflow check reads. The
/// store is one; a test or a simulation can hold its own.
pub trait CaseView {
    /// The record of request `id`.
    fn request(&self, id: &MessageId) -> Result<Option<RequestRecord>, StoreError>;

    /// Every share with id `id` (of any originator; normally one).
    fn shares_with_id(&self, id: &MessageId) -> Result<Vec<ShareRecord>, StoreError>;

    /// The share `id` of `originator`.
    fn share(
        &self,
        id: &MessageId,
        originator: &AgencyId,
    ) -> Result<Option<ShareRecord>, StoreError> {
        Ok(self
            .shares_with_id(id)?
            .into_iter()
            .find(|s| &s.originator == originator))
    }

    /// How many events the record `key` has (`None`: no such record).
    fn events(&self, key: &CaseKey) -> Result<Option<usize>, StoreError> {
        Ok(match key {
            CaseKey::Request(id) => self.request(id)?.map(|r| r.history.len()),
            CaseKey::Share(id, o) => self.share(id, o)?.map(|s| s.events.len()),
        })
    }
}

impl CaseView for Store {
    fn request(&self, id: &MessageId) -> Result<Option<RequestRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(REQUESTS)?;
        let v = t.get(&id.as_bytes()[..])?;
        v.map(|v| RequestRecord::from_cbor(v.value()).map_err(corrupt))
            .transpose()
    }

    fn shares_with_id(&self, id: &MessageId) -> Result<Vec<ShareRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(SHARES)?;
        let start = id.as_bytes().to_vec();
        let mut end = start.clone();
        end.push(0xff);
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            out.push(ShareRecord::from_cbor(item?.1.value()).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn share(
        &self,
        id: &MessageId,
        originator: &AgencyId,
    ) -> Result<Option<ShareRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(SHARES)?;
        let v = t.get(share_key(id, originator).as_slice())?;
        v.map(|v| ShareRecord::from_cbor(v.value()).map_err(corrupt))
            .transpose()
    }
}

impl Store {
    /// Every request record, most urgent first, then by deadline.
    pub fn requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(REQUESTS)?;
        let mut out = t
            .iter()?
            .map(|i| RequestRecord::from_cbor(i?.1.value()).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.urgency),
                r.deadline_secs().unwrap_or(u64::MAX),
            )
        });
        Ok(out)
    }

    /// Every share record, in (id, originator) order.
    pub fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(SHARES)?;
        t.iter()?
            .map(|i| ShareRecord::from_cbor(i?.1.value()).map_err(corrupt))
            .collect()
    }

    /// Commits a plan's writes on their own (no message with them), durably.
    /// `false`: a record changed since the check, nothing was written.
    pub async fn commit_cases(&self, writes: Vec<CaseWrite>) -> Result<bool, StoreError> {
        self.write(move |txn| Self::apply_cases(txn, &writes)).await
    }

    /// After entries were appended: notes, in one lazy write, the index of
    /// a message's `sent` entry in its outbox record (if `sent` is given)
    /// and each of `notes` in its case record. Losing this write in a crash
    /// loses only the shortcut (spec/transport.md §7 redoes it).
    pub async fn note_indexes(
        &self,
        sent: Option<(MessageId, u64)>,
        notes: Vec<IndexNote>,
    ) -> Result<(), StoreError> {
        if sent.is_none() && notes.is_empty() {
            return Ok(());
        }
        self.write_with(Durability::Lazy, move |txn| {
            if let Some((id, index)) = sent {
                Self::note_sent_index(txn, id, index)?;
            }
            Self::note_case_indexes(txn, &notes)
        })
        .await
    }

    /// Inside the transaction that stores the message: checks that every
    /// record is as it was when planned, then writes them all. `false`: a
    /// record changed, nothing was written.
    pub(super) fn apply_cases(
        txn: &WriteTransaction,
        writes: &[CaseWrite],
    ) -> Result<bool, StoreError> {
        for w in writes {
            let key = w.record.key();
            let t = txn.open_table(key.table())?;
            let now = t
                .get(key.bytes().as_slice())?
                .map(|v| Case::from_cbor(&key, v.value()).map(|c| c.events()))
                .transpose()?;
            if !w.is_current(now) {
                return Ok(false);
            }
        }
        for w in writes {
            let key = w.record.key();
            txn.open_table(key.table())?
                .insert(key.bytes().as_slice(), w.record.to_cbor().as_slice())?;
        }
        Ok(true)
    }

    /// Inside a transaction: writes each index into its stored record (a
    /// record gone meanwhile is skipped).
    fn note_case_indexes(txn: &WriteTransaction, notes: &[IndexNote]) -> Result<(), StoreError> {
        for n in notes {
            let mut t = txn.open_table(n.key.table())?;
            let key = n.key.bytes();
            let Some(mut case) = t
                .get(key.as_slice())?
                .map(|v| Case::from_cbor(&n.key, v.value()))
                .transpose()?
            else {
                continue;
            };
            case.set_log_index(n.pos, n.index);
            t.insert(key.as_slice(), case.to_cbor().as_slice())?;
        }
        Ok(())
    }
}

fn share_key(id: &MessageId, originator: &AgencyId) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(originator.as_str().as_bytes());
    k
}

fn corrupt(e: isnad_mla::RecordError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}
