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

/// Revokes `a`'s signing key as of now in `dir` and lists a replacement
/// (the revoked key stays listed as a former key, as in a directory);
/// returns the revocation time and the old key's id.
fn revoke_and_rotate(
    dir: &TestDirectory,
    a: &mut Agency,
) -> Result<(u64, KeyId), Box<dyn std::error::Error>> {
    let old = SigningKey::from_pkcs8_pem(&a.sign_pem)?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    {
        let mut t = dir.0.write().map_err(|_| "poisoned")?;
        t.revoked.insert(old.key_id(), at);
        t.former_keys
            .push((a.id.clone(), old.verifying_key().clone()));
    }
    let new = SigningKey::generate(SignatureAlgorithm::Ed25519, &SystemRandom::new())?;
    a.sign_pem = new.to_pkcs8_pem().to_string();
    list(dir, a)?;
    Ok((at, old.key_id()))
}

/// A `sent` entry's digest and its `resealed-from` detail.
type Sent = ([u8; 32], Option<String>);

/// The `sent` entries of message `id` in `n`'s log.
fn sent_entries(n: &NodeHandle, id: &MessageId) -> Result<Vec<Sent>, Box<dyn std::error::Error>> {
    let log = n.log();
    let mut out = Vec::new();
    for i in 0..log.size() {
        let e = isnad_log::Entry::decode(&log.entry_bytes(i)?)?;
        if e.event == EventType::Sent && e.message_id.as_ref() == Some(id) {
            let d = e.envelope_sha256.ok_or("sent without digest")?;
            out.push((d, e.detail.get("resealed-from").cloned()));
        }
    }
    Ok(out)
}

/// Exports both nodes' logs, verifies each and cross-checks them.
async fn cross_checked(
    tmp: &std::path::Path,
    na: &NodeHandle,
    a: &Agency,
    nb: &NodeHandle,
    b: &Agency,
) -> Result<isnad_log::CrossCheck, Box<dyn std::error::Error>> {
    let mut logs = Vec::new();
    for (n, ag) in [(na, a), (nb, b)] {
        let out = tmp.join(format!("export-{}", ag.id));
        n.export_audit(&out, isnad_node::ExportAt::New).await?;
        let key = isnad_log::SignerKey::parse(&ag.log_key)?.verifier();
        let (report, log) = isnad_log::read_verified_export(&out, &key)?;
        logs.push(log.ok_or_else(|| format!("{}'s export does not verify: {report:?}", ag.id))?);
    }
    Ok(isnad_log::cross_check(
        &logs[0],
        &logs[1],
        isnad_log::crosscheck::DEFAULT_SKEW_MS,
    )?)
}

