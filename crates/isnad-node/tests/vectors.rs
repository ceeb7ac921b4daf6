//! The two-node exchange vector, `spec/vectors/exchange/direct.json`
//! (described in spec/README.md): one message from iq.moi.ahtd to
//! fr.mj.bepi and its receipt, with every byte on the stream and in both
//! audit logs.
//!
//! - `exchange_vector_is_reproduced` derives the vector again from fixed
//!   keys, randomness and time with the node's own code (`seal`, the wire
//!   frames, `isnad_node::exchange`, a real `isnad_log::Log`) and compares
//!   it byte for byte with the file. `ISNAD_WRITE_VECTORS=1 cargo test -p
//!   isnad-node --test vectors` rewrites the file instead.
//! - `exchange_vector_verifies` checks the file on its own, as a second
//!   implementation would: opens the envelope, verifies the receipt against
//!   the bytes sent, hashes the log entries and both trees by hand
//!   (SHA-256, RFC 9162), and follows the cross-references between the logs.
//!
//! The randomness is *ring*'s fixed-byte test source
//! (`ring::test::rand::FixedByteRandom`, deprecated as an internal API but
//! the only way to feed *ring* known bytes): each draw is one byte repeated,
//! named in the vector. Never use it outside vectors.
#![allow(deprecated)]

use std::path::{Path, PathBuf};

use isnad_envelope::*;
use isnad_log::{Entry, EventType, Log};
use isnad_node::exchange;
use isnad_wire::{body_len, Op, Request, Response, MAX_RESPONSE_BODY};
use ring::digest::{digest, SHA256};
use ring::test::rand::FixedByteRandom;
use serde_json::{json, Value as Json};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// 2026-01-01T00:00:00Z: the message is created and sent.
const T0: u64 = 1_767_225_600;
/// The recipient accepts it one second later, the sender gets the receipt
/// one second after that.
const T1: u64 = T0 + 1;
const T2: u64 = T0 + 2;
const TTL: u64 = 7 * 24 * 3600;

fn vector_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/exchange/direct.json")
}

fn rng(byte: u8) -> FixedByteRandom {
    FixedByteRandom { byte }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, b).as_ref());
    out
}

fn body() -> Body {
    Body::IntelShare(Box::new(IntelShare {
        share_id: MessageId::from_bytes([0x5a; 16]),
        handling: HandlingCode::H0,
        source_grading: SourceGrading::B,
        information_grading: 2,
        tlp: Tlp::Green,
        classification: "RESTRICTED".into(),
        case_id: None,
        summary: "exchange vector".into(),
        content: "One message and its receipt, every byte.".into(),
        entities: vec![],
        originator: None,
        permission: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }))
}

/// A log's entries (index, event, bytes, leaf hash) and its root.
fn log_json(log: &Log) -> Res<Json> {
    let mut entries = Vec::new();
    for i in 0..log.size() {
        let bytes = log.entry_bytes(i)?;
        let e = Entry::decode(&bytes)?;
        entries.push(json!({
            "index": i,
            "event": e.event.as_str(),
            "entry_hex": hex::encode(&bytes),
            "leaf_hash_hex": isnad_log::merkle::leaf_hash(&bytes).to_hex(),
        }));
    }
    Ok(json!({
        "entries": entries,
        "size": log.size(),
        "root_hex": log.root_at(log.size())?.to_hex(),
    }))
}

