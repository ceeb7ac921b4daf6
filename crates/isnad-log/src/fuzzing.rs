//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use crate::{checkpoint, entry, note, tiles, witness};

/// Decodes `data` as an entry; a successful decode must re-encode to
/// exactly `data` (the encoding is canonical).
pub fn entry_decode(data: &[u8]) {
    if let Ok(e) = entry::Entry::decode(data) {
        let again = e.encode();
        assert_eq!(
            again.as_deref().ok(),
            Some(data),
            "decoded entry re-encodes differently"
        );
    }
}

/// Parses `data` as a signed note against a fixed Ed25519 key and a fixed
/// cosigner key, and as a checkpoint body.
pub fn note_open(data: &[u8]) {
    thread_local! {
        static KEYS: Option<[note::VerifierKey; 2]> = fixture();
    }
    KEYS.with(|k| {
        if let Some(keys) = k {
            let _ = note::open(data, keys);
            let _ = checkpoint::open_checkpoint(data, &keys[0]);
        }
    });
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(cp) = checkpoint::Checkpoint::parse_body(s) {
            assert_eq!(cp.to_body(), s, "checkpoint body does not round-trip");
        }
        let _ = note::VerifierKey::parse(s);
        let _ = note::SignerKey::parse(s);
    }
}

/// Parses `data` as a tlog-proof file and, if it parses, verifies it.
pub fn tlog_proof(data: &[u8]) {
    if let Ok(p) = checkpoint::TlogProof::parse(data) {
        if let Some(keys) = fixture() {
            let _ = p.verify(p.extra.as_deref().unwrap_or(b""), &keys[0]);
        }
    }
}

/// Splits `data` as an entry bundle of every width and decodes the entries.
pub fn bundle(data: &[u8]) {
    let count = data.first().map_or(1, |&b| usize::from(b) + 1);
    if let Ok(entries) = tiles::split_bundle(data.get(1..).unwrap_or(&[]), count) {
        for e in entries {
            let _ = entry::Entry::decode(e);
        }
    }
}

/// Parses `data` as an add-checkpoint request; one that parses must
/// round-trip, and is decided against a fixed witness with no stored state.
pub fn witness_request(data: &[u8]) {
    if let Ok(r) = witness::AddCheckpoint::parse(data) {
        assert_eq!(r.to_text().as_bytes(), data, "request does not round-trip");
        if let (Some(keys), Ok(w)) = (
            fixture(),
            note::SignerKey::from_seed("witness.example/w1", note::TYPE_COSIGNATURE_V1, [2; 32]),
        ) {
            let _ = witness::add_checkpoint(&w, &keys[0], None, &r, 1);
        }
    }
}

/// Parses `data` as a fork evidence file and, if it parses, verifies it.
pub fn fork_evidence(data: &[u8]) {
    if let Ok(e) = witness::ForkEvidence::parse(data) {
        if let Some(keys) = fixture() {
            let _ = e.verify(&keys[0]);
        }
    }
}

fn fixture() -> Option<[note::VerifierKey; 2]> {
    let log = note::SignerKey::from_seed("iq.moi.ahtd/audit", note::TYPE_ED25519, [1; 32]).ok()?;
    let w = note::SignerKey::from_seed("witness.example/w1", note::TYPE_COSIGNATURE_V1, [2; 32])
        .ok()?;
    Some([log.verifier(), w.verifier()])
}
