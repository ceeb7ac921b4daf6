//! Request and share state in the node's database, and the checks of
//! `isnad-mla` applied to every message the node sends or accepts
//! (spec/protocol.md §13).
//!
//! Two hooks, both pure reads that return a [`Plan`]:
//!
//! * [`check_outgoing`] before a local message is sealed: a refusal means
//!   nothing is stored or sent;
//! * [`check_incoming`] after a peer's message is opened and accepted by
//!   policy, before anything is logged as received: a refusal is answered
//!   with a typed error ([`WorkflowError::code`]) and logged as `rejected`.
//!
//! The plan's writes are committed in the same transaction as the outbox or
//! inbox record ([`Plan::apply`]); they are refused (and nothing at all is
//! stored) if the record changed since the check. Its `status-changed`
//! entries ([`Plan::entries`]) are appended with the message's own entries.

use isnad_envelope::{
    AgencyId, Body, ErrorCode, Header, Message, MessageId, MlaState, PermissionDecision,
};
use isnad_log::{Entry, EventType};
use isnad_mla::{
    check_receive_share, check_send_share, state_name, IntelError, LifecycleError, RequestRecord,
    ShareEvent, ShareEventKind, ShareRecord,
};
use redb::{ReadableTable as _, TableDefinition, WriteTransaction};

use crate::store::{Durability, OutboxRecord, Store, StoreError};

/// MLA requests: request id → [`RequestRecord`] (CBOR).
const REQUESTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("mla_requests");
/// Intel shares: share id ‖ originator agency id → [`ShareRecord`] (CBOR).
/// Share ids are chosen by originators, so they are unique per originator.
const SHARES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("intel_shares");

/// Longest reason or detail value in an audit entry (spec/audit-log.md §2.1).
const MAX_LOG_TEXT: usize = 1024;

/// Why the workflow refuses a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The MLA lifecycle forbids it (or, if transient, not yet).
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The intelligence handling rules forbid it (or, if transient, not yet).
    #[error(transparent)]
    Intel(#[from] IntelError),
    /// The request or share changed while the message was being processed;
    /// try again.
    #[error("the request or share changed meanwhile; try again")]
    Conflict,
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<isnad_mla::RecordError> for WorkflowError {
    fn from(e: isnad_mla::RecordError) -> Self {
        Self::Store(StoreError::Corrupt(e.to_string()))
    }
}

impl WorkflowError {
    /// The wire error code answered to a peer: `illegal-transition`,
    /// `permission-required`, or `unavailable` when the same message may be
    /// accepted later (an earlier one is in transit, or a local failure).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Lifecycle(e) if e.is_transient() => ErrorCode::Unavailable,
            Self::Intel(e) if e.is_transient() => ErrorCode::Unavailable,
            Self::Intel(IntelError::PermissionRequired { .. }) => ErrorCode::PermissionRequired,
            Self::Lifecycle(_) | Self::Intel(_) => ErrorCode::IllegalTransition,
            Self::Conflict | Self::Store(_) => ErrorCode::Unavailable,
        }
    }

    /// A short name for the API (`illegal-transition`, `wrong-side`,
    /// `unknown-request`, `permission-required`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lifecycle(e) => match e {
                LifecycleError::IllegalTransition { .. } => "illegal-transition",
                LifecycleError::WrongSide { .. } => "wrong-side",
                LifecycleError::NodeManaged { .. } => "node-managed-state",
                LifecycleError::RefusalWithoutGrounds
                | LifecycleError::GroundsWithoutRefusal
                | LifecycleError::OtherGroundUnexplained => "refusal-grounds",
                LifecycleError::NotAParty { .. } | LifecycleError::WrongAddressee { .. } => {
                    "not-a-party"
                }
                LifecycleError::UnknownRequest(_) => "unknown-request",
                LifecycleError::StaleView { .. } => "stale-view",
                LifecycleError::RecordFull { .. } => "record-full",
                _ => "illegal-transition",
            },
            Self::Intel(e) => match e {
                IntelError::PermissionRequired { .. } => "permission-required",
                IntelError::ShareFull { .. } => "record-full",
                IntelError::UnknownShare(_) => "unknown-share",
                IntelError::NotOriginator { .. } => "not-originator",
                IntelError::Retracted(_) => "retracted",
                _ => "handling-violation",
            },
            Self::Conflict => "conflict",
            Self::Store(_) => "unavailable",
        }
    }
}