/// Derives the whole vector with the node's code.
fn derive() -> Res<Json> {
    let limits = Limits::default();
    let (a, b) = (AgencyId::new("iq.moi.ahtd")?, AgencyId::new("fr.mj.bepi")?);
    let a_sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng(0x01))?;
    let a_enc = EncryptionKey::generate(EncryptionCurve::X25519, &rng(0x02))?;
    let b_sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng(0x03))?;
    let b_enc = EncryptionKey::generate(EncryptionCurve::X25519, &rng(0x04))?;

    // Sender: seal, commit, log `sent`, send the request frame.
    let msg = Message {
        header: Header {
            id: MessageId::time_ordered(T0 * 1000, &rng(0x11))?,
            sender: a.clone(),
            recipient: b.clone(),
            created: T0,
            expires: T0 + TTL,
        },
        body: body(),
    };
    let id = msg.header.id;
    let envelope = seal(&msg, &a_sign, b_enc.public_key(), &limits, &rng(0x12))?;
    let request = Request {
        op: Op::Deliver,
        payload: envelope.clone(),
    }
    .encode();
    let tmp = tempfile::tempdir()?;
    let (a_log, _) = Log::open(&tmp.path().join("a"))?;
    let (b_log, _) = Log::open(&tmp.path().join("b"))?;
    let kind = msg.body.kind();
    a_log.append(exchange::sent(
        &a,
        id,
        Some(b.clone()),
        kind.as_str(),
        sha256(&envelope),
        T0 * 1000,
    ))?;

    // Recipient: open, log `received` and `receipt-sent`, sign the receipt.
    let a_keys = vec![SenderKey {
        agency: a.clone(),
        key: a_sign.verifying_key().clone(),
        valid_from: None,
        valid_until: None,
        revoked_at: None,
    }];
    let opened = Opener {
        me: &b,
        keys: std::slice::from_ref(&b_enc),
        limits,
    }
    .open(&envelope, T1, &a_keys, &mut MemoryReplayGuard::default())?;
    let digest = opened.envelope_digest;
    let range = b_log.append_batch([
        exchange::received(&opened.message.header, kind, digest, T1 * 1000),
        exchange::receipt_sent(&b, id, a.clone(), digest, 0, T1 * 1000),
    ])?;
    let receipt_msg = exchange::receipt(
        &b,
        &a,
        MessageId::time_ordered(T1 * 1000, &rng(0x13))?,
        Receipt {
            message_id: id,
            envelope_digest: digest,
            log_index: range.start,
            received_at: T1,
            attachments: Vec::new(),
        },
        &limits,
    );
    let receipt = seal_signed(&receipt_msg, &b_sign, &limits, &rng(0x14))?;
    let response = Response::Receipt(receipt.clone()).encode();

    // Sender: check the receipt, log `receipt-received`.
    let b_keys = vec![SenderKey {
        agency: b.clone(),
        key: b_sign.verifying_key().clone(),
        valid_from: None,
        valid_until: None,
        revoked_at: None,
    }];
    Opener {
        me: &a,
        keys: &[],
        limits,
    }
    .open_signed(&receipt, T2, &b_keys)?;
    a_log.append(exchange::receipt_received(
        &a,
        id,
        b.clone(),
        sha256(&envelope),
        range.start,
        &receipt,
        T2 * 1000,
    ))?;

    let party = |id: &AgencyId, sign: &SigningKey, enc: &EncryptionKey, seeds: [u8; 2]| {
        json!({
            "agency": id.as_str(),
            "sign_pkcs8_pem": sign.to_pkcs8_pem().to_string(),
            "sign_cose_key_hex": hex::encode(sign.verifying_key().to_cose_key()),
            "enc_pkcs8_pem": enc.to_pkcs8_pem().to_string(),
            "enc_cose_key_hex": hex::encode(enc.public_key().to_cose_key()),
            "key_random_bytes": [format!("{:02x}", seeds[0]), format!("{:02x}", seeds[1])],
        })
    };
    Ok(json!({
        "description": "One direct exchange (spec/README.md): iq.moi.ahtd sends an intel-share to fr.mj.bepi, which accepts it and answers with its receipt. Every byte of the two stream frames and of both audit logs. Generated by crates/isnad-node/tests/vectors.rs with the node's code; each random draw is one byte repeated (named below).",
        "times": {
            "message_iat": T0,
            "accepted_at": T1,
            "receipt_checked_at": T2,
        },
        "random_bytes": {
            "message_id": "11",
            "seal": "12",
            "receipt_id": "13",
            "receipt_signature": "14",
        },
        "sender": party(&a, &a_sign, &a_enc, [0x01, 0x02]),
        "recipient": party(&b, &b_sign, &b_enc, [0x03, 0x04]),
        "message": {
            "id": id.to_hex(),
            "from": a.as_str(),
            "to": b.as_str(),
            "iat": T0,
            "exp": T0 + TTL,
            "kind": kind.as_str(),
            "body": serde_json::from_str::<Json>(&body_to_json(&msg.body)?)?,
        },
        "envelope_hex": hex::encode(&envelope),
        "envelope_sha256_hex": hex::encode(sha256(&envelope)),
        "request_frame_hex": hex::encode(&request),
        "receipt": {
            "id": receipt_msg.header.id.to_hex(),
            "iat": receipt_msg.header.created,
            "exp": receipt_msg.header.expires,
            "log_index": range.start,
            "bytes_hex": hex::encode(&receipt),
            "sha256_hex": hex::encode(sha256(&receipt)),
        },
        "response_frame_hex": hex::encode(&response),
        "sender_log": log_json(&a_log)?,
        "recipient_log": log_json(&b_log)?,
    }))
}

