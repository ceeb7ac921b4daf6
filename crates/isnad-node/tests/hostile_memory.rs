//! A listed partner cannot exhaust the receiver's memory
//! (spec/transport.md §5, threat-model.md; issue 14 item 4).
//!
//! A hostile partner holding valid credentials opens one connection more
//! than its agency may hold, and on each opens every stream it may, each
//! announcing a 4 MiB body, sending 1 MiB of it as fast as flow control
//! allows and then trickling a byte every 200 ms; a refused stream is
//! opened again a second later. Meanwhile an honest partner keeps sending.
//! One test per file: the test reads its process's resident memory.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isnad_node::store::OutState;
use support::*;

/// Streams a connection may open (the default `max_concurrent_streams`).
const STREAMS: usize = 256;
/// Connections the hostile partner opens: its agency's cap (4) and one more.
const CONNECTIONS: usize = 5;
/// Body length each stream announces: the largest the receiver accepts.
const ANNOUNCED: usize = 4 * 1024 * 1024;
/// Bytes each stream sends at once before trickling.
const BURST: usize = 1024 * 1024;
/// What the streams send (one shared buffer: the attacker runs in this
/// process and must not count against the receiver).
static CHUNK: [u8; 16 * 1024] = [0xa5; 16 * 1024];
/// How long the hostile partner keeps at it.
const ATTACK: Duration = Duration::from_secs(8);
/// Bound on the growth of the process's resident memory during the attack.
/// What the receiver may hold of one partner's requests is
/// `max_connections_per_agency` × `connection_receive_window` +
/// `body_budget_per_agency` = 4 × 4 MiB + 16 MiB = 32 MiB (transport.md
/// §5); on top come the bookkeeping of 1 000 streams on both sides, the
/// attacker's own send buffers (2 MiB per connection) and the honest
/// partner, all in this process. The node before this fix grew by
/// hundreds of MiB under the same attack.
const RSS_BOUND: u64 = 96 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_partner_trickling_on_every_stream_holds_bounded_memory() -> TestResult {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (b, c, h) = (
        agency("fr.mj.bepi")?,
        agency("iq.moi.ahtd")?,
        agency("iq.moj.ca")?,
    );
    for x in [&b, &c, &h] {
        list(&dir, x)?;
    }
    let nb = start(&b, &dir, tmp.path()).await?;
    let nc = start(&c, &dir, tmp.path()).await?;
    // Warm up the honest path before measuring.
    let id = nc.submit(b.id.clone(), intel("warm-up"), None).await?;
    wait_state(&nc, &id, OutState::Delivered, 10).await?;

    // The hostile partner's connections: the newest four survive, the
    // oldest is closed to make room (a restarted partner is never locked
    // out by its own stale connections).
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(hostile_connect(&h, &dir, &b).await?);
    }
    let oldest_closed = tokio::time::timeout(Duration::from_secs(5), async {
        while conns[0].close_reason().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    assert!(
        oldest_closed,
        "the partner holds {CONNECTIONS} connections; its cap is 4"
    );
    assert!(conns[1..].iter().all(|c| c.close_reason().is_none()));
    let conns = conns.split_off(1);

    let base = rss_bytes()?;
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let refused = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for conn in &conns {
        for _ in 0..STREAMS {
            let (conn, stop, refused) = (conn.clone(), Arc::clone(&stop), Arc::clone(&refused));
            streams.push(tokio::spawn(trickle(conn, stop, refused)));
        }
    }
    // The honest partner keeps sending; the peak is sampled meanwhile, and
    // the attack ends early once memory is over the bound.
    let mut honest = Vec::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < ATTACK {
        if honest.len() < 16 {
            let text = format!("honest {}", honest.len());
            honest.push(nc.submit(b.id.clone(), intel(&text), None).await?);
        }
        let rss = rss_bytes()?;
        peak.fetch_max(rss, Ordering::Relaxed);
        if rss.saturating_sub(base) > RSS_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_during = {
        let mut n = 0;
        for id in &honest {
            if nc
                .store()
                .outbox(id)?
                .is_some_and(|r| r.state == OutState::Delivered)
            {
                n += 1;
            }
        }
        n
    };
    let grew = peak.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!(
        "hostile partner: {} streams on {} connections, {} refused (body budget: {}); \
         process RSS grew {:.1} MiB at most (bound {} MiB); honest: {delivered_during} of {} \
         delivered during the attack",
        STREAMS * conns.len(),
        conns.len(),
        refused.load(Ordering::Relaxed),
        nb.metrics().rejected_count("body-budget"),
        grew as f64 / (1024.0 * 1024.0),
        RSS_BOUND / (1024 * 1024),
        honest.len()
    );
    assert!(
        grew <= RSS_BOUND,
        "resident memory grew {grew} bytes under a hostile partner (bound {RSS_BOUND})"
    );
    // Honest peers keep being served, during the attack and after.
    assert!(
        delivered_during > 0,
        "no honest message arrived during the attack"
    );
    for id in &honest {
        wait_state(&nc, id, OutState::Delivered, 10).await?;
    }
    // The attack met the body budget, not just flow control.
    assert!(nb.metrics().rejected_count("body-budget") > 0);
    stop.store(true, Ordering::Relaxed);
    for conn in &conns {
        conn.close(quinn::VarInt::from_u32(0), b"");
    }
    for t in streams {
        t.await?;
    }
    nc.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// One stream slot of the hostile partner: announce a 4 MiB body, send
/// 1 MiB, trickle; when refused, open another a second later.
async fn trickle(conn: quinn::Connection, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut send, _recv)) = conn.open_bi().await else {
            return;
        };
        let attempt = async {
            send.write_all(&(ANNOUNCED as u32).to_be_bytes()).await?;
            for _ in 0..BURST / CHUNK.len() {
                send.write_all(&CHUNK).await?;
            }
            while !stop.load(Ordering::Relaxed) {
                send.write_all(&[0]).await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, quinn::WriteError>(())
        };
        if attempt.await.is_err() {
            refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A raw connection with `who`'s credentials; its send buffer is kept
/// small so the attacker's own memory (in this process) stays small.
async fn hostile_connect(
    who: &Agency,
    dir: &TestDirectory,
    to: &Agency,
) -> Result<quinn::Connection, Box<dyn std::error::Error>> {
    let (_, client) = tls(who, dir)?;
    let mut transport = quinn::TransportConfig::default();
    transport.send_window(2 * 1024 * 1024);
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client)?,
    ));
    config.transport_config(Arc::new(transport));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(config);
    Ok(ep.connect(to.addr, to.id.as_str())?.await?)
}
