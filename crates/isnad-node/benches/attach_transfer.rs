//! Attachment transfer throughput next to its two bounds, in one run on
//! the same machine (spec/transport.md §10):
//!
//! - **raw QUIC bulk**: one stream carrying N bytes to a server that reads
//!   and drops them, with the node's receive windows (no disk, no hashing);
//! - **disk**: N bytes written sequentially in 256 KiB writes with an
//!   `fdatasync` every 4 MiB, what a receiver pays at least;
//! - **attachment**: `push_attachment` of an N-byte staged attachment
//!   between two durable nodes (chunk checks, writes, syncs), with the
//!   process's RSS growth during the push (both nodes run in it).
//!
//! `cargo bench -p isnad-node --bench attach_transfer` moves 1 GiB per row
//! (`ISNAD_LONG=1`: 10 GiB; `ISNAD_BENCH_MIB` to choose). Under
//! `cargo test` it runs an 8 MiB smoke pass.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The raw transport bound: one stream of `bytes` to a discarding server.
async fn raw_quic_bulk(bytes: u64) -> BenchResult<f64> {
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (server_tls, _) = tls(&b, &dir)?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
    ));
    let limits = isnad_node::config::LimitsConfig::default();
    let mut transport = quinn::TransportConfig::default();
    transport
        .receive_window(quinn::VarInt::from_u32(limits.connection_receive_window))
        .stream_receive_window(quinn::VarInt::from_u32(limits.stream_receive_window));
    server_cfg.transport_config(Arc::new(transport));
    let server = quinn::Endpoint::server(server_cfg, b.addr)?;
    let done = tokio::spawn(async move {
        let conn = server.accept().await?.await.ok()?;
        let (_send, mut recv) = conn.accept_bi().await.ok()?;
        let mut total = 0u64;
        while let Ok(Some(c)) = recv.read_chunk(1 << 20, true).await {
            total += c.bytes.len() as u64;
        }
        Some(total)
    });
    let conn = raw_connect(&a, &dir, &b).await?;
    let (mut send, _recv) = conn.open_bi().await?;
    let block = vec![0x5au8; 256 << 10];
    let t = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        send.write_all(&block).await?;
        sent += block.len() as u64;
    }
    send.finish()?;
    let got = done.await?.ok_or("server failed")?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, sent);
    Ok(sent as f64 / secs / 1e6)
}

/// The disk bound: sequential 256 KiB writes, `fdatasync` every 4 MiB.
fn disk(bytes: u64) -> BenchResult<f64> {
    use std::io::Write;
    let tmp = tempfile::tempdir_in(std::env::temp_dir())?;
    let mut f = std::fs::File::create(tmp.path().join("bulk"))?;
    let block = vec![0x5au8; 256 << 10];
    let t = Instant::now();
    let (mut written, mut unsynced) = (0u64, 0u64);
    while written < bytes {
        f.write_all(&block)?;
        written += block.len() as u64;
        unsynced += block.len() as u64;
        if unsynced >= 4 << 20 {
            f.sync_data()?;
            unsynced = 0;
        }
    }
    f.sync_all()?;
    Ok(written as f64 / t.elapsed().as_secs_f64() / 1e6)
}

/// An attachment pushed between two durable nodes: MB/s and RSS growth.
async fn attachment(bytes: u64) -> BenchResult<(f64, u64)> {
    let (tmp, _dir, [_a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let file = tmp.path().join("evidence.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let block = vec![0x33u8; 1 << 20];
        for _ in 0..bytes >> 20 {
            f.write_all(&block)?;
        }
        f.flush()?;
    }
    let desc = na
        .stage_outgoing(
            &file,
            isnad_attach::MediaType::new("application/octet-stream")?,
        )
        .await?;
    std::fs::remove_file(&file)?;
    let before = rss_bytes()?;
    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(r) = rss_bytes() {
                    peak.fetch_max(r, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let report = na.push_attachment(&b.id, &desc.ciphertext_root()).await?;
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    sampler.await?;
    na.shutdown().await;
    nb.shutdown().await;
    let growth = peak.load(Ordering::SeqCst).saturating_sub(before);
    Ok((report.bytes_sent as f64 / secs / 1e6, growth))
}

fn main() -> BenchResult<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let long = std::env::var("ISNAD_LONG").as_deref() == Ok("1");
    let mib: u64 = std::env::var("ISNAD_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(match (full, long) {
            (false, _) => 8,
            (true, false) => 1024,
            (true, true) => 10 * 1024,
        });
    let bytes = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let quic = rt.block_on(raw_quic_bulk(bytes))?;
    let disk = disk(bytes)?;
    let (att, growth) = rt.block_on(attachment(bytes))?;
    let bound = quic.min(disk);
    println!("\n{mib} MiB per row");
    println!("{:<52} {:>10}", "measurement", "MB/s");
    println!(
        "{:<52} {:>10.0}",
        "raw QUIC bulk (one stream, node windows)", quic
    );
    println!(
        "{:<52} {:>10.0}",
        "disk: 256 KiB writes, fdatasync every 4 MiB", disk
    );
    println!(
        "{:<52} {:>10.0}  ({:.0} % of min(QUIC, disk); RSS +{} KiB)",
        "attachment push between two durable nodes",
        att,
        100.0 * att / bound,
        growth / 1024
    );
    Ok(())
}
