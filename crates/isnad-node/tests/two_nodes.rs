//! Two nodes in one process over real QUIC on loopback: delivery with signed
//! receipts, replay and misaddressing refused, peer outage then recovery,
//! restart mid-queue, unlisted peers refused at TLS, oversize frames refused,
//! the local API and metrics servers stopped by shutdown,
//! and a hostile-input storm (plus a garbage flood) during which an honest
//! peer's traffic keeps being delivered. (A revoked signing key, which needs
//! real signed directories, is tested with node processes in
//! tests/revoked_key.rs.)
//!
//! Support code (tests/support) stands in for the federation layer.

mod support;

use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::*;
use isnad_node::store::OutState;
use isnad_node::NodeHandle;
use ring::rand::SystemRandom;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_both_ways_with_receipts_and_audit() -> TestResult {
    let (_tmp, _, [a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;

    let id1 = na.submit(b.id.clone(), intel("to france"), None).await?;
    let id2 = nb.submit(a.id.clone(), intel("to iraq"), None).await?;
    wait_state(&na, &id1, OutState::Delivered, 10).await?;
    wait_state(&nb, &id2, OutState::Delivered, 10).await?;

    // The receiver decrypts on read; the receipt's log index names its `received` entry.
    let inb = nb.store().inbox_by_id(&id1)?;
    assert_eq!(inb.len(), 1);
    let opened = nb.read_inbox(&inb[0])?;
    assert_eq!(opened.message.header.sender, a.id);
    assert!(matches!(&opened.message.body, Body::IntelShare(s) if s.content == "to france"));
    let out = na.store().outbox(&id1)?.ok_or("outbox")?;
    assert_eq!(out.peer_log_index, Some(inb[0].log_index));
    let entry = isnad_log::Entry::decode(&nb.log().entry_bytes(inb[0].log_index)?)?;
    assert_eq!(entry.event, isnad_log::EventType::Received);
    assert_eq!(entry.message_id, Some(id1));
    assert_eq!(entry.envelope_sha256, Some(out.digest));
    // Sender side: sent and receipt-received, with the peer's index.
    let sent =
        isnad_log::Entry::decode(&na.log().entry_bytes(out.sent_index.ok_or("sent index")?)?)?;
    assert_eq!(sent.event, isnad_log::EventType::Sent);
    let rr = isnad_log::Entry::decode(
        &na.log()
            .entry_bytes(out.final_index.ok_or("final index")?)?,
    )?;
    assert_eq!(rr.event, isnad_log::EventType::ReceiptReceived);
    assert_eq!(rr.peer_index, Some(inb[0].log_index));
    // Checkpoints sign the grown log.
    let note = na.checkpoint_now().await?;
    assert!(note.starts_with("iq.moi.ahtd/audit\n"), "{note}");
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_down_then_up_and_restart_mid_queue_lose_nothing() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moj.ca", "fr.mj.bepi"])?;
    // The recipient is down: messages queue.
    let na = start(&a, &dir, tmp.path()).await?;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            na.submit(b.id.clone(), intel(&format!("queued {i}")), None)
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &ids {
        assert_eq!(
            na.store().outbox(id)?.map(|r| r.state),
            Some(OutState::Pending)
        );
    }
    // The sender restarts mid-queue, right after its shutdown returned.
    na.shutdown().await;
    drop(na);
    let na = start(&a, &dir, tmp.path()).await?;
    // The recipient comes up: everything is delivered, once.
    let nb = start(&b, &dir, tmp.path()).await?;
    for id in &ids {
        wait_state(&na, id, OutState::Delivered, 20).await?;
    }
    let inbox = nb.store().all_inbox()?;
    assert_eq!(inbox.len(), ids.len());
    for id in &ids {
        assert_eq!(nb.store().inbox_by_id(id)?.len(), 1);
    }
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Submitted messages start delivery at once while a delivery slot is free
/// and wait for the delivery loop otherwise: with two slots and forty
/// messages submitted at once, every message is delivered, and exactly once
/// (one `sent` and one `receipt-received` per message in the sender's log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_messages_than_delivery_slots_are_each_delivered_once() -> TestResult {
    let (_tmp, _, [_, b], [na, nb]) = pair_with("iq.moi.ahtd", "fr.mj.bepi", |c| {
        c.delivery.max_in_flight = 2
    })
    .await?;
    let mut submits = Vec::new();
    for i in 0..40u8 {
        let (na, to) = (na.clone(), b.id.clone());
        submits.push(tokio::spawn(async move {
            let mut body = intel(&format!("message {i}"));
            if let Body::IntelShare(s) = &mut body {
                s.share_id = MessageId::from_bytes([i + 1; 16]);
            }
            na.submit(to, body, None).await
        }));
    }
    let mut ids = Vec::new();
    for s in submits {
        ids.push(s.await??);
    }
    for id in &ids {
        wait_state(&na, id, OutState::Delivered, 20).await?;
    }
    for id in &ids {
        assert_eq!(nb.store().inbox_by_id(id)?.len(), 1);
    }
    let mut sent = std::collections::HashMap::new();
    let mut receipts = std::collections::HashMap::new();
    for i in 0..na.log().size() {
        let e = isnad_log::Entry::decode(&na.log().entry_bytes(i)?)?;
        let counter = match e.event {
            isnad_log::EventType::Sent => &mut sent,
            isnad_log::EventType::ReceiptReceived => &mut receipts,
            _ => continue,
        };
        *counter
            .entry(e.message_id.ok_or("entry without id")?)
            .or_insert(0) += 1;
    }
    for id in &ids {
        assert_eq!(sent.get(id), Some(&1), "sent entries of {id}");
        assert_eq!(
            receipts.get(id),
            Some(&1),
            "receipt-received entries of {id}"
        );
    }
    assert_eq!((sent.len(), receipts.len()), (ids.len(), ids.len()));
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denial_is_final_and_logged() -> TestResult {
    let (_tmp, dir, [_, b], [na, nb]) = pair("iq.moi.ahtd", "iq.moj.ca").await?;
    // The sender's own policy check refuses at submission.
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .denied_kinds
        .push(Kind::IntelShare);
    assert!(na.submit(b.id.clone(), intel("x"), None).await.is_err());
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Honest messages sent during the hostile storm, and garbage frames in the flood.
const HONEST: usize = 30;
const FLOOD: u32 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_refused_and_logged_while_honest_peers_are_served() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tmp, dir, [a, b, c]) = listed(["iq.moi.ahtd", "fr.mj.bepi", "fr.pn.ocrtis"])?;
    let nb = start(&b, &dir, tmp.path()).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let rng = SystemRandom::new();
    let a_sign = SigningKey::from_pkcs8_pem(&a.sign_pem)?;
    let b_enc = EncryptionKey::from_pkcs8_pem(&b.enc_pem)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let msg = |to: &AgencyId| -> Result<Message, Box<dyn std::error::Error>> {
        Ok(Message {
            header: Header {
                id: MessageId::random(&rng)?,
                sender: a.id.clone(),
                recipient: to.clone(),
                created: now,
                expires: now + 3600,
            },
            body: intel("hostile"),
        })
    };
    let frame = |env: Vec<u8>| {
        isnad_wire::Request {
            op: isnad_wire::Op::Deliver,
            payload: env,
        }
        .encode()
    };
    let log_size = |n: &NodeHandle| n.log().size();

    // A valid envelope is accepted; sending the same bytes again returns the
    // same receipt and creates nothing new (replay).
    let good = seal(
        &msg(&b.id)?,
        &a_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let first = raw_request(&conn, &frame(good.clone())).await?;
    assert!(error_code(&first).is_none(), "{first:?}");
    let size_after_first = log_size(&nb);
    let again = raw_request(&conn, &frame(good.clone())).await?;
    assert_eq!(again, first);
    assert_eq!(nb.store().all_inbox()?.len(), 1);
    assert_eq!(
        log_size(&nb),
        size_after_first,
        "a replay adds no log entry"
    );

    // The same signed message re-encrypted (different envelope bytes): still one inbox record.
    let m = nb.read_inbox(&nb.store().all_inbox()?[0])?;
    let reenc = testing::encrypt_raw(&m.signed, b_enc.public_key(), &rng)?;
    let replay = raw_request(&conn, &frame(reenc)).await?;
    assert_eq!(replay, first);
    assert_eq!(nb.store().all_inbox()?.len(), 1);

    // From here on an honest peer (c, a real node) sends to b throughout the
    // storm, and a second hostile connection floods b with garbage.
    let nc = start(&c, &dir, tmp.path()).await?;
    let storm_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let honest = {
        let (nc, to, done) = (nc.clone(), b.id.clone(), Arc::clone(&storm_done));
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while ids.len() < HONEST || !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = format!("honest {}", ids.len());
                ids.push(nc.submit(to.clone(), intel(&text), None).await?);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok::<_, isnad_node::NodeError>(ids)
        })
    };
    let flood = {
        let conn = raw_connect(&a, &dir, &b).await?;
        tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..FLOOD {
                let garbage: Vec<u8> = (0..64u32).map(|j| (i * 31 + j * 7) as u8).collect();
                let mut framed = vec![0, 0, 0, 64];
                framed.extend_from_slice(&garbage);
                if let Ok(r) = raw_request(&conn, &framed).await {
                    refused += usize::from(error_code(&r).is_some());
                }
            }
            refused
        })
    };

    // Addressed to another agency (but encrypted to b): misaddressed, logged.
    let mis = seal(
        &msg(&c.id)?,
        &a_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    assert_eq!(
        error_code(&raw_request(&conn, &frame(mis)).await?),
        Some(ErrorCode::Misaddressed)
    );
    // Tampered: unauthentic, and the answer does not say which check failed.
    let mut bad = good.clone();
    let n = bad.len() - 30;
    bad[n] ^= 1;
    let r = raw_request(&conn, &frame(bad)).await?;
    assert_eq!(error_code(&r), Some(ErrorCode::Unauthentic));
    assert!(matches!(
        &r,
        isnad_wire::Response::Error { detail: None, .. }
    ));
    // Expired.
    let mut old = msg(&b.id)?;
    old.header.created = now - 7200;
    old.header.expires = now - 3600;
    let env = seal(&old, &a_sign, b_enc.public_key(), &Limits::default(), &rng)?;
    assert_eq!(
        error_code(&raw_request(&conn, &frame(env)).await?),
        Some(ErrorCode::Expired)
    );
    // Sender is not the TLS peer: c's message delivered over a's connection.
    let c_sign = SigningKey::from_pkcs8_pem(&c.sign_pem)?;
    let mut from_c = msg(&b.id)?;
    from_c.header.sender = c.id.clone();
    let env = seal(
        &from_c,
        &c_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    assert_eq!(
        error_code(&raw_request(&conn, &frame(env)).await?),
        Some(ErrorCode::PolicyDenied)
    );
    // Policy forbids the kind (to this sender: the honest peer sends the same kind).
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .denied_for
        .push((a.id.clone(), Kind::IntelShare));
    let env = seal(
        &msg(&b.id)?,
        &a_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    assert_eq!(
        error_code(&raw_request(&conn, &frame(env)).await?),
        Some(ErrorCode::PolicyDenied)
    );
    dir.0.write().map_err(|_| "poisoned")?.denied_for.clear();
    // Signed with a key no directory lists: unauthentic.
    let unknown = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let env = seal(
        &msg(&b.id)?,
        &unknown,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    assert_eq!(
        error_code(&raw_request(&conn, &frame(env)).await?),
        Some(ErrorCode::Unauthentic)
    );
    // Deeply nested CBOR as the envelope: malformed, refused before decoding.
    let mut deep = vec![0x81u8; 10_000];
    deep.push(0);
    assert_eq!(
        error_code(&raw_request(&conn, &frame(deep)).await?),
        Some(ErrorCode::Malformed)
    );
    // Garbage and truncated frames.
    assert_eq!(
        error_code(&raw_request(&conn, &[0, 0, 0, 3, 0xff, 0xff, 0xff]).await?),
        Some(ErrorCode::Malformed)
    );
    assert_eq!(
        error_code(&raw_request(&conn, &[0, 0, 0, 9, 0xa3]).await?),
        Some(ErrorCode::Malformed)
    );
    let mut trailing = frame(good.clone());
    trailing.push(0);
    assert_eq!(
        error_code(&raw_request(&conn, &trailing).await?),
        Some(ErrorCode::Malformed)
    );
    // Oversize: refused from the length prefix, before the body is read.
    let huge = [0x7f, 0xff, 0xff, 0xff, 0xa3];
    assert_eq!(
        error_code(&raw_request(&conn, &huge).await?),
        Some(ErrorCode::TooLarge)
    );

    assert_eq!(flood.await?, FLOOD as usize, "each garbage frame refused");
    // The honest peer was served all along: some of its messages arrived
    // during the storm, and every one is delivered once, with a receipt
    // naming b's `received` entry, within a bound after it.
    let during = nb
        .store()
        .all_inbox()?
        .iter()
        .filter(|r| r.sender == c.id)
        .count();
    storm_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let storm_over = tokio::time::Instant::now();
    assert!(
        during > 0,
        "no honest message was delivered during the storm"
    );
    let ids = honest.await??;
    for id in &ids {
        wait_state(&nc, id, OutState::Delivered, 30).await?;
        let out = nc.store().outbox(id)?.ok_or("outbox")?;
        let inb = nb.store().inbox_by_id(id)?;
        assert_eq!(inb.len(), 1, "{id} delivered once");
        assert_eq!(inb[0].sender, c.id);
        assert_eq!(out.peer_log_index, Some(inb[0].log_index));
    }
    eprintln!(
        "honest peer: {during} messages delivered during the storm, all {} delivered with receipts {:?} after it",
        ids.len(),
        storm_over.elapsed()
    );

    // Every refusal above is in the audit log with its reason.
    let mut reasons = Vec::new();
    for i in 0..nb.log().size() {
        let e = isnad_log::Entry::decode(&nb.log().entry_bytes(i)?)?;
        if e.event == isnad_log::EventType::Rejected {
            reasons.push(e.reason.unwrap_or_default());
        }
    }
    for want in [
        "misaddressed",
        "unauthentic",
        "expired",
        "policy-denied",
        "malformed",
        "too-large",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no rejected entry for {want}: {reasons:?}"
        );
    }
    // The honest path still works after all that.
    let ok = seal(
        &msg(&b.id)?,
        &a_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    assert!(error_code(&raw_request(&conn, &frame(ok)).await?).is_none());

    // A peer whose certificate is in no directory cannot complete TLS.
    let stranger = agency("de.bka.x")?;
    // (In TLS 1.3 the client may finish its side before the server refuses
    // the client certificate, so the refusal can surface on first use.)
    let refused = match raw_connect(&stranger, &dir, &b).await {
        Err(_) => true,
        Ok(conn) => raw_request(&conn, &frame(good.clone())).await.is_err(),
    };
    assert!(refused, "an unlisted client completed a request");
    // And a node does not talk to a server whose certificate is unlisted.
    let (_, client) = tls(&a, &dir)?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client)?,
    )));
    // The real b presents its listed certificate, but under another name it is refused.
    assert!(ep.connect(b.addr, "fr.pn.ocrtis")?.await.is_err());
    nc.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection; the response text.
