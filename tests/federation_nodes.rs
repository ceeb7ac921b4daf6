//! The real binary end to end: a federation built with the CLI (roots,
//! `isnad init`, directories, trust), three node processes (two Iraqi
//! agencies, one French) exchanging messages all ways through the local API,
//! then each exported audit log verified and both ends of every exchange
//! found in the logs. Also: the demo command as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::net::SocketAddr;

use common::*;
use std::time::{Duration, Instant};

use isnad_log::EventType;

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("JSON output")
}

fn intel_body(text: &str) -> serde_json::Value {
    serde_json::json!({
        "share-id": "00112233445566778899aabbccddeeff",
        "handling": "H1", "source-grading": "B", "information-grading": 2, "tlp": "amber",
        "classification": "RESTRICTED", "summary": text, "content": text,
    })
}

#[test]
fn three_node_processes_exchange_all_ways_and_logs_record_both_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    ok(&[
        "directory",
        "root-init",
        "--country",
        "IQ",
        "--out",
        p(&base.join("iq-root")),
    ]);
    ok(&[
        "directory",
        "root-init",
        "--country",
        "FR",
        "--out",
        p(&base.join("fr-root")),
    ]);
    let mut nodes: Vec<NodeProc> = Vec::new();
    for (id, cc) in [
        ("iq.moi.ahtd", "IQ"),
        ("iq.moj.ca", "IQ"),
        ("fr.mj.bepi", "FR"),
    ] {
        let dir = base.join(id);
        let quic = SocketAddr::from(([127, 0, 0, 1], udp_port()));
        let api = SocketAddr::from(([127, 0, 0, 1], tcp_port()));
        ok(&[
            "init",
            "--dir",
            p(&dir),
            "--agency",
            id,
            "--country",
            cc,
            "--listen",
            &quic.to_string(),
            "--api",
            &api.to_string(),
        ]);
        let draft = base.join(format!("{}.json", &id[..2]));
        let role = if id.contains("moi") {
            "law-enforcement"
        } else {
            "central-authority"
        };
        ok(&[
            "directory",
            "add-node",
            "--draft",
            p(&draft),
            "--node",
            p(&dir),
            "--role",
            role,
            "--endpoint",
            &quic.to_string(),
            "--name",
            "ar=وزارة",
            "--name",
            &format!("en={id}"),
        ]);
        if id == "iq.moi.ahtd" {
            // Witnessed by both other nodes, 2 of 2 (spec/witness.md §6).
            let cfg = dir.join("config.toml");
            let text = std::fs::read_to_string(&cfg).unwrap();
            assert!(text.contains("witnesses = []"), "{text}");
            let text = text.replace(
                "witnesses = []",
                "witnesses = [\"iq.moj.ca\", \"fr.mj.bepi\"]",
            );
            std::fs::write(&cfg, text.replace("quorum = 0", "quorum = 2")).unwrap();
        }
        nodes.push(NodeProc::new(id, dir, quic, api, None));
    }
    for cc in ["iq", "fr"] {
        let draft = base.join(format!("{cc}.json"));
        ok(&[
            "directory",
            "allow",
            "--draft",
            p(&draft),
            "--id",
            &format!("{cc}-all"),
        ]);
        ok(&[
            "directory",
            "sign",
            "--root-key",
            p(&base.join(format!("{cc}-root/root.key.pem"))),
            "--draft",
            p(&draft),
            "--version",
            "1",
            "--out",
            p(&base.join(format!("{cc}.cose"))),
        ]);
    }
    let shown = ok(&[
        "directory",
        "show",
        p(&base.join("iq.cose")),
        "--root",
        p(&base.join("iq-root/root.pub.cose")),
    ]);
    assert!(
        shown.contains("وزارة") && shown.contains("iq.moj.ca"),
        "{shown}"
    );
    // A directory checked against the wrong root is refused.
    assert!(!isnad(&[
        "directory",
        "show",
        p(&base.join("iq.cose")),
        "--root",
        p(&base.join("fr-root/root.pub.cose"))
    ])
    .status
    .success());
    for n in &nodes {
        let own = &n.id[..2];
        let other = if own == "iq" { "fr" } else { "iq" };
        let trust = n.dir.join("trust");
        ok(&[
            "trust",
            "init",
            "--trust-dir",
            p(&trust),
            "--country",
            own,
            "--root",
            p(&base.join(format!("{own}-root/root.pub.cose"))),
        ]);
        let fp = ok(&[
            "trust",
            "add-partner",
            "--trust-dir",
            p(&trust),
            "--country",
            other,
            "--root",
            p(&base.join(format!("{other}-root/root.pub.cose"))),
        ]);
        assert!(fp.contains("fingerprint"), "{fp}");
        ok(&[
            "trust",
            "import",
            "--trust-dir",
            p(&trust),
            p(&base.join("iq.cose")),
        ]);
        ok(&[
            "trust",
            "import",
            "--trust-dir",
            p(&trust),
            p(&base.join("fr.cose")),
        ]);
    }
    for n in &mut nodes {
        n.start();
    }
    for n in &nodes {
        n.wait_api();
    }
    // Every node sends one message to every other node.
    let payload = base.join("intel.json");
    let mut sent = Vec::new();
    for from in &nodes {
        for to in &nodes {
            if from.id == to.id {
                continue;
            }
            std::fs::write(
                &payload,
                intel_body(&format!("{} to {}", from.id, to.id)).to_string(),
            )
            .unwrap();
            let id = ok(&[
                "send",
                "--config",
                p(&from.config()),
                "--to",
                &to.id,
                "--kind",
                "intel-share",
                "--payload",
                p(&payload),
            ])
            .trim()
            .to_owned();
            assert_eq!(id.len(), 32, "message id {id:?}");
            sent.push((from.id.clone(), to.id.clone(), id));
        }
    }
    // All delivered with a receipt.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (from, _, id) in &sent {
        let n = nodes.iter().find(|n| n.id == *from).unwrap();
        loop {
            let st = json(&["status", "--config", p(&n.config()), id, "--json"]);
            if st["state"] == "delivered" {
                assert!(
                    st["peer_log_index"].is_u64() && st["receipt_hex"].is_string(),
                    "{st}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{id} not delivered: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // iq.moi.ahtd's checkpoint is cosigned by both witnesses; the served
    // checkpoint carries their lines and `witness status` says so.
    let ahtd = nodes.iter().find(|n| n.id == "iq.moi.ahtd").unwrap();
    ok(&["checkpoint", "--config", p(&ahtd.config()), "--now"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = isnad(&["witness", "status", "--config", p(&ahtd.config()), "--json"]);
        assert_eq!(o.status.code(), Some(0), "no fork is recorded");
        let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if st["own"]["witnessed"] == true {
            assert_eq!(
                st["own"]["cosigned_by"].as_array().unwrap().len(),
                2,
                "{st}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not witnessed: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let served = ok(&["checkpoint", "--config", p(&ahtd.config())]);
    for w in ["iq.moj.ca/witness", "fr.mj.bepi/witness"] {
        assert!(served.contains(&format!("\u{2014} {w} ")), "{served}");
    }
    let bepi = nodes.iter().find(|n| n.id == "fr.mj.bepi").unwrap();
    let st = json(&["witness", "status", "--config", p(&bepi.config()), "--json"]);
    assert_eq!(st["witnessed"][0]["origin"], "iq.moi.ahtd/audit", "{st}");
    // Each inbox holds exactly the two messages addressed to it, readable.
    for n in &nodes {
        let inbox = json(&["inbox", "--config", p(&n.config()), "--json"]);
        let ids: Vec<&str> = inbox
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = sent
            .iter()
            .filter(|s| s.1 == n.id)
            .map(|s| s.2.as_str())
            .collect();
        assert_eq!(ids.len(), expected.len(), "{} inbox {inbox}", n.id);
        for id in expected {
            assert!(ids.contains(&id));
            let shown = json(&["show", "--config", p(&n.config()), id]);
            assert_eq!(shown["message"]["to"], n.id);
            assert!(shown["message"]["body"]["content"]
                .as_str()
                .unwrap()
                .ends_with(n.id.as_str()));
        }
    }
    for n in &mut nodes {
        n.stop();
    }
    // Each log exports and verifies offline; both ends of every exchange are there.
    let mut logs = std::collections::BTreeMap::new();
    for n in &nodes {
        n.export_and_verify_log();
        let entries = n.log_entries();
        logs.insert(n.id.as_str(), entries);
    }
    for (from, to, id) in &sent {
        let mid = isnad_envelope::MessageId::from_hex(id).unwrap();
        let find = |who: &str, ev: EventType| {
            logs[who]
                .iter()
                .find(|e| e.event == ev && e.message_id == Some(mid))
                .cloned()
        };
        let s = find(from, EventType::Sent).expect("sent");
        let rr = find(from, EventType::ReceiptReceived).expect("receipt-received");
        let r = find(to, EventType::Received).expect("received");
        let rs = find(to, EventType::ReceiptSent).expect("receipt-sent");
        assert_eq!(s.envelope_sha256, r.envelope_sha256);
        assert_eq!(rr.peer_index, Some(r.seq));
        assert_eq!(rs.peer_index, Some(r.seq));
    }
}

#[test]
fn demo_runs_as_a_user_would_and_its_logs_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("demo");
    let o = isnad(&["demo", "--keep", p(&keep)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "demo failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("DEMO PASSED"));
    // Every node's checkpoint is printed cosigned by the three others as
    // witnesses; each cosignature verifies under the witness key the
    // directory lists (keys/witness.pub).
    let agencies = ["iq.moi.ahtd", "iq.moj.ca", "fr.mj.bepi", "fr.pn.ocrtis"];
    for agency in agencies {
        let head = format!("  ok  {agency}: checkpoint at size ");
        let at = out
            .find(&head)
            .unwrap_or_else(|| panic!("no checkpoint of {agency}:\n{out}"));
        let first = out[at..].lines().next().unwrap();
        assert!(
            first.ends_with("cosigned by 3 of 3 witnesses (quorum 2): witnessed"),
            "{first}"
        );
        let note: String = out[at..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("       "))
            .map(|l| format!("{}\n", &l[7..]))
            .collect();
        assert!(note.starts_with(&format!("{agency}/audit\n")), "{note}");
        for witness in agencies.iter().filter(|w| **w != agency) {
            let text =
                std::fs::read_to_string(keep.join(witness).join("keys/witness.pub")).unwrap();
            let key = isnad_log::VerifierKey::parse(text.trim()).unwrap();
            isnad_log::note::verify_cosignature(note.as_bytes(), &key)
                .unwrap_or_else(|e| panic!("{witness}'s cosignature of {agency}: {e}\n{note}"));
        }
    }
    for agency in agencies {
        let v = ok(&[
            "audit",
            "verify",
            p(&keep.join("exports").join(agency)),
            "--log-key",
            p(&keep.join(agency).join("keys/log.pub")),
        ]);
        assert!(v.starts_with("OK"), "{agency}: {v}");
    }
    // The real nodes' exports cross-check clean, and the report over all
    // four is written without findings.
    let export = |a: &str| keep.join("exports").join(a);
    let key = |a: &str| keep.join(a).join("keys/log.pub");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "audit",
        "cross-check",
        p(&export("iq.moj.ca")),
        p(&export("fr.mj.bepi")),
        "--log-key-a",
        p(&key("iq.moj.ca")),
        "--log-key-b",
        p(&key("fr.mj.bepi")),
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["clean"], true, "{j:#}");
    assert!(j["counts"]["matched"].as_u64().unwrap() >= 2, "{j:#}");
    assert_eq!(j["counts"]["matched"], j["counts"]["exchanges"], "{j:#}");
    let agencies = ["iq.moi.ahtd", "iq.moj.ca", "fr.mj.bepi", "fr.pn.ocrtis"];
    let html = tmp.path().join("report.html");
    let mut args = vec!["audit".to_owned(), "report".to_owned()];
    for a in agencies {
        args.push(p(&export(a)).to_owned());
    }
    for a in agencies {
        args.extend(["--log-key".to_owned(), p(&key(a)).to_owned()]);
    }
    args.extend(["--out".to_owned(), p(&html).to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok(&args);
    assert!(
        r.contains("4 log(s), 0 not verified") && r.contains("no findings"),
        "{r}"
    );
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("id=\"cross-checks\""));
    // The kept federation is usable: its directories verify.
    ok(&[
        "directory",
        "show",
        p(&keep.join("iq-directory.cose")),
        "--root",
        p(&keep.join("iq-root/root.pub.cose")),
    ]);
}