fn render(v: &Json) -> Res<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

#[test]
fn exchange_vector_is_reproduced() -> TestResult {
    let derived = render(&derive()?)?;
    let path = vector_path();
    if std::env::var("ISNAD_WRITE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().ok_or("no parent")?)?;
        std::fs::write(&path, &derived)?;
    }
    let stored = std::fs::read_to_string(&path)?;
    assert!(
        stored == derived,
        "{} differs from what the node's code derives now (ISNAD_WRITE_VECTORS=1 rewrites it)",
        path.display()
    );
    Ok(())
}

fn s<'a>(v: &'a Json, path: &[&str]) -> Res<&'a str> {
    let mut at = v;
    for k in path {
        at = at.get(k).ok_or_else(|| format!("vector lacks {path:?}"))?;
    }
    Ok(at
        .as_str()
        .ok_or_else(|| format!("{path:?} is not a string"))?)
}

fn u(v: &Json, path: &[&str]) -> Res<u64> {
    let mut at = v;
    for k in path {
        at = at.get(k).ok_or_else(|| format!("vector lacks {path:?}"))?;
    }
    Ok(at
        .as_u64()
        .ok_or_else(|| format!("{path:?} is not a number"))?)
}

fn h(v: &Json, path: &[&str]) -> Res<Vec<u8>> {
    Ok(hex::decode(s(v, path)?)?)
}

/// A log from the vector: its decoded entries, each leaf hash and the root
/// recomputed by hand (RFC 9162 §2.1: leaf = SHA-256(0x00 ‖ entry), node =
/// SHA-256(0x01 ‖ left ‖ right); both logs here hold two entries).
fn check_log(v: &Json, which: &str) -> Res<Vec<Entry>> {
    let log = v.get(which).ok_or("no log")?;
    let list = log
        .get("entries")
        .and_then(Json::as_array)
        .ok_or("no entries")?;
    assert_eq!(list.len(), 2, "{which}");
    let mut leaves = Vec::new();
    let mut entries = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let bytes = h(e, &["entry_hex"])?;
        let leaf = sha256(&[&[0u8][..], &bytes].concat());
        assert_eq!(
            hex::encode(leaf),
            s(e, &["leaf_hash_hex"])?,
            "{which} leaf {i}"
        );
        let decoded = Entry::decode(&bytes)?;
        assert_eq!(decoded.seq, i as u64, "{which}: seq is the index");
        assert_eq!(decoded.event.as_str(), s(e, &["event"])?);
        // Entries are deterministic CBOR: decoding and encoding again gives the bytes.
        assert_eq!(decoded.encode()?, bytes);
        leaves.push(leaf);
        entries.push(decoded);
    }
    let root = sha256(&[&[1u8][..], &leaves[0], &leaves[1]].concat());
    assert_eq!(hex::encode(root), s(log, &["root_hex"])?, "{which} root");
    Ok(entries)
}

