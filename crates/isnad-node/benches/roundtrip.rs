//! Request → signed-receipt round trips between two nodes, next to the two
//! bounds that limit them, measured in one run on the same machine:
//!
//! - **crypto**: seal + open + sign receipt + verify receipt in a loop on
//!   every core (no IO at all);
//! - **raw QUIC**: the same TLS, framing and stream pattern with a server that
//!   answers a fixed receipt-sized frame (no crypto beyond TLS, no disk);
//! - **durable sync**: one write + `fdatasync` on the disk the nodes use,
//!   what each node pays at least once per batch (state and audit log);
//! - **node**: two real nodes (redb outbox/inbox, fsync'd audit logs, signed
//!   receipts) with 1, 16 and 128 messages in flight.
//!
//! Each row also reports the process's CPU time per round trip (all
//! threads, user + system), so the rows' costs can be compared directly:
//! the nodes spend the crypto row's CPU plus everything else.
//!
//! `cargo bench -p isnad-node --bench roundtrip` runs 8 s per measurement
//! (`ISNAD_BENCH_SECS` to change). Under `cargo test` it runs a short smoke
//! pass only. Results are printed and written to `target/isnad-roundtrip.json`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_envelope::*;
use ring::rand::SystemRandom;
use support::*;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    what: String,
    in_flight: usize,
    round_trips: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time (user + system, all threads of this process) per round
    /// trip during the measurement; `None` where the OS does not tell.
    cpu_us_per_trip: Option<f64>,
}

/// CPU time of this process so far (user + system, all threads), from
/// `/proc/self/stat` on Linux (10 ms resolution); `None` elsewhere.
fn process_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the parenthesised command name come fields 3.. of proc(5);
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100
    // on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// Wall clock and process CPU time at the start of a measurement.
struct Meter {
    wall: Instant,
    cpu_us: Option<u64>,
}

impl Meter {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu_us: process_cpu_us(),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn row(what: &str, in_flight: usize, mut lat_us: Vec<u64>, meter: &Meter) -> Row {
    let elapsed = meter.wall.elapsed();
    let cpu_us = match (meter.cpu_us, process_cpu_us()) {
        (Some(a), Some(b)) if !lat_us.is_empty() => Some(b.saturating_sub(a)),
        _ => None,
    };
    lat_us.sort_unstable();
    Row {
        what: what.into(),
        in_flight,
        round_trips: lat_us.len() as u64,
        per_sec: lat_us.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&lat_us, 0.50),
        p99_ms: percentile(&lat_us, 0.99),
        cpu_us_per_trip: cpu_us.map(|c| c as f64 / lat_us.len() as f64),
    }
}

