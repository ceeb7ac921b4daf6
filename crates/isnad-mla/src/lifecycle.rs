//! The MLA request lifecycle: the transition table, who may make each
//! transition, and the request record both sides keep (spec/protocol.md §13.1).

use std::fmt;

use isnad_types::{
    AgencyId, Deadline, MessageId, MlaRequest, MlaState, MlaStatus, RefusalGround, Urgency,
};
use serde::{Deserialize, Serialize};

use crate::date;

/// The two parties of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// The agency that sent the `mla-request` (its originating agency).
    Requesting,
    /// The agency the `mla-request` is addressed to (its final addressee).
    Requested,
}

impl Side {
    /// `requesting` or `requested`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Requesting => "requesting",
            Self::Requested => "requested",
        }
    }

    /// The other side.
    pub const fn other(self) -> Self {
        match self {
            Self::Requesting => Self::Requested,
            Self::Requested => Self::Requesting,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who makes a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The nodes record it themselves; it is never sent as `mla-status`:
    /// `draft → submitted` when the requesting node accepts the request for
    /// sending, `submitted → delivered` when the requested node accepts it
    /// (there) and when its signed receipt arrives (at the requesting node).
    Node,
    /// Only the requesting side, by an `mla-status` it signs.
    Requesting,
    /// Only the requested side, by an `mla-status` it signs.
    Requested,
    /// Either side, by an `mla-status` it signs.
    Either,
}

impl By {
    /// Whether `side` may author this transition by an `mla-status`.
    pub const fn allows(self, side: Side) -> bool {
        matches!(
            (self, side),
            (Self::Either, _)
                | (Self::Requesting, Side::Requesting)
                | (Self::Requested, Side::Requested)
        )
    }
}

/// One row of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: MlaState,
    /// State after.
    pub to: MlaState,
    /// Who may make it.
    pub by: By,
}

const fn t(from: MlaState, to: MlaState, by: By) -> Transition {
    Transition { from, to, by }
}

use MlaState as S;

/// Every legal transition (spec/protocol.md §13.1, table 1). Anything not
/// listed is illegal; `closed`, `refused` and `withdrawn` are final.
pub const TRANSITIONS: &[Transition] = &[
    t(S::Draft, S::Submitted, By::Node),
    t(S::Submitted, S::Delivered, By::Node),
    t(S::Delivered, S::Registered, By::Requested),
    t(S::Registered, S::UnderReview, By::Requested),
    t(S::UnderReview, S::SupplementRequested, By::Requested),
    // The requesting side sends the supplement, or the requested side
    // resumes the review once it has it.
    t(S::SupplementRequested, S::UnderReview, By::Either),
    t(S::UnderReview, S::Accepted, By::Requested),
    t(S::UnderReview, S::ConditionsProposed, By::Requested),
    // The requesting side answers proposed conditions (agreement or a
    // counter-proposal in `reason`); the requested side then decides.
    t(S::ConditionsProposed, S::UnderReview, By::Requesting),
    t(S::ConditionsProposed, S::Accepted, By::Requested),
    t(S::Accepted, S::InExecution, By::Requested),
    t(S::InExecution, S::PartiallyExecuted, By::Requested),
    t(S::PartiallyExecuted, S::InExecution, By::Requested),
    t(S::InExecution, S::ResultsTransmitted, By::Requested),
    t(S::PartiallyExecuted, S::ResultsTransmitted, By::Requested),
    t(S::ResultsTransmitted, S::Closed, By::Either),
    // Postponement (UN Model Treaty art. 4(3)) and resumption.
    t(S::Registered, S::Postponed, By::Requested),
    t(S::UnderReview, S::Postponed, By::Requested),
    t(S::Accepted, S::Postponed, By::Requested),
    t(S::InExecution, S::Postponed, By::Requested),
    t(S::Postponed, S::UnderReview, By::Requested),
    t(S::Postponed, S::Accepted, By::Requested),
    t(S::Postponed, S::InExecution, By::Requested),
    // Refusal (UN Model Treaty art. 4(1)), with grounds.
    t(S::Delivered, S::Refused, By::Requested),
    t(S::Registered, S::Refused, By::Requested),
    t(S::UnderReview, S::Refused, By::Requested),
    t(S::SupplementRequested, S::Refused, By::Requested),
    t(S::ConditionsProposed, S::Refused, By::Requested),
    t(S::Postponed, S::Refused, By::Requested),
    // Withdrawal by the requesting side, until results are transmitted.
    t(S::Submitted, S::Withdrawn, By::Requesting),
    t(S::Delivered, S::Withdrawn, By::Requesting),
    t(S::Registered, S::Withdrawn, By::Requesting),
    t(S::UnderReview, S::Withdrawn, By::Requesting),
    t(S::SupplementRequested, S::Withdrawn, By::Requesting),
    t(S::ConditionsProposed, S::Withdrawn, By::Requesting),
    t(S::Accepted, S::Withdrawn, By::Requesting),
    t(S::InExecution, S::Withdrawn, By::Requesting),
    t(S::PartiallyExecuted, S::Withdrawn, By::Requesting),
    t(S::Postponed, S::Withdrawn, By::Requesting),
];

