//! Intelligence sharing: handling-code rules for onward dissemination, the
//! originator's permissions, retraction and correction (spec/protocol.md §13.3).

use isnad_types::{
    AgencyId, HandlingCode, IntelShare, MessageId, PermissionAnswer, PermissionDecision, Tlp,
};
use serde::{Deserialize, Serialize};

/// Whether passing intelligence with these markings on to another agency
/// needs the originator's permission: handling code H2 ("no onward
/// dissemination without permission") or H3 (restrictions stated in the
/// content, which software cannot read, so treated as H2), TLP:RED or
/// TLP:AMBER+STRICT.
pub fn needs_permission(handling: HandlingCode, tlp: Tlp) -> bool {
    matches!(handling, HandlingCode::H2 | HandlingCode::H3)
        || matches!(tlp, Tlp::Red | Tlp::AmberStrict)
}

/// Why an intelligence message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntelError {
    // --- The author asked for something the handling rules forbid.
    /// Forwarding needs a signed permission of the originator for this
    /// target, and none is on record (or the last answer was a denial).
    #[error("share {share} is restricted (H2/H3, TLP:RED or TLP:AMBER+STRICT): passing it to {target} needs the originator's permission{}", if *denied { "; the originator denied it" } else { ", and none is on record: ask with `isnad intel permission request`" })]
    PermissionRequired {
        /// The share.
        share: MessageId,
        /// The agency it would go to.
        target: AgencyId,
        /// Whether the originator's last answer was a denial.
        denied: bool,
    },
    /// Only the originator may do this (share with more agencies, answer a
    /// permission request, retract, correct).
    #[error("only the originator {originator} of share {share} may do this, not {agency}")]
    NotOriginator {
        /// The share.
        share: MessageId,
        /// Its originator.
        originator: AgencyId,
        /// The agency that tried.
        agency: AgencyId,
    },
    /// A retraction or correction came from an agency that is not the one
    /// this node received the share from.
    #[error("share {share} was received from {source_agency}; a retraction or correction from {agency} is refused")]
    NotFromSource {
        /// The share.
        share: MessageId,
        /// Who sent it here.
        source_agency: AgencyId,
        /// Who sent the retraction or correction.
        agency: AgencyId,
    },
    /// The agency did not receive this share from this node (or, for a
    /// permission request, from the originator).
    #[error("{agency} is not a recipient of share {share}")]
    NotARecipient {
        /// The share.
        share: MessageId,
        /// The agency.
        agency: AgencyId,
    },
    /// A permission request must go to the share's originator.
    #[error(
        "a permission request for share {share} must go to its originator {expected}, not {got}"
    )]
    WrongAddressee {
        /// The share.
        share: MessageId,
        /// The originator.
        expected: AgencyId,
        /// The addressee given.
        got: AgencyId,
    },
    /// The share was retracted: it may no longer be passed on or corrected.
    #[error("share {0} was retracted by its originator")]
    Retracted(MessageId),
    /// A forwarded copy must keep the original handling code and TLP.
    #[error("share {0} must be passed on with its original handling code and TLP")]
    HandlingChanged(MessageId),
    /// A forwarded copy must name the originator (and only a held share can
    /// be forwarded).
    #[error("share {0} was received from another agency: passing it on must name its originator (use `isnad intel forward`)")]
    MisattributedForward(MessageId),
    /// The share id is already used by a share of another originator.
    #[error("share id {0} is already in use by another originator")]
    ShareIdConflict(MessageId),

    /// The share's record holds [`crate::MAX_RECORD_EVENTS`] events: no
    /// more copies, answers or updates of this share id are taken. Share
    /// further material under a new share id.
    #[error("share {share} already records {events} events, the most one share holds: share further material under a new share id")]
    ShareFull {
        /// The share.
        share: MessageId,
        /// Events on record.
        events: usize,
    },

    /// No permission request with the given id is on record for this share
    /// (name the requester and the target instead).
    #[error("no permission request with that id is on record for share {0}; give the requester and the target")]
    UnknownPermissionRequest(MessageId),

    // --- Timing.
    /// No share with this id is known here (it may still be in transit).
    #[error("unknown share {0}")]
    UnknownShare(MessageId),
}

impl IntelError {
    /// Whether the same message may be accepted later: a peer's message
    /// about a share that has not arrived yet.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::UnknownShare(_))
    }
}

