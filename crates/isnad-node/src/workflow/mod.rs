//! The checks of `isnad-mla` applied to every message the node sends or
//! accepts (spec/protocol.md §13), as pure functions: a read view of the
//! case records ([`CaseView`]) and a message in, a [`Plan`] out. No I/O
//! here: the store carries out the plan, the driver appends its entries.
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
//! inbox record ([`crate::store::Store::apply_cases`]); they are refused
//! (and nothing at all is stored) if the record changed since the check
//! ([`Plan::is_current`]). Its `status-changed` entries
//! ([`Plan::entries`]) are appended with the message's own entries.
//!
//! ```text
//! CaseView ──► check_outgoing / check_incoming / on_receipt ──► Plan
//!                                                    writes ──► Store (with the message)
//!                                                   entries ──► audit log
//! ```

use isnad_envelope::{AgencyId, Body, ErrorCode, Header, Message, MessageId, PermissionDecision};
use isnad_log::Entry;
use isnad_mla::{
    check_receive_share, check_send_share, IntelError, LifecycleError, RequestRecord, ShareEvent,
    ShareEventKind, ShareRecord,
};

use crate::store::{CaseView, OutboxRecord, Store, StoreError};

mod locks;
mod memory;
mod plan;
#[cfg(test)]
mod tests;

pub(crate) use locks::RecordLocks;
pub use memory::MemoryCases;
use plan::clip;
pub use plan::Plan;

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
    /// The message lists attachments (spec/attachments.md §6.3) and this
    /// node has no attachment store yet to hold and check them, so it
    /// neither sends nor accepts such a message: a receipt would bind
    /// files the node never stored. Send the files another way.
    #[error("this node cannot store attachments yet; send the message without them")]
    AttachmentsNotStored,
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
            Self::AttachmentsNotStored => ErrorCode::PolicyDenied,
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
            Self::AttachmentsNotStored => "attachments-not-stored",
        }
    }
}

/// The stored record of request `id`.
pub fn request(
    view: &impl CaseView,
    id: &MessageId,
) -> Result<Option<RequestRecord>, WorkflowError> {
    Ok(view.request(id)?)
}

/// The stored record of share `id` of `originator`.
pub fn share(
    view: &impl CaseView,
    id: &MessageId,
    originator: &AgencyId,
) -> Result<Option<ShareRecord>, WorkflowError> {
    Ok(view.share(id, originator)?)
}

/// Every stored share with id `id` (of any originator; normally one).
pub fn shares_with_id(
    view: &impl CaseView,
    id: &MessageId,
) -> Result<Vec<ShareRecord>, WorkflowError> {
    Ok(view.shares_with_id(id)?)
}

/// The share `id` as this node's agency `me` holds it: its own if it is the
/// originator, else the one received (or, if `pick` is given, the first that
/// matches it).
pub fn held_share(
    view: &impl CaseView,
    id: &MessageId,
    me: &AgencyId,
    pick: impl Fn(&ShareRecord) -> bool,
) -> Result<ShareRecord, WorkflowError> {
    let all = shares_with_id(view, id)?;
    let own = all.iter().position(|r| &r.originator == me);
    let chosen = own.or_else(|| all.iter().position(&pick));
    chosen
        .and_then(|i| all.into_iter().nth(i))
        .ok_or_else(|| IntelError::UnknownShare(*id).into())
}

/// Every request record, most urgent first, then by deadline.
pub fn requests(store: &Store) -> Result<Vec<RequestRecord>, WorkflowError> {
    Ok(store.requests()?)
}

/// Every share record.
pub fn shares(store: &Store) -> Result<Vec<ShareRecord>, WorkflowError> {
    Ok(store.shares()?)
}

/// The `status-changed` entries of every request and share event that has
/// no log index, as a plan of entries only (no record writes): changes this
/// node committed before a crash stopped their entries from being appended
/// (spec/transport.md §7). [`crate::node`] logs them at start, which notes
/// their indexes. Reads every record once.
pub(crate) fn unlogged_changes(store: &Store, me: &AgencyId) -> Result<Plan, WorkflowError> {
    Ok(unlogged_in(&store.requests()?, &store.shares()?, me))
}

/// [`unlogged_changes`] of these records.
pub fn unlogged_in(requests: &[RequestRecord], shares: &[ShareRecord], me: &AgencyId) -> Plan {
    let mut out = Plan::default();
    for r in requests {
        let missing: Vec<usize> = (0..r.history.len())
            .filter(|&i| r.history[i].log_index.is_none())
            .collect();
        if !missing.is_empty() {
            let mut plan = Plan::default();
            plan.request(None, r, me);
            out.extend_entries(plan.only_entries(&missing));
        }
    }
    for r in shares {
        let missing: Vec<usize> = (0..r.events.len())
            .filter(|&i| r.events[i].log_index.is_none())
            .collect();
        if !missing.is_empty() {
            let mut plan = Plan::default();
            plan.share(None, r);
            out.extend_entries(plan.only_entries(&missing));
        }
    }
    out
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
    store: &impl CaseView,
    id: &MessageId,
    originator: &AgencyId,
) -> Result<ShareRecord, WorkflowError> {
    share(store, id, originator)?.ok_or_else(|| IntelError::UnknownShare(*id).into())
}

fn known_request(store: &impl CaseView, id: &MessageId) -> Result<RequestRecord, WorkflowError> {
    request(store, id)?.ok_or_else(|| LifecycleError::UnknownRequest(*id).into())
}

/// The hook before a local message is sealed. `msg.header` is the message
/// about to be sent by this node's agency; the body may be completed: an
/// `mla-status` gets `previous` (the state it changes from).
pub fn check_outgoing(
    store: &impl CaseView,
    msg: &mut Message,
    now_ms: u64,
) -> Result<Plan, WorkflowError> {
    if !msg.body.attachments().is_empty() {
        return Err(WorkflowError::AttachmentsNotStored);
    }
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
pub fn check_incoming(
    store: &impl CaseView,
    msg: &Message,
    now_ms: u64,
) -> Result<Plan, WorkflowError> {
    if !msg.body.attachments().is_empty() {
        return Err(WorkflowError::AttachmentsNotStored);
    }
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
    store: &impl CaseView,
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
    store: &impl CaseView,
    me: &AgencyId,
    rec: &OutboxRecord,
    now_ms: u64,
) -> Result<Option<Plan>, WorkflowError> {
    if rec.kind != isnad_envelope::Kind::MlaRequest {
        return Ok(None);
    }
    if let Some(r) = &rec.relay {
        if r.end_to_end_index.is_none() {
            return Ok(None);
        }
    }
    let Some(before) = request(store, &rec.id)? else {
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
    crate::exchange::workflow_rejected(
        h,
        err.code(),
        err.name(),
        clip(&err.to_string()),
        digest,
        ms,
    )
}
