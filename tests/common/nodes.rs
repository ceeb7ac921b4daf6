//! A one-country federation of real node processes built with the CLI (root,
//! `isnad init`, a signed directory allowing everything, trust imported on
//! every node), and the processes themselves: start, SIGKILL, SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// One node's home directory, addresses and (while running) process.
pub struct NodeProc {
    pub id: String,
    pub dir: PathBuf,
    pub quic: SocketAddr,
    pub api: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// `RUST_LOG` for the process (stderr goes to `node.log`, appended).
    pub rust_log: &'static str,
    child: Option<Child>,
}

impl NodeProc {
    /// A node made with `isnad init --dir DIR` (not started).
    pub fn new(
        id: &str,
        dir: PathBuf,
        quic: SocketAddr,
        api: SocketAddr,
        metrics: Option<SocketAddr>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            dir,
            quic,
            api,
            metrics,
            rust_log: "warn",
            child: None,
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        self.child = Some(
            Command::new(BIN)
                .args(["node", "run", "--config", p(&self.config())])
                .env("RUST_LOG", self.rust_log)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait up to 10 s for a clean exit (then SIGKILL and panic).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("{} did not stop on SIGTERM", self.id);
        }
    }

    /// Waits until the local API answers.
    pub fn wait_api(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if isnad(&["outbox", "--config", p(&self.config()), "--json"])
                .status
                .success()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} API did not come up: {}", self.id, self.log_text());
    }

    /// `isnad send` of an intel-share with `text` to `to`; returns the id.
    pub fn send_intel(&self, to: &str, text: &str) -> String {
        let payload = self.dir.join("payload.json");
        let body = serde_json::json!({
            "share-id": "00112233445566778899aabbccddeeff",
            "handling": "H0", "source-grading": "A", "information-grading": 1, "tlp": "green",
            "classification": "RESTRICTED", "summary": text, "content": text,
        });
        std::fs::write(&payload, body.to_string()).unwrap();
        let config = self.config();
        let args = ["send", "--config", p(&config), "--to", to];
        let more = ["--kind", "intel-share", "--payload", p(&payload)];
        ok(&[&args[..], &more[..]].concat()).trim().to_owned()
    }

    /// Polls `isnad status` until message `id` is in `state` (or `secs`
    /// pass: panic); returns the status JSON.
    pub fn wait_status(&self, id: &str, state: &str, secs: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let o = isnad(&["status", "--config", p(&self.config()), id, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if v["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{id} at {} is not {state} after {secs} s: {v}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The bearer token of the local API.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("keys/api.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Exports the audit log (the node must be stopped) and verifies it with
    /// `isnad audit verify`; returns the export directory.
    pub fn export_and_verify_log(&self) -> PathBuf {
        let out = self.dir.join("export");
        ok(&[
            "audit",
            "export",
            "--log",
            p(&self.dir.join("log")),
            "--signer-key",
            p(&self.dir.join("keys/log.key")),
            "--out",
            p(&out),
        ]);
        let v = ok(&[
            "audit",
            "verify",
            p(&out),
            "--verifier-key",
            p(&self.dir.join("keys/log.pub")),
        ]);
        assert!(v.starts_with("OK"), "{}: {v}", self.id);
        out
    }
}

impl NodeProc {
    /// Every entry of the audit log (the node must be stopped).
    pub fn log_entries(&self) -> Vec<isnad_log::Entry> {
        let (log, _) = isnad_log::Log::open(&self.dir.join("log")).unwrap();
        (0..log.size())
            .map(|i| isnad_log::Entry::decode(&log.entry_bytes(i).unwrap()).unwrap())
            .collect()
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

/// Nodes of country IQ under one root, with one signed directory.
pub struct Federation {
    pub base: PathBuf,
    pub nodes: Vec<NodeProc>,
}

impl Federation {
    /// Creates the root, the nodes `ids` (all in country IQ), directory
    /// version 1 allowing all kinds between them, and each node's trust
    /// directory with that version imported. Nothing is started.
    pub fn new(base: &Path, ids: &[&str]) -> Self {
        ok(&[
            "directory",
            "root-init",
            "--country",
            "IQ",
            "--out",
            p(&base.join("root")),
        ]);
        let mut nodes = Vec::new();
        for id in ids {
            let dir = base.join(id);
            let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
            let (quic, api, metrics) = (addr(udp_port()), addr(tcp_port()), addr(tcp_port()));
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
                "--metrics",
                &metrics.to_string(),
            ]);
            // Tests run on a shared disk whose free space varies: a floor
            // of 16 MiB keeps the nodes from refusing work for want of the
            // default 1 GiB (the floor itself is tested in
            // crates/isnad-node/tests/disk_faults.rs).
            let config = dir.join("config.toml");
            let text = std::fs::read_to_string(&config).unwrap();
            assert!(text.contains("free_space_floor_bytes = 1073741824"));
            std::fs::write(
                &config,
                text.replace(
                    "free_space_floor_bytes = 1073741824",
                    "free_space_floor_bytes = 16777216",
                ),
            )
            .unwrap();
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
            nodes.push(NodeProc::new(id, dir, quic, api, Some(metrics)));
        }
        let fed = Self {
            base: base.to_owned(),
            nodes,
        };
        ok(&[
            "directory",
            "allow",
            "--draft",
            p(&fed.draft()),
            "--id",
            "all",
        ]);
        let v1 = fed.sign(1);
        for n in &fed.nodes {
            let trust = n.dir.join("trust");
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
            fed.import(n, &v1);
        }
        fed
    }

    /// The directory draft (JSON), editable between versions.
    pub fn draft(&self) -> PathBuf {
        self.base.join("iq.json")
    }

    /// Signs the draft as `version`; returns the signed file.
    pub fn sign(&self, version: u64) -> PathBuf {
        let out = self.base.join(format!("iq-v{version}.cose"));
        ok(&[
            "directory",
            "sign",
            "--root-key",
            p(&self.base.join("root/root.key.pem")),
            "--draft",
            p(&self.draft()),
            "--version",
            &version.to_string(),
            "--out",
            p(&out),
        ]);
        out
    }

    /// `isnad trust import` of a signed directory into `node`'s trust
    /// directory (a running node picks it up within a few seconds).
    pub fn import(&self, node: &NodeProc, signed: &Path) {
        ok(&[
            "trust",
            "import",
            "--trust-dir",
            p(&node.dir.join("trust")),
            p(signed),
        ]);
    }
}
