//! A revoked signing key over the wire, with real node processes: the root
//! re-signs the directory (version 2) with the sender's signing key revoked,
//! only the receiver imports it, and the sender — still on version 1 — keeps
//! sending. The receiver refuses with the documented code (`unauthentic`, no
//! detail to the peer), logs a `rejected` entry with that reason and the
//! detail (`key-not-valid`) in its own log, and stores nothing. The sender
//! marks the message failed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::time::{Duration, Instant};

use common::*;
use isnad_log::{Entry, EventType};

#[test]
fn a_message_signed_with_a_revoked_key_is_refused_logged_and_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let (from, to) = ("iq.moi.ahtd", "iq.moj.ca");
    let mut fed = Federation::new(tmp.path(), &[from, to]);
    fed.nodes[1].rust_log = "info";
    for n in fed.nodes.iter_mut() {
        n.start();
    }
    for n in &fed.nodes {
        n.wait_api();
    }
    // Before the revocation the key is good.
    let before = fed.nodes[0].send_intel(to, "before the revocation");
    fed.nodes[0].wait_status(&before, "delivered", 30);

    // Version 2: the sender's signing key revoked from now on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut draft: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fed.draft()).unwrap()).unwrap();
    let agency = draft["agencies"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["id"] == from)
        .unwrap();
    agency["signing-keys"][0]["revoked-at"] = now.into();
    agency["signing-keys"][0]["revocation-reason"] = "key compromised".into();
    std::fs::write(fed.draft(), draft.to_string()).unwrap();
    let v2 = fed.sign(2);
    fed.import(&fed.nodes[1], &v2);
    // The running receiver re-reads its trust directory every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fed.nodes[1]
        .log_text()
        .contains("directory change accepted")
    {
        assert!(
            Instant::now() < deadline,
            "the receiver did not pick up version 2: {}",
            fed.nodes[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The sender does not know; it signs with the revoked key and sends.
    let after = fed.nodes[0].send_intel(to, "after the revocation");
    let st = fed.nodes[0].wait_status(&after, "failed", 30);
    let err = st["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("unauthentic"), "sender's error: {st}");
    assert!(
        !err.contains("key-not-valid"),
        "the peer was told which check failed: {err}"
    );
    let inbox: serde_json::Value = serde_json::from_str(&ok(&[
        "inbox",
        "--config",
        p(&fed.nodes[1].config()),
        "--json",
    ]))
    .unwrap();
    let ids: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [before.as_str()],
        "only the message from before is stored"
    );
    // The receiver's own log says why.
    assert!(
        fed.nodes[1].log_text().contains("key-not-valid"),
        "{}",
        fed.nodes[1].log_text()
    );

    for n in fed.nodes.iter_mut() {
        n.stop();
    }
    for n in &fed.nodes {
        n.export_and_verify_log();
    }
    let entries = fed.nodes[1].log_entries();
    assert!(
        entries.iter().any(|e| e.event == EventType::KeyRevoked
            && e.sender.as_ref().map(|a| a.as_str()) == Some(from)),
        "no key-revoked entry for {from}"
    );
    let digest = st["envelope_sha256"].as_str().unwrap();
    let rejected: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.event == EventType::Rejected)
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].reason.as_deref(), Some("unauthentic"));
    assert_eq!(rejected[0].sender.as_ref().map(|a| a.as_str()), Some(from));
    assert_eq!(
        rejected[0].envelope_sha256.map(hex::encode).as_deref(),
        Some(digest)
    );
    assert!(!entries.iter().any(|e| e.event == EventType::Received
        && e.envelope_sha256.map(hex::encode).as_deref() == Some(digest)));
}
