//! The upgrade path (spec/README.md, "Versions and migrations"): this
//! release's binary opens node directories made by release 0.1.0
//! (`tests/fixtures/nodes-0.1.0/`, two nodes that exchanged an MLA request,
//! its status change and an intel share), migrates them, runs the nodes,
//! shows what they held, exchanges a new message and verifies both audit
//! logs; and it refuses a directory of a newer release, changing nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::*;

/// The fixture: two node directories made by release 0.1.0.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nodes-0.1.0");
const A: &str = "iq.moi.ahtd";
const B: &str = "iq.moj.ca";

/// Copies the fixture into `to` with the modes `isnad init` gives (git
/// keeps none): directories 0700, files 0600.
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// Every `127.0.0.1:PORT` in `text`, in order.
fn addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        let tail = &rest[i + "127.0.0.1:".len()..];
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        out.push(format!("127.0.0.1:{digits}"));
        rest = &tail[digits.len()..];
    }
    out
}

/// A copy of the fixture in `base` with fresh loopback ports: the configs
/// are rewritten, and the directory draft with the new endpoints is signed
/// as version 2 with the fixture's root key and imported on both nodes.
/// Returns the two nodes (not started) and the fixture's message ids
/// (request, share, status change).
fn fixture_copy(base: &Path) -> (NodeProc, NodeProc, Vec<String>) {
    copy_tree(Path::new(FIXTURE), base);
    let mut new_port: BTreeMap<String, String> = BTreeMap::new();
    let mut nodes = Vec::new();
    for id in [A, B] {
        let dir = base.join(id);
        let config = dir.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(!text.contains("format"), "the fixture is of 0.1.0: {text}");
        let quic = SocketAddr::from(([127, 0, 0, 1], udp_port()));
        let api = SocketAddr::from(([127, 0, 0, 1], tcp_port()));
        let old = addresses(&text);
        assert_eq!(old.len(), 2, "{text}");
        new_port.insert(old[0].clone(), quic.to_string());
        new_port.insert(old[1].clone(), api.to_string());
        let text = text
            .replace(&old[0], &quic.to_string())
            .replace(&old[1], &api.to_string());
        std::fs::write(&config, text).unwrap();
        nodes.push(NodeProc::new(id, dir, quic, api, None));
    }
    let draft = base.join("iq.json");
    let mut text = std::fs::read_to_string(&draft).unwrap();
    for (old, new) in &new_port {
        text = text.replace(&format!("\"{old}\""), &format!("\"{new}\""));
    }
    std::fs::write(&draft, text).unwrap();
    let v2 = base.join("iq-v2.cose");
    ok(&[
        "directory",
        "sign",
        "--root-key",
        p(&base.join("root/root.key.pem")),
        "--draft",
        p(&draft),
        "--version",
        "2",
        "--out",
        p(&v2),
    ]);
    for n in &nodes {
        ok(&[
            "trust",
            "import",
            "--trust-dir",
            p(&n.dir.join("trust")),
            p(&v2),
        ]);
    }
    let ids = std::fs::read_to_string(base.join("ids.txt")).unwrap();
    let ids: Vec<String> = ids.lines().map(str::to_owned).collect();
    assert_eq!(ids.len(), 3);
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    (a, b, ids)
}