/// Locks that serialize the check and the write of messages changing the
/// same request or share record (striped by a hash of the record's key).
/// Without them, messages about one record checked at the same time (a burst
/// of corrections, several copies of one share) all but one fail
/// [`Plan::apply`] and are answered `unavailable`, and the sender's growing
/// backoff stalls them.
pub(crate) struct RecordLocks(Vec<tokio::sync::Mutex<()>>);

/// How many stripes [`RecordLocks`] has.
const LOCK_STRIPES: usize = 64;

/// How many times a check is repeated when the record it changes is not the
/// one locked (the state changed in between) before giving up with
/// [`WorkflowError::Conflict`].
const LOCK_TRIES: usize = 3;

impl RecordLocks {
    pub(crate) fn new() -> Self {
        Self(
            (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }

    async fn lock(&self, plan: &Plan) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash as _, Hasher as _};
        let key = plan.record()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let stripe = self.0.get((h.finish() % LOCK_STRIPES as u64) as usize)?;
        Some(stripe.lock().await)
    }

    /// Runs `check`, locks the record its plan changes, and runs `check`
    /// again under the lock: the returned plan cannot conflict with another
    /// locked writer as long as the guard is held (until the plan is
    /// applied).
    pub(crate) async fn checked<T>(
        &self,
        check: impl Fn() -> Result<(Plan, T), WorkflowError>,
    ) -> Result<(Plan, T, Option<tokio::sync::MutexGuard<'_, ()>>), WorkflowError> {
        let (mut plan, _) = check()?;
        for _ in 0..LOCK_TRIES {
            let guard = self.lock(&plan).await;
            let (again, t) = check()?;
            if again.record() == plan.record() {
                return Ok((again, t, guard));
            }
            plan = again;
        }
        Err(WorkflowError::Conflict)
    }
}

/// Creates the workflow tables (called when the store is opened).
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(REQUESTS).map_err(db)?;
    txn.open_table(SHARES).map_err(db)?;
    Ok(())
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Requests,
    Shares,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            Self::Requests => REQUESTS,
            Self::Shares => SHARES,
        }
    }
}

/// One record write, valid only if the record still has `expect` events
/// (`None`: it must not exist yet).
#[derive(Debug)]
struct Write {
    table: Table,
    key: Vec<u8>,
    expect: Option<usize>,
    bytes: Vec<u8>,
}

/// The changes a checked message makes: record writes and audit entries.
#[derive(Debug, Default)]
pub struct Plan {
    writes: Vec<Write>,
    /// Entries with the record event each one documents.
    entries: Vec<(Entry, Table, Vec<u8>, usize)>,
}

impl Plan {
    /// Whether the message changes nothing here (receipts, errors, …).
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The record the plan changes (plans change at most one).
    fn record(&self) -> Option<(Table, &[u8])> {
        self.writes.first().map(|w| (w.table, w.key.as_slice()))
    }