/// Who may make `from → to`, or `None` if the lifecycle has no such transition.
pub fn rule(from: MlaState, to: MlaState) -> Option<By> {
    TRANSITIONS
        .iter()
        .find(|r| r.from == from && r.to == to)
        .map(|r| r.by)
}

/// Whether `state` is final (`closed`, `refused`, `withdrawn`).
pub const fn is_final(state: MlaState) -> bool {
    matches!(state, S::Closed | S::Refused | S::Withdrawn)
}

/// The wire name of a state, e.g. `under-review`.
pub const fn state_name(state: MlaState) -> &'static str {
    match state {
        S::Draft => "draft",
        S::Submitted => "submitted",
        S::Delivered => "delivered",
        S::Registered => "registered",
        S::UnderReview => "under-review",
        S::SupplementRequested => "supplement-requested",
        S::Accepted => "accepted",
        S::ConditionsProposed => "conditions-proposed",
        S::InExecution => "in-execution",
        S::PartiallyExecuted => "partially-executed",
        S::ResultsTransmitted => "results-transmitted",
        S::Closed => "closed",
        S::Postponed => "postponed",
        S::Refused => "refused",
        S::Withdrawn => "withdrawn",
        _ => "unknown",
    }
}

/// Why a status change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    // --- The author asked for something the lifecycle forbids.
    /// The lifecycle has no transition between these states.
    #[error("illegal transition {} → {}: see the transition table (spec/protocol.md §13.1)", state_name(*from), state_name(*to))]
    IllegalTransition {
        /// The request's state.
        from: MlaState,
        /// The state asked for.
        to: MlaState,
    },
    /// The transition exists, but the other side makes it.
    #[error("{} → {} is made by the {} side only, not the {author} side", state_name(*from), state_name(*to), author.other())]
    WrongSide {
        /// The request's state.
        from: MlaState,
        /// The state asked for.
        to: MlaState,
        /// The side that asked.
        author: Side,
    },
    /// `draft`, `submitted` and `delivered` are recorded by the nodes
    /// themselves and never sent as a status change.
    #[error("{} is recorded by the nodes (sending the request, its receipt), never sent as mla-status", state_name(*to))]
    NodeManaged {
        /// The state asked for.
        to: MlaState,
    },
    /// A refusal must state at least one ground (UN Model Treaty art. 4).
    #[error("a refusal must state at least one ground of UN Model Treaty art. 4")]
    RefusalWithoutGrounds,
    /// Grounds were given with a status other than `refused`.
    #[error("refusal grounds are only allowed with status refused")]
    GroundsWithoutRefusal,
    /// The ground `other` was given without a `reason` saying what it is.
    #[error("refusal ground \"other\" needs the grounds in reason")]
    OtherGroundUnexplained,
    /// The agency is neither the requesting nor the requested side.
    #[error("{agency} is not a party to request {request}")]
    NotAParty {
        /// The request.
        request: MessageId,
        /// The agency.
        agency: AgencyId,
    },
    /// A status change must go to the other party of the request.
    #[error("a status change of request {request} must be addressed to {expected}, not {got}")]
    WrongAddressee {
        /// The request.
        request: MessageId,
        /// The other party.
        expected: AgencyId,
        /// The addressee given.
        got: AgencyId,
    },
    /// No request with this id is known here.
    #[error("unknown request {0}: no mla-request with this id was sent or received here")]
    UnknownRequest(MessageId),
    /// A request with this id exists already.
    #[error("request id {0} is already in use")]
    DuplicateRequest(MessageId),
    /// The local author's view (`previous`) is not the request's state: it
    /// changed meanwhile. Look at the request again and decide anew.
    #[error("request is {} now, not {} as the change assumed; reload it", state_name(*current), state_name(*previous))]
    StaleView {
        /// The request's state.
        current: MlaState,
        /// The state the author assumed.
        previous: MlaState,
    },

    /// The request's record holds [`crate::MAX_RECORD_EVENTS`] status
    /// changes: no further change is taken. Close this request and send a
    /// new one if the matter continues.
    #[error("request {request} already records {events} status changes, the most one request holds; close it and send a new request")]
    RecordFull {
        /// The request.
        request: MessageId,
        /// Status changes on record.
        events: usize,
    },

    // --- Timing: nobody is at fault.
    /// The peer's change follows one of its own that has not arrived yet:
    /// answer `unavailable` so it retries.
    #[error("the change assumes {} but the request is {} here: an earlier change is still in transit; retry", state_name(*previous), state_name(*current))]
    OutOfOrder {
        /// The request's state here.
        current: MlaState,
        /// The state the author assumed.
        previous: MlaState,
    },
}