/// `isnad node run --config CONFIG`, which must exit (refuse) within 10 s:
/// a node that starts instead is killed and the test fails.
fn refused_start(config: &Path) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .args(["node", "run", "--config", p(config)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the node started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

fn listed(list: &serde_json::Value, id: &str) -> bool {
    list.as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == id || m["message_id"] == id)
}

/// The release-0.1.0 directories are migrated at the first start (logged
/// at info, the log directory gets its version marker), the nodes run and
/// show the messages and the case they held, a new message is exchanged
/// between them, both audit logs verify after it, and a second start has
/// nothing left to migrate.
#[test]
fn nodes_made_by_the_previous_release_are_migrated_and_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, mut b, ids) = fixture_copy(tmp.path());
    let (request, share, status) = (&ids[0], &ids[1], &ids[2]);
    for n in [&a, &b] {
        assert!(!n.dir.join("log/version").exists());
    }
    a.rust_log = "warn,isnad_node::store::format=info";
    b.rust_log = "warn,isnad_node::store::format=info";
    a.start();
    b.start();
    a.wait_api();
    b.wait_api();
    for n in [&a, &b] {
        let log = n.log_text();
        assert!(log.contains("migrating the state database"), "{log}");
        assert!(log.contains("state database migrated"), "{log}");
        assert_eq!(std::fs::read(n.dir.join("log/version")).unwrap(), b"2\n");
    }

    // What the nodes held before the upgrade.
    let (ca, cb) = (a.config(), b.config());
    let outbox = json(&["outbox", "--config", p(&ca), "--json"]);
    assert!(
        listed(&outbox, request) && listed(&outbox, share),
        "{outbox}"
    );
    let inbox = json(&["inbox", "--config", p(&cb), "--json"]);
    assert!(listed(&inbox, request) && listed(&inbox, share), "{inbox}");
    let shown = ok(&["show", "--config", p(&cb), share]);
    assert!(shown.contains("fixture share"), "{shown}");
    for c in [&ca, &cb] {
        let case = json(&["case", "show", "--config", p(c), request, "--json"]);
        assert_eq!(case["state"], "registered", "{case}");
        assert!(
            case["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message_id"] == status.as_str()),
            "{case}"
        );
    }
    assert_eq!(a.wait_status(request, "delivered", 5)["state"], "delivered");

    // A new exchange after the upgrade.
    let new = a.send_intel(B, "after the upgrade");
    a.wait_status(&new, "delivered", 20);
    let shown = ok(&["show", "--config", p(&cb), &new]);
    assert!(shown.contains("after the upgrade"), "{shown}");

    a.stop();
    b.stop();
    for n in [&a, &b] {
        n.export_and_verify_log();
        std::fs::remove_dir_all(n.dir.join("export")).unwrap();
    }

    // Nothing left to migrate at the next start.
    std::fs::remove_file(a.dir.join("node.log")).unwrap();
    a.start();
    a.wait_api();
    let outbox = json(&["outbox", "--config", p(&ca), "--json"]);
    assert!(
        listed(&outbox, &new) && listed(&outbox, request),
        "{outbox}"
    );
    a.stop();
    let log = a.log_text();
    assert!(!log.contains("migrating"), "{log}");
}

/// A node directory whose log, or whose config, names a format newer than
/// this release reads is refused at start with an error naming both
/// formats, and the files are left as they were.
#[test]
fn a_directory_of_a_newer_release_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b, _) = fixture_copy(tmp.path());
    let config = a.config();

    let version = a.dir.join("log/version");
    std::fs::write(&version, b"9\n").unwrap();
    let entries = std::fs::read(a.dir.join("log/entries")).unwrap();
    let err = refused_start(&config);
    assert!(
        err.contains("format 9") && err.contains("newer release") && err.contains("format 2"),
        "{err}"
    );
    assert_eq!(std::fs::read(a.dir.join("log/entries")).unwrap(), entries);
    assert_eq!(std::fs::read(&version).unwrap(), b"9\n");
    std::fs::remove_file(&version).unwrap();

    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("format = 2\n{text}")).unwrap();
    let err = refused_start(&config);
    assert!(
        err.contains("format 2") && err.contains("formats 1 to 1"),
        "{err}"
    );
    assert!(!version.exists(), "nothing was opened");
}

/// The fixture itself is what release 0.1.0 wrote: no format marker
/// anywhere (a guard against regenerating it with a later binary).
#[test]
fn the_fixture_is_of_release_0_1_0() {
    let fixture = PathBuf::from(FIXTURE);
    for id in [A, B] {
        let dir = fixture.join(id);
        assert!(dir.join("state/state.redb").exists());
        assert!(dir.join("log/entries").exists());
        assert!(!dir.join("log/version").exists());
        let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(!config.contains("format"), "{config}");
    }
}
