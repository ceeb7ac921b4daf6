//! Regenerates `spec/vectors/audit-log/{entries,checkpoint,tlog-proof}.json`
//! (the Isnad-specific vectors). `merkle-rfc6962.json`, `signed-note.json`
//! and `tiles.json` hold data from other implementations and are written by
//! `hand_vectors.py` next to this file. Run:
//! `cargo run -p isnad-log --example gen_vectors`.
#![allow(clippy::unwrap_used)] // A developer tool: panics are fine.

use std::collections::BTreeMap;
use std::path::Path;

use isnad_log::note::{SignerKey, TYPE_COSIGNATURE_V1, TYPE_ED25519};
use isnad_log::{Checkpoint, Commitment, CommitmentSalt, Entry, EventType, TlogProof, Tree};
use isnad_types::{AgencyId, MessageId};
use serde_json::{json, Value};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/vectors/audit-log"
    ));
    std::fs::create_dir_all(dir).unwrap();
    write(dir, "entries.json", entries());
    write(dir, "checkpoint.json", checkpoints());
    write(dir, "tlog-proof.json", proofs());
    // For the hand-written signed-note.json: the Go example's EnochRoot key
    // was generated from an all-zero random stream, i.e. seed = 32 zero bytes.
    let enoch = SignerKey::from_seed("EnochRoot", TYPE_ED25519, [0; 32]).unwrap();
    println!(
        "EnochRoot: {} / {}",
        enoch.to_secret_string(),
        enoch.verifier()
    );
}

fn write(dir: &Path, name: &str, v: Value) {
    let s = serde_json::to_string_pretty(&v).unwrap() + "\n";
    std::fs::write(dir.join(name), s).unwrap();
}

fn sample_entries() -> Vec<(&'static str, Entry)> {
    let iq = AgencyId::new("iq.moi.ahtd").unwrap();
    let fr = AgencyId::new("fr.mj.bepi").unwrap();
    let mut sent = Entry::new(EventType::Sent, 1_790_000_000_123);
    sent.seq = 0;
    sent.message_id = Some(MessageId::from_bytes([0x11; 16]));
    sent.sender = Some(iq.clone());
    sent.recipient = Some(fr.clone());
    sent.envelope_sha256 = Some([0xab; 32]);
    let mut receipt = Entry::new(EventType::ReceiptReceived, 1_790_000_005_000);
    receipt.seq = 1;
    receipt.message_id = Some(MessageId::from_bytes([0x11; 16]));
    receipt.sender = Some(fr.clone());
    receipt.recipient = Some(iq.clone());
    receipt.peer_index = Some(70_000);
    let mut rejected = Entry::new(EventType::Rejected, 1_790_000_010_000);
    rejected.seq = 2;
    rejected.reason = Some("signature does not verify".into());
    rejected.commitment = Some(Commitment::commit(
        &CommitmentSalt::from_bytes([0x5a; 32]),
        b"request text",
    ));
    let mut status = Entry::new(EventType::StatusChanged, 1_790_000_020_000);
    status.seq = 3;
    status.message_id = Some(MessageId::from_bytes([0x22; 16]));
    let mut d = BTreeMap::new();
    d.insert("to".to_owned(), "executed".to_owned());
    d.insert("from".to_owned(), "accepted".to_owned());
    status.detail = d;
    vec![
        ("sent", sent),
        ("receipt-received", receipt),
        ("rejected-with-commitment", rejected),
        ("status-changed-with-detail", status),
    ]
}

