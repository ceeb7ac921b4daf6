//! Witness cosignatures checked offline by the real binary
//! (spec/witness.md §9): `isnad audit verify`, `cross-check` and `report`
//! with `--witness-key`/`--witness-quorum`, and `isnad note verify` on
//! Isnad checkpoints and on a note made by another implementation.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use std::path::{Path, PathBuf};

use common::{isnad, p};
use isnad_log::note::{SignerKey, TYPE_COSIGNATURE_V1};

struct Export {
    dir: PathBuf,
    log_pub: PathBuf,
    witness_pubs: Vec<PathBuf>,
    witness_keys: Vec<SignerKey>,
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(args: &[&str]) -> (i32, String) {
    let o = isnad(args);
    (o.status.code().unwrap_or(-1), out(&o))
}

/// A real export (append-test log, `audit export`), its checkpoint
/// cosigned by the witnesses in `cosigners` out of three.
fn export(base: &Path, name: &str, cosigners: &[usize]) -> Export {
    let keys = base.join(format!("{name}-keys"));
    let log = base.join(format!("{name}-log"));
    let dir = base.join(format!("{name}-export"));
    let (c, o) = run(&[
        "audit",
        "keygen",
        "--name",
        &format!("{name}/audit"),
        "--out",
        p(&keys),
    ]);
    assert_eq!(c, 0, "{o}");
    let (c, o) = run(&["audit", "append-test", "--log", p(&log), "--count", "9"]);
    assert_eq!(c, 0, "{o}");
    let (c, o) = run(&[
        "audit",
        "export",
        "--log",
        p(&log),
        "--signer-key",
        p(&keys.join("log.key")),
        "--out",
        p(&dir),
    ]);
    assert_eq!(c, 0, "{o}");
    let witness_keys: Vec<SignerKey> = (0..3)
        .map(|i| {
            SignerKey::from_seed(
                &format!("w{i}.example/witness"),
                TYPE_COSIGNATURE_V1,
                [40 + i as u8; 32],
            )
            .unwrap()
        })
        .collect();
    let witness_pubs: Vec<PathBuf> = witness_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let f = base.join(format!("{name}-w{i}.pub"));
            std::fs::write(&f, format!("{}\n", k.verifier())).unwrap();
            f
        })
        .collect();
    let cp = dir.join("checkpoint");
    let mut note = std::fs::read_to_string(&cp).unwrap();
    let text = note.split_once("\n\n").unwrap().0.to_owned() + "\n";
    for &i in cosigners {
        note.push_str(
            &witness_keys[i]
                .cosign(&text, 1_790_000_000 + i as u64)
                .unwrap(),
        );
    }
    std::fs::write(&cp, note).unwrap();
    Export {
        dir,
        log_pub: keys.join("log.pub"),
        witness_pubs,
        witness_keys,
    }
}