/// The crypto bound: what one round trip costs in public-key operations,
/// on every core.
fn crypto_bound(secs: f64) -> BenchResult<Row> {
    let rng = SystemRandom::new();
    let (me, them) = (AgencyId::new("fr.mj.bepi")?, AgencyId::new("iq.moi.ahtd")?);
    let a_sign = Arc::new(SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?);
    let b_sign = Arc::new(SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?);
    let b_enc_pem = EncryptionKey::generate(EncryptionCurve::X25519, &rng)?
        .to_pkcs8_pem()
        .to_string();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let meter = Meter::start();
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (a_sign, b_sign, stop, count) = (
            Arc::clone(&a_sign),
            Arc::clone(&b_sign),
            Arc::clone(&stop),
            Arc::clone(&count),
        );
        let (me, them, pem) = (me.clone(), them.clone(), b_enc_pem.clone());
        handles.push(std::thread::spawn(move || -> Result<Vec<u64>, String> {
            let rng = SystemRandom::new();
            let b_enc = [EncryptionKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string())?];
            let senders_b = vec![SenderKey {
                agency: them.clone(),
                key: a_sign.verifying_key().clone(),
                valid_from: None,
                valid_until: None,
                revoked_at: None,
            }];
            let senders_a = vec![SenderKey {
                agency: me.clone(),
                key: b_sign.verifying_key().clone(),
                valid_from: None,
                valid_until: None,
                revoked_at: None,
            }];
            let at_b = Opener {
                me: &me,
                keys: &b_enc,
                limits: Limits::default(),
            };
            let at_a = Opener {
                me: &them,
                keys: &[],
                limits: Limits::default(),
            };
            let mut lat = Vec::new();
            let mut guard = MemoryReplayGuard::default();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let msg = Message {
                    header: Header {
                        id: MessageId::random(&rng).map_err(|e| e.to_string())?,
                        sender: them.clone(),
                        recipient: me.clone(),
                        created: 1_800_000_000,
                        expires: 1_800_003_600,
                    },
                    body: intel("x".repeat(1024).as_str()),
                };
                let env = seal(
                    &msg,
                    &a_sign,
                    b_enc[0].public_key(),
                    &Limits::default(),
                    &rng,
                )
                .map_err(|e| e.to_string())?;
                let opened = at_b
                    .open(&env, 1_800_000_000, &senders_b, &mut guard)
                    .map_err(|e| e.to_string())?;
                let receipt = Message {
                    header: Header {
                        id: MessageId::random(&rng).map_err(|e| e.to_string())?,
                        sender: me.clone(),
                        recipient: them.clone(),
                        created: 1_800_000_000,
                        expires: 1_800_003_600,
                    },
                    body: Body::Receipt(Receipt {
                        message_id: opened.message.header.id,
                        envelope_digest: opened.envelope_digest,
                        log_index: 1,
                        received_at: 1_800_000_000,
                        attachments: Vec::new(),
                    }),
                };
                let signed = seal_signed(&receipt, &b_sign, &Limits::default(), &rng)
                    .map_err(|e| e.to_string())?;
                at_a.open_signed(&signed, 1_800_000_000, &senders_a)
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed().as_micros() as u64);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(lat)
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "crypto thread panicked")??);
    }
    Ok(row(
        &format!("crypto only ({threads} threads)"),
        threads,
        all,
        &meter,
    ))
}

/// What one durable write costs: a 1.5 KiB write into a preallocated file
/// followed by `fdatasync`, in a loop on one thread (the disk the nodes'
/// temporary directories are on). Each node needs at least one such sync
/// per batch of messages for its state and one for its audit log.
#[cfg(unix)]
fn durable_sync(secs: f64) -> BenchResult<Row> {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir()?;
    let file = std::fs::File::create(tmp.path().join("sync"))?;
    let area: u64 = 8 << 20;
    file.write_all_at(&vec![0u8; area as usize], 0)?;
    file.sync_all()?;
    let record = [0x5au8; 1536];
    let (deadline, meter) = (
        Instant::now() + Duration::from_secs_f64(secs),
        Meter::start(),
    );
    let (mut lat, mut at) = (Vec::new(), 0u64);
    while Instant::now() < deadline {
        let t = Instant::now();
        file.write_all_at(&record, at)?;
        file.sync_data()?;
        at = (at + record.len() as u64) % (area - record.len() as u64);
        lat.push(t.elapsed().as_micros() as u64);
    }
    Ok(row("durable write + fdatasync (1 thread)", 1, lat, &meter))
}