#[test]
fn exchange_vector_verifies() -> TestResult {
    let v: Json = serde_json::from_str(&std::fs::read_to_string(vector_path())?)?;
    let limits = Limits::default();
    let a = AgencyId::new(s(&v, &["sender", "agency"])?)?;
    let b = AgencyId::new(s(&v, &["recipient", "agency"])?)?;
    let a_sign = SigningKey::from_pkcs8_pem(s(&v, &["sender", "sign_pkcs8_pem"])?)?;
    let b_sign = SigningKey::from_pkcs8_pem(s(&v, &["recipient", "sign_pkcs8_pem"])?)?;
    let b_enc = EncryptionKey::from_pkcs8_pem(s(&v, &["recipient", "enc_pkcs8_pem"])?)?;
    let key = |agency: &AgencyId, k: &SigningKey| {
        vec![SenderKey {
            agency: agency.clone(),
            key: k.verifying_key().clone(),
            valid_from: None,
            valid_until: None,
            revoked_at: None,
        }]
    };

    // The request frame: a 4-byte length, then {1: 1, 2: 1 (deliver), 3: envelope}.
    let request = h(&v, &["request_frame_hex"])?;
    let envelope = h(&v, &["envelope_hex"])?;
    let len = body_len(request[..4].try_into()?, isnad_wire::MAX_REQUEST_BODY)?;
    assert_eq!(len + 4, request.len());
    let req = Request::decode(&request[4..])?;
    assert_eq!((req.op, &req.payload), (Op::Deliver, &envelope));
    let env_sha = sha256(&envelope);
    assert_eq!(hex::encode(env_sha), s(&v, &["envelope_sha256_hex"])?);

    // The recipient opens it at the time it accepted it.
    let accepted_at = u(&v, &["times", "accepted_at"])?;
    let opened = Opener {
        me: &b,
        keys: std::slice::from_ref(&b_enc),
        limits,
    }
    .open(
        &envelope,
        accepted_at,
        &key(&a, &a_sign),
        &mut MemoryReplayGuard::default(),
    )?;
    let m = &opened.message;
    assert_eq!(m.header.id.to_hex(), s(&v, &["message", "id"])?);
    assert_eq!((&m.header.sender, &m.header.recipient), (&a, &b));
    assert_eq!(m.header.created, u(&v, &["message", "iat"])?);
    assert_eq!(m.header.expires, u(&v, &["message", "exp"])?);
    let body: Json = serde_json::from_str(&body_to_json(&m.body)?)?;
    assert_eq!(Some(&body), v.pointer("/message/body"));

    // The response frame carries the receipt; the sender verifies it at the
    // time it got it, and that it acknowledges exactly the bytes sent.
    let response = h(&v, &["response_frame_hex"])?;
    let len = body_len(response[..4].try_into()?, MAX_RESPONSE_BODY)?;
    assert_eq!(len + 4, response.len());
    let receipt = match Response::decode(&response[4..])? {
        Response::Receipt(r) => r,
        other => return Err(format!("not a receipt response: {other:?}").into()),
    };
    assert_eq!(receipt, h(&v, &["receipt", "bytes_hex"])?);
    let checked_at = u(&v, &["times", "receipt_checked_at"])?;
    let r = Opener {
        me: &a,
        keys: &[],
        limits,
    }
    .open_signed(&receipt, checked_at, &key(&b, &b_sign))?;
    assert_eq!(r.message.header.sender, b);
    assert_eq!(r.message.header.id.to_hex(), s(&v, &["receipt", "id"])?);
    assert_ne!(r.message.header.id, m.header.id, "a receipt has its own id");
    assert_eq!(r.message.header.created, accepted_at);
    assert_eq!(
        r.message.header.expires - r.message.header.created,
        limits.max_lifetime_secs,
        "protocol.md §4.4: a receipt lives max_lifetime_secs"
    );
    let Body::Receipt(rb) = &r.message.body else {
        return Err("the receipt's body is not a receipt".into());
    };
    assert_eq!(rb.message_id, m.header.id);
    assert_eq!(rb.envelope_digest.0, env_sha);
    assert_eq!(rb.received_at, accepted_at);
    assert_eq!(rb.log_index, u(&v, &["receipt", "log_index"])?);

    // Both logs, and what ties them together.
    let sender = check_log(&v, "sender_log")?;
    let recipient = check_log(&v, "recipient_log")?;
    let events = |l: &[Entry]| l.iter().map(|e| e.event).collect::<Vec<_>>();
    assert_eq!(
        events(&sender),
        [EventType::Sent, EventType::ReceiptReceived]
    );
    assert_eq!(
        events(&recipient),
        [EventType::Received, EventType::ReceiptSent]
    );
    for e in sender.iter().chain(&recipient) {
        assert_eq!(e.message_id, Some(m.header.id));
        assert_eq!(e.envelope_sha256, Some(env_sha));
    }
    // The receipt names the recipient's `received` entry, and
    // `receipt-sent` points at it too.
    let received_at_index = rb.log_index as usize;
    assert_eq!(recipient[received_at_index].event, EventType::Received);
    assert_eq!(recipient[1].peer_index, Some(rb.log_index));
    // The sender's `receipt-received` names the same entry and the receipt's bytes.
    assert_eq!(sender[1].peer_index, Some(rb.log_index));
    assert_eq!(
        sender[1].detail.get("receipt-sha256").map(String::as_str),
        Some(hex::encode(sha256(&receipt)).as_str())
    );
    assert_eq!(sender[0].time_ms, m.header.created * 1000);
    assert_eq!(recipient[0].time_ms, accepted_at * 1000);
    Ok(())
}