impl LifecycleError {
    /// Whether the same message may be accepted later (an earlier one is in
    /// transit): the receiver answers `unavailable` instead of refusing.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::OutOfOrder { .. } | Self::UnknownRequest(_))
    }
}

/// Checks a status body on its own: grounds only with and always with a
/// refusal, `other` explained, no node-managed target state.
pub fn check_status_body(status: &MlaStatus) -> Result<(), LifecycleError> {
    if matches!(status.status, S::Draft | S::Submitted | S::Delivered) {
        return Err(LifecycleError::NodeManaged { to: status.status });
    }
    let refused = status.status == S::Refused;
    if refused && status.refusal_grounds.is_empty() {
        return Err(LifecycleError::RefusalWithoutGrounds);
    }
    if !refused && !status.refusal_grounds.is_empty() {
        return Err(LifecycleError::GroundsWithoutRefusal);
    }
    let explained = status
        .reason
        .as_deref()
        .is_some_and(|r| !r.trim().is_empty());
    if status.refusal_grounds.contains(&RefusalGround::Other) && !explained {
        return Err(LifecycleError::OtherGroundUnexplained);
    }
    Ok(())
}

/// One recorded change of a request's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StatusEvent {
    /// When it was recorded here, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// State before.
    pub from: MlaState,
    /// State after.
    pub to: MlaState,
    /// The agency that made it (the node itself for node-managed ones).
    pub by: AgencyId,
    /// The message that carried it (`mla-request`, `mla-status`), if any.
    pub message_id: Option<MessageId>,
    /// Reason or note.
    pub reason: Option<String>,
    /// Refusal grounds.
    #[serde(default)]
    pub refusal_grounds: Vec<RefusalGround>,
    /// Index of this node's `status-changed` audit entry, once written.
    pub log_index: Option<u64>,
}

/// What either side keeps about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RequestRecord {
    /// Message id of the `mla-request`.
    pub request_id: MessageId,
    /// The requesting side (the request's originating agency).
    pub requesting: AgencyId,
    /// The requested side (the request's final addressee).
    pub requested: AgencyId,
    /// The requesting side's reference.
    pub reference: String,
    /// Urgency.
    pub urgency: Urgency,
    /// Deadline, if any.
    pub deadline: Option<Deadline>,
    /// Current state.
    pub state: MlaState,
    /// Every change, oldest first.
    pub history: Vec<StatusEvent>,
}

