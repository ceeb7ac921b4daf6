//! Revocation judged at receipt, over QUIC (spec/protocol.md §5.2 step 9c):
//! a thief holding a revoked signing key backdates `iat` to before
//! `revoked-at`; the receiving node refuses it once the revocation's grace
//! has passed (opaque `unauthentic` to the peer, `key-revoked` in its own
//! log), accepts a backdated message that arrives within the grace (one in
//! flight), and keeps re-reading what it accepted before.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod support;

use isnad_envelope::*;
use isnad_log::EventType;
use isnad_node::NodeHandle;
use ring::rand::SystemRandom;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_message_signed_with_a_revoked_key_is_refused_on_receipt() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "iq.moj.ca"])?;
    // A one-second grace keeps the test short (the default is 600 s).
    let nb = start_with(&b, &dir, tmp.path(), |c| c.limits.revocation_grace_secs = 1).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let rng = SystemRandom::new();
    let a_sign = SigningKey::from_pkcs8_pem(&a.sign_pem)?;
    let b_enc = EncryptionKey::from_pkcs8_pem(&b.enc_pem)?;
    let clock = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
    };
    let start = clock()?;
    let deliver = |created: u64, text: &str| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let msg = Message {
            header: Header {
                id: MessageId::random(&rng)?,
                sender: a.id.clone(),
                recipient: b.id.clone(),
                created,
                expires: start + 86400,
            },
            body: intel(text),
        };
        let env = seal(&msg, &a_sign, b_enc.public_key(), &Limits::default(), &rng)?;
        Ok(isnad_wire::Request {
            op: isnad_wire::Op::Deliver,
            payload: env,
        }
        .encode())
    };

    // Before the revocation: accepted.
    let before = raw_request(&conn, &deliver(start - 30, "before")?).await?;
    assert!(error_code(&before).is_none(), "{before:?}");

    // The key is revoked from `revoked` on (as the receiver's directory says).
    let revoked = clock()?;
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .revoked
        .insert(a_sign.key_id(), revoked);
    // Created before the revocation and arriving within the grace (in
    // flight when the key was revoked): accepted.
    let in_flight = raw_request(&conn, &deliver(revoked - 1, "in flight")?).await?;
    assert!(error_code(&in_flight).is_none(), "{in_flight:?}");
    // Created at the revocation: refused (the creation-time rule).
    let after = raw_request(&conn, &deliver(revoked, "after")?).await?;
    assert_eq!(error_code(&after), Some(ErrorCode::Unauthentic));

    // Once the grace has run out (the node's clock, whole seconds), a
    // message claiming creation before the revocation is refused whatever
    // it claims, and the peer is told only `unauthentic`.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while clock()? < revoked + 1 {
        assert!(tokio::time::Instant::now() < deadline, "clock stalled");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for created in [revoked - 1, start - 7 * 86400] {
        let backdated = raw_request(&conn, &deliver(created, "backdated")?).await?;
        match &backdated {
            isnad_wire::Response::Error { code, detail, .. } => {
                assert_eq!(*code, ErrorCode::Unauthentic);
                assert_eq!(*detail, None, "the peer was told which check failed");
            }
            other => {
                panic!("a backdated message signed with a revoked key was accepted: {other:?}")
            }
        }
    }

    // What was accepted before stays readable (re-reading skips the time
    // checks): the audit trail of pre-revocation messages still verifies.
    let inbox = nb.store().all_inbox()?;
    assert_eq!(inbox.len(), 2, "only the two messages accepted");
    for rec in &inbox {
        let m = nb.read_inbox(rec)?;
        assert!(m.message.header.created < revoked, "{:?}", m.message.header);
    }
    nb.shutdown().await;
    let reasons = rejected_reasons(&nb)?;
    assert_eq!(reasons, ["unauthentic"; 3], "{reasons:?}");
    Ok(())
}

/// The reasons of the node's `rejected` entries, in log order.
fn rejected_reasons(n: &NodeHandle) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let log = n.log();
    let mut out = Vec::new();
    for i in 0..log.size() {
        let e = isnad_log::Entry::decode(&log.entry_bytes(i)?)?;
        if e.event == EventType::Rejected {
            out.push(e.reason.unwrap_or_default());
        }
    }
    Ok(out)
}

/// The sender's side: a message sealed before its own key was revoked and
/// refused after (`unauthentic`, nothing more from the peer) is failed with
/// the reason taken from the sender's own directory; new submissions are
/// refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_own_key_is_revoked_says_so_and_takes_no_new_messages() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "iq.moj.ca"])?;
    let na = start(&a, &dir, tmp.path()).await?;
    // Queued while the recipient is down.
    let id = na.submit(b.id.clone(), intel("queued"), None).await?;
    let created = na.store().outbox(&id)?.ok_or("no outbox record")?.created;
    // Revoked from the message's creation time on.
    let kid = SigningKey::from_pkcs8_pem(&a.sign_pem)?.key_id();
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .revoked
        .insert(kid, created);
    let nb = start(&b, &dir, tmp.path()).await?;
    wait_state(&na, &id, isnad_node::store::OutState::Failed, 15).await?;
    let err = na
        .store()
        .outbox(&id)?
        .ok_or("no outbox record")?
        .last_error
        .unwrap_or_default();
    assert!(
        err.starts_with("unauthentic") && err.contains("signing key is revoked"),
        "{err}"
    );
    match na.submit(b.id.clone(), intel("after"), None).await {
        Err(isnad_node::NodeError::SigningKeyRevoked { at, .. }) => assert_eq!(at, created),
        other => panic!("a node with a revoked key accepted a message: {other:?}"),
    }
    assert_eq!(na.store().all_outbox()?.len(), 1, "nothing new stored");
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
