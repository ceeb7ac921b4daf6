//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use crate::{attachments, checkpoint, entry, note, tiles, witness};

/// Decodes `data` as an entry; a successful decode must re-encode to
/// exactly `data` (the encoding is canonical), and its attachments detail
/// must read. Also parses `data` as an `attachments` detail value: what
/// parses must format back to the same text.
pub fn entry_decode(data: &[u8]) {
    if let Ok(e) = entry::Entry::decode(data) {
        let again = e.encode();
        assert_eq!(
            again.as_deref().ok(),
            Some(data),
            "decoded entry re-encodes differently"
        );
        assert!(
            e.attachments().is_ok(),
            "a decoded entry's attachments read"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(list) = attachments::parse(text) {
            assert_eq!(
                attachments::format(&list).as_deref(),
                Some(text),
                "a parsed attachments detail formats differently"
            );
        }
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

/// Builds two logs from 12-byte records and cross-checks them, then renders
/// the report over both; checks the invariants of the outcome. Record:
/// side (bit 0: log A or B), event (index into [`entry::EventType::ALL`]),
/// message (0 = none, else id `[b; 16]`), parties (bits 0-1 sender, 2-3
/// recipient: none, A, B, a third agency), time (u32 BE, ms), digest (0 =
/// none, else `[b; 32]`), peer index (u16 BE, 0xFFFF = none), reason flag.
pub fn cross_check(data: &[u8]) {
    use crate::audited::AuditedLog;
    use isnad_types::{AgencyId, MessageId};
    let agencies: Vec<AgencyId> = ["iq.moj.ca", "fr.mj.bepi", "fr.pn.ocrtis"]
        .iter()
        .filter_map(|a| AgencyId::new(a).ok())
        .collect();
    if agencies.len() != 3 {
        return;
    }
    let party = |code: u8| match code & 3 {
        0 => None,
        c => Some(agencies[usize::from(c) - 1].clone()),
    };
    let mut logs: [Vec<entry::Entry>; 2] = [Vec::new(), Vec::new()];
    for r in data.chunks_exact(12) {
        let event = entry::EventType::ALL[usize::from(r[1]) % entry::EventType::ALL.len()];
        let time = u64::from(u32::from_be_bytes([r[4], r[5], r[6], r[7]]));
        let mut e = entry::Entry::new(event, time);
        e.message_id = (r[2] != 0).then(|| MessageId::from_bytes([r[2]; 16]));
        e.sender = party(r[3]);
        e.recipient = party(r[3] >> 2);
        e.envelope_sha256 = (r[8] != 0).then_some([r[8]; 32]);
        let peer = u16::from_be_bytes([r[9], r[10]]);
        e.peer_index = (peer != u16::MAX).then_some(u64::from(peer));
        e.reason = (r[11] & 1 == 1).then(|| "<reason & \"x\">".to_owned());
        let log = &mut logs[usize::from(r[0] & 1)];
        e.seq = log.len() as u64;
        log.push(e);
    }
    let [a, b] = logs;
    let audited = |agency: &AgencyId, entries: Vec<entry::Entry>| {
        let cp = checkpoint::Checkpoint::new(
            &checkpoint::origin_for(agency),
            entries.len() as u64,
            crate::merkle::empty_root(),
        )
        .ok()?;
        AuditedLog::new(cp, String::new(), entries).ok()
    };
    let (Some(a), Some(b)) = (audited(&agencies[0], a), audited(&agencies[1], b)) else {
        return;
    };
    let skew = u64::from(data.first().copied().unwrap_or(0)) * 1000;
    let Ok(c) = crate::crosscheck::cross_check(&a, &b, skew) else {
        return;
    };
    let n = c.counts;
    assert!(
        n.matched + n.refused + n.undelivered + n.in_flight + n.with_findings <= n.exchanges,
        "counts exceed exchanges"
    );
    assert_eq!(
        c.is_clean(),
        n.with_findings == 0,
        "clean iff no exchange has findings"
    );
    let keys: Vec<_> = c
        .findings
        .iter()
        .map(|f| (f.message_id, f.class, f.entries.clone()))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "findings out of order"
    );
    let _ = c.to_json().to_string();
    let html = crate::report::render(
        "fuzz",
        &[
            crate::report::LogInput {
                label: "a",
                log: Some(&a),
                problems: &[],
                trusted_key: "k+00000000",
            },
            crate::report::LogInput {
                label: "b",
                log: Some(&b),
                problems: &[],
                trusted_key: "k+00000000",
            },
        ],
        &[c],
        u64::from(u32::MAX),
    );
    assert!(!html.contains("<reason"), "log text not escaped");
}

/// The fixed log key the fuzz targets sign with.
pub fn signer() -> Option<note::SignerKey> {
    note::SignerKey::from_seed("iq.moi.ahtd/audit", note::TYPE_ED25519, [1; 32]).ok()
}

/// The log key's and a witness's verifier keys.
pub fn fixture() -> Option<[note::VerifierKey; 2]> {
    let log = signer()?;
    let w = note::SignerKey::from_seed("witness.example/w1", note::TYPE_COSIGNATURE_V1, [2; 32])
        .ok()?;
    Some([log.verifier(), w.verifier()])
}