async fn http(addr: std::net::SocketAddr, request: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_local_api_and_metrics_servers() -> TestResult {
    let (tmp, dir, [a]) = listed(["iq.moi.ahtd"])?;
    let node = start(&a, &dir, tmp.path()).await?;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let api = isnad_node::api::serve(node.clone(), local, "t0ken".into()).await?;
    let metrics = isnad_node::api::serve_metrics(node.clone(), local).await?;
    let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(http(api, health).await?.starts_with("HTTP/1.1 200"));
    let scrape = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(http(metrics, scrape).await?.contains("isnad_"));
    node.shutdown().await;
    // Both servers were node tasks: shutdown waited for them to stop, so
    // nothing answers on their ports any more.
    for addr in [api, metrics] {
        let after = http(addr, health).await;
        assert!(
            after.as_ref().map_or(true, |r| r.is_empty()),
            "{addr} still answers after shutdown: {after:?}"
        );
    }
    Ok(())
}

/// A node shut down right after it started, before its tasks first ran,
/// stops them all: `shutdown` returns at once instead of waiting out its
/// 30 s limit with the delivery and checkpoint loops still running (they
/// used to miss the signal when it was sent before they subscribed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_start_stops_every_task() -> TestResult {
    let (tmp, dir, [a]) = listed(["iq.moi.ahtd"])?;
    for round in 0..5 {
        let node = start(&a, &dir, tmp.path()).await?;
        tokio::time::timeout(Duration::from_secs(10), node.shutdown())
            .await
            .map_err(|_| format!("shutdown {round} still waiting for the node's tasks"))?;
    }
    Ok(())
}

