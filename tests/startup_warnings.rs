//! `isnad node run` warns at start-up about mistakes that let a node start
//! but not work (or not safely), and `isnad init` refuses what `node run`
//! would refuse. Real processes, loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{isnad, ok, p, tcp_port, udp_port, Federation, NodeProc};

/// Polls the node's stderr until it contains `needle` (20 s at most).
fn wait_log(n: &NodeProc, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = n.log_text();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{text}",
            n.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn node_run_warns_about_each_start_up_mistake() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut fed = Federation::new(
        base,
        &[
            "iq.clean",
            "iq.token",
            "iq.witness",
            "iq.mode",
            "iq.swapped",
        ],
    );
    // A node no directory lists: made and trusting like the others.
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (quic, api) = (addr(udp_port()), addr(tcp_port()));
    let dir = base.join("iq.unlisted");
    ok(&[
        "init",
        "--dir",
        p(&dir),
        "--agency",
        "iq.unlisted",
        "--country",
        "IQ",
        "--listen",
        &quic.to_string(),
        "--api",
        &api.to_string(),
    ]);
    ok(&[
        "trust",
        "init",
        "--trust-dir",
        p(&dir.join("trust")),
        "--country",
        "IQ",
        "--root",
        p(&base.join("root/root.pub.cose")),
    ]);
    let unlisted = NodeProc::new("iq.unlisted", dir, quic, api, None);
    fed.import(&unlisted, &base.join("iq-v1.cose"));
    fed.nodes.push(unlisted);

    // One mistake per node.
    let dir_of = |id: &str| base.join(id);
    std::fs::write(dir_of("iq.token").join("keys/api.token"), "\n").unwrap();
    std::fs::remove_file(dir_of("iq.witness").join("keys/witness.key")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = dir_of("iq.mode").join("keys/sign.key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // iq.swapped's config names another agency than its keys.
    let cfg = dir_of("iq.swapped").join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("agency = \"iq.swapped\"", "agency = \"iq.clean\""),
    )
    .unwrap();

    for n in &mut fed.nodes {
        n.start();
    }
    // What each node must say (and the clean node says nothing).
    let expect: [(&str, &[&str]); 6] = [
        ("iq.clean", &[]),
        (
            "iq.token",
            &["WARNING", "api.token is empty", "refused with 401"],
        ),
        (
            "iq.witness",
            &["WARNING", "serve = true but", "witness.key is missing"],
        ),
        (
            "iq.mode",
            &["WARNING", "sign.key.pem has mode 0644", "chmod 600"],
        ),
        (
            "iq.swapped",
            &[
                "WARNING",
                "the configured agency is iq.clean but the audit-log key",
                "\"iq.swapped/audit\"",
                "the witness key",
                "the directory lists iq.clean with other keys",
            ],
        ),
        (
            "iq.unlisted",
            &["WARNING", "no directory held in", "lists iq.unlisted"],
        ),
    ];
    for (id, needles) in expect {
        let n = fed.nodes.iter().find(|n| n.id == id).unwrap();
        // Warnings come before the API is served: once it answers (or, with
        // an empty token, once the warning is out) everything is logged.
        let log = if id == "iq.token" {
            wait_log(n, "api.token is empty")
        } else {
            n.wait_api();
            n.log_text()
        };
        if needles.is_empty() {
            assert!(
                !log.contains("WARNING"),
                "{id} is set up right but warned:\n{log}"
            );
        }
        for needle in needles {
            assert!(log.contains(needle), "{id} did not say {needle:?}:\n{log}");
        }
        // One mistake, one warning: the others' warnings are not printed.
        let count = log.matches("WARNING").count();
        let want = if id == "iq.swapped" {
            3
        } else {
            needles.len().min(1)
        };
        assert_eq!(count, want, "{id}: {count} warnings:\n{log}");
    }
    for n in &mut fed.nodes {
        n.stop();
    }
}

#[test]
fn init_refuses_a_network_api_address_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, addr, what) in [
        (
            "--api",
            "0.0.0.0:7480",
            "api.listen must be a loopback address",
        ),
        (
            "--metrics",
            "0.0.0.0:9100",
            "metrics_listen must be a loopback address",
        ),
    ] {
        let dir = tmp.path().join(flag.trim_start_matches('-'));
        let o = isnad(&[
            "init",
            "--dir",
            p(&dir),
            "--agency",
            "iq.moi.ahtd",
            "--country",
            "IQ",
            "--listen",
            "127.0.0.1:7401",
            flag,
            addr,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "init {flag} {addr} was accepted");
        assert!(err.contains(what), "{flag}: {err}");
        assert!(
            !dir.exists(),
            "init {flag} {addr} created {}",
            dir.display()
        );
    }
}
