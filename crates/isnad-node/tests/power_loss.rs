//! Power loss (issue 14 item 7): `kill -9` keeps the page cache, so a
//! missing sync goes unnoticed by a kill test. Here a node's audit log and
//! state database sit on the storage seam of isnad_log::disk, one fault
//! controller for both, and the power is cut after the n-th completed sync
//! for many n: every write no sync covered is dropped. The node restarts
//! on what is left, and nothing it acknowledged is lost or duplicated.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use isnad_envelope::MessageId;
use isnad_log::disk::DiskFaults;
use isnad_log::{Entry, EventType};
use isnad_node::store::OutState;
use isnad_node::NodeHandle;
use support::*;

/// Crash points: after this many completed syncs from the first submission
/// (about two per message at the sender: outbox commit, `sent`; at the
/// receiver: the `received` pair, the inbox commit).
const CRASH_POINTS: std::ops::RangeInclusive<u64> = 1..=10;
/// At the receiver each run waits out the sender's backoff (up to 1 s)
/// after the restart: fewer points keep the test under 20 s; they cover
/// the first messages' whole path and the pattern repeats.
const RECEIVER_CRASH_POINTS: std::ops::RangeInclusive<u64> = 1..=6;
/// Messages submitted per run (fewer when the crash comes first).
const MESSAGES: usize = 4;

/// Starts `a` on its files as the crash left them; the crashed node's
/// handles may still be closing (they change nothing: the disk is frozen).
async fn restart(
    a: &Agency,
    dir: &TestDirectory,
    root: &std::path::Path,
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match start(a, dir, root).await {
            Ok(n) => return Ok(n),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("restart not possible yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Crashes the disk now (if the crash point was not reached), stops the
/// node and rolls its files back to what the syncs covered.
async fn cut_power(n: NodeHandle, faults: &DiskFaults) -> TestResult {
    faults.crash();
    n.shutdown().await;
    drop(n);
    faults.restore()?;
    Ok(())
}

/// The messages whose `sent` entry is in the node's log.
fn logged_sent(n: &NodeHandle) -> Result<HashSet<MessageId>, Box<dyn std::error::Error>> {
    let mut out = HashSet::new();
    for i in 0..n.log().size() {
        let e = Entry::decode(&n.log().entry_bytes(i)?)?;
        if e.event == EventType::Sent {
            out.extend(e.message_id);
        }
    }
    Ok(out)
}

/// The sender loses power at each crash point while submitting and
/// delivering: every submission it acknowledged is in its outbox after the
/// restart, has its `sent` entry, and is delivered exactly once; the
/// receiver holds nothing it did not acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_power_loss_at_each_sync_loses_nothing_acknowledged() -> TestResult {
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    for crash_at in CRASH_POINTS {
        let tmp = tempfile::tempdir()?;
        let faults = DiskFaults::new();
        let na = start_faulty(&a, &dir, tmp.path(), &faults, &faults, |_| {}).await?;
        let nb = start(&b, &dir, tmp.path()).await?;
        faults.crash_after_syncs(crash_at);
        let mut acked = Vec::new();
        for i in 0..MESSAGES {
            match na.submit(b.id.clone(), intel(&format!("m{i}")), None).await {
                Ok(id) => acked.push(id),
                Err(_) => break,
            }
        }
        // Let deliveries run into the crash point, if it is still ahead.
        let _ = until("the crash point", 2, || {
            let mut done = true;
            for id in &acked {
                done &= na
                    .store()
                    .outbox(id)?
                    .is_some_and(|r| r.state == OutState::Delivered);
            }
            Ok(faults.crashed() || done)
        })
        .await;
        cut_power(na, &faults).await?;
        let na = restart(&a, &dir, tmp.path()).await?;
        let sent = logged_sent(&na)?;
        for id in &acked {
            assert!(
                na.store().outbox(id)?.is_some(),
                "crash after sync {crash_at}: acknowledged {id} lost from the outbox"
            );
            assert!(
                sent.contains(id),
                "crash after sync {crash_at}: sent entry of {id}"
            );
            wait_state(&na, id, OutState::Delivered, 15).await?;
            assert_eq!(nb.store().inbox_by_id(id)?.len(), 1, "{id} once");
        }
        for rec in nb.store().all_inbox()? {
            let id = rec.id;
            assert!(
                na.store().outbox(&id)?.is_some(),
                "crash after sync {crash_at}: {id} delivered but not in the sender's outbox"
            );
        }
        eprintln!(
            "crash after sync {crash_at}: {} acknowledged, all delivered once",
            acked.len()
        );
        na.shutdown().await;
        nb.shutdown().await;
    }
    Ok(())
}

/// The receiver loses power at each crash point while messages arrive:
/// every message whose receipt reached the sender is in the receiver's
/// inbox after the restart with its `received` entry, and every message is
/// delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_power_loss_at_each_sync_loses_nothing_acknowledged() -> TestResult {
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    for crash_at in RECEIVER_CRASH_POINTS {
        let tmp = tempfile::tempdir()?;
        let faults = DiskFaults::new();
        let na = start(&a, &dir, tmp.path()).await?;
        let nb = start_faulty(&b, &dir, tmp.path(), &faults, &faults, |_| {}).await?;
        faults.crash_after_syncs(crash_at);
        let mut ids = Vec::new();
        for i in 0..MESSAGES {
            ids.push(
                na.submit(b.id.clone(), intel(&format!("m{i}")), None)
                    .await?,
            );
        }
        let _ = until("the crash point", 2, || {
            let mut done = true;
            for id in &ids {
                done &= na.store().outbox(id)?.is_some_and(|r| r.receipt.is_some());
            }
            Ok(faults.crashed() || done)
        })
        .await;
        // What the receiver acknowledged: the sender holds its receipt.
        let mut acked = Vec::new();
        for id in &ids {
            if na.store().outbox(id)?.and_then(|r| r.receipt).is_some() {
                acked.push(*id);
            }
        }
        cut_power(nb, &faults).await?;
        let nb = restart(&b, &dir, tmp.path()).await?;
        for id in &acked {
            let got = nb.store().inbox_by_id(id)?;
            assert_eq!(
                got.len(),
                1,
                "crash after sync {crash_at}: acknowledged {id} lost by the receiver"
            );
            let e = Entry::decode(&nb.log().entry_bytes(got[0].log_index)?)?;
            assert_eq!((e.event, e.message_id), (EventType::Received, Some(*id)));
        }
        for id in &ids {
            wait_state(&na, id, OutState::Delivered, 15).await?;
            assert_eq!(nb.store().inbox_by_id(id)?.len(), 1, "{id} once");
        }
        eprintln!(
            "receiver crash after sync {crash_at}: {} of {} acknowledged before it, all delivered once",
            acked.len(),
            ids.len()
        );
        na.shutdown().await;
        nb.shutdown().await;
    }
    Ok(())
}
