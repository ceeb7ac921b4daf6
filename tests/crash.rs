//! Crash safety of real node processes: a client keeps submitting messages
//! while the receiver and the sender are killed with SIGKILL at random
//! moments and restarted. Afterwards every message a client was given an id
//! for is delivered exactly once, every receipt matches, and both audit logs
//! verify. `ISNAD_CRASH_ROUNDS` sets the number of kills (default 6).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;
use std::time::{Duration, Instant};

struct Proc {
    dir: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        self.child = Some(
            Command::new(BIN)
                .args(["node", "run", "--config", p(&self.dir.join("config.toml"))])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

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

#[test]
fn sigkill_sender_and_receiver_repeatedly_nothing_acknowledged_is_lost_or_duplicated() {
    let rounds: usize = std::env::var("ISNAD_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    ok(&[
        "directory",
        "root-init",
        "--country",
        "IQ",
        "--out",
        p(&base.join("root")),
    ]);
    let mut procs = Vec::new();
    for id in ["iq.moi.ahtd", "iq.moj.ca"] {
        let dir = base.join(id);
        let quic = SocketAddr::from((
            [127, 0, 0, 1],
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ));
        let api = SocketAddr::from((
            [127, 0, 0, 1],
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ));
        ok(&[
            "init",
            "--dir",
            p(&dir),
            "--agency",
            id,
            "--country",
            "IQ",
            "--listen",
            &quic.to_string(),
            "--api",
            &api.to_string(),
        ]);
        ok(&[
            "directory",
            "add-node",
            "--draft",
            p(&base.join("iq.json")),
            "--node",
            p(&dir),
            "--role",
            "other",
            "--endpoint",
            &quic.to_string(),
        ]);
        procs.push(Proc { dir, child: None });
    }
    ok(&[
        "directory",
        "allow",
        "--draft",
        p(&base.join("iq.json")),
        "--id",
        "all",
    ]);
    ok(&[
        "directory",
        "sign",
        "--root-key",
        p(&base.join("root/root.key.pem")),
        "--draft",
        p(&base.join("iq.json")),
        "--version",
        "1",
        "--out",
        p(&base.join("iq.cose")),
    ]);
    for pr in &procs {
        let trust = pr.dir.join("trust");
        ok(&[
            "trust",
            "init",
            "--trust-dir",
            p(&trust),
            "--country",
            "IQ",
            "--root",
            p(&base.join("root/root.pub.cose")),
        ]);
        ok(&[
            "trust",
            "import",
            "--trust-dir",
            p(&trust),
            p(&base.join("iq.cose")),
        ]);
    }
    let (sender_cfg, receiver_cfg) = (
        procs[0].dir.join("config.toml"),
        procs[1].dir.join("config.toml"),
    );
    let payload = base.join("p.json");
    std::fs::write(&payload, r#"{"share-id":"00112233445566778899aabbccddeeff","handling":"H0","source-grading":"A","information-grading":1,"tlp":"green","classification":"RESTRICTED","summary":"s","content":"c"}"#).unwrap();
    for pr in procs.iter_mut() {
        pr.start();
    }
    let mut rng = Lcg(0x1234_5678 ^ u64::from(std::process::id()));
    let mut acknowledged = BTreeSet::new();
    for round in 0..rounds {
        // Submit for a random while; every id printed is acknowledged (durable).
        let until = Instant::now() + Duration::from_millis(300 + rng.next(700));
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
        procs[victim].kill9();
        std::thread::sleep(Duration::from_millis(rng.next(300)));
        procs[victim].start();
    }
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
                "a message failed: {v}"
            );
            if acknowledged.is_subset(&delivered) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not everything acknowledged was delivered in time"
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
    assert_eq!(unique.len(), ids.len(), "a message was accepted twice");
    for id in &acknowledged {
        assert!(
            unique.contains(id),
            "{id} acknowledged to the client but not in the receiver's inbox"
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
            "receipt index for {id}"
        );
        assert_eq!(
            st["envelope_sha256"], rin["envelope_sha256"],
            "digest for {id}"
        );
    }
    for pr in procs.iter_mut() {
        pr.stop();
    }
    for pr in &procs {
        let out = pr.dir.join("export");
        ok(&[
            "audit",
            "export",
            "--log",
            p(&pr.dir.join("log")),
            "--log-key",
            p(&pr.dir.join("keys/log.key")),
            "--out",
            p(&out),
        ]);
        let v = ok(&[
            "audit",
            "verify",
            p(&out),
            "--log-key",
            p(&pr.dir.join("keys/log.pub")),
        ]);
        assert!(v.starts_with("OK"), "{v}");
    }
    eprintln!(
        "{} messages acknowledged, {rounds} SIGKILLs, all delivered exactly once",
        acknowledged.len()
    );
}
