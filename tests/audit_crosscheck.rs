//! `isnad audit cross-check` and `isnad audit report` on real exports: two
//! agencies' logs are written and exported with the library (the entries the
//! nodes write for each exchange), damaged on purpose, re-signed so that each
//! export verifies on its own, and given to the real binary.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{isnad, p};
use isnad_log::crosscheck::Side;
use isnad_log::note::SignerKey;
use isnad_log::testing::{digest, message_id, ExportPair as _, Pair};
use isnad_log::{Entry, EventType};

const T: u64 = 1_790_000_000_000;

/// Both logs exported and their verifier keys written, in a temp dir.
struct Exports {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    key_a: PathBuf,
    key_b: PathBuf,
}

fn federation() -> Pair {
    Pair::federation(T)
}

fn export(pair: &Pair) -> Exports {
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let mut paths = Vec::new();
    for (side, agency) in [(Side::A, &pair.a), (Side::B, &pair.b)] {
        let key = SignerKey::generate(&format!("{agency}/audit"), &rng).unwrap();
        let root = dir.path().join(agency.as_str());
        let out = root.join("export");
        pair.export(side, &root.join("log"), &key, &out).unwrap();
        let pubfile = root.join("log.pub");
        std::fs::write(&pubfile, format!("{}\n", key.verifier())).unwrap();
        paths.push((out, pubfile));
    }
    let (b, key_b) = paths.pop().unwrap();
    let (a, key_a) = paths.pop().unwrap();
    Exports {
        _dir: dir,
        a,
        b,
        key_a,
        key_b,
    }
}

/// Runs `isnad audit cross-check` on the exports, with `extra` arguments.
fn run(e: &Exports, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "audit",
        "cross-check",
        p(&e.a),
        p(&e.b),
        "--verifier-key-a",
        p(&e.key_a),
        "--verifier-key-b",
        p(&e.key_b),
    ];
    args.extend_from_slice(extra);
    isnad(&args)
}