/// What happened to a share, as recorded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ShareEventKind {
    /// This node's agency shared it (as originator) with `agency`.
    Shared,
    /// It was received from `agency`.
    Received,
    /// This node's agency passed it on to `agency`.
    Forwarded,
    /// Permission to pass it on was asked (by this node or of it).
    PermissionRequested,
    /// The originator granted permission.
    PermissionGranted,
    /// The originator denied permission.
    PermissionDenied,
    /// It was retracted.
    Retracted,
    /// It was corrected.
    Corrected,
}

impl ShareEventKind {
    /// The kebab-case name, e.g. `permission-granted`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Received => "received",
            Self::Forwarded => "forwarded",
            Self::PermissionRequested => "permission-requested",
            Self::PermissionGranted => "permission-granted",
            Self::PermissionDenied => "permission-denied",
            Self::Retracted => "retracted",
            Self::Corrected => "corrected",
        }
    }
}

/// One event in a share's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShareEvent {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    pub kind: ShareEventKind,
    /// Who sent the message.
    pub from: AgencyId,
    /// Who it went to.
    pub to: AgencyId,
    /// The message that carried it.
    pub message_id: MessageId,
    /// The target agency of a permission request or answer.
    pub target: Option<AgencyId>,
    /// Reason, purpose or conditions.
    pub note: Option<String>,
    /// Index of this node's audit entry, once written.
    pub log_index: Option<u64>,
}

/// A permission on record: the originator's signed `permission-answer`,
/// keyed by share id, originator and target agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Permission {
    /// The agency the share may (not) be passed on to.
    pub target: AgencyId,
    /// Granted or denied.
    pub decision: PermissionDecision,
    /// Message id of the originator's `permission-answer` (its signed
    /// envelope is in this node's inbox).
    pub answer_id: MessageId,
    /// Conditions attached.
    pub conditions: Option<String>,
}

/// What a node keeps about one share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShareRecord {
    /// The logical share id.
    pub share_id: MessageId,
    /// The agency that first shared it.
    pub originator: AgencyId,
    /// Who sent it to this node (`None` at the originator).
    pub source: Option<AgencyId>,
    /// Message id of the `intel-share` received (`None` at the originator).
    pub received_id: Option<MessageId>,
    /// Handling code.
    pub handling: HandlingCode,
    /// TLP marking.
    pub tlp: Tlp,
    /// One-line summary.
    pub summary: String,
    /// Agencies this node sent it to, with the message id of each copy.
    pub recipients: Vec<(AgencyId, MessageId)>,
    /// Whether it was retracted.
    pub retracted: bool,
    /// Message id of the latest correction, if any.
    pub corrected_by: Option<MessageId>,
    /// Permissions from the originator (at a recipient), latest last.
    pub permissions: Vec<Permission>,
    /// History, oldest first.
    pub events: Vec<ShareEvent>,
}

