//! `isnad send` against a node process: the API's body limit follows the
//! node's envelope limit, and a payload over it is refused by the CLI with
//! the limit named, not reported as an unreachable node.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use common::*;

#[test]
fn send_follows_the_envelope_limit_and_names_the_body_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moj.ca", "iq.moi.ahtd"]);
    let node = &mut fed.nodes[0];
    node.start();
    node.wait_api();
    let config = node.config();
    let send = |content_bytes: usize| {
        let payload = tmp.path().join("payload.json");
        let body = serde_json::json!({
            "share-id": "00112233445566778899aabbccddeeff",
            "handling": "H0", "source-grading": "A", "information-grading": 1, "tlp": "green",
            "classification": "RESTRICTED", "summary": "large", "content": "x".repeat(content_bytes),
        });
        std::fs::write(&payload, body.to_string()).unwrap();
        isnad(&[
            "send",
            "--config",
            p(&config),
            "--to",
            "iq.moi.ahtd",
            "--kind",
            "intel-share",
            "--payload",
            p(&payload),
        ])
    };
    // 3 MB: over the HTTP framework's 2 MiB default, under the 4 MiB envelope limit.
    let o = send(3_000_000);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "a 3 MB message was refused: {err}");
    // 9 MB: over twice the envelope limit plus 64 KiB.
    let o = send(9_000_000);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(err.contains("the node accepts at most 8454144"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
    fed.nodes[0].stop();
}