    /// The `status-changed` entries to append with the message's entries.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.iter().map(|e| e.0.clone()).collect()
    }

    /// Inside the transaction that stores the message: checks that every
    /// record is as it was when planned, then writes them. `false`: a record
    /// changed, nothing was written.
    pub fn apply(&self, txn: &WriteTransaction) -> Result<bool, StoreError> {
        for w in &self.writes {
            let t = txn.open_table(w.table.def()).map_err(db)?;
            let now = match t.get(&w.key[..]).map_err(db)? {
                None => None,
                Some(v) => Some(event_count(w.table, v.value())?),
            };
            if now != w.expect {
                return Ok(false);
            }
        }
        for w in &self.writes {
            txn.open_table(w.table.def())
                .map_err(db)?
                .insert(&w.key[..], w.bytes.as_slice())
                .map_err(db)?;
        }
        Ok(true)
    }

    /// When the entries were appended before the commit (the receiving
    /// side logs first), from index `first` in the order of
    /// [`Plan::entries`]: writes each index into the record the plan
    /// writes, so the record is committed with its indexes.
    pub fn set_indexes(&mut self, first: u64) -> Result<(), StoreError> {
        for (i, (_, table, key, pos)) in self.entries.iter().enumerate() {
            if let Some(w) = self
                .writes
                .iter_mut()
                .find(|w| w.table == *table && &w.key == key)
            {
                w.bytes = with_log_index(*table, &w.bytes, *pos, first + i as u64)?;
            }
        }
        Ok(())
    }

    /// The notes [`Plan::note_in`] makes for entries appended from `first`.
    pub fn notes(&self, first: u64) -> IndexNotes {
        IndexNotes(
            self.entries
                .iter()
                .enumerate()
                .map(|(i, (_, t, k, pos))| (*t, k.clone(), *pos, first + i as u64))
                .collect(),
        )
    }

    /// After the entries were appended from index `first` (in the order of
    /// [`Plan::entries`]): notes each index in its record (lazily: losing
    /// this only loses the shortcut; the log has the entry).
    pub async fn note_indexes(&self, store: &Store, first: u64) {
        let notes = self.notes(first);
        if notes.is_empty() {
            return;
        }
        let r = store
            .write_with(Durability::Lazy, move |txn| notes.write(txn))
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not note status-changed log indexes");
        }
    }

    fn request(&mut self, before: Option<&RequestRecord>, after: &RequestRecord, me: &AgencyId) {
        let key = after.request_id.as_bytes().to_vec();
        let start = before.map_or(0, |r| r.history.len());
        for (pos, ev) in after.history.iter().enumerate().skip(start) {
            let mut e = Entry::new(EventType::StatusChanged, ev.at_ms);
            e.message_id = ev.message_id;
            e.sender = Some(ev.by.clone());
            e.recipient = Some(if ev.by == after.requesting {
                after.requested.clone()
            } else {
                after.requesting.clone()
            });
            e.reason = ev.reason.as_deref().map(clip);
            let d = &mut e.detail;
            d.insert("subject".into(), "mla-request".into());
            d.insert("request-id".into(), after.request_id.to_hex());
            d.insert("from".into(), state_name(ev.from).into());
            d.insert("to".into(), state_name(ev.to).into());
            let by = if matches!(ev.to, MlaState::Submitted | MlaState::Delivered) {
                "node"
            } else if ev.by == after.requesting {
                "requesting"
            } else {
                "requested"
            };
            d.insert("by".into(), by.into());
            if &ev.by == me {
                d.insert("origin".into(), "local".into());
            }
            self.entries.push((e, Table::Requests, key.clone(), pos));
        }
        self.writes.push(Write {
            table: Table::Requests,
            key,
            expect: before.map(|r| r.history.len()),
            bytes: after.to_cbor(),
        });
    }

    fn share(&mut self, before: Option<&ShareRecord>, after: &ShareRecord) {
        let key = share_key(&after.share_id, &after.originator);
        let start = before.map_or(0, |r| r.events.len());
        for (pos, ev) in after.events.iter().enumerate().skip(start) {
            let mut e = Entry::new(EventType::StatusChanged, ev.at_ms);
            e.message_id = Some(ev.message_id);
            e.sender = Some(ev.from.clone());
            e.recipient = Some(ev.to.clone());
            e.reason = ev.note.as_deref().map(clip);
            let d = &mut e.detail;
            d.insert("subject".into(), "intel-share".into());
            d.insert("share-id".into(), after.share_id.to_hex());
            d.insert("event".into(), ev.kind.as_str().into());
            d.insert("originator".into(), after.originator.to_string());
            if let Some(t) = &ev.target {
                d.insert("target".into(), t.to_string());
            }
            self.entries.push((e, Table::Shares, key.clone(), pos));
        }
        self.writes.push(Write {
            table: Table::Shares,
            key,
            expect: before.map(|r| r.events.len()),
            bytes: after.to_cbor(),
        });
    }
}

