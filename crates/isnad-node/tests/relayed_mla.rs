//! Issue 5 end to end: an MLA request from an Iraqi MoI directorate walks
//! through the Iraqi MoJ central authority to the French central authority
//! and the French executing agency, and its whole lifecycle comes back and
//! forth through both relays (spec/relay.md, spec/protocol.md §13). Every
//! change is checked on both ends; wrong-side changes are refused locally,
//! illegal ones injected through the relay path are refused by the final
//! recipient; the relays hold only metadata.

mod support;

use isnad_envelope::*;
use isnad_log::{Entry, EventType};
use isnad_mla::{LifecycleError, Side};
use isnad_node::store::OutState;
use isnad_node::workflow;
use isnad_node::NodeHandle;
use ring::rand::SystemRandom;
use support::*;

const WAIT_SECS: u64 = 60;
/// Text only inside the end-to-end encrypted request.
const FACTS: &str = "FACTS-PLAINTEXT-5521 ضحايا";
/// Prefix of the reason of every status change (also end-to-end only).
const REASON: &str = "STATUS-REASON-8093";

fn mla_request() -> Result<Body, Box<dyn std::error::Error>> {
    let json = format!(
        r#"{{"reference":"IQ-MOI-2026-0107","requesting-authority":"Ministry of Interior, AHTD",
        "subject":"Trafficking network","nature":"investigation","summary-of-facts":"{FACTS}",
        "offences":[{{"description":"trafficking in persons","legal-provision":"Law 28/2012 art. 6","penalty":"15 years"}}],
        "assistance-sought":["records"],"assistance-details":"Bank records of two accounts.",
        "confidentiality":{{"required":true}},"urgency":"urgent","deadline":{{"date":"2026-12-15"}},
        "legal-basis":["UNTOC art. 18"]}}"#
    );
    Ok(body_from_json(Kind::MlaRequest, &json)?)
}

fn status(request_id: MessageId, to: MlaState) -> Body {
    Body::MlaStatus(MlaStatus {
        request_id,
        status: to,
        previous: None,
        reason: None,
        refusal_grounds: vec![],
        attachments: Vec::new(),
        extensions: Extensions::new(),
    })
}

/// Every entry of a node's log with its bytes.
type Logged = Vec<(Vec<u8>, Entry)>;

fn entries(n: &NodeHandle) -> Result<Logged, Box<dyn std::error::Error>> {
    (0..n.log().size())
        .map(|i| {
            let b = n.log().entry_bytes(i)?;
            let e = Entry::decode(&b)?;
            Ok((b, e))
        })
        .collect()
}

