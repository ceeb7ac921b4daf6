//! The real binary: `isnad requests --overdue` and `isnad case show --json`
//! against node processes of a federation built by `isnad demo --keep`,
//! with a status change authored on the CLI and one refused for the wrong
//! side.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A node process, killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, log: &Path) -> Self {
        let child = Command::new(BIN)
            .args(["node", "run", "--config", p(config)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` until it returns `Some`, for up to 60 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json_of(args: &[&str]) -> Option<Value> {
    let o = isnad(args);
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

#[test]
fn overdue_requests_and_the_case_view_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("demo");
    let demo = isnad(&["demo", "--keep", p(&keep)]);
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stdout)
    );
    let cfg = |a: &str| -> PathBuf { keep.join(a).join("config.toml") };
    let (ca, fr) = (cfg("iq.moj.ca"), cfg("fr.mj.bepi"));
    let _d1 = Daemon::start(&ca, &tmp.path().join("ca.log"));
    let _d2 = Daemon::start(&fr, &tmp.path().join("fr.log"));
    for c in [&ca, &fr] {
        eventually("the API", || {
            json_of(&["requests", "--config", p(c), "--json"])
        });
    }

    // A request whose deadline has passed.
    let payload = tmp.path().join("request.json");
    std::fs::write(
        &payload,
        r#"{"reference":"IQ-MOJ-2019-7","requesting-authority":"Central Authority","subject":"Old case",
            "nature":"prosecution","summary-of-facts":"Facts.","offences":[{"description":"fraud",
            "legal-provision":"art. 1","penalty":"5 years"}],"assistance-sought":["taking-evidence"],
            "assistance-details":"Hear one witness.","confidentiality":{"required":false},
            "urgency":"very-urgent","deadline":{"date":"2020-01-01","reason":"trial"},"legal-basis":["MLAT"]}"#,
    )
    .unwrap();
    let id = ok(&[
        "send",
        "--config",
        p(&ca),
        "--to",
        "fr.mj.bepi",
        "--kind",
        "mla-request",
        "--payload",
        p(&payload),
    ])
    .trim()
    .to_owned();
    eventually("delivery", || {
        let v = json_of(&["status", "--config", p(&ca), &id, "--json"])?;
        (v["state"] == "delivered").then_some(())
    });

    // Listed as overdue on both sides; the demo's central-authority to
    // central-authority request (delivered, deadline ahead) is listed but
    // not overdue. (The demo's relayed request is not held by the central
    // authorities: they relay it without reading it.)
    for c in [&ca, &fr] {
        let all = json_of(&["requests", "--config", p(c), "--json"]).unwrap();
        let all = all.as_array().unwrap();
        assert!(
            all.iter().any(|r| r["id"] != id.as_str()
                && r["state"] == "delivered"
                && r["overdue"] == false),
            "{all:?}"
        );
        let overdue = json_of(&["requests", "--config", p(c), "--overdue", "--json"]).unwrap();
        let overdue = overdue.as_array().unwrap();
        assert!(overdue.iter().all(|r| r["overdue"] == true));
        let mine: Vec<_> = overdue.iter().filter(|r| r["id"] == id.as_str()).collect();
        assert_eq!(mine.len(), 1, "{overdue:?}");
        assert_eq!(mine[0]["deadline"], "2020-01-01");
        assert_eq!(mine[0]["state"], "delivered");
        assert_eq!(mine[0]["urgency"], "very-urgent");
    }
    let table = ok(&["requests", "--config", p(&ca), "--overdue"]);
    assert!(table.contains(&id) && table.contains("OVERDUE"), "{table}");

    // Only the requested side registers: refused on the requesting node.
    let wrong = isnad(&["mla", "status", "--config", p(&ca), &id, "registered"]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("requested side"), "{err}");
    let bad_state = isnad(&["mla", "status", "--config", p(&fr), &id, "teleported"]);
    assert!(!bad_state.status.success());
    let sid = ok(&[
        "mla",
        "status",
        "--config",
        p(&fr),
        &id,
        "registered",
        "--reason",
        "file 2026/1",
    ]);
    let sid = sid.trim();

    // The case view on the requesting side, once the change arrived. The
    // record is committed before its status-changed entry is appended, and
    // the entry's index is noted in the record just after: wait for both.
    let case = eventually("the registered status and its log index", || {
        let v = json_of(&["case", "show", "--config", p(&ca), &id, "--json"])?;
        let indexed = v["events"]
            .as_array()?
            .iter()
            .all(|e| e["log_index"].is_u64());
        (v["state"] == "registered" && indexed).then_some(v)
    });
    let events = case["events"].as_array().unwrap();
    let path: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        path,
        [
            ("draft", "submitted"),
            ("submitted", "delivered"),
            ("delivered", "registered")
        ]
    );
    for e in events {
        assert!(e["log_index"].as_u64().is_some(), "{e}");
        assert!(e["at_ms"].as_u64().is_some(), "{e}");
    }
    let submitted = &events[0]["message"];
    assert_eq!(submitted["direction"], "out");
    assert!(submitted["sent_log_index"].as_u64().is_some());
    assert!(
        submitted["peer_log_index"].as_u64().is_some(),
        "{submitted}"
    );
    let registered = &events[2];
    assert_eq!(registered["message_id"], sid);
    assert_eq!(registered["reason"], "file 2026/1");
    assert_eq!(registered["by"], "fr.mj.bepi");
    assert_eq!(registered["message"]["direction"], "in");
    assert!(registered["message"]["received_log_index"]
        .as_u64()
        .is_some());
    // The same case on the requested side: its own log indexes.
    let there = json_of(&["case", "show", "--config", p(&fr), &id, "--json"]).unwrap();
    assert_eq!(there["state"], "registered");
    assert_eq!(there["side"], "requested");
    let timeline = ok(&["case", "show", "--config", p(&ca), &id]);
    assert!(timeline.contains("delivered → registered"), "{timeline}");
    let unknown = isnad(&["case", "show", "--config", p(&ca), &"ab".repeat(16)]);
    assert!(!unknown.status.success());
}