fn corrupt(e: isnad_mla::RecordError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_LOG_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_LOG_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn event_count(table: Table, bytes: &[u8]) -> Result<usize, StoreError> {
    Ok(match table {
        Table::Requests => RequestRecord::from_cbor(bytes)
            .map_err(corrupt)?
            .history
            .len(),
        Table::Shares => ShareRecord::from_cbor(bytes).map_err(corrupt)?.events.len(),
    })
}

/// The stored record of request `id`.
pub fn request(store: &Store, id: &MessageId) -> Result<Option<RequestRecord>, WorkflowError> {
    let txn = store.read_txn()?;
    let t = txn.open_table(REQUESTS).map_err(db)?;
    let v = t.get(&id.as_bytes()[..]).map_err(db)?;
    Ok(v.map(|v| RequestRecord::from_cbor(v.value())).transpose()?)
}

fn share_key(id: &MessageId, originator: &AgencyId) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(originator.as_str().as_bytes());
    k
}

/// The stored record of share `id` of `originator`.
pub fn share(
    store: &Store,
    id: &MessageId,
    originator: &AgencyId,
) -> Result<Option<ShareRecord>, WorkflowError> {
    let txn = store.read_txn()?;
    let t = txn.open_table(SHARES).map_err(db)?;
    let v = t.get(share_key(id, originator).as_slice()).map_err(db)?;
    Ok(v.map(|v| ShareRecord::from_cbor(v.value())).transpose()?)
}

/// Every stored share with id `id` (of any originator; normally one).
pub fn shares_with_id(store: &Store, id: &MessageId) -> Result<Vec<ShareRecord>, WorkflowError> {
    let txn = store.read_txn()?;
    let t = txn.open_table(SHARES).map_err(db)?;
    let start = id.as_bytes().to_vec();
    let mut end = start.clone();
    end.push(0xff);
    let mut out = Vec::new();
    for item in t
        .range::<&[u8]>(start.as_slice()..end.as_slice())
        .map_err(db)?
    {
        out.push(ShareRecord::from_cbor(item.map_err(db)?.1.value())?);
    }
    Ok(out)
}

/// The share `id` as this node's agency `me` holds it: its own if it is the
/// originator, else the one received (or, if `pick` is given, the first that
/// matches it).
pub fn held_share(
    store: &Store,
    id: &MessageId,
    me: &AgencyId,
    pick: impl Fn(&ShareRecord) -> bool,
) -> Result<ShareRecord, WorkflowError> {
    let all = shares_with_id(store, id)?;
    let own = all.iter().position(|r| &r.originator == me);
    let chosen = own.or_else(|| all.iter().position(&pick));
    chosen
        .and_then(|i| all.into_iter().nth(i))
        .ok_or_else(|| IntelError::UnknownShare(*id).into())
}

/// Every request record, most urgent first, then by deadline.
pub fn requests(store: &Store) -> Result<Vec<RequestRecord>, WorkflowError> {
    let txn = store.read_txn()?;
    let t = txn.open_table(REQUESTS).map_err(db)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(db)? {
        let (_, v) = item.map_err(db)?;
        out.push(RequestRecord::from_cbor(v.value())?);
    }
    out.sort_by_key(|r| {
        (
            std::cmp::Reverse(r.urgency),
            r.deadline_secs().unwrap_or(u64::MAX),
        )
    });
    Ok(out)
}

/// The `status-changed` entries of every request and share event that has
/// no log index, as a plan of entries only (no record writes): changes this
/// node committed before a crash stopped their entries from being appended
/// (spec/transport.md §7). [`crate::node`] logs them at start, which notes
/// their indexes. Reads every record once.
pub(crate) fn unlogged_changes(store: &Store, me: &AgencyId) -> Result<Plan, WorkflowError> {
    let mut out = Plan::default();
    let mut keep = |plan: Plan, missing: &[usize]| {
        out.entries.extend(
            plan.entries
                .into_iter()
                .filter(|(_, _, _, pos)| missing.contains(pos)),
        );
    };
    for r in requests(store)? {
        let missing: Vec<usize> = (0..r.history.len())
            .filter(|&i| r.history[i].log_index.is_none())
            .collect();
        if !missing.is_empty() {
            let mut plan = Plan::default();
            plan.request(None, &r, me);
            keep(plan, &missing);
        }
    }
    for r in shares(store)? {
        let missing: Vec<usize> = (0..r.events.len())
            .filter(|&i| r.events[i].log_index.is_none())
            .collect();
        if !missing.is_empty() {
            let mut plan = Plan::default();
            plan.share(None, &r);
            keep(plan, &missing);
        }
    }
    Ok(out)
}

