//! Online backup of a running node and its restore elsewhere (issue 15):
//! the backup is taken while the node works; a restore is checked against
//! the latest checkpoint the node published, refused when the backup is
//! behind it unless an export supplies the missing entries, and the
//! restored node goes on consistently with what it published.

#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use common::*;

#[test]
fn a_backup_of_a_running_node_restores_without_contradicting_its_published_history() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = Federation::new(tmp.path(), &["iq.moj.ca", "iq.moi.ahtd"]);
    for n in &mut fed.nodes {
        n.start();
    }
    for n in &fed.nodes {
        n.wait_api();
    }
    let a = &fed.nodes[0];
    for i in 0..3 {
        let id = a.send_intel("iq.moi.ahtd", &format!("before the backup {i}"));
        a.wait_status(&id, "delivered", 30);
    }
    let backup = tmp.path().join("backup");
    let out = ok(&["backup", "--config", p(&a.config()), "--out", p(&backup)]);
    assert!(out.contains("backed up to"), "{out}");
    // A second backup to the same place is refused.
    assert!(
        !isnad(&["backup", "--config", p(&a.config()), "--out", p(&backup)])
            .status
            .success()
    );
    // Private files stay private in the backup.
    use std::os::unix::fs::PermissionsExt as _;
    for f in [
        "keys/sign.key.pem",
        "keys/log.key",
        "state/state.redb",
        "log/entries",
    ] {
        let mode = std::fs::metadata(backup.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }

    // The node works on and publishes a checkpoint the backup does not hold.
    for i in 0..3 {
        let id = a.send_intel("iq.moi.ahtd", &format!("after the backup {i}"));
        a.wait_status(&id, "delivered", 30);
    }
    let export = tmp.path().join("published-export");
    ok(&[
        "audit",
        "export",
        "--config",
        p(&a.config()),
        "--out",
        p(&export),
    ]);
    let published = export.join("checkpoint");
    let mut a = fed.nodes.remove(0);
    a.kill9(); // the machine is lost

    // Restored from the backup alone, the node would sign a fork of what it
    // published: refused, and nothing is left behind.
    let restored = tmp.path().join("restored");
    let o = isnad(&[
        "restore",
        "--backup",
        p(&backup),
        "--dir",
        p(&restored),
        "--published",
        p(&published),
    ]);
    // Verification failed: exit 2 (README, "Exit codes").
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("published a checkpoint of size"), "{err}");
    assert!(!restored.exists());
    // A checkpoint signed by another log key is not this node's.
    let other = tmp.path().join("other-checkpoint");
    std::fs::write(
        &other,
        ok(&["checkpoint", "--config", p(&fed.nodes[0].config()), "--now"]),
    )
    .unwrap();
    let o = isnad(&[
        "restore",
        "--backup",
        p(&backup),
        "--dir",
        p(&restored),
        "--published",
        p(&other),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("not a checkpoint signed by this node's log key"));
    assert!(!restored.exists());

    // With the export that covers it, the missing entries are restored.
    let out = ok(&[
        "restore",
        "--backup",
        p(&backup),
        "--dir",
        p(&restored),
        "--published",
        p(&published),
        "--entries-from",
        p(&export),
    ]);
    assert!(
        out.contains("consistent with the published checkpoint"),
        "{out}"
    );

    // The restored node runs in a.'s place and keeps working.
    let mut r = NodeProc::new("iq.moj.ca", restored.clone(), a.quic, a.api, a.metrics);
    r.start();
    r.wait_api();
    let id = r.send_intel("iq.moi.ahtd", "after the restore");
    r.wait_status(&id, "delivered", 30);
    ok(&["checkpoint", "--config", p(&r.config()), "--now"]);
    r.stop();
    // Its log extends the published one: consistent from that checkpoint.
    let out = r.export_and_verify_log();
    let v = ok(&[
        "audit",
        "verify",
        p(&out),
        "--verifier-key",
        p(&restored.join("keys/log.pub")),
        "--previous",
        p(&published),
    ]);
    assert!(v.starts_with("OK"), "{v}");
}
