//! The CLI contract every `isnad` command follows (README, "Exit codes"):
//! exit codes, key-option names, messages that name the keys and files
//! concerned, output a script or a person can read. Runs the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A log of `n` synthetic entries signed by `name`, exported; returns
/// (export dir, log.key, log.pub).
fn exported(base: &Path, name: &str, n: u64) -> (PathBuf, PathBuf, PathBuf) {
    let tag = name.replace('/', "_");
    let keys = base.join(format!("{tag}-keys"));
    let log = base.join(format!("{tag}-log"));
    let export = base.join(format!("{tag}-export"));
    ok(&["audit", "keygen", "--name", name, "--out", p(&keys)]);
    ok(&[
        "audit",
        "append-test",
        "--log",
        p(&log),
        "--count",
        &n.to_string(),
    ]);
    ok(&[
        "audit",
        "export",
        "--log",
        p(&log),
        "--signer-key",
        p(&keys.join("log.key")),
        "--out",
        p(&export),
    ]);
    (export, keys.join("log.key"), keys.join("log.pub"))
}

/// `name+keyid` of a verifier key file.
fn key_label(pub_file: &Path) -> String {
    let s = std::fs::read_to_string(pub_file).unwrap();
    let mut parts = s.trim().splitn(3, '+');
    format!("{}+{}", parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn argument_errors_exit_1_and_help_exits_0() {
    // The argument parser's own errors used to exit 2, the code that means
    // "verification failed".
    let o = isnad(&["audit", "verify", "--no-such-option"]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(err(&o).contains("--no-such-option"), "{o:?}");
    let o = isnad(&["no-such-command"]);
    assert_eq!(code(&o), 1, "{o:?}");
    let o = isnad(&["audit", "verify"]);
    assert_eq!(code(&o), 1, "missing required arguments: {o:?}");
    let o = isnad(&["--help"]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(out(&o).contains("Usage"));
    let o = isnad(&["--version"]);
    assert_eq!(code(&o), 0, "{o:?}");
}

#[test]
fn a_wrong_key_names_both_keys_and_reads_unlike_a_tampered_note() {
    let tmp = tempfile::tempdir().unwrap();
    let (export_a, _, pub_a) = exported(tmp.path(), "iq.moj.ca/audit", 10);
    let (_, _, pub_b) = exported(tmp.path(), "fr.mj.bepi/audit", 3);

    let o = isnad(&["audit", "verify", p(&export_a), "--verifier-key", p(&pub_b)]);
    assert_eq!(code(&o), 2, "{o:?}");
    let want = format!(
        "signed by key {}, you trusted key {}",
        key_label(&pub_a),
        key_label(&pub_b)
    );
    assert!(out(&o).contains(&want), "want {want:?} in {o:?}");

    // A tampered checkpoint under the right key says something else.
    let tampered = tmp.path().join("tampered");
    copy_dir(&export_a, &tampered);
    let cp = std::fs::read_to_string(tampered.join("checkpoint")).unwrap();
    let mut lines: Vec<String> = cp.lines().map(str::to_owned).collect();
    lines[1] = "11".into(); // the size line, under the signature
    std::fs::write(tampered.join("checkpoint"), lines.join("\n") + "\n").unwrap();
    let o = isnad(&["audit", "verify", p(&tampered), "--verifier-key", p(&pub_a)]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(out(&o).contains("does not verify"), "{o:?}");
    assert!(!out(&o).contains("you trusted"), "{o:?}");

    // The old option name still works, with a deprecation warning.
    let o = isnad(&["audit", "verify", p(&export_a), "--log-key", p(&pub_a)]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(err(&o).contains("--log-key is deprecated"), "{o:?}");
    assert!(err(&o).contains("--verifier-key"), "{o:?}");
}

#[test]
fn a_report_over_swapped_keys_states_not_verified_first_with_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let (export_a, _, pub_a) = exported(tmp.path(), "iq.moj.ca/audit", 5);
    let (export_b, _, pub_b) = exported(tmp.path(), "fr.mj.bepi/audit", 5);
    let html = tmp.path().join("report.html");
    let o = isnad(&[
        "audit",
        "report",
        p(&export_a),
        p(&export_b),
        "--verifier-key",
        p(&pub_b),
        "--verifier-key",
        p(&pub_a),
        "--out",
        p(&html),
    ]);
    assert_eq!(code(&o), 2, "{o:?}");
    let stdout = out(&o);
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("NOT VERIFIED: none of 2 exports verify"),
        "{stdout}"
    );
    assert!(first.contains(&key_label(&pub_a)) && first.contains(&key_label(&pub_b)));
    assert!(!stdout.contains("no findings"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    let body = &page[page.find("<body>").unwrap()..];
    let first_p = &body[body.find("<p").unwrap()..];
    assert!(
        first_p.starts_with("<p id=\"verdict\" class=\"bad\">NOT VERIFIED"),
        "{first_p:.200}"
    );
    assert!(!page.contains("no findings"));
}

#[test]
fn prove_out_of_range_is_a_usage_error_and_verify_proof_takes_a_leaf_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, _, key) = exported(tmp.path(), "iq.moj.ca/audit", 94);
    let o = isnad(&["audit", "prove", p(&export), "--index", "94"]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(
        err(&o).contains("no entry 94: the export holds 94 entries (indexes 0 to 93)"),
        "{o:?}"
    );

    let o = isnad(&["audit", "prove", p(&export), "--index", "93"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let proof_file = tmp.path().join("93.tlog-proof");
    std::fs::write(&proof_file, &o.stdout).unwrap();
    let proof = isnad_log::TlogProof::parse(&o.stdout).unwrap();
    let leaf = isnad_log::leaf_hash(proof.extra.as_deref().unwrap());
    for given in [leaf.to_hex(), leaf.to_base64()] {
        let o = isnad(&[
            "audit",
            "verify-proof",
            p(&proof_file),
            "--verifier-key",
            p(&key),
            "--leaf-hash",
            &given,
        ]);
        assert_eq!(code(&o), 0, "{o:?}");
        assert!(out(&o).contains("is entry 93 of iq.moj.ca/audit at size 94"));
    }
    // Another leaf hash does not verify.
    let other = isnad_log::leaf_hash(b"another entry");
    let o = isnad(&[
        "audit",
        "verify-proof",
        p(&proof_file),
        "--verifier-key",
        p(&key),
        "--leaf-hash",
        &other.to_base64(),
    ]);
    assert_eq!(code(&o), 2, "{o:?}");
    let o = isnad(&[
        "audit",
        "verify-proof",
        p(&proof_file),
        "--verifier-key",
        p(&key),
        "--leaf-hash",
        "xyz",
    ]);
    assert_eq!(code(&o), 1, "{o:?}");
}

#[test]
fn a_closed_stdout_ends_quietly_and_each_cause_prints_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (export, _, key) = exported(tmp.path(), "iq.moj.ca/audit", 3);
    // stdout is a pipe whose reading end is already closed, as after
    // `| head -1`: println! used to panic (exit 101).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(BIN)
        .args(["audit", "verify", p(&export), "--verifier-key", p(&key)])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(!err(&o).contains("panicked"), "{o:?}");

    // A directory that cannot be created: named, its cause printed once
    // (LogError::Io prints its io::Error and also returns it as its source;
    // both were printed: "…(os error 2): No such file or directory (os error 2)").
    let missing = tmp.path().join("no-such-dir/sub/log");
    std::fs::write(tmp.path().join("no-such-dir"), b"a file in the way").unwrap();
    let o = isnad(&["audit", "append-test", "--log", p(&missing), "--count", "1"]);
    assert_eq!(code(&o), 1, "{o:?}");
    let e = err(&o);
    assert!(e.contains(p(&missing)), "the directory is named: {e}");
    assert_eq!(e.matches("os error").count(), 1, "{e}");
}

#[test]
fn directory_sign_refuses_another_countrys_root() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path();
    for cc in ["IQ", "FR"] {
        let o = ok(&[
            "directory",
            "root-init",
            "--country",
            cc,
            "--out",
            p(&b.join(cc)),
        ]);
        assert!(o.contains("fingerprint"));
    }
    ok(&[
        "init",
        "--dir",
        p(&b.join("node")),
        "--agency",
        "fr.mj.bepi",
        "--country",
        "FR",
        "--listen",
        "127.0.0.1:7401",
    ]);
    let draft = b.join("fr.json");
    ok(&[
        "directory",
        "add-node",
        "--draft",
        p(&draft),
        "--node",
        p(&b.join("node")),
        "--role",
        "central-authority",
        "--endpoint",
        "127.0.0.1:7401",
    ]);
    let sign = |root: &str, out: &str| {
        isnad(&[
            "directory",
            "sign",
            "--root-key",
            p(&b.join(root).join("root.key.pem")),
            "--draft",
            p(&draft),
            "--version",
            "1",
            "--out",
            p(&b.join(out)),
        ])
    };
    let o = sign("IQ", "wrong.cose");
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(err(&o).contains("is the IQ root"), "{o:?}");
    assert!(err(&o).contains("the draft is the FR directory"), "{o:?}");
    assert!(!b.join("wrong.cose").exists());
    let o = sign("FR", "fr.cose");
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(out(&o).contains("(1 agency, 0 rules)"), "{o:?}");
    let o = ok(&[
        "directory",
        "verify",
        p(&b.join("fr.cose")),
        "--root",
        p(&b.join("FR/root.pub.cose")),
    ]);
    // ISO 8601 dates in UTC, not Unix seconds.
    assert!(!o.contains("Unix seconds"), "{o}");
    assert!(
        o.contains("valid from 20") && o.trim_end().ends_with('Z'),
        "{o}"
    );
}

/// A node process, killed when dropped; stderr to a file.
struct Daemon(Child);

impl Daemon {
    fn start(node: &NodeProc, log: &Path, json: bool) -> Self {
        Self::spawn(&node.config(), log, json)
    }

    fn start_config(config: &Path, log: &Path) -> Self {
        Self::spawn(config, log, false)
    }

    fn spawn(config: &Path, log: &Path, json: bool) -> Self {
        let mut c = Command::new(BIN);
        c.args(["node", "run", "--config", p(config)])
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        if json {
            c.env("ISNAD_LOG_FORMAT", "json");
        } else {
            c.env_remove("ISNAD_LOG_FORMAT");
        }
        Self(c.spawn().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn node_logs_and_client_output_read_well() {
    let tmp = tempfile::tempdir().unwrap();
    let fed = Federation::new(tmp.path(), &["iq.moj.ca", "iq.moi.ahtd"]);
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let (log_a, log_b) = (tmp.path().join("a.log"), tmp.path().join("b.log"));
    let _da = Daemon::start(a, &log_a, false);
    let _db = Daemon::start(b, &log_b, true);
    a.wait_api();
    b.wait_api();

    // Text logs off a terminal: no colour codes; the address as an address.
    let text = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    let running = format!("running: QUIC {}, API http://{}", a.quic, a.api);
    assert!(text.contains(&running), "want {running:?} in\n{text}");
    // JSON logs: every line is JSON, the address a plain string.
    let json = std::fs::read_to_string(&log_b).unwrap();
    let mut saw_running = false;
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{json}"));
        if v["fields"]["message"] == "node running" {
            assert_eq!(v["fields"]["quic"], b.quic.to_string(), "{line}");
            saw_running = true;
        }
    }
    assert!(saw_running, "{json}");

    // Empty tables say so.
    let o = ok(&["requests", "--config", p(&a.config()), "--overdue"]);
    assert_eq!(o.trim(), "no overdue requests");
    let o = ok(&["inbox", "--config", p(&a.config())]);
    assert_eq!(o.trim(), "no received messages");

    let id = a.send_intel("iq.moi.ahtd", "hello");
    a.wait_status(&id, "delivered", 30);

    // Tables have headers, dates are ISO 8601 in UTC.
    let o = ok(&["outbox", "--config", p(&a.config())]);
    let mut lines = o.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("CREATED (UTC)"),
        "{o}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id) && row.trim_end().ends_with('Z'), "{o}");
    let o = ok(&["inbox", "--config", p(&b.config())]);
    assert!(o.lines().next().unwrap().contains("RECEIVED (UTC)"), "{o}");

    // A short id, as the demo prints, is accepted; `show` is a summary for
    // people, `--json` the API's JSON.
    let short = &id[..12];
    let o = ok(&["show", "--config", p(&b.config()), short]);
    assert!(o.starts_with(&format!("message {id}, received")), "{o}");
    assert!(o.contains("body (decrypted):"), "{o}");
    assert!(o.contains("signed by this node: COSE_Sign1, "), "{o}");
    assert!(o.split_whitespace().all(|w| w.len() < 100), "a blob: {o}");
    let o = ok(&["show", "--config", p(&b.config()), short, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(v["id"], id.as_str());
    let o = ok(&["show", "--config", p(&a.config()), short]);
    assert!(o.starts_with(&format!("message {id}, sent")), "{o}");
    assert!(
        o.contains("receipt   signed by the next hop: COSE_Sign1, "),
        "{o}"
    );
    assert!(o.split_whitespace().all(|w| w.len() < 100), "a blob: {o}");
    let o = ok(&["status", "--config", p(&a.config()), short]);
    assert!(
        o.contains("after 1 attempt") && !o.contains("attempt(s)"),
        "{o}"
    );
    let o = isnad(&["show", "--config", p(&a.config()), "ffffffffffff"]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(
        err(&o).contains("no message in the inbox or outbox has an id starting with ffffffffffff")
    );

    // Piping into a reader that stops early does not panic.
    let mut child = Command::new(BIN)
        .args(["outbox", "--config", p(&a.config())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "outbox did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(status.code(), Some(101), "panicked");
}

#[test]
fn the_demos_short_ids_work_and_a_relay_hop_is_described_not_dumped() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("demo");
    let demo = isnad(&["demo", "--keep", p(&keep)]);
    assert!(demo.status.success(), "{}", out(&demo));
    // The relayed request, as the demo prints it: "...; id 0123456789ab; via iq.moj.ca, ...".
    let text = out(&demo);
    let line = text
        .lines()
        .find(|l| l.contains("mla-request") && l.contains("; via iq.moj.ca"))
        .unwrap_or_else(|| panic!("no relayed request in the demo's output:\n{text}"));
    let short = line
        .split("; id ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .trim()
        .to_owned();
    assert!(short.len() < 32, "{line}");
    let ca = keep.join("iq.moj.ca/config.toml");
    let _d = Daemon::start_config(&ca, &tmp.path().join("ca.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !isnad(&["inbox", "--config", p(&ca)]).status.success() {
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The central authority relayed it: a relay hop, in words.
    let o = ok(&["show", "--config", p(&ca), &short]);
    assert!(o.contains(", received\n"), "{o}");
    assert!(o.contains("relay hop"), "{o}");
    assert!(
        o.contains("end-to-end envelope sealed to fr.pn.ocrtis"),
        "{o}"
    );
    assert!(o.contains("opaque to relays"), "{o}");
    assert!(o.split_whitespace().all(|w| w.len() < 100), "a blob: {o}");
    // The case view of the central authorities' own request, by prefix.
    let req = text
        .lines()
        .find(|l| l.contains("central authority to central authority"))
        .and_then(|l| l.split("; id ").nth(1))
        .and_then(|r| r.split(';').next())
        .unwrap()
        .trim()
        .to_owned();
    let o = ok(&["case", "show", "--config", p(&ca), &req]);
    assert!(o.starts_with(&format!("request {req}")), "{o}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