/// Every share record.
pub fn shares(store: &Store) -> Result<Vec<ShareRecord>, WorkflowError> {
    let txn = store.read_txn()?;
    let t = txn.open_table(SHARES).map_err(db)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(db)? {
        let (_, v) = item.map_err(db)?;
        out.push(ShareRecord::from_cbor(v.value())?);
    }
    Ok(out)
}

/// Log indexes to note in request and share records after their entries
/// were appended (see [`Plan::notes`]).
#[derive(Debug, Default)]
pub struct IndexNotes(Vec<(Table, Vec<u8>, usize, u64)>);

impl IndexNotes {
    /// Whether there is nothing to note.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Inside a transaction: writes each index into its stored record (a
    /// record gone meanwhile is skipped).
    pub fn write(self, txn: &WriteTransaction) -> Result<(), StoreError> {
        for (table, key, pos, index) in self.0 {
            let mut t = txn.open_table(table.def()).map_err(db)?;
            let Some(bytes) = t.get(&key[..]).map_err(db)?.map(|v| v.value().to_vec()) else {
                continue;
            };
            let bytes = with_log_index(table, &bytes, pos, index)?;
            t.insert(&key[..], bytes.as_slice()).map_err(db)?;
        }
        Ok(())
    }
}

/// `bytes`, a record of `table`, with event `pos` noted at log `index`.
fn with_log_index(
    table: Table,
    bytes: &[u8],
    pos: usize,
    index: u64,
) -> Result<Vec<u8>, StoreError> {
    Ok(match table {
        Table::Requests => {
            let mut r = RequestRecord::from_cbor(bytes).map_err(corrupt)?;
            if let Some(e) = r.history.get_mut(pos) {
                e.log_index = Some(index);
            }
            r.to_cbor()
        }
        Table::Shares => {
            let mut r = ShareRecord::from_cbor(bytes).map_err(corrupt)?;
            if let Some(e) = r.events.get_mut(pos) {
                e.log_index = Some(index);
            }
            r.to_cbor()
        }
    })
}

fn event(
    kind: ShareEventKind,
    h: &Header,
    target: Option<&AgencyId>,
    note: Option<&str>,
    at_ms: u64,
) -> ShareEvent {
    ShareEvent {
        at_ms,
        kind,
        from: h.sender.clone(),
        to: h.recipient.clone(),
        message_id: h.id,
        target: target.cloned(),
        note: note.map(str::to_owned),
        log_index: None,
    }
}

fn known_share(
    store: &Store,
    id: &MessageId,
    originator: &AgencyId,
) -> Result<ShareRecord, WorkflowError> {
    share(store, id, originator)?.ok_or_else(|| IntelError::UnknownShare(*id).into())
}

fn known_request(store: &Store, id: &MessageId) -> Result<RequestRecord, WorkflowError> {
    request(store, id)?.ok_or_else(|| LifecycleError::UnknownRequest(*id).into())
}