/// The raw QUIC bound: same TLS, framing and one stream per request, a
/// server that answers immediately with a receipt-sized frame.
async fn raw_quic(k: usize, secs: f64) -> BenchResult<Row> {
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (server_tls, _) = tls(&b, &dir)?;
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
    ));
    let server = quinn::Endpoint::server(server_cfg, b.addr)?;
    let answer = isnad_wire::Response::Receipt(vec![0u8; 330]).encode();
    tokio::spawn(async move {
        while let Some(inc) = server.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(conn) = inc.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        if recv.read_to_end(8 << 20).await.is_ok()
                            && send.write_all(&answer).await.is_ok()
                        {
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    let conn = raw_connect(&a, &dir, &b).await?;
    let frame = isnad_wire::Request {
        op: isnad_wire::Op::Deliver,
        payload: vec![0u8; 1500],
    }
    .encode();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let meter = Meter::start();
    let mut tasks = Vec::new();
    for _ in 0..k {
        let (conn, frame) = (conn.clone(), frame.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let Ok((mut send, mut recv)) = conn.open_bi().await else {
                    break;
                };
                if send.write_all(&frame).await.is_err() || send.finish().is_err() {
                    break;
                }
                if recv.read_to_end(1 << 16).await.is_err() {
                    break;
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok(row(
        "raw QUIC (TLS + framing, no crypto, no disk)",
        k,
        all,
        &meter,
    ))
}

/// Two real nodes: submit (durable) → deliver → signed receipt verified → both logs.
async fn nodes(k: usize, secs: f64) -> BenchResult<Row> {
    let (_tmp, _, [_, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let meter = Meter::start();
    let all = drive(&na, &b.id, k, secs).await?;
    let result = row("two nodes (durable, audited)", k, all, &meter);
    if std::env::var("ISNAD_BENCH_ONLY").is_ok() {
        for (n, node) in [("sender", &na), ("recipient", &nb)] {
            eprintln!(
                "{n}: mean log append {:.2} ms over {} appends",
                node.metrics().append_latency.mean_ms(),
                node.metrics().log_appends.get()
            );
        }
    }
    na.shutdown().await;
    nb.shutdown().await;
    Ok(result)
}

/// The nodes row with every key of both nodes in SoftHSM2 tokens
/// (spec/federation.md §14): the tokens `iq` and `fr` of `f`.
async fn token_nodes(
    f: &token::Fixture,
    tokens: [&str; 2],
    k: usize,
    secs: f64,
) -> BenchResult<Row> {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let a = token::token_node(f, "iq.moi.ahtd", tokens[0], &dir)?;
    let b = token::token_node(f, "fr.mj.bepi", tokens[1], &dir)?;
    let to = b.id.clone();
    let nb = token::start_token_node(b, &dir, tmp.path(), |_| {}).await?;
    let na = token::start_token_node(a, &dir, tmp.path(), |_| {}).await?;
    let meter = Meter::start();
    let all = drive(&na, &to, k, secs).await?;
    na.shutdown().await;
    nb.shutdown().await;
    Ok(row(
        "two nodes, all keys in SoftHSM2 tokens",
        k,
        all,
        &meter,
    ))
}

/// The token's own work per round trip, one after the other on one
/// token: the sender's message signature (Ed25519), the recipient's
/// ECDH derive (P-256) and its receipt signature (Ed25519).
fn token_ops(f: &token::Fixture, token: &str, secs: f64) -> BenchResult<Row> {
    use isnad_node::token_keys;
    use isnad_pkcs11::KeyKind;
    let config = token::pkcs11(f);
    let sign_uri = token::uri(token, "bench-sign");
    let enc_uri = token::uri(token, "bench-enc");
    token_keys::generate(&config, &sign_uri, KeyKind::Ed25519)?;
    token_keys::generate(&config, &enc_uri, KeyKind::P256Ecdh)?;
    let mut tokens = token_keys::Tokens::new(config);
    let (t, sign) = tokens.key(&sign_uri, KeyKind::Ed25519)?;
    let (_, enc) = tokens.key(&enc_uri, KeyKind::P256Ecdh)?;
    let peer = enc.public().to_vec();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let meter = Meter::start();
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        t.sign_ed25519(&sign, b"message claims")?;
        t.derive(&enc, &peer)?;
        t.sign_ed25519(&sign, b"receipt claims")?;
        lat.push(start.elapsed().as_micros() as u64);
    }
    Ok(row(
        "token's own work per trip (2 signs, 1 derive)",
        1,
        lat,
        &meter,
    ))
}

/// `k` clients submitting to `to` through `na` until `secs` pass, each
/// waiting for its message's receipt; the round-trip latencies.
async fn drive(
    na: &isnad_node::NodeHandle,
    to: &AgencyId,
    k: usize,
    secs: f64,
) -> BenchResult<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    let seq = Arc::new(AtomicU64::new(1));
    for _ in 0..k {
        let (na, to, seq) = (na.clone(), to.clone(), Arc::clone(&seq));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                // Each message a share of its own, as a real client sends
                // new intelligence (a repeated share id makes every message
                // update one share record, serialised by its record lock).
                let mut body = intel(&"x".repeat(1024));
                if let Body::IntelShare(s) = &mut body {
                    let mut share = [0u8; 16];
                    share[..8].copy_from_slice(&seq.fetch_add(1, Ordering::Relaxed).to_be_bytes());
                    s.share_id = MessageId::from_bytes(share);
                }
                let Ok(id) = na.submit(to.clone(), body, None).await else {
                    break;
                };
                match na.wait_final(&id).await {
                    Ok(Some(isnad_node::store::OutState::Delivered)) => {
                        lat.push(t.elapsed().as_micros() as u64)
                    }
                    _ => break,
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    Ok(all)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

fn main() -> BenchResult<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let secs: f64 = if full {
        std::env::var("ISNAD_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8.0)
    } else {
        0.3
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // ISNAD_BENCH_ONLY=nodes measures only the nodes, one row (for profiling).
    let only_nodes = std::env::var("ISNAD_BENCH_ONLY").as_deref() == Ok("nodes");
    let mut rows = vec![crypto_bound(if only_nodes { 0.2 } else { secs })?];
    if !only_nodes {
        #[cfg(unix)]
        rows.push(durable_sync(secs.min(3.0))?);
        for k in [1, 16, 128] {
            rows.push(rt.block_on(raw_quic(k, secs))?);
        }
    }
    // With ISNAD_BENCH_ONLY=nodes, ISNAD_BENCH_IN_FLIGHT picks the row (128).
    let only_k: usize = std::env::var("ISNAD_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128);
    for k in [1, 16, 128] {
        if only_nodes && k != only_k {
            continue;
        }
        rows.push(rt.block_on(nodes(k, secs))?);
    }
    // Every key in SoftHSM2 tokens (issue 20), when SoftHSM2 is installed.
    if !only_nodes {
        if isnad_pkcs11::softhsm::find_module().is_none() {
            println!("token rows skipped: SoftHSM2 (libsofthsm2.so) is not installed");
        } else if let Some(f) = token::softhsm(&[
            "bench ops",
            "bench iq 1",
            "bench fr 1",
            "bench iq 16",
            "bench fr 16",
        ]) {
            rows.push(token_ops(&f, "bench ops", secs)?);
            rows.push(rt.block_on(token_nodes(&f, ["bench iq 1", "bench fr 1"], 1, secs))?);
            rows.push(rt.block_on(token_nodes(&f, ["bench iq 16", "bench fr 16"], 16, secs))?);
        }
    }
    let crypto = rows[0].per_sec;
    println!("\nmachine: {}", machine());
    println!(
        "{:<48} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "measurement",
        "in flight",
        "trips",
        "trips/s",
        "p50 ms",
        "p99 ms",
        "÷crypto",
        "CPU µs/trip"
    );
    for r in &rows {
        println!(
            "{:<48} {:>9} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>12}",
            r.what,
            r.in_flight,
            r.round_trips,
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            if r.what.starts_with("durable") {
                "–".to_owned()
            } else {
                format!("{:.0}%", 100.0 * r.per_sec / crypto)
            },
            r.cpu_us_per_trip
                .map_or_else(|| "–".to_owned(), |c| format!("{c:.0}"))
        );
    }
    if full {
        let out = serde_json::json!({ "machine": machine(), "seconds_per_measurement": secs, "rows": rows });
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/isnad-roundtrip.json");
        std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
