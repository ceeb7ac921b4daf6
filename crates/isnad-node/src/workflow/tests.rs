//! The pure check: legal and illegal transitions, and plans made from a
//! view that changed before they were carried out.

use isnad_envelope::{
    body_from_json, AgencyId, Body, ErrorCode, Extensions, Header, Kind, Message, MessageId,
    MlaState, MlaStatus,
};
use isnad_mla::LifecycleError;

use super::*;
use crate::store::{Case, CaseKey};
use isnad_log::EventType;

const REQUEST: &str = r#"{"reference":"IQ-MOJ-2026-0042","requesting-authority":"Ministry of Justice",
    "subject":"Trafficking network","nature":"investigation","summary-of-facts":"Victims moved.",
    "offences":[{"description":"trafficking in persons","legal-provision":"Law 28/2012 art. 6","penalty":"15 years"}],
    "assistance-sought":["records"],"assistance-details":"Bank records.",
    "confidentiality":{"required":true},"urgency":"urgent","legal-basis":["UNTOC art. 18"]}"#;

fn ag(s: &str) -> AgencyId {
    AgencyId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// The requesting agency (the peer here) and the requested one (this node).
fn parties() -> (AgencyId, AgencyId) {
    (ag("iq.moi.ahtd"), ag("fr.mj.bepi"))
}

fn msg(id: u8, from: &AgencyId, to: &AgencyId, body: Body) -> Message {
    Message {
        header: Header {
            id: MessageId::from_bytes([id; 16]),
            sender: from.clone(),
            recipient: to.clone(),
            created: 1_000,
            expires: 9_000,
        },
        body,
    }
}

fn status(to: MlaState, previous: Option<MlaState>) -> Body {
    Body::MlaStatus(MlaStatus {
        request_id: MessageId::from_bytes([1; 16]),
        status: to,
        previous,
        reason: Some("noted".into()),
        refusal_grounds: vec![],
        attachments: Vec::new(),
        extensions: Extensions::new(),
    })
}

/// This node's view once the peer's request `[1; 16]` was received.
fn received() -> Result<MemoryCases, Box<dyn std::error::Error>> {
    let (peer, me) = parties();
    let mut view = MemoryCases::default();
    let request = msg(1, &peer, &me, body_from_json(Kind::MlaRequest, REQUEST)?);
    let plan = check_incoming(&view, &request, 1_000_000)?;
    assert_eq!(plan.writes().len(), 1);
    assert_eq!(plan.writes()[0].expect, None, "a new record");
    assert!(view.apply(plan.writes()));
    Ok(view)
}

fn state(view: &MemoryCases) -> Result<MlaState, Box<dyn std::error::Error>> {
    Ok(request(view, &MessageId::from_bytes([1; 16]))?
        .ok_or("no record")?
        .state)
}

#[test]
fn legal_changes_plan_one_write_and_their_entries() -> Result<(), Box<dyn std::error::Error>> {
    let (peer, me) = parties();
    let mut view = received()?;
    assert_eq!(state(&view)?, MlaState::Delivered);
    // A local change: `previous` is filled in, one event, one entry.
    let mut m = msg(2, &me, &peer, status(MlaState::Registered, None));
    let plan = check_outgoing(&view, &mut m, 2_000_000)?;
    let Body::MlaStatus(s) = &m.body else {
        return Err("body changed kind".into());
    };
    assert_eq!(s.previous, Some(MlaState::Delivered));
    assert_eq!(plan.writes()[0].expect, Some(1), "checked at one event");
    let entries = plan.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event, EventType::StatusChanged);
    assert_eq!(
        entries[0].detail.get("to").map(String::as_str),
        Some("registered")
    );
    assert_eq!(
        entries[0].detail.get("by").map(String::as_str),
        Some("requested")
    );
    assert_eq!(
        entries[0].detail.get("origin").map(String::as_str),
        Some("local")
    );
    assert!(plan.is_current(&view)?);
    assert!(view.apply(plan.writes()));
    assert_eq!(state(&view)?, MlaState::Registered);
    // Nothing is written by the check itself.
    let mut again = msg(3, &me, &peer, status(MlaState::UnderReview, None));
    check_outgoing(&view, &mut again, 3_000_000)?;
    assert_eq!(state(&view)?, MlaState::Registered);
    Ok(())
}

