//! A server that refuses a request before reading its whole body stops the
//! stream (STOP_SENDING 0x49) and still answers it (transport.md §2): the
//! sender reads that answer instead of taking the stopped stream for a
//! broken connection. Before, a final refusal of a large envelope (here
//! `too-large` from a receiver with a smaller envelope limit) looked like a
//! transport failure: the sender dropped the connection and retried until
//! the message expired, each retry one more counted refusal at the receiver.

mod support;

use isnad_node::store::OutState;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_is_read_reaches_the_sender() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let na = start(&a, &dir, tmp.path()).await?;
    // The receiver takes envelopes of at most 64 KiB; the sender's limit is
    // the default 4 MiB, and its envelope is larger than the receiver's
    // 1 MiB stream window, so the stop reaches the sender mid-write.
    let nb = start_with(&b, &dir, tmp.path(), |c| {
        c.limits.max_envelope_bytes = 64 * 1024;
    })
    .await?;
    let big = "x".repeat(2_000_000);
    let id = na.submit(b.id.clone(), intel(&big), None).await?;
    wait_state(&na, &id, OutState::Failed, 20).await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    assert_eq!(rec.attempts, 1, "a final refusal is not retried: {rec:?}");
    let err = rec.last_error.unwrap_or_default();
    assert!(err.contains("too-large"), "{err}");
    // The connection survived the stopped stream: a small message follows.
    let small = na.submit(b.id.clone(), intel("small"), None).await?;
    wait_state(&na, &small, OutState::Delivered, 10).await?;
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