fn state(n: &NodeHandle, id: &MessageId) -> Result<Option<MlaState>, Box<dyn std::error::Error>> {
    Ok(workflow::request(n.store(), id)?.map(|r| r.state))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Crafts what the last relay of `route` would hand the final recipient:
/// `body` sealed end to end from `route[0]` to the last agency, wrapped
/// in a relay body endorsed by every agency before the last, sealed as the
/// last hop. Delivers it over a raw connection from the last relay and
/// returns the answer's error code (`None`: a receipt).
async fn inject(
    route: &[&Agency],
    dir: &TestDirectory,
    body: Body,
) -> Result<Option<ErrorCode>, Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    let (from, to) = (route[0], route[route.len() - 1]);
    let last_relay = route[route.len() - 2];
    let (secs, id) = (now(), MessageId::random(&rng)?);
    let msg = Message {
        header: Header {
            id,
            sender: from.id.clone(),
            recipient: to.id.clone(),
            created: secs,
            expires: secs + 3600,
        },
        body,
    };
    let kind = msg.body.kind();
    let to_key = EncryptionKey::from_pkcs8_pem(&to.enc_pem)?;
    let inner = seal(
        &msg,
        &SigningKey::from_pkcs8_pem(&from.sign_pem)?,
        to_key.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let path = route.iter().map(|a| a.id.clone()).collect();
    let mut relay = Relay::new(path, id, kind, secs + 3600, inner);
    for a in &route[..route.len() - 1] {
        endorse(&mut relay, &SigningKey::from_pkcs8_pem(&a.sign_pem)?, &rng)?;
    }
    let hop = Message {
        header: Header {
            id,
            sender: last_relay.id.clone(),
            recipient: to.id.clone(),
            created: secs,
            expires: secs + 3600,
        },
        body: Body::Relay(Box::new(relay)),
    };
    let env = seal(
        &hop,
        &SigningKey::from_pkcs8_pem(&last_relay.sign_pem)?,
        to_key.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let conn = raw_connect(last_relay, dir, to).await?;
    let frame = isnad_wire::Request {
        op: isnad_wire::Op::Deliver,
        payload: env,
    }
    .encode();
    let r = raw_request(&conn, &frame).await?;
    conn.close(0u32.into(), b"done");
    Ok(error_code(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mla_request_lifecycle_through_both_central_authorities() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir()?;
    let (dir, a) = relay_federation()?;
    let route: Vec<String> = a.iter().map(|x| x.id.to_string()).collect();
    let mut reverse = route.clone();
    reverse.reverse();

    // Only the originator and its central authority are up: the hop
    // receipt arrives, the end-to-end one cannot, and the request is not
    // delivered yet.
    let na = start(&a[0], &dir, tmp.path()).await?;
    let r1 = start(&a[1], &dir, tmp.path()).await?;
    let rid = na.submit(a[3].id.clone(), mla_request()?, None).await?;
    wait_state(&na, &rid, OutState::Delivered, WAIT_SECS).await?;
    assert_eq!(state(&na, &rid)?, Some(MlaState::Submitted));
    let r2 = start(&a[2], &dir, tmp.path()).await?;
    let nb = start(&a[3], &dir, tmp.path()).await?;
    let all = [&na, &r1, &r2, &nb];

    // The end-to-end receipt makes it delivered at the requesting side.
    let delivered_logged = |n: &NodeHandle| -> Result<bool, Box<dyn std::error::Error>> {
        Ok(entries(n)?.iter().any(|(_, e)| {
            e.event == EventType::StatusChanged
                && e.detail.get("to").map(String::as_str) == Some("delivered")
        }))
    };
    until("delivery at the requesting side", WAIT_SECS, || {
        Ok(state(&na, &rid)? == Some(MlaState::Delivered) && delivered_logged(&na)?)
    })
    .await?;
    assert_eq!(state(&nb, &rid)?, Some(MlaState::Delivered));
    let log_a = entries(&na)?;
    let e2e_at = log_a
        .iter()
        .find(|(_, e)| {
            e.event == EventType::ReceiptReceived
                && e.message_id == Some(rid)
                && e.detail.get("end-to-end").map(String::as_str) == Some("true")
        })
        .map(|(_, e)| e.seq)
        .ok_or("end-to-end receipt-received")?;
    let delivered_at = log_a
        .iter()
        .find(|(_, e)| {
            e.event == EventType::StatusChanged
                && e.detail.get("to").map(String::as_str) == Some("delivered")
        })
        .map(|(_, e)| e.seq)
        .ok_or("status-changed to delivered")?;
    assert!(
        delivered_at > e2e_at,
        "delivered recorded after the end-to-end receipt"
    );

    // The walk, both ways through the relays.
    let steps: [(&NodeHandle, MlaState); 9] = [
        (&nb, MlaState::Registered),
        (&nb, MlaState::UnderReview),
        (&nb, MlaState::SupplementRequested),
        (&na, MlaState::UnderReview), // the supplement is answered
        (&nb, MlaState::Accepted),
        (&nb, MlaState::InExecution),
        (&nb, MlaState::PartiallyExecuted),
        (&nb, MlaState::ResultsTransmitted),
        (&na, MlaState::Closed),
    ];
    for (i, (node, to)) in steps.iter().enumerate() {
        let reason = Some(format!("{REASON} step {i}"));
        node.change_status(rid, *to, reason, vec![], None).await?;
        until(&format!("step {i} on both ends"), WAIT_SECS, || {
            Ok(state(&na, &rid)? == Some(*to) && state(&nb, &rid)? == Some(*to))
        })
        .await?;

        if i == 1 {
            // Under review. Wrong sides are refused locally; nothing is sent.
            let outboxes = |ns: &[&NodeHandle; 4]| -> Result<usize, Box<dyn std::error::Error>> {
                let mut n = 0;
                for x in ns {
                    n += x.store().all_outbox()?.len();
                }
                Ok(n)
            };
            let before = outboxes(&all)?;
            assert!(matches!(
                lifecycle_err(
                    na.change_status(rid, MlaState::Accepted, None, vec![], None)
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
            assert_eq!(outboxes(&all)?, before, "nothing stored or sent");

            // The same, and a skipped step, injected as if from the peer
            // through the relays: refused by the final recipient.
            let (rej_a, rej_b) = (
                workflow_rejections(&na)?.len(),
                workflow_rejections(&nb)?.len(),
            );
            let there = [&a[0], &a[1], &a[2], &a[3]];
            let back = [&a[3], &a[2], &a[1], &a[0]];
            assert_eq!(
                inject(&there, &dir, status(rid, MlaState::Accepted)).await?,
                Some(ErrorCode::IllegalTransition),
                "the requesting side may not accept"
            );
            assert_eq!(
                inject(&back, &dir, status(rid, MlaState::ResultsTransmitted)).await?,
                Some(ErrorCode::IllegalTransition),
                "under-review → results-transmitted skips execution"
            );
            let rb = workflow_rejections(&nb)?;
            assert_eq!(rb.len(), rej_b + 1);
            let last = rb.last().ok_or("rejection")?;
            assert_eq!(last.reason.as_deref(), Some("illegal-transition"));
            assert_eq!(
                last.detail.get("refusal").map(String::as_str),
                Some("wrong-side")
            );
            assert_eq!(last.sender.as_ref(), Some(&a[0].id));
            let ra = workflow_rejections(&na)?;
            assert_eq!(ra.len(), rej_a + 1);
            let last = ra.last().ok_or("rejection")?;
            assert_eq!(last.reason.as_deref(), Some("illegal-transition"));
            assert_eq!(
                last.detail.get("refusal").map(String::as_str),
                Some("illegal-transition")
            );
            assert_eq!(last.sender.as_ref(), Some(&a[3].id));
            assert_eq!(state(&na, &rid)?, Some(MlaState::UnderReview));
            assert_eq!(state(&nb, &rid)?, Some(MlaState::UnderReview));
        }
    }

    // Both ends hold the same path and logged every change.
    same_history(&na, &nb, &rid, steps.len())?;

    // The case view shows the route of every message.
    let case = na.case_json(&rid, 0)?.ok_or("case")?;
    let events = case["events"].as_array().ok_or("events")?;
    let submitted = &events[0]["message"];
    assert_eq!(submitted["direction"], "out");
    assert_eq!(submitted["via"], serde_json::json!(route));
    assert!(submitted["end_to_end_log_index"].as_u64().is_some());
    let registered = &events[2]["message"];
    assert_eq!(registered["direction"], "in");
    assert_eq!(registered["via"], serde_json::json!(reverse));

    // The relays: hop and `relayed` entries with metadata only, no request
    // state, no plaintext; once every end-to-end receipt is back.
    until("every end-to-end receipt", WAIT_SECS, || {
        for n in [&na, &nb] {
            for o in n.store().all_outbox()? {
                let Some(r) = o.relay else {
                    return Err("a direct message".into());
                };
                if o.kind != Kind::Receipt && r.end_to_end_index.is_none() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
    .await?;
    let markers: Vec<Vec<u8>> = std::iter::once(FACTS.as_bytes().to_vec())
        .chain((0..steps.len()).map(|i| format!("{REASON} step {i}").into_bytes()))
        .collect();
    for r in [&r1, &r2] {
        assert!(workflow::requests(r.store())?.is_empty());
        let log = entries(r)?;
        let relayed = log
            .iter()
            .filter(|(_, e)| e.event == EventType::Relayed)
            .count();
        // The request, each status, and each end-to-end receipt.
        assert_eq!(relayed, 2 * (1 + steps.len()));
        for (bytes, e) in &log {
            for m in &markers {
                assert!(!contains(bytes, m), "plaintext in a relay's log");
            }
            assert!(e.reason.is_none());
            match e.event {
                EventType::Relayed => {
                    for k in e.detail.keys() {
                        assert!(
                            [
                                "kind",
                                "previous-hop",
                                "next-hop",
                                "hop-sha256",
                                "forward-sha256"
                            ]
                            .contains(&k.as_str()),
                            "{k}"
                        );
                    }
                }
                EventType::Received | EventType::Sent => {
                    assert_eq!(e.detail.get("kind").map(String::as_str), Some("relay"));
                }
                EventType::ReceiptSent | EventType::ReceiptReceived => {}
                other => {
                    assert!(
                        e.message_id.is_none(),
                        "a relay logged {other:?} about a message"
                    );
                }
            }
        }
    }
    for n in all {
        n.shutdown().await;
    }
    drop((na, r1, r2, nb));
    for x in [&a[1], &a[2]] {
        let db = std::fs::read(tmp.path().join(x.id.as_str()).join("state.redb"))?;
        assert!(db.len() > 1000);
        for m in &markers {
            assert!(!contains(&db, m), "plaintext in a relay's store");
        }
    }
    Ok(())
}
