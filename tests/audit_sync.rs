//! The live, read-only log: a node serves its checkpoint and tiles over
//! HTTP as the C2SP tlog-tiles read path (`[log_http]`), `isnad audit
//! sync` mirrors it incrementally while the node appends under load and
//! `isnad audit verify --previous` checks only what is new each time; a
//! forked log is caught by `sync` with both checkpoints kept; paths
//! outside the layout and tiles not yet there are 404; a network address
//! is refused without `expose_to_network`. Real processes, loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// GET `path` from `addr` over a raw connection (the path exactly as
/// given: no client normalises it); returns status, headers and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"));
    let head = String::from_utf8_lossy(&resp[..split]).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (status, head, resp[split + 4..].to_vec())
}

/// The config text `init` wrote with `line` added to its `[log_http]`
/// section (off: `expose_to_network = false` only).
fn with_log_http(cfg: &str, line: &str) -> String {
    let section = "[log_http]\nexpose_to_network = false\n";
    assert!(cfg.contains(section), "{cfg}");
    cfg.replace(
        section,
        &format!("[log_http]\n{line}\nexpose_to_network = false\n"),
    )
}

/// `isnad send` of an intel-share from client `t` (each client its own
/// payload file).
fn send(node: &NodeProc, t: u32, n: u64) {
    let payload = node.dir.join(format!("payload-{t}.json"));
    let text = format!("load {t} {n}");
    let body = serde_json::json!({
        "share-id": "00112233445566778899aabbccddeeff",
        "handling": "H0", "source-grading": "A", "information-grading": 1, "tlp": "green",
        "classification": "RESTRICTED", "summary": text, "content": text,
    });
    std::fs::write(&payload, body.to_string()).unwrap();
    let config = node.config();
    ok(&[
        "send",
        "--config",
        p(&config),
        "--to",
        "iq.moj.ca",
        "--kind",
        "intel-share",
        "--payload",
        p(&payload),
    ]);
}