/// A listed peer whose requests keep being refused cannot grow the log
/// without bound (spec/transport.md §5): after `max_rejections_per_peer`
/// logged refusals in a window its requests, even valid ones, are answered
/// `unavailable` unprocessed, the throttling is logged once, and once the
/// window has passed it is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refused_too_often_is_throttled_for_the_window() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let nb = start_with(&b, &dir, tmp.path(), |c| {
        c.limits.max_rejections_per_peer = 5;
        c.limits.rejection_window_secs = 2;
    })
    .await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let garbage = [0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
    let rejected = |stage: &str| -> Result<usize, Box<dyn std::error::Error>> {
        let mut n = 0;
        for i in 0..nb.log().size() {
            let e = isnad_log::Entry::decode(&nb.log().entry_bytes(i)?)?;
            let here = e.detail.get("stage").map(String::as_str) == Some(stage);
            n += usize::from(e.event == isnad_log::EventType::Rejected && here);
        }
        Ok(n)
    };
    for _ in 0..5 {
        let r = raw_request(&conn, &garbage).await?;
        assert_eq!(error_code(&r), Some(ErrorCode::Malformed));
    }
    assert_eq!(rejected("frame")?, 5);
    let size = nb.log().size();

    // Throttled: garbage and a valid envelope alike, one entry for both.
    let rng = SystemRandom::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let msg = Message {
        header: Header {
            id: MessageId::random(&rng)?,
            sender: a.id.clone(),
            recipient: b.id.clone(),
            created: now,
            expires: now + 3600,
        },
        body: intel("valid, but sent while throttled"),
    };
    let env = seal(
        &msg,
        &SigningKey::from_pkcs8_pem(&a.sign_pem)?,
        EncryptionKey::from_pkcs8_pem(&b.enc_pem)?.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let valid = isnad_wire::Request {
        op: isnad_wire::Op::Deliver,
        payload: env,
    }
    .encode();
    for bytes in [&garbage[..], &garbage[..], &valid[..]] {
        let r = raw_request(&conn, bytes).await?;
        assert_eq!(error_code(&r), Some(ErrorCode::Unavailable), "{r:?}");
    }
    assert_eq!(nb.log().size(), size + 1);
    assert_eq!((rejected("frame")?, rejected("throttled")?), (5, 1));
    assert!(nb.store().all_inbox()?.is_empty());
    assert_eq!(nb.metrics().rejected_count("throttled"), 3);
    // The throttle is checked before a body is read: a request announcing
    // 4 MiB and sending none of it is answered at once (it used to wait
    // for the body until the stream timeout, holding its buffer).
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&(4u32 << 20).to_be_bytes()).await?;
    let answer = tokio::time::timeout(Duration::from_secs(1), recv.read_to_end(1 << 16))
        .await
        .map_err(|_| "no answer before the body was sent")??;
    let r = isnad_wire::Response::decode(answer.get(4..).ok_or("short answer")?)?;
    assert_eq!(error_code(&r), Some(ErrorCode::Unavailable), "{r:?}");
    assert_eq!(nb.log().size(), size + 1);

    // The window over, the valid envelope is accepted.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = raw_request(&conn, &valid).await?;
    assert!(error_code(&r).is_none(), "{r:?}");
    assert_eq!(nb.store().all_inbox()?.len(), 1);
    nb.shutdown().await;
    Ok(())
}
