//! Retention with the real binary (spec/audit-log.md §2.6): two nodes
//! exchange intel shares under a 2-second retention period; the
//! recipient's periodic pass purges on its own, the sender's is run by
//! `isnad retention` after a dry run that lists and deletes nothing. A
//! share under a legal hold keeps its content, and a message not yet
//! delivered (its recipient is down) is never purged. Afterwards the
//! contents are gone (the API answers `410 purged`, not 500), each side's
//! log holds `purged` entries naming the digests, and `audit verify` and
//! `audit cross-check` pass on both ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::time::{Duration, Instant};

use common::*;

const A: &str = "iq.moi.ahtd";
const B: &str = "iq.moj.ca";
/// In the directory, never started: messages to it stay undelivered.
const C: &str = "iq.moi.cid";
/// The share under a legal hold (on both nodes).
const HELD: &str = "5e1d5e1d5e1d5e1d5e1d5e1d5e1d5e1d";

/// `isnad send` of an intel share `share_id` from `node` to `to`.
fn share(node: &NodeProc, to: &str, share_id: &str, text: &str) -> String {
    let payload = node.dir.join(format!("{share_id}.json"));
    let body = serde_json::json!({
        "share-id": share_id,
        "handling": "H1", "source-grading": "A", "information-grading": 1, "tlp": "green",
        "classification": "RESTRICTED", "summary": text, "content": text,
    });
    std::fs::write(&payload, body.to_string()).unwrap();
    let config = node.config();
    ok(&[
        "send",
        "--config",
        p(&config),
        "--to",
        to,
        "--kind",
        "intel-share",
        "--payload",
        p(&payload),
    ])
    .trim()
    .to_owned()
}

/// Appends a `[retention]` section to `node`'s config.
fn retain(node: &NodeProc, interval_secs: u64) {
    let mut text = std::fs::read_to_string(node.config()).unwrap();
    text.push_str(&format!(
        "\n[retention]\ninterval_secs = {interval_secs}\n[retention.by_kind]\nintel-share = 2\n\
         [retention.hold]\ncases = [\"{HELD}\"]\n"
    ));
    std::fs::write(node.config(), text).unwrap();
}

fn status(node: &NodeProc, id: &str) -> serde_json::Value {
    let out = ok(&["status", "--config", p(&node.config()), id, "--json"]);
    serde_json::from_str(&out).unwrap()
}

fn retention(node: &NodeProc, dry_run: bool) -> serde_json::Value {
    let config = node.config();
    let mut args = vec!["retention", "--config", p(&config), "--json"];
    if dry_run {
        args.push("--dry-run");
    }
    serde_json::from_str(&ok(&args)).unwrap()
}

fn ids(report: &serde_json::Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn settled_contents_are_purged_with_proof_kept_held_and_undelivered_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::new(tmp.path(), &[A, B, C]);
    let mut nodes = fed.nodes;
    drop(nodes.pop()); // C is never started.
    let (mut a, mut b) = {
        let b = nodes.pop().unwrap();
        (nodes.pop().unwrap(), b)
    };
    // A: one pass at start, then only on demand; B: a pass every second.
    retain(&a, 3600);
    retain(&b, 1);
    a.start();
    b.start();
    a.wait_api();
    b.wait_api();

    let gone = share(&a, B, "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", "purge me");
    let held = share(&a, B, HELD, "legal hold");
    let queued = share(&a, C, "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "undelivered");
    a.wait_status(&gone, "delivered", 20);
    a.wait_status(&held, "delivered", 20);
    let shown = ok(&["show", "--config", p(&b.config()), &gone]);
    assert!(shown.contains("purge me"), "{shown}");

    // B's own pass purges the received share once its 2 s have passed.
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&b, &gone).get("purged").is_none() {
        assert!(
            Instant::now() < deadline,
            "B never purged: {}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = isnad(&["show", "--config", p(&b.config()), &gone]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("410") && err.contains("purged"),
        "{err}"
    );
    let kept = ok(&["show", "--config", p(&b.config()), &held]);
    assert!(kept.contains("legal hold"), "{kept}");

    // A: the dry run lists, and deletes nothing.
    let dry = retention(&a, true);
    assert_eq!(ids(&dry, "purged"), [gone.as_str()], "{dry}");
    assert_eq!(ids(&dry, "held"), [held.as_str()], "{dry}");
    assert_eq!(ids(&dry, "undelivered"), [queued.as_str()], "{dry}");
    assert!(status(&a, &gone).get("purged").is_none());
    // The real pass.
    let done = retention(&a, false);
    assert_eq!(ids(&done, "purged"), [gone.as_str()], "{done}");
    let st = status(&a, &gone);
    assert_eq!(st["state"], "delivered");
    assert!(st["purged"]["log_index"].is_u64(), "{st}");
    assert!(st["receipt_hex"].is_string(), "the receipt stays: {st}");
    assert!(status(&a, &held).get("purged").is_none());
    let q = status(&a, &queued);
    assert_eq!(q["state"], "pending");
    assert!(q.get("purged").is_none(), "{q}");
    // A second pass has nothing left to purge.
    assert!(ids(&retention(&a, false), "purged").is_empty());

    a.stop();
    b.stop();
    // Each log names the purged message with the digest its own sent or
    // received entry names; nothing else of the message.
    for (n, logged) in [(&a, "sent"), (&b, "received")] {
        let entries = n.log_entries();
        let of = |ev: &str| {
            entries
                .iter()
                .filter(|e| e.event.as_str() == ev)
                .filter(|e| e.message_id.map(|m| m.to_hex()) == Some(gone.clone()))
                .collect::<Vec<_>>()
        };
        let purged = of("purged");
        assert_eq!(purged.len(), 1, "{}: {purged:?}", n.id);
        assert_eq!(
            purged[0].envelope_sha256,
            of(logged)[0].envelope_sha256,
            "{}",
            n.id
        );
        assert_eq!(purged[0].detail["rule"], "kind intel-share");
        assert!(entries
            .iter()
            .filter(|e| e.event.as_str() == "purged")
            .all(|e| e.message_id.map(|m| m.to_hex()) == Some(gone.clone())));
    }
    let ea = a.export_and_verify_log();
    let eb = b.export_and_verify_log();
    let out = ok(&[
        "audit",
        "cross-check",
        p(&ea),
        p(&eb),
        "--verifier-key-a",
        p(&a.dir.join("keys/log.pub")),
        "--verifier-key-b",
        p(&b.dir.join("keys/log.pub")),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(0), "{v}");
}