impl RequestRecord {
    /// The record the requesting node starts when it accepts `request` for
    /// sending: `draft → submitted`.
    pub fn submitted(
        request_id: MessageId,
        requesting: AgencyId,
        requested: AgencyId,
        request: &MlaRequest,
        at_ms: u64,
    ) -> Self {
        Self::new(request_id, requesting.clone(), requested, request).with_event(
            S::Draft,
            S::Submitted,
            requesting,
            at_ms,
        )
    }

    /// The record the requested node starts when it accepts `request`:
    /// `submitted → delivered`.
    pub fn delivered(
        request_id: MessageId,
        requesting: AgencyId,
        requested: AgencyId,
        request: &MlaRequest,
        at_ms: u64,
    ) -> Self {
        Self::new(request_id, requesting, requested.clone(), request).with_event(
            S::Submitted,
            S::Delivered,
            requested,
            at_ms,
        )
    }

    fn new(
        request_id: MessageId,
        requesting: AgencyId,
        requested: AgencyId,
        request: &MlaRequest,
    ) -> Self {
        Self {
            request_id,
            requesting,
            requested,
            reference: request.reference.clone(),
            urgency: request.urgency,
            deadline: request.deadline.clone(),
            state: S::Draft,
            history: Vec::new(),
        }
    }

    fn with_event(mut self, from: MlaState, to: MlaState, by: AgencyId, at_ms: u64) -> Self {
        self.push(from, to, by, None, at_ms);
        self.state = to;
        self
    }

    fn push(
        &mut self,
        from: MlaState,
        to: MlaState,
        by: AgencyId,
        status: Option<(&MlaStatus, MessageId)>,
        at_ms: u64,
    ) {
        self.history.push(StatusEvent {
            at_ms,
            from,
            to,
            by,
            message_id: status.map(|(_, id)| id).or(if to == S::Submitted {
                Some(self.request_id)
            } else {
                None
            }),
            reason: status.and_then(|(s, _)| s.reason.clone()),
            refusal_grounds: status
                .map(|(s, _)| s.refusal_grounds.clone())
                .unwrap_or_default(),
            log_index: None,
        });
    }

    /// Which side `agency` is.
    pub fn side_of(&self, agency: &AgencyId) -> Result<Side, LifecycleError> {
        if agency == &self.requesting {
            Ok(Side::Requesting)
        } else if agency == &self.requested {
            Ok(Side::Requested)
        } else {
            Err(LifecycleError::NotAParty {
                request: self.request_id,
                agency: agency.clone(),
            })
        }
    }

    /// The other party of `side`.
    pub fn party(&self, side: Side) -> &AgencyId {
        match side {
            Side::Requesting => &self.requesting,
            Side::Requested => &self.requested,
        }
    }

    /// Checks a change this node's own agency `author` wants to send to
    /// `to`: the author's view (`previous`, if given) must be the current
    /// state. Returns the state the change starts from.
    pub fn check_local(
        &self,
        author: &AgencyId,
        to: &AgencyId,
        status: &MlaStatus,
    ) -> Result<MlaState, LifecycleError> {
        let side = self.parties(author, to)?;
        check_status_body(status)?;
        if let Some(previous) = status.previous {
            if previous != self.state {
                return Err(LifecycleError::StaleView {
                    current: self.state,
                    previous,
                });
            }
        }
        check_rule(self.state, status.status, side)?;
        Ok(self.state)
    }

    /// Checks a change received from the peer `author`, addressed to `to`.
    ///
    /// A change from the requested side proves delivery, so a requesting
    /// record still `submitted` is taken as `delivered`. If the author says
    /// it started from a state that only its own further changes lead to
    /// from here, those are still in transit: [`LifecycleError::OutOfOrder`].
    /// Otherwise the change must be legal from the current state and made by
    /// the author's side. Returns the state the change starts from.
    pub fn check_peer(
        &self,
        author: &AgencyId,
        to: &AgencyId,
        status: &MlaStatus,
    ) -> Result<MlaState, LifecycleError> {
        let side = self.parties(author, to)?;
        check_status_body(status)?;
        let current = if self.state == S::Submitted && side == Side::Requested {
            S::Delivered
        } else {
            self.state
        };
        if let Some(previous) = status.previous {
            if previous != current && reachable_by(side, current, previous) {
                return Err(LifecycleError::OutOfOrder { current, previous });
            }
        }
        check_rule(current, status.status, side)?;
        Ok(current)
    }

