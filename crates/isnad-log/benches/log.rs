//! Audit-log benchmarks: durable appends per second (one writer, and 64
//! concurrent writers sharing syncs through group commit) and offline
//! verification throughput in entries per second.
//!
//! `ISNAD_LOG_BENCH_ENTRIES` sets the size of the verified log (default
//! 1 000 000). `ISNAD_LOG_BENCH_DIR` sets where the logs are written
//! (default: the system temporary directory), so the disk can be chosen.
//!
//! `append/bound_raw_write_fdatasync` is the bound the append rates are
//! read against: one record's bytes written and `fdatasync`'d in a loop on
//! the same disk.
//!
//! `open` measures [`Log::open`] of a log of 1 000 000 entries stored as
//! tiles (time; printed: the resident memory of a fresh process before and
//! after the open, and its peak), and
//! inclusion proofs at random indexes of it. With `ISNAD_LONG=1` it also
//! builds and opens logs of 10 000 000 and 100 000 000 entries (minutes,
//! and about 1.4 and 14 GB of disk; `ISNAD_LOG_BENCH_OPEN_SIZES=10000000`
//! picks sizes). Run as a test (`cargo test
//! --all-targets`, no `--bench` argument) it uses 10 000 entries only.
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
    if !wanted("append") {
        return;
    }
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let dir = tempdir();
    // The bound: one record's bytes written into a preallocated file and
    // fdatasync'd, in a loop on one thread, on the same disk (what a lone
    // appender waits for at least; group commit shares one per batch).
    let record = {
        let e = entry(1).encode().unwrap();
        vec![0x5a; e.len() + 8]
    };
    let raw = {
        use std::io::Write as _;
        let path = dir.path().join("raw");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![0; 1 << 24]).unwrap();
        f.sync_all().unwrap();
        f
    };
    let mut at = 0u64;
    g.bench_function("bound_raw_write_fdatasync", |b| {
        b.iter(|| {
            use std::os::unix::fs::FileExt as _;
            raw.write_all_at(&record, at).unwrap();
            raw.sync_data().unwrap();
            at = (at + record.len() as u64) % ((1 << 24) - 4096);
        })
    });
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

/// Whether the criterion filter on the command line (if any) can select
/// benchmarks of `group`: the groups that build large logs first skip the
/// build when it cannot (`cargo bench -p isnad-log -- append` does not
/// build the 1 M logs).
fn wanted(group: &str) -> bool {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    match args.next() {
        None => true,
        Some(f) => f.contains(group) || group.contains(f.as_str()),
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

fn verify(c: &mut Criterion) {
    if !wanted("verify") {
        return;
    }
    let n: u64 = std::env::var("ISNAD_LOG_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempdir();
    let key = SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [1; 32]).unwrap();
    let (log, _) = Log::open(&dir.path().join("log")).unwrap();
    let mut next = 0;
    let mut half = None;
    while next < n {
        let end = (next + 10_000).min(n);
        log.append_batch((next..end).map(entry)).unwrap();
        next = end;
        if half.is_none() && next >= n / 2 {
            half = Some(log.sign_checkpoint(&key).unwrap());
        }
    }
    let out = dir.path().join("export");
    log.export(&out, &key).unwrap();
    drop(log);
    let half = half.unwrap();
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
    // `audit verify --previous`: only the entries after the previous
    // checkpoint are read (spec/audit-log.md §9.1).
    let new = n - half.checkpoint.size;
    g.throughput(Throughput::Elements(new));
    g.bench_function(format!("since_previous_{new}_new_of_{n}"), |b| {
        b.iter(|| {
            let prev = Some(half.note.as_bytes());
            let r = verify_export(&out, &vkey, prev, &mut |_, _| {}).unwrap();
            assert!(r.is_ok() && r.checked_from > 0);
        })
    });
    g.finish();
}

/// Resident memory of this process (`VmRSS`), in KiB.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A KiB figure of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Opens the log at `path` in this (fresh) process and prints the time,
/// the resident memory before and after and the peak (`VmHWM`).
fn open_fresh(path: &std::path::Path) {
    let before = rss_kib();
    let started = Instant::now();
    let (log, report) = Log::open(path).unwrap();
    let took = started.elapsed();
    let after = rss_kib();
    eprintln!(
        "fresh process: open of {} entries {:.1} ms; resident {:.1} MiB before, {:.1} MiB after (log: {:.1} MiB), peak {:.1} MiB",
        report.size,
        took.as_secs_f64() * 1e3,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
    drop(log);
}

fn open(c: &mut Criterion) {
    if !wanted("open") && !wanted("proof") {
        return;
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let long = std::env::var("ISNAD_LONG").is_ok_and(|v| v == "1");
    let sizes: Vec<u64> = match (benching, long) {
        (false, _) => vec![10_000],
        (true, false) => vec![1_000_000],
        (true, true) => vec![1_000_000, 10_000_000, 100_000_000],
    };
    // Only some of those sizes (e.g. 10 M alone when 100 M does not fit on
    // the disk): a comma-separated subset.
    let sizes = match std::env::var("ISNAD_LOG_BENCH_OPEN_SIZES") {
        Ok(only) if benching => {
            let only: Vec<u64> = only
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            sizes.into_iter().filter(|n| only.contains(n)).collect()
        }
        _ => sizes,
    };
    if let Some(path) = std::env::var_os("ISNAD_LOG_BENCH_OPEN_CHILD") {
        // The child of a size below: open in a fresh process.
        open_fresh(std::path::Path::new(&path));
        std::process::exit(0);
    }
    for n in sizes {
        let dir = tempdir();
        let path = dir.path().join("log");
        {
            let (log, _) = Log::open(&path).unwrap();
            let started = Instant::now();
            let mut next = 0;
            while next < n {
                let end = (next + 10_000).min(n);
                log.append_batch((next..end).map(entry)).unwrap();
                next = end;
            }
            eprintln!(
                "built a log of {n} entries in {:.1} s ({:.2} GB on disk)",
                started.elapsed().as_secs_f64(),
                dir_bytes(&path) as f64 / 1e9
            );
        }
        // A fresh process: nothing of the build in its heap.
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--bench", "open_fresh_process"])
            .env("ISNAD_LOG_BENCH_OPEN_CHILD", &path)
            .status()
            .unwrap();
        assert!(child.success());
        let before = rss_kib();
        let started = Instant::now();
        let (log, _) = Log::open(&path).unwrap();
        let took = started.elapsed();
        let after = rss_kib();
        eprintln!(
            "open of {n} entries: {:.1} ms, resident memory added {:.1} MiB",
            took.as_secs_f64() * 1e3,
            after.saturating_sub(before) as f64 / 1024.0
        );
        let mut g = c.benchmark_group("open");
        g.sample_size(10);
        drop(log);
        g.bench_function(format!("open_{n}_entries"), |b| {
            b.iter(|| Log::open(&path).unwrap())
        });
        g.finish();
        let (log, _) = Log::open(&path).unwrap();
        let mut g = c.benchmark_group("proof");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        g.bench_function(format!("inclusion_proof_random_index_of_{n}"), |b| {
            b.iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                log.inclusion_proof(x % n, n).unwrap()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, appends, verify, open);
criterion_main!(benches);