impl ShareRecord {
    fn new(share: &IntelShare, originator: AgencyId) -> Self {
        Self {
            share_id: share.share_id,
            originator,
            source: None,
            received_id: None,
            handling: share.handling,
            tlp: share.tlp,
            summary: share.summary.clone(),
            recipients: Vec::new(),
            retracted: false,
            corrected_by: None,
            permissions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Whether onward dissemination of this share needs permission.
    pub fn restricted(&self) -> bool {
        needs_permission(self.handling, self.tlp)
    }

    /// The permission answer on record for `target` (the latest one).
    pub fn permission_for(&self, target: &AgencyId) -> Option<&Permission> {
        self.permissions.iter().rev().find(|p| &p.target == target)
    }

    /// The `permission-answer` id granting `target`, if the latest answer
    /// for it is a grant.
    pub fn granted(&self, target: &AgencyId) -> Option<MessageId> {
        self.permission_for(target)
            .filter(|p| p.decision == PermissionDecision::Granted)
            .map(|p| p.answer_id)
    }

    /// Records an event.
    pub fn push(&mut self, event: ShareEvent) {
        self.events.push(event);
    }

    /// Whether one more event fits ([`crate::MAX_RECORD_EVENTS`]).
    pub fn check_room(&self) -> Result<(), IntelError> {
        if self.events.len() >= crate::MAX_RECORD_EVENTS {
            return Err(IntelError::ShareFull {
                share: self.share_id,
                events: self.events.len(),
            });
        }
        Ok(())
    }

    // -------------------------------------------------------------------
    // permission-request

    /// A recipient `me` asks the originator `to` for permission.
    pub fn check_send_permission_request(
        &self,
        me: &AgencyId,
        to: &AgencyId,
    ) -> Result<(), IntelError> {
        if &self.originator == me {
            return Err(IntelError::NotARecipient {
                share: self.share_id,
                agency: me.clone(),
            });
        }
        if to != &self.originator {
            return Err(IntelError::WrongAddressee {
                share: self.share_id,
                expected: self.originator.clone(),
                got: to.clone(),
            });
        }
        self.not_retracted()
    }

    /// The originator (`self.originator == me`) gets a request from `from`,
    /// which must hold the share: a direct recipient, or an agency one of
    /// them passed it on to (unknown here; accepted, the answer is the
    /// originator's decision).
    pub fn check_receive_permission_request(&self, me: &AgencyId) -> Result<(), IntelError> {
        self.originated_by(me)
    }

    // -------------------------------------------------------------------
    // permission-answer

    /// The originator `me` answers `to`.
    pub fn check_send_permission_answer(&self, me: &AgencyId) -> Result<(), IntelError> {
        self.originated_by(me)
    }

    /// A recipient gets an answer from `from`, which must be the originator.
    pub fn check_receive_permission_answer(&self, from: &AgencyId) -> Result<(), IntelError> {
        self.originated_by(from)
    }

    /// Records a permission answer received from the originator.
    pub fn record_permission(&mut self, answer: &PermissionAnswer, answer_id: MessageId) {
        self.permissions.push(Permission {
            target: answer.target.clone(),
            decision: answer.decision,
            answer_id,
            conditions: answer.conditions.clone(),
        });
    }

    // -------------------------------------------------------------------
    // intel-retraction and intel-correction

    /// `me` sends a retraction or correction to `to`: the originator to a
    /// recipient; or a recipient, once the share is retracted here, passing
    /// the retraction on to the agencies it forwarded the share to.
    pub fn check_send_update(
        &self,
        me: &AgencyId,
        to: &AgencyId,
        retraction: bool,
    ) -> Result<(), IntelError> {
        let propagating = retraction && self.retracted && &self.originator != me;
        if !propagating {
            self.originated_by(me)?;
        }
        if !retraction {
            self.not_retracted()?;
        }
        if !self.recipients.iter().any(|(a, _)| a == to) {
            return Err(IntelError::NotARecipient {
                share: self.share_id,
                agency: to.clone(),
            });
        }
        Ok(())
    }

    /// A retraction or correction from `from`: it must come from the agency
    /// this node received the share from.
    pub fn check_receive_update(
        &self,
        from: &AgencyId,
        retraction: bool,
    ) -> Result<(), IntelError> {
        match &self.source {
            Some(source) if source == from => {}
            Some(source) => {
                return Err(IntelError::NotFromSource {
                    share: self.share_id,
                    source_agency: source.clone(),
                    agency: from.clone(),
                })
            }
            None => {
                return Err(IntelError::NotOriginator {
                    share: self.share_id,
                    originator: self.originator.clone(),
                    agency: from.clone(),
                })
            }
        }
        if !retraction {
            self.not_retracted()?;
        }
        Ok(())
    }

    fn originated_by(&self, agency: &AgencyId) -> Result<(), IntelError> {
        if &self.originator == agency {
            Ok(())
        } else {
            Err(IntelError::NotOriginator {
                share: self.share_id,
                originator: self.originator.clone(),
                agency: agency.clone(),
            })
        }
    }

    fn not_retracted(&self) -> Result<(), IntelError> {
        if self.retracted {
            Err(IntelError::Retracted(self.share_id))
        } else {
            Ok(())
        }
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

/// Checks an `intel-share` this node's agency `me` sends to `to`, given the
/// record of that share id here (if any). Returns the record as it will be
/// once the copy is sent (the caller records the message id).
///
/// - A new share id: `me` is the originator; the body must not name another.
/// - A share `me` originated: another recipient, same rules.
/// - A share `me` received: a forward. It must name the originator, keep the
///   handling code and TLP, not be retracted, and, when restricted, carry
///   the id of the originator's grant for `to` that is on record.
pub fn check_send_share(
    rec: Option<&ShareRecord>,
    me: &AgencyId,
    to: &AgencyId,
    share: &IntelShare,
) -> Result<ShareRecord, IntelError> {
    let id = share.share_id;
    let Some(rec) = rec else {
        if share.originator.as_ref().is_some_and(|o| o != me) {
            return Err(IntelError::MisattributedForward(id));
        }
        return Ok(ShareRecord::new(share, me.clone()));
    };
    rec.not_retracted()?;
    if &rec.originator == me {
        if share.originator.as_ref().is_some_and(|o| o != me) {
            return Err(IntelError::ShareIdConflict(id));
        }
        return Ok(rec.clone());
    }
    if share.originator.as_ref() != Some(&rec.originator) {
        return Err(IntelError::MisattributedForward(id));
    }
    if share.handling != rec.handling || share.tlp != rec.tlp {
        return Err(IntelError::HandlingChanged(id));
    }
    if rec.restricted() {
        let grant = rec.granted(to);
        if grant.is_none() || share.permission != grant {
            return Err(IntelError::PermissionRequired {
                share: id,
                target: to.clone(),
                denied: rec
                    .permission_for(to)
                    .is_some_and(|p| p.decision == PermissionDecision::Denied),
            });
        }
    }
    Ok(rec.clone())
}

/// Checks an `intel-share` received from `from` by `me`. Returns the record
/// as it will be once the copy is stored.
///
/// A forwarded copy (naming an originator other than the sender) of a
/// restricted share must reference the originator's permission; a share id
/// already held must belong to the same originator.
pub fn check_receive_share(
    rec: Option<&ShareRecord>,
    from: &AgencyId,
    share: &IntelShare,
    message_id: MessageId,
) -> Result<ShareRecord, IntelError> {
    let id = share.share_id;
    let originator = share.originator.clone().unwrap_or_else(|| from.clone());
    if share.originator.is_some()
        && needs_permission(share.handling, share.tlp)
        && share.permission.is_none()
    {
        return Err(IntelError::PermissionRequired {
            share: id,
            target: from.clone(),
            denied: false,
        });
    }
    match rec {
        Some(r) if r.originator != originator => Err(IntelError::ShareIdConflict(id)),
        Some(r) => Ok(r.clone()),
        None => {
            let mut r = ShareRecord::new(share, originator);
            r.source = Some(from.clone());
            r.received_id = Some(message_id);
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(s: &str) -> AgencyId {
        AgencyId::new(s).expect("agency")
    }

    fn share(handling: HandlingCode, tlp: Tlp) -> IntelShare {
        IntelShare {
            share_id: MessageId::from_bytes([9; 16]),
            handling,
            source_grading: isnad_types::SourceGrading::B,
            information_grading: 2,
            tlp,
            classification: "RESTRICTED".into(),
            case_id: None,
            summary: "s".into(),
            content: "c".into(),
            entities: vec![],
            originator: None,
            permission: None,
            attachments: Vec::new(),
            extensions: Default::default(),
        }
    }

    fn answer(target: &AgencyId, decision: PermissionDecision) -> PermissionAnswer {
        PermissionAnswer {
            share_id: MessageId::from_bytes([9; 16]),
            target: target.clone(),
            decision,
            request_id: None,
            conditions: None,
        }
    }

    #[test]
    fn a_share_record_takes_a_bounded_number_of_events() {
        let orig = agency("iq.moi.ahtd");
        let me = agency("fr.mj.bepi");
        let s = share(HandlingCode::H1, Tlp::Green);
        let mut rec =
            check_receive_share(None, &orig, &s, MessageId::from_bytes([1; 16])).expect("new");
        let event = ShareEvent {
            at_ms: 1,
            kind: ShareEventKind::Received,
            from: orig.clone(),
            to: me,
            message_id: MessageId::from_bytes([2; 16]),
            target: None,
            note: None,
            log_index: None,
        };
        while rec.events.len() < crate::MAX_RECORD_EVENTS {
            assert_eq!(rec.check_room(), Ok(()));
            rec.push(event.clone());
        }
        assert_eq!(
            rec.check_room(),
            Err(IntelError::ShareFull {
                share: s.share_id,
                events: crate::MAX_RECORD_EVENTS
            })
        );
        // The full record still fits a stored record with room to spare.
        assert!(rec.to_cbor().len() < crate::MAX_RECORD_BYTES / 4);
        assert!(!IntelError::ShareFull {
            share: s.share_id,
            events: 1
        }
        .is_transient());
    }

    #[test]
    fn which_markings_need_permission() {
        use HandlingCode::*;
        for h in [H0, H1, H2, H3] {
            for t in [
                Tlp::Clear,
                Tlp::Green,
                Tlp::Amber,
                Tlp::AmberStrict,
                Tlp::Red,
            ] {
                let want = matches!(h, H2 | H3) || matches!(t, Tlp::Red | Tlp::AmberStrict);
                assert_eq!(needs_permission(h, t), want, "{h:?} {t:?}");
            }
        }
    }

    /// A received restricted share: forwarding is refused until the
    /// originator's grant for that exact target is on record and referenced;
    /// a later denial revokes it.
    #[test]
    fn forwarding_restricted_share_needs_the_originators_grant() {
        let (orig, me, third, fourth) = (
            agency("iq.moi.ahtd"),
            agency("fr.pn.ocrtis"),
            agency("de.bka"),
            agency("es.pn.ucrif"),
        );
        for (h, t) in [
            (HandlingCode::H2, Tlp::Green),
            (HandlingCode::H0, Tlp::Red),
            (HandlingCode::H1, Tlp::AmberStrict),
        ] {
            let s = share(h, t);
            let mut rec =
                check_receive_share(None, &orig, &s, MessageId::from_bytes([1; 16])).expect("new");
            let mut fwd = s.clone();
            fwd.originator = Some(orig.clone());
            assert!(matches!(
                check_send_share(Some(&rec), &me, &third, &fwd),
                Err(IntelError::PermissionRequired { denied: false, .. })
            ));
            let grant_id = MessageId::from_bytes([2; 16]);
            rec.record_permission(&answer(&third, PermissionDecision::Granted), grant_id);
            // Not referenced yet.
            assert!(check_send_share(Some(&rec), &me, &third, &fwd).is_err());
            fwd.permission = Some(grant_id);
            assert!(check_send_share(Some(&rec), &me, &third, &fwd).is_ok());
            // The grant is for `third` only.
            assert!(matches!(
                check_send_share(Some(&rec), &me, &fourth, &fwd),
                Err(IntelError::PermissionRequired { .. })
            ));
            rec.record_permission(
                &answer(&third, PermissionDecision::Denied),
                MessageId::from_bytes([3; 16]),
            );
            assert!(matches!(
                check_send_share(Some(&rec), &me, &third, &fwd),
                Err(IntelError::PermissionRequired { denied: true, .. })
            ));
        }
    }

    #[test]
    fn unrestricted_share_forwards_freely_but_keeps_its_markings() {
        let (orig, me, third) = (
            agency("iq.moi.ahtd"),
            agency("fr.pn.ocrtis"),
            agency("de.bka"),
        );
        let s = share(HandlingCode::H1, Tlp::Amber);
        let rec =
            check_receive_share(None, &orig, &s, MessageId::from_bytes([1; 16])).expect("new");
        let mut fwd = s.clone();
        assert_eq!(
            check_send_share(Some(&rec), &me, &third, &fwd),
            Err(IntelError::MisattributedForward(s.share_id))
        );
        fwd.originator = Some(orig.clone());
        assert!(check_send_share(Some(&rec), &me, &third, &fwd).is_ok());
        fwd.tlp = Tlp::Green;
        assert_eq!(
            check_send_share(Some(&rec), &me, &third, &fwd),
            Err(IntelError::HandlingChanged(s.share_id))
        );
    }

    #[test]
    fn forwarded_restricted_copy_without_permission_is_refused_on_receipt() {
        let (orig, fwd_by) = (agency("iq.moi.ahtd"), agency("fr.pn.ocrtis"));
        let mut s = share(HandlingCode::H2, Tlp::Amber);
        s.originator = Some(orig.clone());
        assert!(matches!(
            check_receive_share(None, &fwd_by, &s, MessageId::from_bytes([1; 16])),
            Err(IntelError::PermissionRequired { .. })
        ));
        s.permission = Some(MessageId::from_bytes([2; 16]));
        let rec =
            check_receive_share(None, &fwd_by, &s, MessageId::from_bytes([1; 16])).expect("ok");
        assert_eq!(rec.originator, orig);
        assert_eq!(rec.source, Some(fwd_by));
    }

    #[test]
    fn share_id_of_another_originator_is_a_conflict() {
        let (a, b) = (agency("iq.moi.ahtd"), agency("de.bka"));
        let s = share(HandlingCode::H0, Tlp::Clear);
        let rec = check_receive_share(None, &a, &s, MessageId::from_bytes([1; 16])).expect("new");
        assert_eq!(
            check_receive_share(Some(&rec), &b, &s, MessageId::from_bytes([2; 16])),
            Err(IntelError::ShareIdConflict(s.share_id))
        );
    }

    #[test]
    fn only_originator_answers_and_retracts_and_only_from_source() {
        let (orig, me, other) = (
            agency("iq.moi.ahtd"),
            agency("fr.pn.ocrtis"),
            agency("de.bka"),
        );
        let s = share(HandlingCode::H2, Tlp::Red);
        let mut at_me =
            check_receive_share(None, &orig, &s, MessageId::from_bytes([1; 16])).expect("new");
        assert!(at_me.check_receive_permission_answer(&orig).is_ok());
        assert!(matches!(
            at_me.check_receive_permission_answer(&other),
            Err(IntelError::NotOriginator { .. })
        ));
        assert!(at_me.check_send_permission_request(&me, &orig).is_ok());
        assert!(matches!(
            at_me.check_send_permission_request(&me, &other),
            Err(IntelError::WrongAddressee { .. })
        ));
        assert!(at_me.check_receive_update(&orig, true).is_ok());
        assert!(matches!(
            at_me.check_receive_update(&other, true),
            Err(IntelError::NotFromSource { .. })
        ));
        // A recipient may not retract on its own.
        at_me
            .recipients
            .push((other.clone(), MessageId::from_bytes([4; 16])));
        assert!(matches!(
            at_me.check_send_update(&me, &other, true),
            Err(IntelError::NotOriginator { .. })
        ));
        // Once retracted here it passes the retraction on, but corrects nothing
        // and forwards nothing.
        at_me.retracted = true;
        assert!(at_me.check_send_update(&me, &other, true).is_ok());
        assert_eq!(
            at_me.check_send_update(&me, &other, false),
            Err(IntelError::NotOriginator {
                share: s.share_id,
                originator: orig.clone(),
                agency: me.clone()
            })
        );
        assert_eq!(
            at_me.check_receive_update(&orig, false),
            Err(IntelError::Retracted(s.share_id))
        );
        let mut fwd = s.clone();
        fwd.originator = Some(orig.clone());
        assert_eq!(
            check_send_share(Some(&at_me), &me, &other, &fwd),
            Err(IntelError::Retracted(s.share_id))
        );
    }

    #[test]
    fn originator_sends_updates_only_to_recipients() {
        let (orig, r1, r2) = (
            agency("iq.moi.ahtd"),
            agency("fr.pn.ocrtis"),
            agency("de.bka"),
        );
        let s = share(HandlingCode::H2, Tlp::Red);
        let mut rec = check_send_share(None, &orig, &r1, &s).expect("new");
        rec.recipients
            .push((r1.clone(), MessageId::from_bytes([1; 16])));
        assert!(rec.check_send_update(&orig, &r1, true).is_ok());
        assert!(matches!(
            rec.check_send_update(&orig, &r2, true),
            Err(IntelError::NotARecipient { .. })
        ));
        assert!(rec.check_receive_permission_request(&orig).is_ok());
        assert!(rec.check_send_permission_answer(&orig).is_ok());
        assert!(matches!(
            rec.check_send_permission_answer(&r1),
            Err(IntelError::NotOriginator { .. })
        ));
        // The originator shares with a second recipient under the same id.
        assert!(check_send_share(Some(&rec), &orig, &r2, &s).is_ok());
    }

    #[test]
    fn record_round_trips() {
        let s = share(HandlingCode::H2, Tlp::Red);
        let rec =
            check_send_share(None, &agency("iq.moi.ahtd"), &agency("de.bka"), &s).expect("new");
        assert_eq!(ShareRecord::from_cbor(&rec.to_cbor()), Ok(rec));
        assert!(ShareRecord::from_cbor(&[0xa1]).is_err());
    }
}
