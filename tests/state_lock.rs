//! One owner per node directory (issue 14, item 1): starts racing on one
//! node, and every command that opens its log or state while it runs, are
//! refused with the owner's pid, and leave the live log byte-identical.
//!
//! Before the fix, a refused second start removed the running node's log
//! lock on its way out, so a third start cut the live entries file (and an
//! offline export rewrote its checkpoint).

#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn start(config: &Path) -> Child {
    Command::new(BIN)
        .args(["node", "run", "--config", p(config)])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The log's files as they are now.
fn snapshot(dir: &Path) -> (Vec<u8>, Vec<u8>, String) {
    (
        std::fs::read(dir.join("log/entries")).unwrap(),
        std::fs::read(dir.join("log/checkpoint")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("log/lock")).unwrap(),
    )
}

#[test]
fn one_owner_per_node_and_refused_commands_leave_the_live_log_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::new(tmp.path(), &["iq.moj.ca", "iq.moi.ahtd"]);
    let node = &fed.nodes[0];
    let config = node.config();

    // Three starts racing on one directory: exactly one owner.
    let mut racers: Vec<Child> = (0..3).map(|_| start(&config)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = Vec::new();
    while refused.len() < 2 && Instant::now() < deadline {
        let mut i = 0;
        while i < racers.len() {
            if racers[i].try_wait().unwrap().is_some() {
                refused.push(racers.remove(i));
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        refused.len(),
        2,
        "two of three racing starts must be refused"
    );
    let mut owner = racers.pop().unwrap();
    let owner_pid = owner.id();
    let named = format!("in use by process {owner_pid}");
    for r in refused {
        let err = stderr_of(r);
        assert!(err.contains(&named), "refusal must name the owner: {err}");
    }
    node.wait_api();

    // Let start-up settle (its entries and first checkpoint), then snapshot.
    let mut before = snapshot(&node.dir);
    let settle = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = snapshot(&node.dir);
        if now == before || Instant::now() > settle {
            before = now;
            break;
        }
        before = now;
    }
    assert_eq!(before.2.trim(), owner_pid.to_string());

    // A fourth start, twice (the second used to find the lock removed).
    for _ in 0..2 {
        let o = Command::new(BIN)
            .args(["node", "run", "--config", p(&config)])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&named), "{err}");
    }
    // An offline export of the live log.
    let out = tmp.path().join("export");
    let o = isnad(&[
        "audit",
        "export",
        "--log",
        p(&node.dir.join("log")),
        "--log-key",
        p(&node.dir.join("keys/log.key")),
        "--out",
        p(&out),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&named), "{err}");
    assert!(!out.exists(), "a refused export writes nothing");
    // Keys into the live node's key directory.
    let o = isnad(&["keygen", "--out", p(&node.dir.join("keys"))]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&named), "{err}");
    // `init` over the live node.
    let o = isnad(&[
        "init",
        "--dir",
        p(&node.dir),
        "--agency",
        "iq.moj.ca",
        "--country",
        "IQ",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&named), "{err}");

    // The live log is byte-identical (nothing cut, checkpoint not
    // rewritten, lock still the owner's), and the owner still serves.
    assert_eq!(snapshot(&node.dir), before);
    assert!(
        owner.try_wait().unwrap().is_none(),
        "the owner must still run"
    );
    ok(&["outbox", "--config", p(&config), "--json"]);

    // After a clean stop the directory is free again and the log verifies.
    let _ = Command::new("kill")
        .args(["-TERM", &owner_pid.to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(15);
    while owner.try_wait().unwrap().is_none() {
        assert!(Instant::now() < stop, "owner did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.export_and_verify_log();
}

#[test]
fn a_killed_owner_leaves_no_lock_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moj.ca"]);
    let node = &mut fed.nodes[0];
    node.start();
    node.wait_api();
    node.kill9();
    // The kernel released the lock with the process: no takeover logic, no
    // stale lock to remove by hand.
    node.start();
    node.wait_api();
    node.stop();
    node.export_and_verify_log();
}
