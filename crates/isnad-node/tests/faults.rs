//! Network faults: the sender reaches the recipient only through a UDP relay
//! (written here) that drops, duplicates, reorders and delays datagrams, and
//! for a while blackholes everything. Every message is still delivered
//! exactly once, within a bounded time after the fault ends.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isnad_node::store::OutState;
use support::*;
use tokio::net::UdpSocket;

/// Fault settings, in percent (0 = off); `blackhole` drops everything.
#[derive(Default)]
struct Faults {
    drop: AtomicU32,
    duplicate: AtomicU32,
    reorder: AtomicU32,
    delay_ms: AtomicU32,
    blackhole: AtomicU32,
}

/// A one-client UDP relay from `listen` to `upstream` with faults.
async fn relay(upstream: SocketAddr, faults: Arc<Faults>) -> std::io::Result<SocketAddr> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = front.local_addr()?;
    let client: Arc<tokio::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    let seed = Arc::new(AtomicU32::new(0x9e37_79b9));
    let roll = move |seed: &AtomicU32| {
        let x = seed
            .fetch_add(0x6d2b_79f5, Ordering::Relaxed)
            .wrapping_mul(0x85eb_ca6b);
        (x >> 16) % 100
    };
    // One direction: read from `from`, write to a target with the faults applied.
    let pump = |from: Arc<UdpSocket>, to: Arc<UdpSocket>, toward_client: bool| {
        let (faults, client, seed) = (Arc::clone(&faults), Arc::clone(&client), Arc::clone(&seed));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let mut held: Option<Vec<u8>> = None;
            loop {
                let Ok((n, src)) = from.recv_from(&mut buf).await else {
                    return;
                };
                let target = if toward_client {
                    match *client.lock().await {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    *client.lock().await = Some(src);
                    upstream
                };
                let pkt = buf[..n].to_vec();
                if faults.blackhole.load(Ordering::Relaxed) > 0
                    || roll(&seed) < faults.drop.load(Ordering::Relaxed)
                {
                    continue;
                }
                let delay = faults.delay_ms.load(Ordering::Relaxed);
                let copies = if roll(&seed) < faults.duplicate.load(Ordering::Relaxed) {
                    2
                } else {
                    1
                };
                // Reorder: hold this datagram back and send it after the next one.
                if roll(&seed) < faults.reorder.load(Ordering::Relaxed) && held.is_none() {
                    held = Some(pkt);
                    continue;
                }
                let to = Arc::clone(&to);
                let later = held.take();
                tokio::spawn(async move {
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
                    }
                    for _ in 0..copies {
                        let _ = to.send_to(&pkt, target).await;
                    }
                    if let Some(h) = later {
                        let _ = to.send_to(&h, target).await;
                    }
                });
            }
        });
    };
    pump(Arc::clone(&front), Arc::clone(&back), false);
    pump(back, front, true);
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_duplicating_reordering_link_and_an_outage_deliver_everything_once() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let faults = Arc::new(Faults::default());
    faults.drop.store(10, Ordering::Relaxed);
    faults.duplicate.store(10, Ordering::Relaxed);
    faults.reorder.store(10, Ordering::Relaxed);
    faults.delay_ms.store(20, Ordering::Relaxed);
    let via = relay(b.addr, Arc::clone(&faults)).await?;
    // The sender's directory sends traffic for b through the relay.
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .agencies
        .get_mut(&b.id)
        .ok_or("b")?
        .0 = via;
    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start(&b, &dir, tmp.path()).await?;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            na.submit(b.id.clone(), intel(&format!("lossy {i}")), None)
                .await?,
        );
        if i == 10 {
            // A full outage for 3 seconds in the middle.
            faults.blackhole.store(1, Ordering::Relaxed);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    faults.blackhole.store(0, Ordering::Relaxed);
    let healed = tokio::time::Instant::now();
    // Bounded time after the fault ends (backoff is capped at 1 s here).
    for id in &ids {
        wait_state(&na, id, OutState::Delivered, 30).await?;
    }
    let took = healed.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} after the outage ended"
    );
    let inbox = nb.store().all_inbox()?;
    assert_eq!(inbox.len(), ids.len(), "each message exactly once");
    for id in &ids {
        assert_eq!(nb.store().inbox_by_id(id)?.len(), 1);
    }
    eprintln!("30 messages through 10% loss/duplication/reordering and a 3 s outage: all delivered {took:?} after it ended");
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