fn entries() -> Value {
    let mut valid = Vec::new();
    for (name, e) in sample_entries() {
        valid.push(json!({
            "name": name,
            "cbor": hex(&e.encode().unwrap()),
            "seq": e.seq,
            "time_ms": e.time_ms,
            "event": e.event.as_str(),
            "leaf_hash": isnad_log::leaf_hash(&e.encode().unwrap()).to_hex(),
        }));
    }
    let base = sample_entries()[0].1.encode().unwrap();
    let mut invalid = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, error: &str| {
        invalid.push(json!({"name": name, "cbor": hex(&bytes), "error": error}));
    };
    let mut t = base.clone();
    t.push(0x00);
    add("trailing-byte", t, "TrailingBytes");
    add("truncated", base[..base.len() - 1].to_vec(), "Truncated");
    let mut n = vec![base[0], 0x18, 0x00];
    n.extend_from_slice(&base[2..]);
    add("non-shortest-key", n, "NotDeterministic");
    let mut i = base.clone();
    i[0] = 0xbf;
    add("indefinite-length-map", i, "NotDeterministic");
    // Swap keys 0 and 1 (both followed by one-byte values 0x01 and 0x00).
    let mut s = base.clone();
    assert_eq!(&s[1..5], &[0x00, 0x01, 0x01, 0x00]);
    s[1..5].copy_from_slice(&[0x01, 0x00, 0x00, 0x01]);
    add("keys-out-of-order", s, "KeyOrder");
    // Replace the map length and add key 12.
    let mut u = base.clone();
    u[0] += 1;
    u.extend_from_slice(&[0x0c, 0x00]);
    add("unknown-key-12", u, "UnknownKey");
    let pos = base.windows(4).position(|w| w == b"sent").unwrap();
    let mut ev = base.clone();
    ev[pos..pos + 4].copy_from_slice(b"sEnt");
    add("unknown-event-type", ev, "UnknownEventType");
    let mut v = base.clone();
    v[2] = 0x02;
    add("version-2", v, "UnsupportedVersion");
    // Message id as a 15-byte string: shorten the bstr header and drop a byte.
    let mpos = base.windows(2).position(|w| w == [0x04, 0x50]).unwrap();
    let mut m = base.clone();
    m[mpos + 1] = 0x4f;
    m.remove(mpos + 2);
    add("message-id-15-bytes", m, "WrongType");
    // A `sent` entry without the envelope hash (drop key 7 and its value).
    let epos = base
        .windows(3)
        .position(|w| w == [0x07, 0x58, 0x20])
        .unwrap();
    let mut r = base.clone();
    r.drain(epos..epos + 3 + 32);
    r[0] -= 1;
    add("sent-without-envelope-hash", r, "MissingField");
    add("empty", vec![], "Size");
    add("not-a-map", vec![0x80], "WrongType");
    let mut f = base.clone();
    f[0] = 0xa4; // claims 4 pairs, has more: the rest is trailing
    add("wrong-pair-count", f, "TrailingBytes");
    json!({
        "type": "entries",
        "description": "Audit-log entries (spec/audit-log.md §2). Valid ones decode and re-encode byte-identically; invalid ones are rejected with the named error.",
        "valid": valid,
        "invalid": invalid,
    })
}

fn log_key() -> SignerKey {
    SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [0x42; 32]).unwrap()
}

