//! `isnad evidence verify` on the real binary (spec/attachments.md §6.4).
//!
//! Messages with attachments cannot travel between nodes yet (the node has
//! no attachment store: it refuses them, `attachments-not-stored`), so the
//! inputs are built with the libraries, as the nodes would build them: a
//! file sealed with isnad-attach, the recipient's receipt signed with
//! isnad-envelope from the node's own receipt builder, and both parties'
//! audit logs written, exported and signed with isnad-log, their entries
//! carrying the attachment as isnad-node's `exchange` records it. The
//! binary then checks file, receipt and export from the disk alone.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

mod common;

use std::path::PathBuf;

use common::{isnad, p};
use isnad_attach::{seal, ChunkSize, FileName, MediaType};
use isnad_envelope::{
    seal_signed, Digest, Limits, MessageId, Receipt, ReceivedAttachment, SignatureAlgorithm,
    SigningKey,
};
use isnad_log::crosscheck::Side;
use isnad_log::note::SignerKey;
use isnad_log::testing::{digest, message_id, ExportPair as _, Pair};
use isnad_log::LoggedAttachment;
use isnad_node::exchange;

const T: u64 = 1_790_000_000_000;

/// Everything `isnad evidence verify` needs, on disk.
struct Case {
    _dir: tempfile::TempDir,
    file: PathBuf,
    receipt: PathBuf,
    signer_key: PathBuf,
    /// (export, verifier key) of the sender (A) and the recipient (B).
    sender: (PathBuf, PathBuf),
    recipient: (PathBuf, PathBuf),
}

/// Message 1 from iq.moj.ca (A) to fr.mj.bepi (B) carried a 200 000-byte
/// file (13 chunks of 16 KiB); B received it (entry `received_at`),
/// acknowledged it, A logged the receipt. `record` says whether the
/// entries record the attachment (false: as the node wrote them before).
fn case(record: bool) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let rng = ring::rand::SystemRandom::new();
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path().join("extraction-report.bin");
    std::fs::write(&file, &plain).unwrap();
    let mut ciphertext = Vec::new();
    let sealed = seal(
        &plain[..],
        &mut ciphertext,
        ChunkSize::new(16_384).unwrap(),
        &rng,
    )
    .unwrap();
    let d = sealed.describe(
        FileName::new("extraction-report.bin").unwrap(),
        MediaType::new("application/octet-stream").unwrap(),
    );
    let logged: Vec<LoggedAttachment> = if record {
        exchange::logged_descriptors(std::slice::from_ref(&d))
    } else {
        Vec::new()
    };

    let mut pair = Pair::new("iq.moj.ca", "fr.mj.bepi");
    let sent = pair.sent(Side::A, 1, T) as usize;
    pair.a_entries[sent].set_attachments(&logged);
    let received_at = pair.received(Side::A, 1, T + 20);
    for i in [received_at, received_at + 1] {
        pair.b_entries[i as usize].set_attachments(&logged);
    }

    let b_key = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng).unwrap();
    let body = Receipt {
        message_id: message_id(1),
        envelope_digest: Digest(digest(1)),
        log_index: received_at,
        received_at: T / 1000,
        attachments: vec![ReceivedAttachment::of(&d)],
    };
    let msg = exchange::receipt(
        &pair.b,
        &pair.a,
        MessageId::from_bytes([0x42; 16]),
        body,
        &Limits::default(),
    );
    let receipt_bytes = seal_signed(&msg, &b_key, &Limits::default(), &rng).unwrap();
    let got = pair.receipt(Side::A, 1, T + 40, received_at) as usize;
    pair.a_entries[got].set_attachments(&logged);
    pair.a_entries[got].detail.insert(
        "receipt-sha256".into(),
        Digest::sha256(&receipt_bytes).to_hex(),
    );

    let receipt = dir.path().join("message-1.receipt");
    std::fs::write(&receipt, &receipt_bytes).unwrap();
    let signer_key = dir.path().join("sign.pub.cose");
    std::fs::write(&signer_key, b_key.verifying_key().to_cose_key()).unwrap();
    let mut exports = Vec::new();
    for (side, agency) in [(Side::A, pair.a.clone()), (Side::B, pair.b.clone())] {
        let key = SignerKey::generate(&format!("{agency}/audit"), &rng).unwrap();
        let root = dir.path().join(agency.as_str());
        let out = root.join("export");
        pair.export(side, &root.join("log"), &key, &out).unwrap();
        let public = root.join("log.pub");
        std::fs::write(&public, format!("{}\n", key.verifier())).unwrap();
        exports.push((out, public));
    }
    let recipient = exports.pop().unwrap();
    let sender = exports.pop().unwrap();
    Case {
        _dir: dir,
        file,
        receipt,
        signer_key,
        sender,
        recipient,
    }
}