#[test]
fn illegal_changes_are_refused_with_their_codes() -> Result<(), Box<dyn std::error::Error>> {
    let (peer, me) = parties();
    let view = received()?;
    // No transition delivered → closed.
    let mut m = msg(2, &me, &peer, status(MlaState::Closed, None));
    let err = check_outgoing(&view, &mut m, 2_000_000)
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(
            err,
            WorkflowError::Lifecycle(LifecycleError::IllegalTransition { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        (err.code(), err.name()),
        (ErrorCode::IllegalTransition, "illegal-transition")
    );
    // The requesting side may not register the request.
    let m = msg(3, &peer, &me, status(MlaState::Registered, None));
    let err = check_incoming(&view, &m, 2_000_000)
        .err()
        .ok_or("accepted")?;
    assert_eq!(
        (err.code(), err.name()),
        (ErrorCode::IllegalTransition, "wrong-side")
    );
    // A status for a request never seen.
    let mut m = msg(4, &me, &peer, status(MlaState::Registered, None));
    if let Body::MlaStatus(s) = &mut m.body {
        s.request_id = MessageId::from_bytes([9; 16]);
    }
    let err = check_outgoing(&view, &mut m, 2_000_000)
        .err()
        .ok_or("accepted")?;
    assert_eq!(err.name(), "unknown-request");
    // The same request twice.
    let again = msg(1, &peer, &me, body_from_json(Kind::MlaRequest, REQUEST)?);
    let err = check_incoming(&view, &again, 2_000_000)
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(
            err,
            WorkflowError::Lifecycle(LifecycleError::DuplicateRequest(_))
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_plan_from_a_stale_view_is_not_carried_out() -> Result<(), Box<dyn std::error::Error>> {
    let (peer, me) = parties();
    let mut view = received()?;
    // Two changes checked against the same view; the first one commits.
    let mut a = msg(2, &me, &peer, status(MlaState::Registered, None));
    let first = check_outgoing(&view, &mut a, 2_000_000)?;
    let mut b = msg(3, &me, &peer, status(MlaState::Registered, None));
    let second = check_outgoing(&view, &mut b, 2_000_001)?;
    assert_eq!(first.record(), second.record(), "both change one record");
    assert!(view.apply(first.writes()));
    assert!(!second.is_current(&view)?, "the record has one event more");
    assert!(!view.apply(second.writes()), "nothing written");
    let rec = request(&view, &MessageId::from_bytes([1; 16]))?.ok_or("no record")?;
    assert_eq!(rec.history.len(), 2);
    assert_eq!(
        rec.history[1].message_id,
        Some(MessageId::from_bytes([2; 16]))
    );
    // A client's own stale view (`previous` no longer the state) is refused.
    let mut c = msg(
        4,
        &me,
        &peer,
        status(MlaState::UnderReview, Some(MlaState::Delivered)),
    );
    let err = check_outgoing(&view, &mut c, 2_000_002)
        .err()
        .ok_or("accepted")?;
    assert_eq!(err.name(), "stale-view");
    Ok(())
}

#[test]
fn indexes_go_into_the_record_before_or_after_the_commit() -> Result<(), Box<dyn std::error::Error>>
{
    let (peer, me) = parties();
    let view = received()?;
    let mut m = msg(2, &me, &peer, status(MlaState::Registered, None));
    let mut plan = check_outgoing(&view, &mut m, 2_000_000)?;
    let notes = plan.notes(40);
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0].key,
        CaseKey::Request(MessageId::from_bytes([1; 16]))
    );
    assert_eq!((notes[0].pos, notes[0].index), (1, 40));
    plan.set_indexes(40);
    let Case::Request(r) = &plan.writes()[0].record else {
        return Err("not a request write".into());
    };
    assert_eq!(r.history[1].log_index, Some(40));
    assert_eq!(
        r.history[0].log_index, None,
        "the earlier event is not touched"
    );
    Ok(())
}

#[test]
fn unlogged_changes_are_the_events_without_an_index() -> Result<(), Box<dyn std::error::Error>> {
    let (_, me) = parties();
    let view = received()?;
    let mut r = request(&view, &MessageId::from_bytes([1; 16]))?.ok_or("no record")?;
    assert_eq!(
        unlogged_in(std::slice::from_ref(&r), &[], &me)
            .entries()
            .len(),
        1
    );
    r.history[0].log_index = Some(7);
    let plan = unlogged_in(&[r], &[], &me);
    assert!(plan.entries().is_empty());
    assert!(plan.is_empty(), "entries only, never writes");
    Ok(())
}

/// Until the node has an attachment store, a message listing attachments is
/// neither sent nor accepted (a receipt would bind files never stored), and
/// nothing is planned for it.
#[test]
fn messages_with_attachments_are_refused_without_a_store() -> Result<(), Box<dyn std::error::Error>>
{
    let (peer, me) = parties();
    let view = received()?;
    let (d, _) =
        isnad_attach::testing::fixed("evidence", &[1; 100], 64, "e.pdf", "application/pdf")?;
    let mut body = status(MlaState::ResultsTransmitted, Some(MlaState::InExecution));
    if let Body::MlaStatus(s) = &mut body {
        s.attachments = vec![d];
    }
    let mut out = msg(4, &me, &peer, body.clone());
    let err = check_outgoing(&view, &mut out, 4_000_000).err();
    assert!(
        matches!(err, Some(WorkflowError::AttachmentsNotStored)),
        "{err:?}"
    );
    let err = check_incoming(&view, &msg(5, &peer, &me, body), 4_000_000).err();
    assert!(
        matches!(err, Some(WorkflowError::AttachmentsNotStored)),
        "{err:?}"
    );
    assert_eq!(
        WorkflowError::AttachmentsNotStored.code(),
        ErrorCode::PolicyDenied
    );
    assert_eq!(state(&view)?, MlaState::Delivered);
    Ok(())
}