/// `isnad audit sync URL DIR --verifier-key KEY`.
fn sync(url: &str, dir: &Path, key: &Path) -> std::process::Output {
    isnad(&["audit", "sync", url, p(dir), "--verifier-key", p(key)])
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The number before `word` in `s` (e.g. "3 entry bundles").
fn number_before(s: &str, word: &str) -> u64 {
    let at = s.find(word).unwrap_or_else(|| panic!("no {word:?} in {s}"));
    s[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {word:?} in {s}"))
}

/// The size of the checkpoint note in `file`.
fn size_of(file: &Path) -> u64 {
    let note = std::fs::read_to_string(file).unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[test]
fn auditor_syncs_while_the_node_appends_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    let mut fed = Federation::new(base, &["iq.moi.ahtd", "iq.moj.ca"]);
    let served = SocketAddr::from(([127, 0, 0, 1], tcp_port()));
    let config = fed.nodes[0].config();
    let cfg = std::fs::read_to_string(&config).unwrap();
    let cfg = cfg.replace("interval_secs = 60", "interval_secs = 1");
    let cfg = with_log_http(&cfg, &format!("listen = \"{served}\""));
    std::fs::write(&config, cfg).unwrap();
    for n in fed.nodes.iter_mut() {
        n.start();
    }
    fed.nodes[0].wait_api();
    fed.nodes[1].wait_api();
    let url = format!("http://{served}");
    let key = fed.nodes[0].dir.join("keys/log.pub");
    let mirror = base.join("mirror");

    // Load: two clients submitting messages without pause.
    let fed = Arc::new(fed);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let (fed, stop) = (Arc::clone(&fed), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    send(&fed.nodes[0], t, sent);
                    sent += 1;
                }
                sent
            })
        })
        .collect();

    // The auditor syncs and verifies repeatedly while the log grows.
    let start = Instant::now();
    let mut sizes = Vec::new();
    let mut bundles_fetched = Vec::new();
    let mut verified_from = Vec::new();
    let previous = base.join("previous-checkpoint");
    while sizes.len() < 6 || *sizes.last().unwrap() < 600 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the log did not grow to 600 entries: {sizes:?}"
        );
        let had = mirror.join("checkpoint").is_file();
        if had {
            std::fs::copy(mirror.join("checkpoint"), &previous).unwrap();
        }
        let o = sync(&url, &mirror, &key);
        let out = text(&o);
        assert!(o.status.success() && out.starts_with("OK: "), "{out}");
        sizes.push(size_of(&mirror.join("checkpoint")));
        bundles_fetched.push(number_before(&out, "entry bundle"));
        if had {
            let v = isnad(&[
                "audit",
                "verify",
                p(&mirror),
                "--verifier-key",
                p(&key),
                "--previous",
                p(&previous),
            ]);
            let vout = text(&v);
            assert!(v.status.success() && vout.starts_with("OK: "), "{vout}");
            let from = number_before(&vout, "on\n");
            assert_eq!(from, size_of(&previous) / 256 * 256, "{vout}");
            verified_from.push(from);
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    eprintln!("mirror sizes {sizes:?}, bundles fetched {bundles_fetched:?}, verified from {verified_from:?}");
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = senders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(sent > 0);

    // The mirror grew with the log and each sync fetched only what was
    // new: never more bundles than the new entries touch.
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(sizes.windows(2).any(|w| w[0] < w[1]), "{sizes:?}");
    for (i, w) in sizes.windows(2).enumerate() {
        let touched = if w[1] == w[0] {
            0
        } else {
            w[1].div_ceil(256) - w[0] / 256
        };
        assert!(
            bundles_fetched[i + 1] <= touched,
            "{sizes:?} {bundles_fetched:?}"
        );
    }
    assert!(verified_from.iter().any(|&f| f > 0), "{verified_from:?}");
    // And the whole mirror verifies from scratch too.
    let v = isnad(&["audit", "verify", p(&mirror), "--verifier-key", p(&key)]);
    assert!(v.status.success(), "{}", text(&v));

    // A witness quorum the served checkpoint lacks (the sender has no
    // witnesses configured): refused before anything is fetched, the
    // mirror unchanged.
    let held = std::fs::read(mirror.join("checkpoint")).unwrap();
    let witness = fed.nodes[1].dir.join("keys/witness.pub");
    let o = isnad(&[
        "audit",
        "sync",
        &url,
        p(&mirror),
        "--verifier-key",
        p(&key),
        "--witness-key",
        p(&witness),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).starts_with("FAILED: "), "{}", text(&o));
    assert_eq!(std::fs::read(mirror.join("checkpoint")).unwrap(), held);

    // The read path itself: cache headers, 404 for anything outside the
    // layout or not there yet, and no way out of it.
    let (status, head, body) = get(served, "/checkpoint");
    assert_eq!(status, 200);
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with("iq.moi.ahtd/audit\n"));
    let (status, head, body) = get(served, "/tile/0/000");
    assert_eq!(status, 200);
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    assert_eq!(body, std::fs::read(mirror.join("tile/0/000")).unwrap());
    let (status, head, body) = get(served, "/tile/entries/000");
    assert_eq!(status, 200);
    assert!(head.contains("immutable"), "{head}");
    assert_eq!(
        body,
        std::fs::read(mirror.join("tile/entries/000")).unwrap()
    );
    let (status, head, _) = get(served, "/tile/0/000.p/7");
    assert_eq!(status, 200, "a prefix of a full tile");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let token = fed.nodes[0].token();
    for path in [
        "/tile/0/x001/000",
        "/tile/entries/x999/999",
        "/tile/1/999.p/1",
        "/tile/7/000",
        "/tile/0/0",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/../../config.toml",
        "/tile/../keys/api.token",
        "/tile/entries/%2e%2e/%2e%2e/keys/api.token",
        "/../keys/api.token",
        "/keys/api.token",
        "/config.toml",
        "/log/checkpoint",
        "/tile/",
        "/",
    ] {
        let (status, _, body) = get(served, path);
        assert_eq!(status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains(&token),
            "{path} leaked the API token"
        );
    }
}

/// A tiny static HTTP server over the export directory `root` names
/// (the tlog-tiles layout is the same), for a log that forks.
fn serve_dir(root: Arc<Mutex<PathBuf>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req).into_owned();
            let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
            assert!(!path.contains(".."), "{path}");
            let file = root.lock().unwrap().join(path.trim_start_matches('/'));
            let resp = match std::fs::read(&file) {
                Ok(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                Err(_) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
            };
            let _ = s.write_all(&resp);
        }
    });
    addr
}