    /// Whether one more status change fits ([`crate::MAX_RECORD_EVENTS`]).
    pub fn check_room(&self) -> Result<(), LifecycleError> {
        if self.history.len() >= crate::MAX_RECORD_EVENTS {
            return Err(LifecycleError::RecordFull {
                request: self.request_id,
                events: self.history.len(),
            });
        }
        Ok(())
    }

    /// Records a change checked by [`Self::check_local`] or
    /// [`Self::check_peer`] (which returned `from`), carried by message `id`.
    pub fn apply(
        &mut self,
        from: MlaState,
        author: &AgencyId,
        status: &MlaStatus,
        id: MessageId,
        at_ms: u64,
    ) {
        if self.state == S::Submitted && from == S::Delivered {
            let requested = self.requested.clone();
            self.push(S::Submitted, S::Delivered, requested, None, at_ms);
        }
        self.push(
            from,
            status.status,
            author.clone(),
            Some((status, id)),
            at_ms,
        );
        self.state = status.status;
    }

    /// Records that the requested side's signed receipt for the request
    /// arrived: `submitted → delivered`. Returns whether the state changed
    /// (a later state is kept).
    pub fn record_delivery(&mut self, at_ms: u64) -> bool {
        if self.state != S::Submitted {
            return false;
        }
        let requested = self.requested.clone();
        self.push(S::Submitted, S::Delivered, requested, None, at_ms);
        self.state = S::Delivered;
        true
    }

    /// When the deadline passes: the end of its day, UTC, in seconds since
    /// the Unix epoch.
    pub fn deadline_secs(&self) -> Option<u64> {
        let d = self.deadline.as_ref()?;
        date::day_start_secs(&d.date).map(|s| s + 86_400)
    }

    /// Whether the request is past its deadline at `now_secs` and still
    /// waiting for results (not results-transmitted, closed, refused or
    /// withdrawn).
    pub fn overdue(&self, now_secs: u64) -> bool {
        let waiting = !is_final(self.state) && self.state != S::ResultsTransmitted;
        waiting && self.deadline_secs().is_some_and(|d| now_secs >= d)
    }

    fn parties(&self, author: &AgencyId, to: &AgencyId) -> Result<Side, LifecycleError> {
        let side = self.side_of(author)?;
        let other = self.party(side.other());
        if to != other {
            return Err(LifecycleError::WrongAddressee {
                request: self.request_id,
                expected: other.clone(),
                got: to.clone(),
            });
        }
        Ok(side)
    }

    /// Encodes the record for storage (CBOR).
    pub fn to_cbor(&self) -> Vec<u8> {
        crate::to_cbor(self)
    }

    /// Decodes a stored record; damaged bytes give an error, never a panic.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, crate::RecordError> {
        crate::from_cbor(bytes)
    }
}

/// Checks `from → to` for `side`.
pub fn check_rule(from: MlaState, to: MlaState, side: Side) -> Result<(), LifecycleError> {
    match rule(from, to) {
        None => Err(LifecycleError::IllegalTransition { from, to }),
        Some(By::Node) => Err(LifecycleError::NodeManaged { to }),
        Some(by) if by.allows(side) => Ok(()),
        Some(_) => Err(LifecycleError::WrongSide {
            from,
            to,
            author: side,
        }),
    }
}

