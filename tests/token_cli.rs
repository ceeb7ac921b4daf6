//! Keys in a PKCS#11 token from the command line (spec/federation.md §14),
//! against a real SoftHSM2 token in a temporary directory: `isnad directory
//! root-init --pkcs11` keeps the national root key in the token and writes
//! only its public part, `isnad directory sign` signs a directory with it,
//! and `isnad directory verify` accepts the result against `root.pub.cose`;
//! a second key of the same label is refused, not overwritten.
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`): without it the test FAILS
//! naming what is missing, unless `ISNAD_SKIP_PKCS11=1` (then the skip is
//! printed).
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_isnad");
const PIN: &str = "4711-root";

fn isnad(args: &[&str]) -> Output {
    // SOFTHSM2_CONF (set by init_tokens) is inherited by the binary.
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = isnad(args);
    assert!(
        o.status.success(),
        "isnad {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn root_key_in_a_token_signs_a_directory_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let module = match isnad_pkcs11::softhsm::init_tokens(dir.path(), &["Root IQ", "Node IQ"], PIN)
    {
        Ok(m) => m,
        Err(isnad_pkcs11::softhsm::Missing(what))
            if std::env::var("ISNAD_SKIP_PKCS11").as_deref() == Ok("1") =>
        {
            eprintln!("SKIPPED (ISNAD_SKIP_PKCS11=1): {what}");
            return;
        }
        Err(isnad_pkcs11::softhsm::Missing(what)) => {
            panic!("{what}; ISNAD_SKIP_PKCS11=1 skips this test")
        }
    };
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    let tok = ["--pkcs11-module", p(&module), "--pin-file", p(&pin)];
    let root = dir.path().join("iq-root");
    let mut args = vec![
        "directory",
        "root-init",
        "--country",
        "IQ",
        "--out",
        p(&root),
        "--pkcs11",
        "pkcs11:token=Root%20IQ;object=root-2026",
    ];
    args.extend(tok);
    let out = ok(&args);
    assert!(out.contains("fingerprint: "), "{out}");
    assert!(!root.join("root.key.pem").exists(), "no private key file");
    assert_eq!(
        std::fs::read_to_string(root.join("root.key.uri")).unwrap(),
        "pkcs11:token=Root%20IQ;object=root-2026\n"
    );
    // A second root-init with the same label is refused: keys are never
    // overwritten, in a token either.
    let again = dir.path().join("iq-root-again");
    args[5] = p(&again);
    let o = isnad(&args);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already holds a key `root-2026`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A node whose every key is made in its own token: only public
    // halves in its keys directory, the config names the token keys.
    let node = dir.path().join("iq.moj.ca");
    let mut init = vec![
        "init",
        "--dir",
        p(&node),
        "--agency",
        "iq.moj.ca",
        "--country",
        "IQ",
        "--listen",
        "127.0.0.1:17599",
        "--pkcs11",
        "pkcs11:token=Node%20IQ;object=node",
    ];
    init.extend(tok);
    ok(&init);
    let mut files: Vec<String> = std::fs::read_dir(node.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "api.token",
            "enc.pub.cose",
            "log.pub",
            "sign.pub.cose",
            "tls.cert.der",
            "witness.pub"
        ]
    );
    let config = std::fs::read_to_string(node.join("config.toml")).unwrap();
    assert!(
        config.contains("signing = \"pkcs11:token=Node%20IQ;object=node-sign\"")
            && config.contains("witness = \"pkcs11:token=Node%20IQ;object=node-witness\"")
            && config.contains("[pkcs11]")
            && !config.contains(PIN),
        "{config}"
    );
    let draft = dir.path().join("iq.json");
    ok(&[
        "directory",
        "add-node",
        "--draft",
        p(&draft),
        "--node",
        p(&node),
        "--role",
        "central-authority",
        "--endpoint",
        "127.0.0.1:17599",
        "--name",
        "en=Ministry of Justice",
    ]);
    let signed = dir.path().join("iq-v1.cose");
    let root_uri = root.join("root.key.uri");
    let mut sign = vec![
        "directory",
        "sign",
        "--root-key",
        p(&root_uri),
        "--draft",
        p(&draft),
        "--version",
        "1",
        "--out",
        p(&signed),
    ];
    sign.extend(tok);
    ok(&sign);
    let out = ok(&[
        "directory",
        "verify",
        p(&signed),
        "--root",
        p(&root.join("root.pub.cose")),
    ]);
    assert!(out.starts_with("valid: IQ directory version 1"), "{out}");
    // Without the PIN source the token key cannot be used: a clear error.
    let o = isnad(&sign[..10]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--pkcs11-module"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