#[test]
fn audit_verify_requires_the_witness_quorum_and_rejects_a_corrupted_cosignature() {
    let tmp = tempfile::tempdir().unwrap();
    let e = export(tmp.path(), "iq.moj.ca", &[0, 2]);
    let verify = |extra: &[&str]| {
        let mut a = vec![
            "audit",
            "verify",
            p(&e.dir),
            "--verifier-key",
            p(&e.log_pub),
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let w: Vec<&str> = e.witness_pubs.iter().map(|f| p(f)).collect();

    // Without witness keys the export verifies as before.
    let (c, o) = verify(&[]);
    assert_eq!(c, 0, "{o}");
    // Quorum 2 of the three keys: w0 and w2 cosigned.
    let (c, o) = verify(&[
        "--witness-key",
        w[0],
        "--witness-key",
        w[1],
        "--witness-key",
        w[2],
        "--witness-quorum",
        "2",
    ]);
    assert_eq!(c, 0, "{o}");
    assert!(
        o.contains("cosigned by 2 of 3 trusted witnesses (quorum 2): w0.example/witness, w2.example/witness"),
        "{o}"
    );
    // Default quorum is every key given: w1 did not cosign.
    let (c, o) = verify(&["--witness-key", w[0], "--witness-key", w[1]]);
    assert_eq!(c, 2, "{o}");
    assert!(o.contains("no cosignature by w1.example/witness"), "{o}");
    // A key given literally, not as a file, works the same.
    let literal = e.witness_keys[2].verifier().to_string();
    let (c, o) = verify(&["--witness-key", &literal]);
    assert_eq!(c, 0, "{o}");

    // Corrupt w2's cosignature (one base64 character near its end): the
    // export must fail even though w0 alone meets quorum 1.
    let cp = e.dir.join("checkpoint");
    let note = std::fs::read_to_string(&cp).unwrap();
    let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
    let i = lines
        .iter()
        .position(|l| l.contains("w2.example/witness"))
        .unwrap();
    let mut chars: Vec<char> = lines[i].chars().collect();
    let at = chars.len() - 8;
    chars[at] = if chars[at] == 'Q' { 'R' } else { 'Q' };
    lines[i] = chars.into_iter().collect();
    std::fs::write(&cp, lines.join("\n")).unwrap();
    let (c, o) = verify(&[
        "--witness-key",
        w[0],
        "--witness-key",
        w[2],
        "--witness-quorum",
        "1",
    ]);
    assert_eq!(c, 2, "{o}");
    assert!(
        o.contains("cosignature of trusted witness w2.example/witness does not verify"),
        "{o}"
    );

    // Usage errors: a log key given as a witness key, a quorum above the keys.
    let (c, o) = verify(&["--witness-key", p(&e.log_pub)]);
    assert_eq!(c, 1, "{o}");
    let (c, o) = verify(&["--witness-key", w[0], "--witness-quorum", "2"]);
    assert_eq!(c, 1, "{o}");
}

#[test]
fn cross_check_and_report_fail_an_export_short_of_its_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let a = export(tmp.path(), "iq.moj.ca", &[0, 1]);
    let b = export(tmp.path(), "fr.mj.bepi", &[0]);
    let keys = |e: &Export| -> Vec<String> {
        e.witness_pubs
            .iter()
            .take(2)
            .map(|f| p(f).to_owned())
            .collect()
    };
    let (ka, kb) = (keys(&a), keys(&b));
    // Both logs have the same witness keys (same seeds): quorum 2 of w0, w1.
    assert_eq!(
        std::fs::read(&ka[0]).unwrap(),
        std::fs::read(&kb[0]).unwrap()
    );
    let (c, o) = run(&[
        "audit",
        "cross-check",
        p(&a.dir),
        p(&b.dir),
        "--verifier-key-a",
        p(&a.log_pub),
        "--verifier-key-b",
        p(&b.log_pub),
        "--witness-key",
        &ka[0],
        "--witness-key",
        &ka[1],
    ]);
    assert_eq!(c, 2, "{o}");
    assert!(
        o.contains("fr.mj.bepi-export: checkpoint: cosigned by 1 of 2 trusted witnesses, quorum 2"),
        "{o}"
    );
    assert!(!o.contains("iq.moj.ca-export: checkpoint"), "{o}");

    let html = tmp.path().join("report.html");
    let (c, o) = run(&[
        "audit",
        "report",
        p(&a.dir),
        p(&b.dir),
        "--verifier-key",
        p(&a.log_pub),
        "--verifier-key",
        p(&b.log_pub),
        "--out",
        p(&html),
        "--witness-key",
        &ka[0],
        "--witness-key",
        &ka[1],
    ]);
    assert_eq!(c, 2, "{o}");
    assert!(o.contains("quorum 2"), "{o}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("quorum 2"), "the report names the failure");
    // Quorum 1: both exports pass the witness check.
    let (c, o) = run(&[
        "audit",
        "report",
        p(&a.dir),
        p(&b.dir),
        "--verifier-key",
        p(&a.log_pub),
        "--verifier-key",
        p(&b.log_pub),
        "--out",
        p(&html),
        "--witness-key",
        &ka[0],
        "--witness-key",
        &ka[1],
        "--witness-quorum",
        "1",
    ]);
    assert_eq!(c, 0, "{o}");
}

#[test]
fn note_verify_checks_isnad_checkpoints_and_notes_of_other_implementations() {
    let tmp = tempfile::tempdir().unwrap();
    let e = export(tmp.path(), "iq.moj.ca", &[1]);
    let cp = e.dir.join("checkpoint");
    let w1 = p(&e.witness_pubs[1]);
    let (c, o) = run(&[
        "note",
        "verify",
        p(&cp),
        "--key",
        p(&e.log_pub),
        "--key",
        w1,
        "--quorum",
        "2",
    ]);
    assert_eq!(c, 0, "{o}");
    assert!(o.contains("signed by iq.moj.ca/audit+"), "{o}");
    assert!(o.contains("cosigned by w1.example/witness+"), "{o}");
    assert!(
        o.contains("checkpoint: origin iq.moj.ca/audit, 9 entries"),
        "{o}"
    );
    // --text prints exactly the verified text.
    let t = isnad(&["note", "verify", p(&cp), "--key", p(&e.log_pub), "--text"]);
    assert_eq!(t.status.code(), Some(0));
    let note = std::fs::read_to_string(&cp).unwrap();
    assert_eq!(
        String::from_utf8(t.stdout).unwrap(),
        note.split_once("\n\n").unwrap().0.to_owned() + "\n"
    );
    // A quorum the given keys cannot meet on this note: w0 did not cosign.
    let (c, o) = run(&[
        "note",
        "verify",
        p(&cp),
        "--key",
        p(&e.log_pub),
        "--key",
        p(&e.witness_pubs[0]),
        "--quorum",
        "2",
    ]);
    assert_eq!(c, 2, "{o}");
    // The same key twice is one key: quorum 2 of it is a usage error.
    let (c, o) = run(&[
        "note",
        "verify",
        p(&cp),
        "--key",
        p(&e.log_pub),
        "--key",
        p(&e.log_pub),
        "--quorum",
        "2",
    ]);
    assert_eq!(c, 1, "{o}");

    // The example note of the Go reference implementation of signed notes
    // (golang.org/x/mod/sumdb/note), verified by its published key.
    let go = tmp.path().join("go.note");
    std::fs::write(
        &go,
        "If you think cryptography is the answer to your problem,\n\
         then you don't know what your problem is.\n\n\
         \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
    )
    .unwrap();
    let go_key = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let (c, o) = run(&["note", "verify", p(&go), "--key", go_key]);
    assert_eq!(c, 0, "{o}");
    assert!(
        o.contains("signed by PeterNeumann+c74f20a3 (Ed25519)"),
        "{o}"
    );
    // One changed letter of the text fails it.
    let text = std::fs::read_to_string(&go)
        .unwrap()
        .replace("cryptography", "cryptographY");
    std::fs::write(&go, text).unwrap();
    let (c, o) = run(&["note", "verify", p(&go), "--key", go_key]);
    assert_eq!(c, 2, "{o}");
    assert!(o.contains("FAILED"), "{o}");
    // A note signed by none of the given keys.
    let (c, o) = run(&["note", "verify", p(&cp), "--key", go_key]);
    assert_eq!(c, 2, "{o}");
}
