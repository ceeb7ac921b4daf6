//! Crash recovery: a child process (this test binary re-executed with
//! `ISNAD_LOG_CRASH_CHILD` set) appends from 16 threads sharing syncs
//! (group commit) and prints every acknowledged index; the parent kills it with SIGKILL at random
//! moments, reopens the log and checks that every acknowledged entry is
//! there and that the log still exports and verifies.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_log::note::{SignerKey, TYPE_ED25519};
use isnad_log::{verify_export, Entry, EventType, Log};

const CHILD_ENV: &str = "ISNAD_LOG_CRASH_CHILD";

/// In the child: append forever from 16 threads (so most appends are
/// followers in a shared sync, some batches of 3), printing `<index>\n` after
/// each append returns. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (log, _) = Log::open(Path::new(&dir)).unwrap();
    let log = Arc::new(log);
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let stdout = std::io::stdout();
                for i in 0.. {
                    let mut e = Entry::new(EventType::LocalAccess, t * 1_000_000 + i);
                    e.message_id = Some(isnad_types::MessageId::from_bytes([t as u8; 16]));
                    let acked = if t % 4 == 0 && i % 10 == 0 {
                        log.append_batch([e.clone(), e.clone(), e]).unwrap()
                    } else {
                        let index = log.append(e).unwrap();
                        index..index + 1
                    };
                    let mut out = stdout.lock();
                    for index in acked {
                        writeln!(out, "{index}").unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let key = SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [5; 32]).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = BTreeSet::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let start = Instant::now();
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &log_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // xorshift: kill after 20–270 ms.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let wait = Duration::from_millis(20 + seed % 250);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints its own lines; only numbers are acks.
                if let Ok(i) = line.trim().parse::<u64>() {
                    got.push(i);
                }
            }
            got
        });
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // A line cut by the kill has no newline; `lines()` may still yield
        // its prefix, which is a prefix of a real acknowledged index only if
        // digits were flushed. Writes are whole lines, so this does not happen.
        let got = reader.join().unwrap();
        acked.extend(got);

        let (log, report) = Log::open(&log_dir).unwrap();
        let size = report.size;
        if let Some(&max) = acked.iter().next_back() {
            assert!(max < size, "round {round}: acked {max} but size {size}");
        }
        for &i in acked.iter().rev().take(50) {
            let e = Entry::decode(&log.entry_bytes(i).unwrap()).unwrap();
            assert_eq!(e.seq, i);
        }
        // The log stays signable and consistent across crashes.
        log.sign_checkpoint(&key).unwrap();
    }
    assert!(!acked.is_empty(), "the child never acknowledged anything");
    let (log, _) = Log::open(&log_dir).unwrap();
    for &i in &acked {
        assert_eq!(Entry::decode(&log.entry_bytes(i).unwrap()).unwrap().seq, i);
    }
    let out = dir.path().join("export");
    log.export(&out, &key).unwrap();
    let report = verify_export(&out, &key.verifier(), None, &mut |_, _| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(start.elapsed() < Duration::from_secs(60));
    eprintln!(
        "{} acknowledged appends over 20 kills, final size {}",
        acked.len(),
        log.size()
    );
}
