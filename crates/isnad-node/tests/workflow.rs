//! The MLA lifecycle and the intelligence handling rules enforced by real
//! nodes over QUIC: a request walked through review, a supplement request,
//! execution, results and closure, with wrong-side and illegal changes
//! refused both locally (nothing sent) and when a peer sends them (typed
//! error, `rejected` entry); forwarding of restricted intelligence refused
//! until the originator's signed permission is on record; retraction and
//! correction reaching every recipient and logged on each.

mod support;

use isnad_envelope::*;
use isnad_log::{Entry, EventType};
use isnad_mla::{IntelError, LifecycleError, Side};
use isnad_node::store::OutState;
use isnad_node::workflow::{self, WorkflowError};
use isnad_node::{NodeError, NodeHandle};
use ring::rand::SystemRandom;
use support::*;

const WAIT_SECS: u64 = 30;

fn mla_request() -> Result<Body, Box<dyn std::error::Error>> {
    let json = r#"{"reference":"IQ-MOJ-2026-0042","requesting-authority":"Ministry of Justice, Central Authority",
        "subject":"Trafficking network","nature":"investigation","summary-of-facts":"Victims moved through third countries.",
        "offences":[{"description":"trafficking in persons","legal-provision":"Law 28/2012 art. 6","penalty":"15 years"}],
        "assistance-sought":["records"],"assistance-details":"Bank records of two accounts.",
        "confidentiality":{"required":true},"urgency":"urgent","deadline":{"date":"2026-12-15"},
        "legal-basis":["UNTOC art. 18"]}"#;
    Ok(body_from_json(Kind::MlaRequest, json)?)
}

fn status(request_id: MessageId, to: MlaState, previous: Option<MlaState>) -> Body {
    Body::MlaStatus(MlaStatus {
        request_id,
        status: to,
        previous,
        reason: None,
        refusal_grounds: vec![],
        attachments: Vec::new(),
        extensions: Extensions::new(),
    })
}

fn restricted_share(share_id: MessageId, handling: HandlingCode, tlp: Tlp) -> IntelShare {
    IntelShare {
        share_id,
        handling,
        source_grading: SourceGrading::B,
        information_grading: 2,
        tlp,
        classification: "RESTRICTED".into(),
        case_id: Some("AHTD-OPS-19".into()),
        summary: "Departure planned".into(),
        content: "A group is to be moved in the first week of December.".into(),
        entities: vec![],
        originator: None,
        permission: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }
}

/// Seals `body` as `from` and delivers it to `to` over a raw connection
/// (bypassing `from`'s own node and its checks): the error code answered,
/// `None` for a receipt.
async fn raw_send(
    from: &Agency,
    dir: &TestDirectory,
    to: &Agency,
    body: Body,
) -> Result<Option<ErrorCode>, Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let msg = Message {
        header: Header {
            id: MessageId::random(&rng)?,
            sender: from.id.clone(),
            recipient: to.id.clone(),
            created: now,
            expires: now + 3600,
        },
        body,
    };
    let env = seal(
        &msg,
        &SigningKey::from_pkcs8_pem(&from.sign_pem)?,
        EncryptionKey::from_pkcs8_pem(&to.enc_pem)?.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let conn = raw_connect(from, dir, to).await?;
    let frame = isnad_wire::Request {
        op: isnad_wire::Op::Deliver,
        payload: env,
    }
    .encode();
    let r = raw_request(&conn, &frame).await?;
    conn.close(0u32.into(), b"done");
    Ok(error_code(&r))
}

fn entries(n: &NodeHandle) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    (0..n.log().size())
        .map(|i| Ok(Entry::decode(&n.log().entry_bytes(i)?)?))
        .collect()
}

/// `status-changed` entries about request/share `id` (detail key `key`).
fn status_entries(
    n: &NodeHandle,
    key: &str,
    id: &MessageId,
) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    Ok(entries(n)?
        .into_iter()
        .filter(|e| {
            e.event == EventType::StatusChanged
                && e.detail.get(key).map(String::as_str) == Some(id.to_hex().as_str())
        })
        .collect())
}