/// A node whose own signing key is revoked and replaced re-seals its queued
/// outbox with the new key when it restarts (spec/protocol.md §9): messages
/// queued while the recipient was down are delivered signed by the new key
/// after the revocation's grace (0 here, so the old envelopes would be
/// refused), each with a second `sent` entry naming the superseded digest,
/// both logs verify and the cross-check finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_key_is_revoked_reseals_its_queued_outbox() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (mut a, b) = (agency("iq.moi.ahtd")?, agency("iq.moj.ca")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let na = start(&a, &dir, tmp.path()).await?;
    // Queued while the recipient is down.
    let mut queued = Vec::new();
    for i in 0..3 {
        let id = na
            .submit(b.id.clone(), intel(&format!("queued {i}")), None)
            .await?;
        let digest = na.store().outbox(&id)?.ok_or("no outbox record")?.digest;
        queued.push((id, digest));
    }
    na.shutdown().await;
    drop(na);
    let (revoked, old_kid) = revoke_and_rotate(&dir, &mut a)?;
    let new_kid = SigningKey::from_pkcs8_pem(&a.sign_pem)?.key_id();

    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start_with(&b, &dir, tmp.path(), |c| c.limits.revocation_grace_secs = 0).await?;
    for (id, _) in &queued {
        wait_state(&na, id, isnad_node::store::OutState::Delivered, 15).await?;
    }
    for (id, old) in &queued {
        let rec = na.store().outbox(id)?.ok_or("no outbox record")?;
        assert_ne!(rec.digest, *old, "not re-sealed");
        let sent = sent_entries(&na, id)?;
        assert_eq!(
            sent,
            [(*old, None), (rec.digest, Some(Digest(*old).to_hex()))],
            "one sent entry per envelope, the second naming the first"
        );
    }
    let inbox = nb.store().all_inbox()?;
    assert_eq!(inbox.len(), 3);
    for rec in &inbox {
        let m = nb.read_inbox(rec)?;
        assert_eq!(m.signer, new_kid, "signed by the revoked key {old_kid:?}");
        assert!(
            m.message.header.created >= revoked,
            "{:?}",
            m.message.header
        );
    }
    let cc = cross_checked(tmp.path(), &na, &a, &nb, &b).await?;
    assert!(cc.is_clean(), "{:?}", cc.findings);
    assert_eq!(
        (cc.counts.exchanges, cc.counts.matched),
        (3, 3),
        "{:?}",
        cc.counts
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// The re-seal survives a crash midway: the node restarts with the new key
/// on a log that cannot be written, so re-sealed records are committed but
/// their `sent` entries cannot be logged and the start fails. The next start
/// re-seals nothing twice: each message gets exactly one re-sealed `sent`
/// entry, naming its first digest, for the envelope it then delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reseal_interrupted_by_a_crash_is_completed_once() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (mut a, b) = (agency("iq.moi.ahtd")?, agency("iq.moj.ca")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let na = start(&a, &dir, tmp.path()).await?;
    let mut queued = Vec::new();
    for i in 0..3 {
        let id = na
            .submit(b.id.clone(), intel(&format!("queued {i}")), None)
            .await?;
        let digest = na.store().outbox(&id)?.ok_or("no outbox record")?.digest;
        queued.push((id, digest));
    }
    na.shutdown().await;
    drop(na);
    revoke_and_rotate(&dir, &mut a)?;

    // The log's writes fail: the start fails after committing a re-seal.
    let (log_faults, db_faults) = (
        isnad_log::disk::DiskFaults::new(),
        isnad_log::disk::DiskFaults::new(),
    );
    log_faults.fail_writes(Some(isnad_log::disk::Fault::Io));
    log_faults.fail_syncs(Some(isnad_log::disk::Fault::Io));
    let failed = start_faulty(&a, &dir, tmp.path(), &log_faults, &db_faults, |_| {}).await;
    assert!(failed.is_err(), "the start logged with a failing log");
    drop(failed);
    let store = isnad_node::store::Store::open(&tmp.path().join(a.id.as_str()).join("state.redb"))?;
    let mut resealed = 0;
    for (id, old) in &queued {
        let rec = store.outbox(id)?.ok_or("no outbox record")?;
        if rec.digest != *old {
            resealed += 1;
            let copy = rec.reseal.ok_or("no own copy")?;
            assert_eq!(copy.resealed_from, Some(*old));
            assert_eq!(rec.sent_index, None);
        }
    }
    assert!(resealed >= 1, "the failed start re-sealed nothing");
    drop(store);

    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start(&b, &dir, tmp.path()).await?;
    for (id, _) in &queued {
        wait_state(&na, id, isnad_node::store::OutState::Delivered, 15).await?;
    }
    for (id, old) in &queued {
        let rec = na.store().outbox(id)?.ok_or("no outbox record")?;
        let sent = sent_entries(&na, id)?;
        assert_eq!(
            sent,
            [(*old, None), (rec.digest, Some(Digest(*old).to_hex()))],
            "exactly one re-seal logged, for the envelope delivered"
        );
    }
    let cc = cross_checked(tmp.path(), &na, &a, &nb, &b).await?;
    assert!(cc.is_clean(), "{:?}", cc.findings);
    assert_eq!(cc.counts.matched, 3, "{:?}", cc.counts);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// A relayed message this node originated is re-sealed too (spec/relay.md
/// §9, protocol.md §9): queued while its central authority is down, the
/// originator's key is revoked and replaced, and after the restart the
/// inner envelope (to the final recipient) and the hop envelope (to the
/// first relay) are both new, signed by the new key. The final recipient,
/// with no grace for the old key, accepts it end to end; the originator
/// logs a second hop `sent` and a second end-to-end `sent`, each naming
/// the digest it supersedes; the end-to-end receipt matches the new inner
/// envelope; every log verifies and the cross-checks with the first relay
/// and the final recipient are clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_message_is_resealed_end_to_end_when_the_originators_key_is_revoked() -> TestResult
{
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir()?;
    let (dir, [mut a, ca1, ca2, end]) = relay_federation()?;
    let na = start(&a, &dir, tmp.path()).await?;
    // Queued while the first relay is down.
    let id = na.submit(end.id.clone(), intel("relayed"), None).await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    let (old_hop, old_inner) = (rec.digest, rec.relay.ok_or("not relayed")?.inner_digest);
    na.shutdown().await;
    drop(na);
    let (revoked, old_kid) = revoke_and_rotate(&dir, &mut a)?;
    let new_kid = SigningKey::from_pkcs8_pem(&a.sign_pem)?.key_id();

    let na = start(&a, &dir, tmp.path()).await?;
    let n1 = start(&ca1, &dir, tmp.path()).await?;
    let n2 = start(&ca2, &dir, tmp.path()).await?;
    let n3 = start_with(&end, &dir, tmp.path(), |c| {
        c.limits.revocation_grace_secs = 0
    })
    .await?;
    wait_state(&na, &id, isnad_node::store::OutState::Delivered, 15).await?;
    until("the end-to-end receipt", 15, || {
        Ok(na
            .store()
            .outbox(&id)?
            .and_then(|r| r.relay)
            .is_some_and(|r| r.end_to_end_index.is_some()))
    })
    .await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    let relay = rec.relay.clone().ok_or("not relayed")?;
    assert_ne!(rec.digest, old_hop, "hop not re-sealed");
    assert_ne!(
        relay.inner_digest, old_inner,
        "inner envelope not re-sealed"
    );
    let got = n3.store().inbox_by_id(&id)?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].digest, relay.inner_digest);
    // The end-to-end receipt acknowledged the new inner envelope.
    assert_eq!(relay.end_to_end_index, Some(got[0].log_index));
    let m = n3.read_inbox(&got[0])?;
    assert_eq!(m.signer, new_kid, "signed by the revoked key {old_kid:?}");
    assert!(
        m.message.header.created >= revoked,
        "{:?}",
        m.message.header
    );
    assert_eq!(
        sent_entries(&na, &id)?,
        [
            (old_hop, None),
            (old_inner, None),
            (rec.digest, Some(Digest(old_hop).to_hex())),
            (relay.inner_digest, Some(Digest(old_inner).to_hex())),
        ],
        "hop and end-to-end sent entries, each re-seal naming what it supersedes"
    );
    for (peer, ag) in [(&n1, &ca1), (&n3, &end)] {
        let out = tmp.path().join(format!("with-{}", ag.id));
        std::fs::create_dir(&out)?;
        let cc = cross_checked(&out, &na, &a, peer, ag).await?;
        assert!(cc.is_clean(), "with {}: {:?}", ag.id, cc.findings);
        assert!(cc.counts.exchanges >= 1, "{:?}", cc.counts);
    }
    for n in [na, n1, n2, n3] {
        n.shutdown().await;
    }
    Ok(())
}
