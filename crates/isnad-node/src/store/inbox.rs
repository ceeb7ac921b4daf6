//! The inbox, which is also the replay set (spec/transport.md §4): one
//! [`InboxRecord`] per (message id, sender), and the digest index that
//! answers an exact retransmission without decrypting it.
//!
//! | table | key | value |
//! |---|---|---|
//! | `inbox` | message id ‖ sender agency id | [`InboxRecord`] (CBOR) |
//! | `inbox_digests` | SHA-256 of the envelope | the `inbox` key |

use isnad_envelope::{AgencyId, Digest, Kind, MessageId};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode, inbox_key};
use super::outbox::{put_outbox, OUTBOX};
use super::{CaseWrite, OutboxRecord, Store, StoreError};

/// Inbox: message id ‖ sender id → [`InboxRecord`]. Also the replay set.
pub(super) const INBOX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("inbox");
/// Envelope digest → inbox key, to answer exact retransmissions without decrypting.
pub(super) const DIGESTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("inbox_digests");

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// Message id.
    #[serde(with = "codec::message_id")]
    pub id: MessageId,
    /// Authenticated sender agency.
    #[serde(with = "codec::agency")]
    pub sender: AgencyId,
    /// Message kind.
    #[serde(with = "codec::kind")]
    pub kind: Kind,
    /// The envelope exactly as received (still encrypted).
    #[serde(with = "codec::bytes")]
    pub envelope: Vec<u8>,
    /// SHA-256 of the envelope.
    pub digest: [u8; 32],
    /// Signed expiry of the message (the replay entry is kept at least until then).
    pub expires: u64,
    /// When it was accepted (milliseconds).
    pub received_ms: u64,
    /// Index of our `received` audit entry.
    pub log_index: u64,
    /// The receipt we returned (tagged COSE_Sign1).
    #[serde(with = "codec::bytes")]
    pub receipt: Vec<u8>,
    /// For a message that came through relays: the route, originator first
    /// (spec/relay.md). Empty for direct delivery.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "codec::agencies"
    )]
    pub via: Vec<AgencyId>,
}

impl InboxRecord {
    /// Its key in the inbox: message id ‖ sender.
    fn key(&self) -> Vec<u8> {
        inbox_key(&self.id, &self.sender)
    }
}

/// Outcome of inserting a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxInsert {
    /// Newly stored.
    Stored,
    /// Already present (a retry or replay): the stored record.
    Duplicate(Box<InboxRecord>),
}

impl Store {
    /// At least `limit` inbox records (fewer only at the end) in (id,
    /// sender) order, starting after every record of id `after`. A page
    /// never splits the records of one id (different senders may reuse an
    /// id; at most one record per listed agency), so it may hold more than
    /// `limit`, and the last record's id is the cursor of the next page.
    pub fn inbox_page(
        &self,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(INBOX)?;
        // Sender ids are ASCII, so `id ‖ 0xff` sorts after every key of `id`.
        let start: Vec<u8> = after
            .map(|a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0xff);
                k
            })
            .unwrap_or_default();
        let mut out: Vec<InboxRecord> = Vec::new();
        for item in t.range::<&[u8]>(start.as_slice()..)? {
            let (k, v) = item?;
            if out.len() >= limit && out.last().map(|r| &r.id.as_bytes()[..]) != k.value().get(..16)
            {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Looks up an inbox record by the digest of its envelope.
    pub fn inbox_by_digest(&self, digest: &Digest) -> Result<Option<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let d = txn.open_table(DIGESTS)?;
        let Some(key) = d.get(&digest.0[..])? else {
            return Ok(None);
        };
        let inbox = txn.open_table(INBOX)?;
        inbox
            .get(key.value())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Looks up an inbox record by sender and message id.
    pub fn inbox_get(
        &self,
        id: &MessageId,
        sender: &AgencyId,
    ) -> Result<Option<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let inbox = txn.open_table(INBOX)?;
        inbox
            .get(inbox_key(id, sender).as_slice())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Inbox records with this message id (normally one).
    pub fn inbox_by_id(&self, id: &MessageId) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let inbox = txn.open_table(INBOX)?;
        let start = id.as_bytes().to_vec();
        let mut end = start.clone();
        end.push(0xff);
        let mut out = Vec::new();
        for item in inbox.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            out.push(decode(item?.1.value())?);
        }
        Ok(out)
    }

    /// Every inbox record.
    pub fn all_inbox(&self) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(INBOX)?;
        t.iter()?.map(|i| decode(i?.1.value())).collect()
    }

    /// Stores a received message unless (sender, id) is already present, in
    /// which case the stored record is returned: the replay set and the
    /// inbox are one table, so a message is accepted at most once.
    pub async fn insert_inbox(&self, rec: InboxRecord) -> Result<InboxInsert, StoreError> {
        self.insert_inbox_checked(rec, Vec::new())
            .await?
            .ok_or_else(|| StoreError::Db("inbox insert refused".into()))
    }

    /// [`Store::insert_inbox`] in one transaction with the case writes of
    /// the message's workflow plan (for a new message only). `None`: a case
    /// record changed since the check, nothing was stored.
    pub async fn insert_inbox_checked(
        &self,
        rec: InboxRecord,
        cases: Vec<CaseWrite>,
    ) -> Result<Option<InboxInsert>, StoreError> {
        self.write(move |txn| {
            if let Some(existing) = stored(txn, &rec)? {
                return Ok(Some(existing));
            }
            if !Self::apply_cases(txn, &cases)? {
                return Ok(None);
            }
            put_inbox(txn, &rec)?;
            Ok(Some(InboxInsert::Stored))
        })
        .await
    }

    /// Stores, in one durable transaction, the inbox record of a relay hop
    /// received (its replay entry) and the outbox record forwarding it. If
    /// the hop is already in the inbox, nothing is written and the stored
    /// record is returned; if the outbox already holds the id (a message id
    /// reused to collide with another message), nothing is written and
    /// `Ok(None)` is returned.
    pub async fn insert_relay_forward(
        &self,
        hop: InboxRecord,
        forward: OutboxRecord,
    ) -> Result<Option<InboxInsert>, StoreError> {
        self.write(move |txn| {
            if let Some(existing) = stored(txn, &hop)? {
                return Ok(Some(existing));
            }
            if txn
                .open_table(OUTBOX)?
                .get(&forward.id.as_bytes()[..])?
                .is_some()
            {
                return Ok(None);
            }
            put_inbox(txn, &hop)?;
            put_outbox(txn, &forward)?;
            Ok(Some(InboxInsert::Stored))
        })
        .await
    }
}

/// The record already stored for `rec`'s (id, sender), as a duplicate.
fn stored(txn: &WriteTransaction, rec: &InboxRecord) -> Result<Option<InboxInsert>, StoreError> {
    let inbox = txn.open_table(INBOX)?;
    let found = inbox.get(rec.key().as_slice())?;
    found
        .map(|v| Ok(InboxInsert::Duplicate(Box::new(decode(v.value())?))))
        .transpose()
}

/// Writes a new record and its digest entry.
fn put_inbox(txn: &WriteTransaction, rec: &InboxRecord) -> Result<(), StoreError> {
    let key = rec.key();
    txn.open_table(INBOX)?
        .insert(key.as_slice(), encode(rec)?.as_slice())?;
    txn.open_table(DIGESTS)?
        .insert(&rec.digest[..], key.as_slice())?;
    super::queue::enqueue_inbox(txn, rec)
}