fn state(n: &NodeHandle, id: &MessageId) -> Result<MlaState, Box<dyn std::error::Error>> {
    Ok(workflow::request(n.store(), id)?
        .ok_or("no request record")?
        .state)
}

async fn delivered(
    n: &NodeHandle,
    id: Result<MessageId, NodeError>,
) -> Result<MessageId, Box<dyn std::error::Error>> {
    let id = id?;
    wait_state(n, &id, OutState::Delivered, WAIT_SECS).await?;
    Ok(id)
}

fn intel_err(r: Result<MessageId, NodeError>) -> Option<IntelError> {
    match r {
        Err(NodeError::Workflow(WorkflowError::Intel(e))) => Some(e),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_walks_review_supplement_execution_results_and_close() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (_tmp, dir, [a, b], [na, nb]) = pair("iq.moj.ca", "fr.mj.bepi").await?;

    let rid = delivered(&na, na.submit(b.id.clone(), mla_request()?, None).await).await?;
    // Requesting side: delivered once the receipt arrived; requested side: delivered on acceptance.
    assert_eq!(state(&na, &rid)?, MlaState::Delivered);
    assert_eq!(state(&nb, &rid)?, MlaState::Delivered);

    // Wrong side and illegal steps are refused locally, before anything is sealed.
    let outbox_before = na.store().all_outbox()?.len() + nb.store().all_outbox()?.len();
    assert!(matches!(
        lifecycle_err(
            na.change_status(rid, MlaState::Registered, None, vec![], None)
                .await
        ),
        Some(LifecycleError::WrongSide {
            author: Side::Requesting,
            ..
        })
    ));
    assert!(matches!(
        lifecycle_err(
            nb.change_status(rid, MlaState::Withdrawn, None, vec![], None)
                .await
        ),
        Some(LifecycleError::WrongSide {
            author: Side::Requested,
            ..
        })
    ));
    assert!(matches!(
        lifecycle_err(
            nb.change_status(rid, MlaState::Accepted, None, vec![], None)
                .await
        ),
        Some(LifecycleError::IllegalTransition {
            from: MlaState::Delivered,
            to: MlaState::Accepted
        })
    ));
    assert!(matches!(
        lifecycle_err(
            nb.change_status(rid, MlaState::Refused, None, vec![], None)
                .await
        ),
        Some(LifecycleError::RefusalWithoutGrounds)
    ));
    assert!(matches!(
        lifecycle_err(
            nb.change_status(
                MessageId::from_bytes([9; 16]),
                MlaState::Registered,
                None,
                vec![],
                None
            )
            .await
        ),
        Some(LifecycleError::UnknownRequest(_))
    ));
    // The raw submit path runs the same checks.
    assert!(matches!(
        lifecycle_err(
            na.submit(b.id.clone(), status(rid, MlaState::Registered, None), None)
                .await
        ),
        Some(LifecycleError::WrongSide { .. })
    ));
    assert_eq!(
        na.store().all_outbox()?.len() + nb.store().all_outbox()?.len(),
        outbox_before,
        "nothing was stored or sent"
    );

    // The walk.
    let steps: [(&NodeHandle, MlaState); 10] = [
        (&nb, MlaState::Registered),
        (&nb, MlaState::UnderReview),
        (&nb, MlaState::SupplementRequested),
        (&na, MlaState::UnderReview), // the supplement is sent
        (&nb, MlaState::Accepted),
        (&nb, MlaState::InExecution),
        (&nb, MlaState::PartiallyExecuted),
        (&nb, MlaState::InExecution),
        (&nb, MlaState::ResultsTransmitted),
        (&na, MlaState::Closed),
    ];
    for (i, (node, to)) in steps.iter().enumerate() {
        let reason = Some(format!("step {i}"));
        // The receiving side commits the new state together with its
        // status-changed entry's log index: a reader polling the record
        // never sees the one without the other.
        let receiver = if std::ptr::eq(*node, &na) {
            nb.clone()
        } else {
            na.clone()
        };
        let to_see = *to;
        let watch = tokio::spawn(async move {
            loop {
                if let Ok(Some(r)) = workflow::request(receiver.store(), &rid) {
                    if r.state == to_see {
                        return r.history.last().and_then(|e| e.log_index);
                    }
                }
                tokio::task::yield_now().await;
            }
        });
        delivered(
            node,
            node.change_status(rid, *to, reason, vec![], None).await,
        )
        .await?;
        assert_eq!(state(&na, &rid)?, *to, "requesting side after step {i}");
        assert_eq!(state(&nb, &rid)?, *to, "requested side after step {i}");
        let first_seen =
            tokio::time::timeout(std::time::Duration::from_secs(WAIT_SECS), watch).await??;
        assert!(
            first_seen.is_some(),
            "step {i}: state visible before its log index"
        );

        if *to == MlaState::UnderReview && i == 1 {
            // Under review: a peer sending wrong-side or illegal changes
            // directly is refused with typed codes and logged as rejected.
            let before = workflow_rejections(&nb)?.len();
            assert_eq!(
                raw_send(&a, &dir, &b, status(rid, MlaState::Accepted, None)).await?,
                Some(ErrorCode::IllegalTransition),
                "the requesting side may not accept"
            );
            assert_eq!(
                raw_send(&b, &dir, &a, status(rid, MlaState::Withdrawn, None)).await?,
                Some(ErrorCode::IllegalTransition),
                "the requested side may not withdraw"
            );
            assert_eq!(
                raw_send(
                    &b,
                    &dir,
                    &a,
                    status(rid, MlaState::ResultsTransmitted, None)
                )
                .await?,
                Some(ErrorCode::IllegalTransition),
                "under-review → results-transmitted skips execution"
            );
            // A change that overtook an earlier one of the same author is not
            // refused but deferred.
            assert_eq!(
                raw_send(
                    &b,
                    &dir,
                    &a,
                    status(rid, MlaState::InExecution, Some(MlaState::Accepted))
                )
                .await?,
                Some(ErrorCode::Unavailable)
            );
            let rej = workflow_rejections(&nb)?;
            assert_eq!(rej.len(), before + 1);
            let last = rej.last().ok_or("rejection")?;
            assert_eq!(last.reason.as_deref(), Some("illegal-transition"));
            assert_eq!(
                last.detail.get("refusal").map(String::as_str),
                Some("wrong-side")
            );
            assert_eq!(last.sender.as_ref(), Some(&a.id));
            assert_eq!(
                workflow_rejections(&na)?.len(),
                2,
                "two final refusals at the requesting side"
            );
            assert_eq!(
                state(&na, &rid)?,
                MlaState::UnderReview,
                "refused changes change nothing"
            );
            assert_eq!(state(&nb, &rid)?, MlaState::UnderReview);
        }
    }
    // Closed is final.
    assert!(matches!(
        lifecycle_err(
            nb.change_status(rid, MlaState::InExecution, None, vec![], None)
                .await
        ),
        Some(LifecycleError::IllegalTransition {
            from: MlaState::Closed,
            ..
        })
    ));

    // Both ends hold the same history and logged every change.
    let (ra, _) = same_history(&na, &nb, &rid, steps.len())?;

    // The case view joins the history with the messages and receipts.
    let case = na.case_json(&rid, 0)?.ok_or("case")?;
    let events = case["events"].as_array().ok_or("events")?;
    assert_eq!(events.len(), ra.history.len());
    let closed = events.last().ok_or("last")?;
    assert_eq!(closed["to"], "closed");
    assert_eq!(closed["message"]["direction"], "out");
    assert!(closed["message"]["peer_log_index"].as_u64().is_some());
    let registered = &events[2];
    assert_eq!(registered["to"], "registered");
    assert_eq!(registered["message"]["direction"], "in");
    assert!(registered["message"]["received_log_index"]
        .as_u64()
        .is_some());
    let list = na.requests_json(0, false)?;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["state"], "closed");

    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_intel_forwarding_needs_permission_and_retraction_reaches_all() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tmp, dir, [o, r1, r2, t]) =
        listed(["iq.moi.ahtd", "fr.pn.ocrtis", "de.bka", "es.pn.ucrif"])?;
    let no = start(&o, &dir, tmp.path()).await?;
    let n1 = start(&r1, &dir, tmp.path()).await?;
    let n2 = start(&r2, &dir, tmp.path()).await?;
    let nt = start(&t, &dir, tmp.path()).await?;

    // One share, two recipients: one envelope each, one share id.
    let sid = MessageId::random(&SystemRandom::new())?;
    let sent = no
        .share_intel(
            &[r1.id.clone(), r2.id.clone()],
            restricted_share(sid, HandlingCode::H2, Tlp::Amber),
            None,
        )
        .await?;
    assert_eq!(sent.len(), 2);
    assert_ne!(sent[0].1, sent[1].1);
    for (_, id) in &sent {
        wait_state(&no, id, OutState::Delivered, WAIT_SECS).await?;
    }
    for n in [&n1, &n2] {
        let rec = workflow::share(n.store(), &sid, &o.id)?.ok_or("share record")?;
        assert_eq!(rec.source.as_ref(), Some(&o.id));
    }

    // H2 without permission: refused by the node, nothing sent.
    let before = n1.store().all_outbox()?.len();
    assert!(matches!(
        intel_err(n1.forward_intel(sid, t.id.clone(), None).await),
        Some(IntelError::PermissionRequired { denied: false, .. })
    ));
    assert_eq!(n1.store().all_outbox()?.len(), before);
    // A node that bypasses its checks is refused by the receiver.
    let mut bypass = restricted_share(sid, HandlingCode::H2, Tlp::Amber);
    bypass.originator = Some(o.id.clone());
    assert_eq!(
        raw_send(&r1, &dir, &t, Body::IntelShare(Box::new(bypass))).await?,
        Some(ErrorCode::PermissionRequired)
    );
    assert!(workflow::share(nt.store(), &sid, &o.id)?.is_none());

    // Permission flow: request, grant, then forwarding works for that target only.
    let req = delivered(
        &n1,
        n1.request_permission(sid, t.id.clone(), "joint investigation".into(), None)
            .await,
    )
    .await?;
    let at_o = workflow::share(no.store(), &sid, &o.id)?.ok_or("originator record")?;
    assert!(at_o.events.iter().any(|e| e.message_id == req));
    let answer = delivered(
        &no,
        no.answer_permission(
            sid,
            PermissionDecision::Granted,
            Some(req),
            None,
            None,
            None,
            None,
        )
        .await,
    )
    .await?;
    let at_1 = workflow::share(n1.store(), &sid, &o.id)?.ok_or("record")?;
    assert_eq!(at_1.granted(&t.id), Some(answer));
    let fwd = delivered(&n1, n1.forward_intel(sid, t.id.clone(), None).await).await?;
    let at_t = workflow::share(nt.store(), &sid, &o.id)?.ok_or("forwarded record")?;
    assert_eq!(at_t.originator, o.id);
    assert_eq!(at_t.source.as_ref(), Some(&r1.id));
    let inb = nt.store().inbox_by_id(&fwd)?;
    let opened = nt.read_inbox(inb.first().ok_or("inbox")?)?;
    assert!(matches!(&opened.message.body,
        Body::IntelShare(s) if s.permission == Some(answer) && s.originator.as_ref() == Some(&o.id)));
    assert!(matches!(
        intel_err(n1.forward_intel(sid, r2.id.clone(), None).await),
        Some(IntelError::PermissionRequired { .. })
    ));
    // Only the originator answers: the recipient's answer is refused locally.
    assert!(matches!(
        intel_err(
            n1.answer_permission(
                sid,
                PermissionDecision::Granted,
                None,
                Some(r2.id.clone()),
                Some(t.id.clone()),
                None,
                None
            )
            .await
        ),
        Some(IntelError::NotOriginator { .. })
    ));
    // A denial revokes the grant.
    delivered(
        &no,
        no.answer_permission(
            sid,
            PermissionDecision::Denied,
            None,
            Some(r1.id.clone()),
            Some(t.id.clone()),
            Some("source at risk".into()),
            None,
        )
        .await,
    )
    .await?;
    assert!(matches!(
        intel_err(n1.forward_intel(sid, t.id.clone(), None).await),
        Some(IntelError::PermissionRequired { denied: true, .. })
    ));

    // A recipient cannot retract someone else's share (refused by the peer).
    assert_eq!(
        raw_send(
            &r2,
            &dir,
            &r1,
            Body::IntelRetraction(IntelRetraction {
                share_id: sid,
                reason: "no".into()
            })
        )
        .await?,
        Some(ErrorCode::IllegalTransition)
    );

    // Retraction by the originator reaches both recipients and is logged on each.
    let retracted = no
        .retract_intel(sid, "source compromised".into(), None)
        .await?;
    let mut to: Vec<_> = retracted.iter().map(|(a, _)| a.clone()).collect();
    to.sort();
    let mut want = vec![r1.id.clone(), r2.id.clone()];
    want.sort();
    assert_eq!(to, want);
    for (_, id) in &retracted {
        wait_state(&no, id, OutState::Delivered, WAIT_SECS).await?;
    }
    let is_retraction = |e: &Entry| e.detail.get("event").map(String::as_str) == Some("retracted");
    assert_eq!(
        status_entries(&no, "share-id", &sid)?
            .iter()
            .filter(|e| is_retraction(e))
            .count(),
        2
    );
    for n in [&n1, &n2] {
        assert!(
            workflow::share(n.store(), &sid, &o.id)?
                .ok_or("record")?
                .retracted
        );
        assert_eq!(
            status_entries(n, "share-id", &sid)?
                .iter()
                .filter(|e| is_retraction(e))
                .count(),
            1
        );
    }
    // The forwarder passes the retraction on to the agency it forwarded to.
    let passed = n1
        .retract_intel(sid, "retracted by the originator".into(), None)
        .await?;
    assert_eq!(passed.len(), 1);
    wait_state(&n1, &passed[0].1, OutState::Delivered, WAIT_SECS).await?;
    assert!(
        workflow::share(nt.store(), &sid, &o.id)?
            .ok_or("record")?
            .retracted
    );
    // A retracted share is neither forwarded nor corrected.
    assert!(matches!(
        intel_err(n2.forward_intel(sid, t.id.clone(), None).await),
        Some(IntelError::Retracted(_))
    ));
    assert!(no
        .correct_intel(sid, "new".into(), None, "typo".into(), None)
        .await
        .is_err());

    // Correction of an unrestricted share reaches both; a forward carries the corrected text.
    let sid2 = MessageId::random(&SystemRandom::new())?;
    for (_, id) in no
        .share_intel(
            &[r1.id.clone(), r2.id.clone()],
            restricted_share(sid2, HandlingCode::H1, Tlp::Green),
            None,
        )
        .await?
    {
        wait_state(&no, &id, OutState::Delivered, WAIT_SECS).await?;
    }
    for (_, id) in no
        .correct_intel(
            sid2,
            "Corrected: second week of December.".into(),
            None,
            "date".into(),
            None,
        )
        .await?
    {
        wait_state(&no, &id, OutState::Delivered, WAIT_SECS).await?;
    }
    for n in [&n1, &n2] {
        assert!(workflow::share(n.store(), &sid2, &o.id)?
            .ok_or("record")?
            .corrected_by
            .is_some());
    }
    let fwd2 = delivered(&n2, n2.forward_intel(sid2, t.id.clone(), None).await).await?;
    let inb = nt.store().inbox_by_id(&fwd2)?;
    let opened = nt.read_inbox(inb.first().ok_or("inbox")?)?;
    assert!(matches!(&opened.message.body,
        Body::IntelShare(s) if s.content.starts_with("Corrected") && s.permission.is_none()));

    // The case view of the share at the originator lists every event with log indexes.
    let case = no.case_json(&sid, 0)?.ok_or("case")?;
    let kinds: Vec<&str> = case["events"]
        .as_array()
        .ok_or("events")?
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "shared",
            "shared",
            "permission-requested",
            "permission-granted",
            "permission-denied",
            "retracted",
            "retracted"
        ]
    );

    for n in [no, n1, n2, nt] {
        n.shutdown().await;
    }
    Ok(())
}