/// The hook before a local message is sealed. `msg.header` is the message
/// about to be sent by this node's agency; the body may be completed: an
/// `mla-status` gets `previous` (the state it changes from).
pub fn check_outgoing(
    store: &Store,
    msg: &mut Message,
    now_ms: u64,
) -> Result<Plan, WorkflowError> {
    let h = msg.header.clone();
    let (me, to) = (&h.sender, &h.recipient);
    let mut plan = Plan::default();
    let checked = match &mut msg.body {
        Body::MlaRequest(r) => {
            if request(store, &h.id)?.is_some() {
                return Err(LifecycleError::DuplicateRequest(h.id).into());
            }
            let rec = RequestRecord::submitted(h.id, me.clone(), to.clone(), r, now_ms);
            plan.request(None, &rec, me);
            return Ok(plan);
        }
        Body::MlaStatus(s) => {
            let rec = known_request(store, &s.request_id)?;
            rec.check_room()?;
            let from = rec.check_local(me, to, s)?;
            s.previous = Some(from);
            let mut new = rec.clone();
            new.apply(from, me, s, h.id, now_ms);
            plan.request(Some(&rec), &new, me);
            return Ok(plan);
        }
        Body::IntelShare(s) => {
            let originator = s.originator.as_ref().unwrap_or(me);
            let rec = share(store, &s.share_id, originator)?;
            let new = check_send_share(rec.as_ref(), me, to, s)?;
            (rec, new)
        }
        Body::PermissionRequest(p) => {
            let rec = known_share(store, &p.share_id, to)?;
            rec.check_send_permission_request(me, to)?;
            (Some(rec.clone()), rec)
        }
        Body::PermissionAnswer(a) => {
            let rec = held_share(store, &a.share_id, me, |_| true)?;
            rec.check_send_permission_answer(me)?;
            (Some(rec.clone()), rec)
        }
        Body::IntelRetraction(r) => {
            let rec = held_share(store, &r.share_id, me, |_| true)?;
            rec.check_send_update(me, to, true)?;
            (Some(rec.clone()), rec)
        }
        Body::IntelCorrection(c) => {
            let rec = held_share(store, &c.share_id, me, |_| true)?;
            rec.check_send_update(me, to, false)?;
            (Some(rec.clone()), rec)
        }
        _ => return Ok(plan),
    };
    checked.1.check_room()?;
    Ok(share_change(checked, msg, false, now_ms))
}

/// The hook for a message received from a peer, once it is opened,
/// authenticated and allowed by policy, before it is logged as received:
/// `msg.header.sender` is its authenticated author, `msg.header.recipient`
/// this node's agency. Also the entry point for the inner end-to-end
/// message of a relayed envelope.
pub fn check_incoming(store: &Store, msg: &Message, now_ms: u64) -> Result<Plan, WorkflowError> {
    let h = &msg.header;
    let (from, me) = (&h.sender, &h.recipient);
    let mut plan = Plan::default();
    let checked = match &msg.body {
        Body::MlaRequest(r) => {
            if request(store, &h.id)?.is_some() {
                return Err(LifecycleError::DuplicateRequest(h.id).into());
            }
            let rec = RequestRecord::delivered(h.id, from.clone(), me.clone(), r, now_ms);
            plan.request(None, &rec, me);
            return Ok(plan);
        }
        Body::MlaStatus(s) => {
            let rec = known_request(store, &s.request_id)?;
            rec.check_room()?;
            let start = rec.check_peer(from, me, s)?;
            let mut new = rec.clone();
            new.apply(start, from, s, h.id, now_ms);
            plan.request(Some(&rec), &new, me);
            return Ok(plan);
        }
        Body::IntelShare(s) => {
            let originator = s.originator.as_ref().unwrap_or(from);
            let rec = share(store, &s.share_id, originator)?;
            let new = check_receive_share(rec.as_ref(), from, s, h.id)?;
            (rec, new)
        }
        Body::PermissionRequest(p) => {
            let rec = known_share(store, &p.share_id, me)?;
            rec.check_receive_permission_request(me)?;
            (Some(rec.clone()), rec)
        }
        Body::PermissionAnswer(a) => {
            let rec = known_share(store, &a.share_id, from)?;
            rec.check_receive_permission_answer(from)?;
            (Some(rec.clone()), rec)
        }
        Body::IntelRetraction(r) => {
            let rec = received_share(store, &r.share_id, from)?;
            rec.check_receive_update(from, true)?;
            (Some(rec.clone()), rec)
        }
        Body::IntelCorrection(c) => {
            let rec = received_share(store, &c.share_id, from)?;
            rec.check_receive_update(from, false)?;
            (Some(rec.clone()), rec)
        }
        _ => return Ok(plan),
    };
    checked.1.check_room()?;
    Ok(share_change(checked, msg, true, now_ms))
}