/// Runs cross-check with --json; returns exit code and the parsed output.
fn cross_check(e: &Exports) -> (i32, serde_json::Value) {
    let o = run(e, &["--json"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let json = serde_json::from_str(&out).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {out}{}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap(), json)
}

fn verifies(dir: &Path, key: &Path) -> bool {
    isnad(&["audit", "verify", p(dir), "--verifier-key", p(key)])
        .status
        .success()
}

/// (class, message id) of every finding.
fn classes(j: &serde_json::Value) -> Vec<(String, String)> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap().to_owned(),
                f["message_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(j: &serde_json::Value, class: &str, n: u8) -> bool {
    classes(j).contains(&(class.to_owned(), message_id(n).to_hex()))
}

fn position(entries: &[Entry], event: EventType, n: u8) -> usize {
    entries
        .iter()
        .position(|e| e.event == event && e.message_id == Some(message_id(n)))
        .unwrap()
}

#[test]
fn consistent_exports_are_clean() {
    let e = export(&federation());
    let (code, j) = cross_check(&e);
    assert_eq!(code, 0, "{j:#}");
    assert_eq!(j["clean"], true);
    assert_eq!(j["counts"]["exchanges"], 5);
    assert_eq!(j["counts"]["matched"], 4);
    assert_eq!(j["counts"]["refused"], 1);
    assert_eq!(j["a"]["origin"], "iq.moj.ca/audit");
    // The text form says so too.
    let o = run(&e, &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(text.contains("5 exchanges: 4 matched, 1 refused"), "{text}");
    assert!(
        text.contains("OK: both ends of every exchange agree"),
        "{text}"
    );
}

#[test]
fn deleted_received_entry_is_found_though_each_log_verifies() {
    let mut pair = federation();
    let i = position(&pair.b_entries, EventType::Received, 2);
    pair.b_entries.remove(i);
    pair.renumber(Side::B);
    let e = export(&pair);
    assert!(verifies(&e.a, &e.key_a) && verifies(&e.b, &e.key_b));
    let (code, j) = cross_check(&e);
    assert_eq!(code, 2, "{j:#}");
    assert_eq!(j["clean"], false);
    assert!(has(&j, "sent-not-received", 2), "{j:#}");
    assert!(has(&j, "receipt-index-mismatch", 2), "{j:#}");
    assert!(!has(&j, "sent-not-received", 1));
}

#[test]
fn forged_receipt_is_found() {
    let mut pair = federation();
    // A logs a receipt for message 9, naming B's received entry of message 1.
    let target = position(&pair.b_entries, EventType::Received, 1) as u64;
    pair.sent(Side::A, 9, T + 5_000);
    pair.receipt(Side::A, 9, T + 5_040, target);
    let e = export(&pair);
    let (code, j) = cross_check(&e);
    assert_eq!(code, 2, "{j:#}");
    assert!(has(&j, "receipt-index-mismatch", 9), "{j:#}");
    assert!(has(&j, "sent-not-received", 9), "{j:#}");
    let f = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["class"] == "receipt-index-mismatch")
        .unwrap();
    assert_eq!(f["entries"][1]["log"], "b");
    assert_eq!(f["entries"][1]["index"], target);
    assert_eq!(f["entries"][1]["event"], "received");
}

#[test]
fn digest_mismatch_is_found() {
    let mut pair = federation();
    let i = position(&pair.b_entries, EventType::Received, 5);
    pair.b_entries[i].envelope_sha256 = Some(digest(77));
    let e = export(&pair);
    let (code, j) = cross_check(&e);
    assert_eq!(code, 2, "{j:#}");
    assert_eq!(
        classes(&j),
        vec![("digest-mismatch".to_owned(), message_id(5).to_hex())]
    );
    assert_eq!(j["counts"]["with_findings"], 1);
}

#[test]
fn an_export_that_does_not_verify_fails_and_bad_usage_is_exit_1() {
    let e = export(&federation());
    let bundle =
        e.b.join("tile/entries/000.p")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bundle, bytes).unwrap();
    let (code, j) = cross_check(&e);
    assert_eq!(code, 2, "{j:#}");
    assert_eq!(j["clean"], false);
    assert_eq!(j["invalid"][0]["log"], "b");

    let o = isnad(&[
        "audit",
        "cross-check",
        p(&e.a),
        p(&e.b),
        "--verifier-key-a",
        p(&e.a.join("no-such-key")),
        "--verifier-key-b",
        p(&e.key_b),
    ]);
    assert_eq!(o.status.code(), Some(1));
    // The same log twice is a usage error.
    let o = isnad(&[
        "audit",
        "cross-check",
        p(&e.a),
        p(&e.a),
        "--verifier-key-a",
        p(&e.key_a),
        "--verifier-key-b",
        p(&e.key_a),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

/// `isnad audit report` over two exports with a finding, rendered by a
/// headless Chromium. Fails when no Chromium is installed, unless the run
/// opts out with ISNAD_SKIP_BROWSER=1 (then it prints that it skipped).
#[test]
fn report_renders_in_a_headless_browser() {
    let mut pair = federation();
    let i = position(&pair.b_entries, EventType::Received, 5);
    pair.b_entries[i].envelope_sha256 = Some(digest(77));
    let mut rej = Entry::new(EventType::Rejected, T + 10_000);
    rej.sender = Some(pair.a.clone());
    rej.recipient = Some(pair.b.clone());
    rej.reason = Some("unauthentic <&>".into());
    pair.push(Side::B, rej);
    let e = export(&pair);
    let html = e.a.parent().unwrap().parent().unwrap().join("report.html");
    let o = isnad(&[
        "audit",
        "report",
        p(&e.a),
        p(&e.b),
        "--verifier-key",
        p(&e.key_a),
        "--verifier-key",
        p(&e.key_b),
        "--out",
        p(&html),
    ]);
    // Written, but the cross-check has a finding.
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("digest-mismatch"));
    assert!(page.contains("unauthentic &lt;&amp;&gt;"));

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("ISNAD_SKIP_BROWSER").as_deref() == Ok("1"),
            "no chromium or chromium-browser on PATH: install one (README, \"Tests\"), \
             or opt out with ISNAD_SKIP_BROWSER=1"
        );
        eprintln!(
            "SKIPPED (ISNAD_SKIP_BROWSER=1): no chromium on PATH; the report was not rendered"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let run = |extra: &[&str]| {
        let o = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                &format!("--user-data-dir={}", profile.path().display()),
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    // The DOM as the browser parsed it.
    let dom = String::from_utf8_lossy(&run(&["--dump-dom"]).stdout).into_owned();
    assert!(dom.contains("<table id=\"logs-table\">"), "{dom}");
    assert!(dom.matches("<svg").count() >= 5, "{dom}");
    assert!(
        dom.contains("<td class=\"bad\">digest-mismatch</td>"),
        "{dom}"
    );
    assert!(dom.contains("iq.moj.ca/audit ↔ fr.mj.bepi/audit"), "{dom}");
    assert!(dom.contains("unauthentic &lt;&amp;&gt;"), "{dom}");
    // 5 exchanges, 3 matched, 1 refused, 0 undelivered, 0 in flight, 1 with findings.
    assert!(
        dom.contains(
            "<td class=\"n\">5</td><td class=\"n\">3</td><td class=\"n\">1</td>\
<td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">1</td>"
        ),
        "{dom}"
    );
    // And a picture of it.
    let png = profile.path().join("report.png");
    run(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1200,2400",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    if let Ok(keep) = std::env::var("ISNAD_KEEP_REPORT_PNG") {
        std::fs::copy(&png, keep).unwrap();
    }
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