fn checkpoints() -> Value {
    let key = log_key();
    let witness =
        SignerKey::from_seed("witness.example/w1", TYPE_COSIGNATURE_V1, [0x43; 32]).unwrap();
    let leaves: Vec<_> = sample_entries()
        .iter()
        .map(|(_, e)| isnad_log::leaf_hash(&e.encode().unwrap()))
        .collect();
    let tree = Tree::from_leaves(leaves.iter().copied());
    let cp = Checkpoint::new(key.name(), 4, tree.root()).unwrap();
    let note = cp.sign(&key).unwrap();
    let cosigned = format!(
        "{note}{}",
        witness.cosign(&cp.to_body(), 1_790_000_100).unwrap()
    );
    let body = cp.to_body();
    let sig_line = &note[body.len() + 1..];
    let mut cases = vec![
        json!({"name": "log-signed", "note": note, "valid": true, "size": 4, "root": tree.root().to_hex()}),
        json!({"name": "log-signed-and-cosigned", "note": cosigned, "valid": true, "size": 4,
               "root": tree.root().to_hex(), "cosigner_key": witness.verifier().to_string(),
               "cosignature_time": 1_790_000_100u64}),
    ];
    let mut bad = |name: &str, text: String| {
        cases.push(json!({"name": name, "note": text, "valid": false}));
    };
    bad("size-changed", note.replacen("\n4\n", "\n5\n", 1));
    bad(
        "root-changed",
        note.replacen(&tree.root().to_base64()[..4], "AAAA", 1),
    );
    let wrong_origin = Checkpoint::new("iq.moi.ahtd/audit2", 4, tree.root()).unwrap();
    let other = SignerKey::from_seed("iq.moi.ahtd/audit2", TYPE_ED25519, [0x42; 32]).unwrap();
    bad("signed-by-another-key", wrong_origin.sign(&other).unwrap());
    bad(
        "leading-zero-size",
        format!(
            "{}\n04\n{}\n\n{sig_line}",
            key.name(),
            tree.root().to_base64()
        ),
    );
    bad("only-two-lines", format!("{}\n4\n\n{sig_line}", key.name()));
    bad(
        "blank-line-in-body",
        format!(
            "{}\n4\n\n{}\n\n{sig_line}",
            key.name(),
            tree.root().to_base64()
        ),
    );
    bad("no-signature", body.clone() + "\n");
    bad(
        "cosignature-only",
        format!("{body}\n{}", witness.cosign(&body, 1).unwrap()),
    );
    json!({
        "type": "checkpoint",
        "description": "Signed checkpoints (spec/audit-log.md §4-5). Verify each note with log_key; valid ones yield size and root.",
        "log_key": key.verifier().to_string(),
        "log_signer_key_for_tests_only": key.to_secret_string(),
        "cases": cases,
    })
}

fn proofs() -> Value {
    let key = log_key();
    let encoded: Vec<Vec<u8>> = sample_entries()
        .iter()
        .map(|(_, e)| e.encode().unwrap())
        .collect();
    let tree = Tree::from_leaves(encoded.iter().map(|e| isnad_log::leaf_hash(e)));
    let note = Checkpoint::new(key.name(), 4, tree.root())
        .unwrap()
        .sign(&key)
        .unwrap();
    let proof = TlogProof {
        extra: Some(encoded[2].clone()),
        index: 2,
        hashes: tree.inclusion_proof(2, 4).unwrap(),
        checkpoint: note.clone(),
    };
    let text = proof.to_text();
    let no_extra = TlogProof {
        extra: None,
        ..proof.clone()
    }
    .to_text();
    let mut cases = vec![
        json!({"name": "entry-2-with-extra", "proof": text, "entry": hex(&encoded[2]), "valid": true, "index": 2}),
        json!({"name": "entry-2-without-extra", "proof": no_extra, "entry": hex(&encoded[2]), "valid": true, "index": 2}),
    ];
    let mut bad = |name: &str, p: String, entry: &[u8]| {
        cases.push(json!({"name": name, "proof": p, "entry": hex(entry), "valid": false}));
    };
    bad("wrong-entry", text.clone(), &encoded[1]);
    bad(
        "wrong-index",
        text.replacen("index 2\n", "index 3\n", 1),
        &encoded[2],
    );
    bad(
        "leading-zero-index",
        text.replacen("index 2\n", "index 02\n", 1),
        &encoded[2],
    );
    let h0 = proof.hashes[0].to_base64();
    bad(
        "hash-31-bytes",
        text.replacen(&h0, &h0[..40], 1),
        &encoded[2],
    );
    bad(
        "missing-hash",
        text.replacen(&format!("{h0}\n"), "", 1),
        &encoded[2],
    );
    bad(
        "bad-header",
        text.replacen("tlog-proof@v1", "tlog-proof@v2", 1),
        &encoded[2],
    );
    bad(
        "checkpoint-tampered",
        text.replacen("\n4\n", "\n5\n", 1),
        &encoded[2],
    );
    json!({
        "type": "tlog-proof",
        "description": "C2SP tlog-proof files (spec/audit-log.md §8). Verify with log_key and the entry bytes.",
        "log_key": key.verifier().to_string(),
        "cases": cases,
    })
}
