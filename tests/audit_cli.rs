//! `isnad audit …` end to end, running the real binary in temporary directories.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_isnad");

fn isnad(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// keygen + append-test (hidden tool) + export.
fn setup(n: u64) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let log = dir.path().join("log");
    let out = dir.path().join("export");
    let o = isnad(&[
        "audit",
        "keygen",
        "--name",
        "iq.moi.ahtd/audit",
        "--out",
        p(&keys),
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(keys.join("log.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let count = n.to_string();
    let o = isnad(&[
        "audit",
        "append-test",
        "--log",
        p(&log),
        "--count",
        &count,
        "--threads",
        "3",
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(stdout(&o).lines().count() as u64, 3 * n);
    let o = isnad(&[
        "audit",
        "export",
        "--log",
        p(&log),
        "--signer-key",
        p(&keys.join("log.key")),
        "--out",
        p(&out),
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    (dir, keys, out)
}

#[test]
fn export_verify_prove_round_trip() {
    let (dir, keys, out) = setup(100);
    let vkey = keys.join("log.pub");
    let o = isnad(&["audit", "verify", p(&out), "--verifier-key", p(&vkey)]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(
        stdout(&o).starts_with("OK: 300 entries, origin iq.moi.ahtd/audit"),
        "{o:?}"
    );

    let o = isnad(&["audit", "prove", p(&out), "--index", "257"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let proof = dir.path().join("257.tlog-proof");
    std::fs::write(&proof, &o.stdout).unwrap();
    assert!(stdout(&o).starts_with("c2sp.org/tlog-proof@v1\nextra "));
    let o = isnad(&[
        "audit",
        "verify-proof",
        p(&proof),
        "--verifier-key",
        p(&vkey),
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(stdout(&o).contains("entry 257 is in iq.moi.ahtd/audit at size 300"));

    // A proof whose index was changed fails with exit code 2.
    let bad = stdout(&isnad(&["audit", "prove", p(&out), "--index", "257"]))
        .replace("index 257\n", "index 256\n");
    let badp = dir.path().join("bad.tlog-proof");
    std::fs::write(&badp, bad).unwrap();
    let o = isnad(&[
        "audit",
        "verify-proof",
        p(&badp),
        "--verifier-key",
        p(&vkey),
    ]);
    assert_eq!(code(&o), 2, "{o:?}");

    // Previous checkpoint: a later export is consistent with the earlier one.
    let prev = dir.path().join("prev-checkpoint");
    std::fs::copy(out.join("checkpoint"), &prev).unwrap();
    let o = isnad(&[
        "audit",
        "append-test",
        "--log",
        p(&dir.path().join("log")),
        "--count",
        "5",
    ]);
    assert_eq!(code(&o), 0);
    let out2 = dir.path().join("export2");
    let o = isnad(&[
        "audit",
        "export",
        "--log",
        p(&dir.path().join("log")),
        "--signer-key",
        p(&keys.join("log.key")),
        "--out",
        p(&out2),
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    let o = isnad(&[
        "audit",
        "verify",
        p(&out2),
        "--verifier-key",
        p(&vkey),
        "--previous",
        p(&prev),
    ]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert!(stdout(&o).contains("consistent with the previous checkpoint of 300 entries"));
}

#[test]
fn tampering_is_reported_with_exit_code_2() {
    let (_dir, keys, out) = setup(100);
    let vkey = keys.join("log.pub");
    let bundle = out.join("tile/entries/000");
    let mut data = std::fs::read(&bundle).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01; // last byte of entry 255
    std::fs::write(&bundle, &data).unwrap();
    let o = isnad(&["audit", "verify", p(&out), "--verifier-key", p(&vkey)]);
    assert_eq!(code(&o), 2, "{o:?}");
    let s = stdout(&o);
    assert!(s.contains("entry 255"), "{s}");
    assert!(s.contains("verification FAILED"), "{s}");
}

#[test]
fn usage_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = isnad(&[
        "audit",
        "verify",
        p(dir.path()),
        "--verifier-key",
        p(&dir.path().join("none")),
    ]);
    assert_eq!(code(&o), 1, "{o:?}");
    let o = isnad(&[
        "audit",
        "keygen",
        "--name",
        "has space",
        "--out",
        p(dir.path()),
    ]);
    assert_eq!(code(&o), 1, "{o:?}");
    // The hidden test tool is not listed in help.
    let o = isnad(&["audit", "--help"]);
    assert!(!stdout(&o).contains("append-test"));
}

#[test]
fn sigkilled_appender_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..8u64 {
        let mut child = Command::new(BIN)
            .args([
                "audit",
                "append-test",
                "--log",
                p(&log),
                "--count",
                "0",
                "--threads",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.parse::<u64>().ok())
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(40 + round * 23 % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());
        let (l, _) = isnad_log::Log::open(&log).unwrap();
        let max = acked.iter().copied().max().unwrap_or(0);
        assert!(acked.is_empty() || max < l.size(), "round {round}");
    }
    let (l, _) = isnad_log::Log::open(&log).unwrap();
    for &i in &acked {
        let e = isnad_log::Entry::decode(&l.entry_bytes(i).unwrap()).unwrap();
        assert_eq!(e.seq, i);
    }
}
