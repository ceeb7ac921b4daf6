//! Idempotent submissions with the real binary (spec/api.yaml
//! `Idempotency-Key`): the connection to the node's API breaks after the
//! node stored the message and before the client read the answer; `isnad
//! send` retries with the same key and prints the id of the one message
//! stored. Then, across a node restart: the same key and payload give the
//! same id again (nothing new sent), the same key with another payload is
//! refused with 409 and the JSON error of api.yaml.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

#[test]
fn a_send_whose_answer_is_lost_is_retried_and_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (from, to) = ("iq.moi.ahtd", "iq.moj.ca");
    let mut fed = Federation::new(tmp.path(), &[from, to]);
    let node = &mut fed.nodes[0];
    node.start();
    node.wait_api();

    // A proxy in front of the API that, on the first connection, passes the
    // request on and drops the client as soon as the node starts answering
    // (the node has committed the message by then); later connections pass.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let upstream = node.api;
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&connections);
    std::thread::spawn(move || {
        for client in proxy.incoming() {
            let Ok(client) = client else { return };
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            std::thread::spawn(move || pipe(client, upstream, first));
        }
    });
    let config = std::fs::read_to_string(node.config())
        .unwrap()
        .replace(&node.api.to_string(), &proxy_addr.to_string());
    let proxied = node.dir.join("config-proxied.toml");
    std::fs::write(&proxied, config).unwrap();

    let payload = node.dir.join("payload.json");
    let body = |text: &str| {
        serde_json::json!({
            "share-id": "00112233445566778899aabbccddeeff",
            "handling": "H0", "source-grading": "A", "information-grading": 1, "tlp": "green",
            "classification": "RESTRICTED", "summary": text, "content": text,
        })
        .to_string()
    };
    std::fs::write(&payload, body("once")).unwrap();
    let send = |config: &std::path::Path, key: &[&str]| {
        let args = ["send", "--config", p(config), "--to", to];
        let more = ["--kind", "intel-share", "--payload", p(&payload)];
        isnad(&[&args[..], &more[..], key].concat())
    };
    let started = std::time::Instant::now();
    let o = send(&proxied, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "isnad send failed: {stderr}");
    let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the send was not retried"
    );
    assert!(stderr.contains("retrying"), "{stderr}");
    eprintln!("send with a lost answer: {:?}", started.elapsed());
    let main_config = fed.nodes[0].config();
    let outbox = || -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["outbox", "--config", p(&main_config), "--json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(outbox(), std::slice::from_ref(&id), "stored exactly once");

    // Durable across a restart: the same key and payload answer the same
    // id; the same key with another payload is refused.
    let node = &mut fed.nodes[0];
    node.stop();
    node.start();
    node.wait_api();
    let config = node.config();
    let key = ["--idempotency-key", "case-2026-117-request-1"];
    let first = send(&config, &key);
    assert!(first.status.success());
    let first = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    let again = send(&config, &key);
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), first);
    node.stop();
    node.start();
    node.wait_api();
    let after_restart = send(&config, &key);
    assert!(after_restart.status.success());
    assert_eq!(String::from_utf8_lossy(&after_restart.stdout).trim(), first);
    std::fs::write(&payload, body("something else")).unwrap();
    let reused = send(&config, &key);
    assert!(!reused.status.success());
    let err = String::from_utf8_lossy(&reused.stderr);
    assert!(err.contains("409"), "{err}");
    // The raw answer is the JSON error of spec/api.yaml.
    let token = node.token();
    let raw = http_post(
        node.api,
        &token,
        "case-2026-117-request-1",
        &format!(
            r#"{{"to":"{to}","kind":"intel-share","body":{}}}"#,
            body("something else")
        ),
    );
    assert!(raw.starts_with("HTTP/1.1 409"), "{raw}");
    let json: serde_json::Value =
        serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["error"], "idempotency-key-reused", "{json}");
    assert!(json["message"].is_string(), "{json}");
    let mut ids = outbox();
    ids.sort();
    let mut want = vec![id, first];
    want.sort();
    assert_eq!(ids, want, "two messages in all: one per key");
    fed.nodes[0].stop();
}

/// Copies `client` ↔ the node at `upstream`; with `drop_answer`, closes the
/// client when the first byte of the node's answer arrives, unread.
fn pipe(mut client: TcpStream, upstream: std::net::SocketAddr, drop_answer: bool) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    if drop_answer {
        let mut b = [0u8; 1];
        let _ = server.read(&mut b);
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    } else {
        let _ = std::io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Write);
    }
}

/// `POST /v1/messages` with an Idempotency-Key; the raw response.
fn http_post(api: std::net::SocketAddr, token: &str, key: &str, body: &str) -> String {
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\
         Idempotency-Key: \"{key}\"\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