/// The change a checked intel message makes to its share record (`before`
/// as stored, `after` as the check returned it), sent or received.
fn share_change(
    (before, mut after): (Option<ShareRecord>, ShareRecord),
    msg: &Message,
    incoming: bool,
    now_ms: u64,
) -> Plan {
    let h = &msg.header;
    let (kind, target, note) = match &msg.body {
        Body::IntelShare(_) if incoming => (ShareEventKind::Received, None, None),
        Body::IntelShare(_) => {
            after.recipients.push((h.recipient.clone(), h.id));
            if after.originator == h.sender {
                (ShareEventKind::Shared, None, None)
            } else {
                (ShareEventKind::Forwarded, None, None)
            }
        }
        Body::PermissionRequest(p) => (
            ShareEventKind::PermissionRequested,
            Some(&p.target),
            Some(p.purpose.as_str()),
        ),
        Body::PermissionAnswer(a) => {
            if incoming {
                after.record_permission(a, h.id);
            }
            (
                answer_kind(a.decision),
                Some(&a.target),
                a.conditions.as_deref(),
            )
        }
        Body::IntelRetraction(r) => {
            after.retracted = true;
            (ShareEventKind::Retracted, None, Some(r.reason.as_str()))
        }
        Body::IntelCorrection(c) => {
            after.corrected_by = Some(h.id);
            (ShareEventKind::Corrected, None, Some(c.reason.as_str()))
        }
        _ => return Plan::default(),
    };
    after.push(event(kind, h, target, note, now_ms));
    let mut plan = Plan::default();
    plan.share(before.as_ref(), &after);
    plan
}

/// The share `id` as received from `from` (the originator, or the agency
/// that passed it on); else the originator's record for the check to refuse.
fn received_share(
    store: &Store,
    id: &MessageId,
    from: &AgencyId,
) -> Result<ShareRecord, WorkflowError> {
    let all = shares_with_id(store, id)?;
    let i = all
        .iter()
        .position(|r| r.source.as_ref() == Some(from))
        .or_else(|| all.iter().position(|r| &r.originator == from))
        .or(if all.is_empty() { None } else { Some(0) });
    i.and_then(|i| all.into_iter().nth(i))
        .ok_or_else(|| IntelError::UnknownShare(*id).into())
}

fn answer_kind(d: PermissionDecision) -> ShareEventKind {
    match d {
        PermissionDecision::Granted => ShareEventKind::PermissionGranted,
        _ => ShareEventKind::PermissionDenied,
    }
}

/// After the signed receipt for an outgoing message arrived: an
/// `mla-request` moves from `submitted` to `delivered` here. For a relayed
/// request only the final recipient's end-to-end receipt counts (the first
/// hop's receipt says only that the central authority has it,
/// spec/relay.md §8): `rec` must already hold it.
pub fn on_receipt(
    store: &Store,
    me: &AgencyId,
    rec: &OutboxRecord,
    now_ms: u64,
) -> Result<Option<Plan>, WorkflowError> {
    if rec.kind != isnad_envelope::Kind::MlaRequest.as_str() {
        return Ok(None);
    }
    if let Some(r) = &rec.relay {
        if r.end_to_end_index.is_none() {
            return Ok(None);
        }
    }
    let Some(before) = request(store, &MessageId::from_bytes(rec.id))? else {
        return Ok(None);
    };
    let mut after = before.clone();
    if !after.record_delivery(now_ms) {
        return Ok(None);
    }
    let mut plan = Plan::default();
    plan.request(Some(&before), &after, me);
    Ok(Some(plan))
}

/// A `rejected` entry for a message the workflow refused.
pub(crate) fn rejected_entry(h: &Header, err: &WorkflowError, digest: [u8; 32], ms: u64) -> Entry {
    let mut e = Entry::new(EventType::Rejected, ms);
    e.message_id = Some(h.id);
    e.sender = Some(h.sender.clone());
    e.recipient = Some(h.recipient.clone());
    e.envelope_sha256 = Some(digest);
    e.reason = Some(err.code().as_str().to_owned());
    e.detail.insert("stage".into(), "workflow".into());
    e.detail.insert("refusal".into(), err.name().into());
    e.detail.insert("detail".into(), clip(&err.to_string()));
    e
}
