//! Crash safety of real node processes: a client keeps submitting messages
//! while the receiver and the sender are killed with SIGKILL at random
//! moments and restarted. Afterwards every message a client was given an id
//! for is delivered exactly once, every receipt matches, and both audit logs
//! verify.
//!
//! The kill schedule comes from a seeded generator; the seed is printed and
//! `ISNAD_CRASH_SEED=<seed>` replays the same schedule. `ISNAD_CRASH_ROUNDS`
//! sets the number of kills (default 6; `ISNAD_LONG=1` makes it 40).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// A cheap pseudo-random sequence (the test needs variety, not secrecy).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[test]
fn sigkill_sender_and_receiver_repeatedly_nothing_acknowledged_is_lost_or_duplicated() {
    let long = std::env::var("ISNAD_LONG").is_ok_and(|v| v == "1");
    let rounds = env_u64("ISNAD_CRASH_ROUNDS").unwrap_or(if long { 40 } else { 6 }) as usize;
    let seed = env_u64("ISNAD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    });
    eprintln!("crash schedule: ISNAD_CRASH_SEED={seed} ISNAD_CRASH_ROUNDS={rounds}");
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moi.ahtd", "iq.moj.ca"]);
    let (sender_cfg, receiver_cfg) = (fed.nodes[0].config(), fed.nodes[1].config());
    let payload = tmp.path().join("p.json");
    std::fs::write(&payload, r#"{"share-id":"00112233445566778899aabbccddeeff","handling":"H0","source-grading":"A","information-grading":1,"tlp":"green","classification":"RESTRICTED","summary":"s","content":"c"}"#).unwrap();
    for pr in fed.nodes.iter_mut() {
        pr.start();
    }
    let mut rng = Lcg(seed);
    let mut acknowledged = BTreeSet::new();
    let mut schedule = Vec::new();
    for round in 0..rounds {
        // Submit for a random while; every id printed is acknowledged (durable).
        let window = 300 + rng.next(700);
        let until = Instant::now() + Duration::from_millis(window);
        while Instant::now() < until {
            let o = isnad(&[
                "send",
                "--config",
                p(&sender_cfg),
                "--to",
                "iq.moj.ca",
                "--kind",
                "intel-share",
                "--payload",
                p(&payload),
            ]);
            if o.status.success() {
                acknowledged.insert(String::from_utf8_lossy(&o.stdout).trim().to_owned());
            } else {
                std::thread::sleep(Duration::from_millis(20)); // sender restarting
            }
        }
        // Kill one of them (alternating, with randomness), mid-traffic.
        let victim = if rng.next(2) == 0 {
            round % 2
        } else {
            1 - round % 2
        };
        let down = rng.next(300);
        schedule.push(format!(
            "{}@+{window}ms(down {down}ms)",
            ["sender", "receiver"][victim]
        ));
        fed.nodes[victim].kill9();
        std::thread::sleep(Duration::from_millis(down));
        fed.nodes[victim].start();
    }
    eprintln!("kills: {}", schedule.join(", "));
    assert!(
        acknowledged.len() > 10,
        "too few messages submitted: {}",
        acknowledged.len()
    );
    // Everything acknowledged is delivered, eventually.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = isnad(&["outbox", "--config", p(&sender_cfg), "--json"]);
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let arr = v.as_array().unwrap();
            let delivered: BTreeSet<String> = arr
                .iter()
                .filter(|m| m["state"] == "delivered")
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect();
            assert!(
                arr.iter()
                    .all(|m| m["state"] != "failed" && m["state"] != "expired"),
                "a message failed (seed {seed}): {v}"
            );
            if acknowledged.is_subset(&delivered) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not everything acknowledged was delivered in time (seed {seed})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exactly once at the receiver, and the receipts the sender holds match.
    let inbox: serde_json::Value =
        serde_json::from_str(&ok(&["inbox", "--config", p(&receiver_cfg), "--json"])).unwrap();
    let ids: Vec<String> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a message was accepted twice (seed {seed})"
    );
    for id in &acknowledged {
        assert!(
            unique.contains(id),
            "{id} acknowledged to the client but not in the receiver's inbox (seed {seed})"
        );
        let st: serde_json::Value =
            serde_json::from_str(&ok(&["status", "--config", p(&sender_cfg), id, "--json"]))
                .unwrap();
        let rin = inbox
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .unwrap();
        assert_eq!(
            st["peer_log_index"], rin["log_index"],
            "receipt index for {id} (seed {seed})"
        );
        assert_eq!(
            st["envelope_sha256"], rin["envelope_sha256"],
            "digest for {id} (seed {seed})"
        );
    }
    for pr in fed.nodes.iter_mut() {
        pr.stop();
    }
    for pr in &fed.nodes {
        pr.export_and_verify_log();
    }
    eprintln!(
        "{} messages acknowledged, {rounds} SIGKILLs, all delivered exactly once",
        acknowledged.len()
    );
}