/// Whether `target` can be reached from `start` by one or more transitions
/// `side` may make.
fn reachable_by(side: Side, start: MlaState, target: MlaState) -> bool {
    let mut seen = vec![start];
    let mut frontier = vec![start];
    while let Some(s) = frontier.pop() {
        for r in TRANSITIONS {
            if r.from == s && r.by.allows(side) {
                if r.to == target {
                    return true;
                }
                if !seen.contains(&r.to) {
                    seen.push(r.to);
                    frontier.push(r.to);
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [MlaState; 15] = [
        S::Draft,
        S::Submitted,
        S::Delivered,
        S::Registered,
        S::UnderReview,
        S::SupplementRequested,
        S::Accepted,
        S::ConditionsProposed,
        S::InExecution,
        S::PartiallyExecuted,
        S::ResultsTransmitted,
        S::Closed,
        S::Postponed,
        S::Refused,
        S::Withdrawn,
    ];

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).expect("agency")
    }

    fn request() -> MlaRequest {
        use isnad_types::body::{AssistanceType, Confidentiality, Offence, ProceedingNature};
        MlaRequest {
            reference: "R-1".into(),
            requesting_authority: "A".into(),
            requested_authority: None,
            subject: "S".into(),
            nature: ProceedingNature::Investigation,
            summary_of_facts: "F".into(),
            offences: vec![Offence {
                description: "d".into(),
                legal_provision: "p".into(),
                penalty: "x".into(),
            }],
            assistance_sought: vec![AssistanceType::Records],
            assistance_details: "D".into(),
            persons: vec![],
            procedure: None,
            confidentiality: Confidentiality {
                required: false,
                reason: None,
            },
            urgency: Urgency::Urgent,
            deadline: Some(Deadline {
                date: "2026-12-15".into(),
                reason: None,
            }),
            legal_basis: vec!["UNTOC art. 18".into()],
            case_references: vec![],
            attachments: Vec::new(),
            extensions: Default::default(),
        }
    }

    fn status(to: MlaState) -> MlaStatus {
        MlaStatus {
            request_id: MessageId::from_bytes([1; 16]),
            status: to,
            previous: None,
            reason: Some("note".into()),
            refusal_grounds: if to == S::Refused {
                vec![RefusalGround::DualCriminality]
            } else {
                vec![]
            },
            attachments: Vec::new(),
            extensions: Default::default(),
        }
    }

    fn record(state: MlaState) -> RequestRecord {
        let mut r = RequestRecord::delivered(
            MessageId::from_bytes([1; 16]),
            agency("iq.moj.ca"),
            agency("fr.mj.bepi"),
            &request(),
            1,
        );
        r.state = state;
        r
    }

    #[test]
    fn a_request_record_takes_a_bounded_number_of_changes() {
        let mut r = record(S::InExecution);
        let change = r.history.first().cloned().expect("history");
        while r.history.len() < crate::MAX_RECORD_EVENTS {
            assert_eq!(r.check_room(), Ok(()));
            r.history.push(change.clone());
        }
        assert_eq!(
            r.check_room(),
            Err(LifecycleError::RecordFull {
                request: r.request_id,
                events: crate::MAX_RECORD_EVENTS
            })
        );
        assert!(r.to_cbor().len() < crate::MAX_RECORD_BYTES / 4);
        assert!(!r.check_room().is_err_and(|e| e.is_transient()));
    }

    /// Every (from, to, side) combination: accepted exactly when the table
    /// lists the transition for that side, refused with the right typed error
    /// otherwise, both for local changes and for changes from the peer.
    #[test]
    fn every_transition_for_each_side() {
        let (ing, ed) = (agency("iq.moj.ca"), agency("fr.mj.bepi"));
        let mut legal = 0;
        for from in ALL {
            for to in ALL {
                for (side, author, addressee) in
                    [(Side::Requesting, &ing, &ed), (Side::Requested, &ed, &ing)]
                {
                    let rec = record(from);
                    let st = status(to);
                    let local = rec.check_local(author, addressee, &st);
                    let peer = if from == S::Submitted {
                        None // the peer path treats submitted as delivered, checked below
                    } else {
                        Some(rec.check_peer(author, addressee, &st))
                    };
                    let expected = match rule(from, to) {
                        _ if matches!(to, S::Draft | S::Submitted | S::Delivered) => {
                            Err(LifecycleError::NodeManaged { to })
                        }
                        None => Err(LifecycleError::IllegalTransition { from, to }),
                        Some(By::Node) => Err(LifecycleError::NodeManaged { to }),
                        Some(by) if by.allows(side) => Ok(from),
                        Some(_) => Err(LifecycleError::WrongSide {
                            from,
                            to,
                            author: side,
                        }),
                    };
                    legal += usize::from(expected.is_ok());
                    assert_eq!(local, expected, "local {from:?} → {to:?} by {side}");
                    if let Some(peer) = peer {
                        assert_eq!(peer, expected, "peer {from:?} → {to:?} by {side}");
                    }
                }
            }
        }
        // The table authored by messages (not node-managed rows), Either counted twice.
        let want: usize = TRANSITIONS
            .iter()
            .map(|r| match r.by {
                By::Node => 0,
                By::Either => 2,
                _ => 1,
            })
            .sum();
        assert_eq!(legal, want);
    }

    #[test]
    fn only_the_requested_side_accepts_refuses_executes() {
        let (ing, ed) = (agency("iq.moj.ca"), agency("fr.mj.bepi"));
        for (from, to) in [
            (S::UnderReview, S::Accepted),
            (S::UnderReview, S::Refused),
            (S::Accepted, S::InExecution),
            (S::InExecution, S::ResultsTransmitted),
        ] {
            assert_eq!(
                record(from).check_peer(&ing, &ed, &status(to)),
                Err(LifecycleError::WrongSide {
                    from,
                    to,
                    author: Side::Requesting
                })
            );
            assert_eq!(record(from).check_peer(&ed, &ing, &status(to)), Ok(from));
        }
        assert_eq!(
            record(S::UnderReview).check_local(&ed, &ing, &status(S::Withdrawn)),
            Err(LifecycleError::WrongSide {
                from: S::UnderReview,
                to: S::Withdrawn,
                author: Side::Requested
            })
        );
    }

    #[test]
    fn final_states_have_no_way_out() {
        for from in [S::Closed, S::Refused, S::Withdrawn] {
            assert!(is_final(from));
            assert!(TRANSITIONS.iter().all(|r| r.from != from));
        }
    }

    #[test]
    fn refusal_needs_grounds_and_other_needs_reason() {
        let mut st = status(S::Refused);
        st.refusal_grounds.clear();
        assert_eq!(
            check_status_body(&st),
            Err(LifecycleError::RefusalWithoutGrounds)
        );
        st.refusal_grounds = vec![RefusalGround::Other];
        st.reason = None;
        assert_eq!(
            check_status_body(&st),
            Err(LifecycleError::OtherGroundUnexplained)
        );
        st.reason = Some("statute of limitations".into());
        assert_eq!(check_status_body(&st), Ok(()));
        let mut st = status(S::Accepted);
        st.refusal_grounds = vec![RefusalGround::PoliticalOffence];
        assert_eq!(
            check_status_body(&st),
            Err(LifecycleError::GroundsWithoutRefusal)
        );
    }

    #[test]
    fn parties_and_addressee_are_checked() {
        let rec = record(S::Delivered);
        let stranger = agency("de.bka");
        assert!(matches!(
            rec.check_peer(&stranger, &agency("iq.moj.ca"), &status(S::Registered)),
            Err(LifecycleError::NotAParty { .. })
        ));
        assert!(matches!(
            rec.check_local(&agency("fr.mj.bepi"), &stranger, &status(S::Registered)),
            Err(LifecycleError::WrongAddressee { .. })
        ));
    }

    #[test]
    fn stale_local_view_is_refused() {
        let rec = record(S::UnderReview);
        let mut st = status(S::Accepted);
        st.previous = Some(S::Registered);
        assert_eq!(
            rec.check_local(&agency("fr.mj.bepi"), &agency("iq.moj.ca"), &st),
            Err(LifecycleError::StaleView {
                current: S::UnderReview,
                previous: S::Registered
            })
        );
        st.previous = Some(S::UnderReview);
        assert!(rec
            .check_local(&agency("fr.mj.bepi"), &agency("iq.moj.ca"), &st)
            .is_ok());
    }

    #[test]
    fn overtaking_change_from_the_peer_is_out_of_order_not_illegal() {
        let (ing, ed) = (agency("iq.moj.ca"), agency("fr.mj.bepi"));
        // The requesting side is at delivered; the requested side registered
        // and then started the review, and the second change arrived first.
        let rec = record(S::Delivered);
        let mut st = status(S::UnderReview);
        st.previous = Some(S::Registered);
        let e = rec.check_peer(&ed, &ing, &st);
        assert_eq!(
            e,
            Err(LifecycleError::OutOfOrder {
                current: S::Delivered,
                previous: S::Registered
            })
        );
        assert!(e.is_err_and(|e| e.is_transient()));
        // Without `previous` it is simply illegal.
        st.previous = None;
        assert_eq!(
            rec.check_peer(&ed, &ing, &st),
            Err(LifecycleError::IllegalTransition {
                from: S::Delivered,
                to: S::UnderReview
            })
        );
        // A withdrawal that crossed an acceptance still applies: accepted is
        // not reachable by the requesting side's own changes.
        let rec = record(S::Accepted);
        let mut st = status(S::Withdrawn);
        st.previous = Some(S::UnderReview);
        assert_eq!(rec.check_peer(&ing, &ed, &st), Ok(S::Accepted));
    }

    #[test]
    fn requesting_record_takes_a_status_from_the_requested_side_as_proof_of_delivery() {
        let (ing, ed) = (agency("iq.moj.ca"), agency("fr.mj.bepi"));
        let mut rec = RequestRecord::submitted(
            MessageId::from_bytes([1; 16]),
            ing.clone(),
            ed.clone(),
            &request(),
            1,
        );
        assert_eq!(rec.state, S::Submitted);
        let st = status(S::Registered);
        let from = rec.check_peer(&ed, &ing, &st).expect("legal");
        assert_eq!(from, S::Delivered);
        rec.apply(from, &ed, &st, MessageId::from_bytes([2; 16]), 5);
        assert_eq!(rec.state, S::Registered);
        let path: Vec<_> = rec.history.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(
            path,
            [
                (S::Draft, S::Submitted),
                (S::Submitted, S::Delivered),
                (S::Delivered, S::Registered)
            ]
        );
        // The receipt arriving afterwards changes nothing.
        assert!(!rec.record_delivery(6));
    }

    #[test]
    fn receipt_moves_submitted_to_delivered_once() {
        let mut rec = RequestRecord::submitted(
            MessageId::from_bytes([1; 16]),
            agency("iq.moj.ca"),
            agency("fr.mj.bepi"),
            &request(),
            1,
        );
        assert!(rec.record_delivery(2));
        assert_eq!(rec.state, S::Delivered);
        assert!(!rec.record_delivery(3));
        assert_eq!(rec.history.len(), 2);
    }

    #[test]
    fn overdue_after_the_deadline_day_while_waiting() {
        let mut rec = record(S::UnderReview);
        // 2026-12-15 00:00 UTC = 1_797_292_800.
        let day = 1_797_292_800;
        assert_eq!(rec.deadline_secs(), Some(day + 86_400));
        assert!(!rec.overdue(day + 86_399));
        assert!(rec.overdue(day + 86_400));
        rec.state = S::ResultsTransmitted;
        assert!(!rec.overdue(day + 86_400 * 10));
        rec.state = S::Withdrawn;
        assert!(!rec.overdue(day + 86_400 * 10));
        rec.state = S::Postponed;
        assert!(rec.overdue(day + 86_400 * 10));
        rec.deadline = None;
        assert!(!rec.overdue(u64::MAX));
    }

    #[test]
    fn record_round_trips_and_damage_is_an_error() {
        let rec = record(S::UnderReview);
        let bytes = rec.to_cbor();
        assert_eq!(RequestRecord::from_cbor(&bytes), Ok(rec));
        assert!(RequestRecord::from_cbor(&bytes[..bytes.len() / 2]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(RequestRecord::from_cbor(&trailing).is_err());
    }
}