#[test]
fn a_forked_log_is_caught_by_sync_with_both_checkpoints_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    ok(&[
        "audit",
        "keygen",
        "--name",
        "iq.moi.ahtd/audit",
        "--out",
        p(&base.join("keys")),
    ]);
    let key = base.join("keys/log.pub");
    let append = |log: &str, count: &str, threads: &str| {
        ok(&[
            "audit",
            "append-test",
            "--log",
            p(&base.join(log)),
            "--count",
            count,
            "--threads",
            threads,
        ]);
    };
    let export = |log: &str, out: &str| -> PathBuf {
        let out = base.join(out);
        ok(&[
            "audit",
            "export",
            "--log",
            p(&base.join(log)),
            "--signer-key",
            p(&base.join("keys/log.key")),
            "--out",
            p(&out),
        ]);
        out
    };
    // One key, two histories: log a (300, then 600 entries) and log b
    // (600 other entries, then 900).
    append("a", "300", "1");
    let a300 = export("a", "a300");
    append("a", "300", "1");
    let a600 = export("a", "a600");
    append("b", "300", "2");
    let b600 = export("b", "b600");
    append("b", "300", "1");
    let b900 = export("b", "b900");

    let root = Arc::new(Mutex::new(a300.clone()));
    let url = format!("http://{}", serve_dir(Arc::clone(&root)));
    let mirror = base.join("mirror");
    let o = sync(&url, &mirror, &key);
    assert!(o.status.success(), "{}", text(&o));
    *root.lock().unwrap() = a600.clone();
    let o = sync(&url, &mirror, &key);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    // Only bundles 001 (now full) and 002.p/88 are new.
    assert_eq!(number_before(&out, "entry bundles"), 2, "{out}");
    let held = std::fs::read(mirror.join("checkpoint")).unwrap();
    assert_eq!(held, std::fs::read(a600.join("checkpoint")).unwrap());

    // Same size, another root; then a larger tree that does not extend it.
    for (forked, why) in [(&b600, "same size"), (&b900, "consistency proof fails")] {
        *root.lock().unwrap() = forked.clone();
        let before: Vec<_> = std::fs::read_dir(mirror.join("forks"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        let o = sync(&url, &mirror, &key);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{out}");
        assert!(out.contains("FORK") && out.contains(why), "{out}");
        // Both checkpoints kept, byte for byte; the mirror's unchanged.
        let new: Vec<PathBuf> = std::fs::read_dir(mirror.join("forks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !before.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(
            std::fs::read(new[0].join("previous-checkpoint")).unwrap(),
            held
        );
        assert_eq!(
            std::fs::read(new[0].join("served-checkpoint")).unwrap(),
            std::fs::read(forked.join("checkpoint")).unwrap()
        );
        assert_eq!(std::fs::read(mirror.join("checkpoint")).unwrap(), held);
    }
    // Nothing of the fork stayed under a tile's name: the honest log syncs
    // on, and the mirror verifies.
    *root.lock().unwrap() = a600;
    let o = sync(&url, &mirror, &key);
    assert!(o.status.success(), "{}", text(&o));
    let v = isnad(&["audit", "verify", p(&mirror), "--verifier-key", p(&key)]);
    assert!(v.status.success(), "{}", text(&v));
    // verify --previous of the old checkpoint checks only the new part.
    let v = isnad(&[
        "audit",
        "verify",
        p(&mirror),
        "--verifier-key",
        p(&key),
        "--previous",
        p(&a300.join("checkpoint")),
    ]);
    let vout = text(&v);
    assert!(v.status.success(), "{vout}");
    assert!(
        vout.contains("checked the 344 entries from entry 256 on"),
        "{vout}"
    );
}

#[test]
fn a_network_address_is_refused_without_expose_to_network() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let quic = format!("127.0.0.1:{}", udp_port());
    let api = format!("127.0.0.1:{}", tcp_port());
    ok(&[
        "init",
        "--dir",
        p(&dir),
        "--agency",
        "iq.moi.ahtd",
        "--country",
        "IQ",
        "--listen",
        &quic,
        "--api",
        &api,
    ]);
    let config = dir.join("config.toml");
    let cfg = std::fs::read_to_string(&config).unwrap();
    // Refused when the config is read, before anything is bound: this test
    // never listens on anything but loopback.
    std::fs::write(&config, with_log_http(&cfg, "listen = \"0.0.0.0:7481\"")).unwrap();
    let o = isnad(&["node", "run", "--config", p(&config)]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("log_http.listen 0.0.0.0:7481 is not a loopback address")
            && out.contains("log_http.expose_to_network = true"),
        "{out}"
    );
}
