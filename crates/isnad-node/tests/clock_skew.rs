//! A receiver whose clock runs behind the sender's by more than the skew
//! allowance answers `not-yet-valid`; that refusal is temporary: the sender
//! keeps the message and retries it until it is accepted (or expires).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod support;

use std::time::Duration;

use isnad_envelope::*;
use isnad_node::store::{OutState, OutboxRecord, Store};
use ring::rand::SystemRandom;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_is_retried_until_the_receiver_accepts() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "iq.moj.ca"])?;
    // The sender's clock is 302 s ahead of the receiver's (whose skew
    // allowance is 300 s): its queued message claims creation at
    // receiver-now + 302, which the receiver accepts from 2 s on.
    let rng = SystemRandom::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let created = now + 302;
    let id = MessageId::random(&rng)?;
    let msg = Message {
        header: Header {
            id,
            sender: a.id.clone(),
            recipient: b.id.clone(),
            created,
            expires: created + 3600,
        },
        body: intel("from a clock ahead"),
    };
    let env = seal(
        &msg,
        &SigningKey::from_pkcs8_pem(&a.sign_pem)?,
        EncryptionKey::from_pkcs8_pem(&b.enc_pem)?.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let home = tmp.path().join(a.id.as_str());
    std::fs::create_dir_all(&home)?;
    {
        let store = Store::open(&home.join("state.redb"))?;
        let rec =
            OutboxRecord::pending(id, &b.id, Kind::IntelShare, env, created, created + 3600, 0);
        store.insert_outbox(rec).await?;
    }
    let nb = start(&b, &dir, tmp.path()).await?;
    let na = start(&a, &dir, tmp.path()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let rec = loop {
        let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
        if rec.state != OutState::Pending || tokio::time::Instant::now() > deadline {
            break rec;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        rec.state,
        OutState::Delivered,
        "a not-yet-valid refusal ended the message: {:?}",
        rec.last_error
    );
    assert!(
        rec.attempts >= 2,
        "delivered at the first attempt ({}), so nothing was retried",
        rec.attempts
    );
    assert_eq!(nb.store().inbox_by_id(&id)?.len(), 1);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
