//! Helpers shared by the integration tests that run the real binary.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_isnad");

/// Runs `isnad ARGS`.
pub fn isnad(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run isnad")
}

/// Runs `isnad ARGS`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = isnad(args);
    assert!(
        o.status.success(),
        "isnad {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A free UDP port on loopback.
pub fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback.
pub fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process (`isnad node run`) for a directory made by `isnad init`;
/// killed when dropped.
pub struct NodeProc {
    pub dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl NodeProc {
    /// Starts the node of `dir`, its stderr appended to `dir/node.log`.
    pub fn start(dir: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "run", "--config", p(&dir.join("config.toml"))])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            dir: dir.to_owned(),
            child: Some(child),
        }
    }

    /// The node's config file.
    pub fn config(&self) -> std::path::PathBuf {
        self.dir.join("config.toml")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sets up agencies `ids` of country IQ under `base` (`isnad init` each,
/// one signed directory allowing everything, imported by every node) and
/// returns each node's directory and local API address.
pub fn iq_federation(base: &Path, ids: &[&str]) -> Vec<(std::path::PathBuf, String)> {
    ok(&[
        "directory",
        "root-init",
        "--country",
        "IQ",
        "--out",
        p(&base.join("root")),
    ]);
    let draft = base.join("iq.json");
    let mut nodes = Vec::new();
    for id in ids {
        let dir = base.join(id);
        let quic = format!("127.0.0.1:{}", udp_port());
        let api = format!("127.0.0.1:{}", tcp_port());
        ok(&[
            "init",
            "--dir",
            p(&dir),
            "--agency",
            id,
            "--country",
            "IQ",
            "--listen",
            &quic,
            "--api",
            &api,
        ]);
        ok(&[
            "directory",
            "add-node",
            "--draft",
            p(&draft),
            "--node",
            p(&dir),
            "--role",
            "other",
            "--endpoint",
            &quic,
        ]);
        nodes.push((dir, api));
    }
    ok(&["directory", "allow", "--draft", p(&draft), "--id", "all"]);
    let signed = base.join("iq.cose");
    ok(&[
        "directory",
        "sign",
        "--root-key",
        p(&base.join("root/root.key.pem")),
        "--draft",
        p(&draft),
        "--version",
        "1",
        "--out",
        p(&signed),
    ]);
    for (dir, _) in &nodes {
        let trust = dir.join("trust");
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
        ok(&["trust", "import", "--trust-dir", p(&trust), p(&signed)]);
    }
    nodes
}
