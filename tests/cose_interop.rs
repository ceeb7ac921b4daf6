//! Interoperability with an independent COSE implementation (Python pycose):
//! runs tests/interop/cose_interop.py against the real binary. The script
//! opens envelopes made by `isnad envelope seal` and makes envelopes that
//! `isnad envelope open` must accept (spec/protocol.md §10).
//!
//! Needs `python3` with `pip install "pycose==1.1.0" "cbor2>=5.4,<6"`.
//! Without them the test FAILS, saying what to install; a machine that
//! cannot have them opts out explicitly with `ISNAD_SKIP_INTEROP=1`, and the
//! skip is then still printed (a skip that reports `ok` silently hid that
//! the interop check never ran).
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_isnad");

/// Checks the Python side; `Err` says why the test cannot run.
fn python_ready() -> Result<(), String> {
    // pycose 1.1.0 cannot decode messages with cbor2 >= 6 (arrays come back
    // as tuples, and pycose's decoder wants lists).
    let probe = "import sys, pycose, cbor2, cryptography\n\
                 from importlib.metadata import version\n\
                 sys.exit(3 if int(version('cbor2').split('.')[0]) >= 6 else 0)";
    match Command::new("python3").args(["-c", probe]).output() {
        Err(e) => Err(format!("python3 cannot be run: {e}")),
        Ok(o) if o.status.code() == Some(3) => Err(
            "cbor2 >= 6 is installed; pycose 1.1.0 needs cbor2 < 6 \
             (pip install \"cbor2>=5.4,<6\")"
                .into(),
        ),
        Ok(o) if !o.status.success() => Err(format!(
            "python3 lacks pycose/cbor2/cryptography (pip install \"pycose==1.1.0\" \"cbor2>=5.4,<6\"): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )),
        Ok(_) => Ok(()),
    }
}

#[test]
fn pycose_opens_isnad_envelopes_and_isnad_opens_pycose_envelopes() {
    if let Err(why) = python_ready() {
        if std::env::var("ISNAD_SKIP_INTEROP").as_deref() != Ok("1") {
            panic!(
                "COSE interop test cannot run: {why}\n\
                 install the Python tools (README, \"Tests\"), or opt out with ISNAD_SKIP_INTEROP=1"
            );
        }
        eprintln!("SKIPPED cose_interop (ISNAD_SKIP_INTEROP=1): {why}");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/cose_interop.py");
    // (d) envelopes signed in a SoftHSM2 token (federation.md §14); the
    // token directory is this test's, `SOFTHSM2_CONF` goes to the children.
    let softhsm = tempfile::tempdir().unwrap();
    let token_args =
        match isnad_pkcs11::softhsm::init_tokens(softhsm.path(), &["interop"], "4711-interop") {
            Ok(module) => {
                let pin = softhsm.path().join("pin");
                std::fs::write(&pin, "4711-interop\n").unwrap();
                vec![
                    "--pkcs11-token".to_owned(),
                    "interop".to_owned(),
                    "--pkcs11-module".to_owned(),
                    module.display().to_string(),
                    "--pin-file".to_owned(),
                    pin.display().to_string(),
                ]
            }
            Err(isnad_pkcs11::softhsm::Missing(what))
                if std::env::var("ISNAD_SKIP_PKCS11").as_deref() == Ok("1") =>
            {
                eprintln!("SKIPPED the token-signed envelopes (ISNAD_SKIP_PKCS11=1): {what}");
                Vec::new()
            }
            Err(isnad_pkcs11::softhsm::Missing(what)) => {
                panic!("{what}; ISNAD_SKIP_PKCS11=1 skips the token-signed envelopes")
            }
        };
    let out = Command::new("python3")
        .arg(&script)
        .args(["--isnad", BIN])
        .args(&token_args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cose_interop.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Every check printed a line; make sure the script really ran them all.
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(passed >= 100, "only {passed} checks ran:\n{stdout}");
    assert!(stdout.contains("cose_interop: 0 failed"), "{stdout}");
    if !token_args.is_empty() {
        for sig in ["ed25519", "es256"] {
            assert!(
                stdout.lines().any(|l| l.starts_with("ok ")
                    && l.contains(&format!("(d) token-signed {sig} "))
                    && l.contains("pycose verified")),
                "no pycose-verified token-signed {sig} envelope:\n{stdout}"
            );
        }
    }
}
