//! Runs every file in `spec/vectors/cross-check/` (spec/cross-check.md §8):
//! builds both logs from the listed entries, cross-checks them, and compares
//! the outcome with `expected` (clean, counts, and every finding's class,
//! message, direction and entries, in order).
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use isnad_log::{cross_check, leaf_hash, AuditedLog, Checkpoint, Entry, EventType, Tree};
use isnad_types::{AgencyId, MessageId};
use serde_json::{json, Value};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../spec/vectors/cross-check"
);

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    assert_eq!(s.len(), 2 * N, "hex {s}");
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn entry(seq: usize, v: &Value) -> Entry {
    let event = EventType::from_name(v["event"].as_str().unwrap()).unwrap();
    let mut e = Entry::new(event, v["time"].as_u64().unwrap());
    e.seq = seq as u64;
    let text = |k: &str| v.get(k).and_then(Value::as_str);
    e.message_id = text("message_id").map(|h| MessageId::from_bytes(unhex(h)));
    e.sender = text("sender").map(|a| AgencyId::new(a).unwrap());
    e.recipient = text("recipient").map(|a| AgencyId::new(a).unwrap());
    e.envelope_sha256 = text("envelope_sha256").map(unhex);
    e.peer_index = v.get("peer_index").and_then(Value::as_u64);
    e.reason = text("reason").map(str::to_owned);
    if let Some(d) = v.get("detail").and_then(Value::as_object) {
        for (k, x) in d {
            e.detail.insert(k.clone(), x.as_str().unwrap().to_owned());
        }
    }
    e
}

fn log(v: &Value) -> AuditedLog {
    let entries: Vec<Entry> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| entry(i, e))
        .collect();
    let mut tree = Tree::new();
    for e in &entries {
        tree.push(leaf_hash(&e.encode().unwrap()));
    }
    let cp = Checkpoint::new(v["origin"].as_str().unwrap(), tree.size(), tree.root()).unwrap();
    AuditedLog::new(cp, String::new(), entries).unwrap()
}

#[test]
fn every_cross_check_vector() {
    let mut files: Vec<_> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "vectors missing in {DIR}");
    let mut classes = std::collections::BTreeSet::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["type"], "cross-check", "{name}");
        let (a, b) = (log(&v["a"]), log(&v["b"]));
        let got = cross_check(&a, &b, v["skew_ms"].as_u64().unwrap())
            .unwrap()
            .to_json();
        let want = &v["expected"];
        assert_eq!(got["clean"], want["clean"], "{name}: clean");
        assert_eq!(got["counts"], want["counts"], "{name}: counts");
        let strip = |f: &Value| {
            json!({
                "class": f["class"], "message_id": f["message_id"], "sender": f["sender"],
                "recipient": f["recipient"], "entries": f["entries"],
            })
        };
        let got_f: Vec<Value> = got["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(strip)
            .collect();
        let want_f: Vec<Value> = want["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(strip)
            .collect();
        assert_eq!(got_f, want_f, "{name}: findings");
        for f in &got_f {
            classes.insert(f["class"].as_str().unwrap().to_owned());
        }
    }
    // Every class, among them the three the cross-check exists for
    // (deleted received entry, forged receipt, digest mismatch).
    for c in isnad_log::FindingClass::ALL {
        assert!(classes.contains(c.as_str()), "no vector produces {c}");
    }
}
