//! `isnad audit export --config`: a running node exports its own audit log
//! through the local API (`POST /v1/audit/export`), the export verifies
//! with `isnad audit verify`, also with witness cosignature lines on its
//! checkpoint; and the API's error cases, over raw HTTP against the real
//! node: wrong token, non-empty or relative target, unknown `at`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::*;

/// POSTs `body` to `path` at `api` with `token`; returns status and body.
fn post(api: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    (status, resp)
}

fn verify(dir: &std::path::Path, key: &std::path::Path) -> std::process::Output {
    isnad(&["audit", "verify", p(dir), "--verifier-key", p(key)])
}

/// `isnad audit verify` succeeds and reports OK.
fn verified(dir: &std::path::Path, key: &std::path::Path) {
    let v = verify(dir, key);
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && out.starts_with("OK"),
        "{out}{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn running_node_exports_its_log_and_the_export_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut fed = Federation::new(base, &["iq.moi.ahtd", "iq.moj.ca"]);
    for n in fed.nodes.iter_mut() {
        n.start();
    }
    let sender = &fed.nodes[0];
    sender.wait_api();
    let api = sender.api.to_string();
    let api = api.as_str();
    // Two messages, delivered (sent and receipt entries in the sender's log).
    for text in ["first", "second"] {
        let id = sender.send_intel("iq.moj.ca", text);
        sender.wait_status(&id, "delivered", 60);
    }

    // The offline form cannot open the log of the running node.
    let offline = isnad(&[
        "audit",
        "export",
        "--log",
        p(&sender.dir.join("log")),
        "--signer-key",
        p(&sender.dir.join("keys/log.key")),
        "--out",
        p(&base.join("offline")),
    ]);
    assert!(
        String::from_utf8_lossy(&offline.stderr).contains("in use"),
        "the running node's log was opened twice: {}",
        String::from_utf8_lossy(&offline.stderr)
    );

    // Through the running node: a new directory, verified.
    let key = sender.dir.join("keys/log.pub");
    let out = base.join("export");
    let config = sender.config();
    let live = |out: &std::path::Path, more: &[&str]| {
        let args = ["audit", "export", "--config", p(&config), "--out", p(out)];
        isnad(&[&args[..], more].concat())
    };
    let o = live(&out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    verified(&out, &key);
    // Sent and receipt entries of both messages at least.
    let size: u64 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(size >= 4, "{said}");
    let entries = std::fs::read_dir(out.join("tile/entries")).unwrap().count();
    assert!(entries >= 1);

    // The same directory again: refused, nothing overwritten.
    let before = std::fs::read(out.join("checkpoint")).unwrap();
    let again = live(&out, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not an empty directory"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(out.join("checkpoint")).unwrap(), before);

    // An existing empty directory and the latest checkpoint: accepted, verified.
    let latest = base.join("latest");
    std::fs::create_dir(&latest).unwrap();
    let o = live(&latest, &["--latest"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    verified(&latest, &key);

    // A checkpoint with cosignature lines of witnesses the auditor does not
    // know still verifies under the log key (C2SP signed-note: unknown
    // signatures are ignored); a damaged log signature does not.
    let cp = std::fs::read_to_string(out.join("checkpoint")).unwrap();
    let cosig = "— iq.moj.ca/witness AAECAwAAAABnS3tAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\n";
    std::fs::write(out.join("checkpoint"), format!("{cp}{cosig}")).unwrap();
    verified(&out, &key);
    let (text, sigs) = cp.split_once("\n\n").unwrap();
    let own = sigs.lines().next().unwrap();
    // Change one base64 digit inside the signature (not the padding).
    let mut bad: Vec<char> = own.chars().collect();
    let i = bad.len() - 6;
    bad[i] = if bad[i] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    std::fs::write(out.join("checkpoint"), format!("{text}\n\n{cosig}{bad}\n")).unwrap();
    assert_eq!(verify(&out, &key).status.code(), Some(2));

    // API error cases.
    let token = sender.token();
    let token = token.as_str();
    let fresh = base.join("fresh");
    let body = format!(r#"{{"out":{:?}}}"#, p(&fresh));
    let (status, resp) = post(api, "/v1/audit/export", "wrong", &body);
    assert_eq!(status, 401, "{resp}");
    assert!(
        !fresh.exists(),
        "an unauthorized request created the directory"
    );
    let (status, resp) = post(
        api,
        "/v1/audit/export",
        token,
        &format!(r#"{{"out":{:?}}}"#, p(&out)),
    );
    assert_eq!(status, 409, "{resp}");
    assert!(resp.contains("export-target-not-empty"), "{resp}");
    let (status, resp) = post(api, "/v1/audit/export", token, r#"{"out":"relative/dir"}"#);
    assert_eq!(status, 422, "{resp}");
    assert!(resp.contains("bad-export-target"), "{resp}");
    let (status, resp) = post(
        api,
        "/v1/audit/export",
        token,
        &format!(r#"{{"out":{:?},"at":"oldest"}}"#, p(&fresh)),
    );
    assert_eq!(status, 422, "{resp}");
    assert!(!fresh.exists());
    let (status, resp) = post(api, "/v1/audit/export", token, &body);
    assert_eq!(status, 201, "{resp}");
    assert!(resp.contains("\"cosignatures\":0"), "{resp}");
    verified(&fresh, &key);
}