/// Runs `isnad evidence verify` against one party's export.
fn verify(c: &Case, export: &(PathBuf, PathBuf), extra: &[&str]) -> (i32, String) {
    verify_as(c, "fr.mj.bepi", export, extra)
}

/// The same, trusting the receipt key as `signer`'s.
fn verify_as(c: &Case, signer: &str, export: &(PathBuf, PathBuf), extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "evidence",
        "verify",
        p(&c.file),
        "--receipt",
        p(&c.receipt),
        "--signer",
        signer,
        "--signer-key",
        p(&c.signer_key),
        "--export",
        p(&export.0),
        "--verifier-key",
        p(&export.1),
    ];
    args.extend_from_slice(extra);
    let o = isnad(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap(), text)
}

#[test]
fn the_file_is_proven_from_either_partys_log_with_its_indexes() {
    let c = case(true);
    let (code, out) = verify(&c, &c.sender, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PROVEN: "), "{out}");
    assert!(
        out.contains("sender's log iq.moj.ca/audit: sent at index 0, receipt-received at index 1"),
        "{out}"
    );
    let (code, out) = verify(&c, &c.recipient, &["--message", &message_id(1).to_hex()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "recipient's log fr.mj.bepi/audit: received at index 0, receipt-sent at index 1"
        ),
        "{out}"
    );
    // The receipt also works as hex text (as `isnad status` shows it).
    let hex = hex::encode(std::fs::read(&c.receipt).unwrap());
    std::fs::write(&c.receipt, format!("{hex}\n")).unwrap();
    assert_eq!(verify(&c, &c.recipient, &[]).0, 0);
}

#[test]
fn a_file_one_byte_different_is_not_proven() {
    let c = case(true);
    let mut bytes = std::fs::read(&c.file).unwrap();
    bytes[123_456] ^= 0x01;
    std::fs::write(&c.file, &bytes).unwrap();
    for party in [&c.sender, &c.recipient] {
        let (code, out) = verify(&c, party, &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("NOT PROVEN: the file (SHA-256 "), "{out}");
        assert!(
            out.contains("200000 bytes) is none of the 1 attachments the receipt acknowledges"),
            "{out}"
        );
    }
}

#[test]
fn wrong_inputs_and_logs_without_the_attachment_are_not_proven() {
    let c = case(true);
    // Another message asked about.
    let (code, out) = verify(&c, &c.sender, &["--message", &message_id(2).to_hex()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the receipt acknowledges message"), "{out}");
    // The receipt checked against another agency than its signer.
    let (code, out) = verify_as(&c, "de.bka", &c.sender, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("the receipt does not verify with this key"),
        "{out}"
    );
    // A damaged receipt does not verify.
    let mut r = std::fs::read(&c.receipt).unwrap();
    let last = r.len() - 1;
    r[last] ^= 0x01;
    std::fs::write(&c.receipt, &r).unwrap();
    let (code, out) = verify(&c, &c.sender, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the receipt does not verify"), "{out}");
    // Logs whose entries do not record the attachment prove nothing.
    let old = case(false);
    let (code, out) = verify(&old, &old.sender, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("(receipt-received) does not record attachment 0"),
        "{out}"
    );
    let (code, out) = verify(&old, &old.recipient, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("(received) does not record attachment 0"),
        "{out}"
    );
}