/// Messages about one share in flight together (here copies of one share,
/// as the soak client sent them) are all accepted at once: checked and
/// written one at a time per record, none is refused with `unavailable`
/// for a conflict. Before, all but one of each concurrent batch were, and
/// the sender's backoff (a minute here) stalled them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_about_one_share_do_not_conflict() -> TestResult {
    let slow_retry = |c: &mut isnad_node::config::Config| {
        c.delivery.initial_backoff_ms = 60_000;
        c.delivery.max_backoff_secs = 600;
    };
    let (_tmp, _, [a, b], [na, nb]) = pair_with("iq.moi.ahtd", "fr.mj.bepi", slow_retry).await?;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            na.submit(b.id.clone(), intel(&format!("copy {i}")), None)
                .await?,
        );
    }
    for id in &ids {
        wait_state(&na, id, OutState::Delivered, WAIT_SECS).await?;
        let rec = na.store().outbox(id)?.ok_or("no outbox record")?;
        assert_eq!(rec.attempts, 1, "{id} needed a retry");
    }
    let share = workflow::share(nb.store(), &MessageId::from_bytes([1; 16]), &a.id)?
        .ok_or("no share record")?;
    assert_eq!(share.events.len(), ids.len());
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// A crash between committing a status change and appending its
/// `status-changed` entry (spec/transport.md §7), made by clearing the
/// event's log index in the stopped node's database: at the next start the
/// node logs the change, with the event's own time and fields, and notes the
/// index; a further restart logs nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_change_without_its_entry_is_logged_at_restart() -> TestResult {
    let (tmp, dir, [a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let sid = MessageId::from_bytes([1; 16]);
    let id = delivered(&na, na.submit(b.id.clone(), intel("one"), None).await).await?;
    let indexed = |n: &NodeHandle| -> Result<Option<u64>, Box<dyn std::error::Error>> {
        let rec = workflow::share(n.store(), &sid, &a.id)?.ok_or("no share record")?;
        Ok(rec.events.first().ok_or("no share event")?.log_index)
    };
    until("the share event's log index", WAIT_SECS, || {
        Ok(indexed(&na)?.is_some())
    })
    .await?;
    let before = status_entries(&na, "share-id", &sid)?;
    assert_eq!(before.len(), 1);
    na.shutdown().await;
    drop(na);

    // The crash window: the record is committed, its entry is not noted.
    let db = redb::Database::create(tmp.path().join(a.id.as_str()).join("state.redb"))?;
    let table: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("intel_shares");
    let mut key = sid.as_bytes().to_vec();
    key.extend_from_slice(a.id.as_str().as_bytes());
    let txn = db.begin_write()?;
    {
        use redb::ReadableTable as _;
        let mut t = txn.open_table(table)?;
        let bytes = t
            .get(key.as_slice())?
            .ok_or("no stored share")?
            .value()
            .to_vec();
        let mut rec = isnad_mla::ShareRecord::from_cbor(&bytes)?;
        rec.events[0].log_index = None;
        t.insert(key.as_slice(), rec.to_cbor().as_slice())?;
    }
    txn.commit()?;
    drop(db);

    let na = start(&a, &dir, tmp.path()).await?;
    until("the recovered entry's index", WAIT_SECS, || {
        Ok(indexed(&na)?.is_some())
    })
    .await?;
    let after = status_entries(&na, "share-id", &sid)?;
    assert_eq!(after.len(), 2, "the change is logged again at start");
    let (old, new) = (&after[0], &after[1]);
    assert_eq!(new.message_id, Some(id));
    assert_eq!(
        (new.time_ms, &new.sender, &new.recipient, &new.detail),
        (old.time_ms, &old.sender, &old.recipient, &old.detail)
    );
    let index = indexed(&na)?.ok_or("no index")?;
    assert_eq!(Entry::decode(&na.log().entry_bytes(index)?)?, *new);
    let size = na.log().size();
    na.shutdown().await;
    drop(na);
    let na = start(&a, &dir, tmp.path()).await?;
    assert_eq!(na.log().size(), size, "nothing is missing any more");
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
