//! Audit-log benchmarks: durable appends per second (one writer, and 64
//! concurrent writers sharing syncs through group commit) and offline
//! verification throughput in entries per second.
//!
//! `ISNAD_LOG_BENCH_ENTRIES` sets the size of the verified log (default
//! 1 000 000). `ISNAD_LOG_BENCH_DIR` sets where the logs are written
//! (default: the system temporary directory), so the disk can be chosen.
#![allow(clippy::unwrap_used)] // A benchmark: panics are fine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isnad_log::note::{SignerKey, TYPE_ED25519};
use isnad_log::{verify_export, Entry, EventType, Log};
use isnad_types::{AgencyId, MessageId};

fn entry(i: u64) -> Entry {
    let mut e = Entry::new(EventType::Sent, 1_790_000_000_000 + i);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    e.message_id = Some(MessageId::from_bytes(id));
    e.sender = Some(AgencyId::new("iq.moi.ahtd").unwrap());
    e.recipient = Some(AgencyId::new("fr.mj.bepi").unwrap());
    e.envelope_sha256 = Some([i as u8; 32]);
    e
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("ISNAD_LOG_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn appends(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let dir = tempdir();
    let (log, _) = Log::open(&dir.path().join("single")).unwrap();
    let mut i = 0;
    g.bench_function("durable_single_writer", |b| {
        b.iter(|| {
            i += 1;
            log.append(entry(i)).unwrap()
        })
    });
    let (log, _) = Log::open(&dir.path().join("concurrent")).unwrap();
    let log = Arc::new(log);
    g.bench_function("durable_64_writers_group_commit", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(64);
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..64 {
                    let log = &log;
                    s.spawn(move || {
                        for k in 0..per {
                            log.append(entry(t * 1_000_000_000 + k)).unwrap();
                        }
                    });
                }
            });
            // 64·per ≥ iters appends happened: this slightly understates the rate.
            start.elapsed()
        })
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let n: u64 = std::env::var("ISNAD_LOG_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempdir();
    let key = SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [1; 32]).unwrap();
    let (log, _) = Log::open(&dir.path().join("log")).unwrap();
    let mut next = 0;
    while next < n {
        let end = (next + 10_000).min(n);
        log.append_batch((next..end).map(entry)).unwrap();
        next = end;
    }
    let out = dir.path().join("export");
    log.export(&out, &key).unwrap();
    drop(log);
    let vkey = key.verifier();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function(format!("export_of_{n}_entries"), |b| {
        b.iter(|| {
            let r = verify_export(&out, &vkey, None, &mut |_, _| {}).unwrap();
            assert!(r.is_ok());
        })
    });
    g.finish();
}

criterion_group!(benches, appends, verify);
criterion_main!(benches);
