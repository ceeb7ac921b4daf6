//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use crate::merkle::{Hash, Tree};
use crate::{checkpoint, entry, note, tiles, verify, witness};

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

/// Writes an export described by `data` to a scratch directory and runs the
/// offline verifier and the proof builder over it: the tile and bundle
/// parsing of [`crate::verify_export`] and [`crate::prove_from_export`].
///
/// `data` is `size` (`uint16` big-endian, taken modulo 1024) followed by
/// records `selector (1 byte) ‖ length (uint16 big-endian) ‖ bytes`. The
/// selector, modulo the number of files an export of `size` has plus one,
/// picks the file: first the entry bundles `0, 1, …`, then the hash tiles in
/// [`tiles::tiles_for`] order; the extra value makes the record's first two
/// bytes the size of a previous checkpoint to check consistency against.
/// The checkpoint is signed here with a fixed key, over the root of the
/// level-0 hashes as stored, so the fuzzer reaches the tile checks.
///
/// Oracle: an export that verifies without problems yields an inclusion
/// proof for its entries that verifies.
pub fn export(data: &[u8]) {
    let _ = export_checked(data);
}

/// [`export`]; `Some(true)` if the export verified without problems.
fn export_checked(data: &[u8]) -> Option<bool> {
    let (head, mut rest) = data.split_first_chunk::<2>()?;
    let size = u64::from(u16::from_be_bytes(*head)) % 1024;
    let width = |n: u64| (size - n * tiles::TILE_WIDTH).min(tiles::TILE_WIDTH);
    let bundles = size.div_ceil(tiles::TILE_WIDTH);
    let paths = export_paths(size);
    let mut files: Vec<(&str, &[u8])> = Vec::new();
    let mut previous = None;
    while let Some((&selector, tail)) = rest.split_first() {
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let (bytes, tail) = tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
        rest = tail;
        match paths.get(usize::from(selector) % (paths.len() + 1)) {
            Some(p) => files.push((p, bytes)),
            None => {
                previous = bytes
                    .first_chunk::<2>()
                    .map(|b| u64::from(u16::from_be_bytes(*b)));
            }
        }
    }
    let signer = signer()?;
    let verifier = signer.verifier();
    // The stored level-0 hashes, in order, as far as they are present.
    let mut leaves = Vec::new();
    for n in 0..bundles {
        let path = tiles::tile_path(0, n, width(n));
        let Some((_, bytes)) = files.iter().rev().find(|(p, _)| *p == path) else {
            break;
        };
        leaves.extend(
            bytes
                .chunks_exact(Hash::LEN)
                .filter_map(|c| Hash::from_slice(c).ok()),
        );
    }
    let tree = Tree::from_leaves(leaves);
    let root_at = |n: u64| tree.root_at(n).unwrap_or_else(|_| tree.root());
    let sign = |n: u64| {
        checkpoint::Checkpoint {
            origin: signer.name().to_owned(),
            size: n,
            root: root_at(n),
            extensions: Vec::new(),
        }
        .sign(&signer)
        .ok()
    };
    let (note, previous) = (sign(size)?, previous.and_then(sign));
    // A RAM-backed directory where there is one: the fuzzer writes an export per input.
    let shm = std::path::Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = scratch.join(format!(
        "isnad-fuzz-export-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut written = std::fs::create_dir_all(&dir).is_ok()
        && std::fs::write(dir.join(tiles::CHECKPOINT_PATH), &note).is_ok();
    for (path, bytes) in &files {
        let file = dir.join(path);
        written &= file
            .parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&file, bytes).is_ok();
    }
    if !written {
        return None;
    }
    let report = verify::verify_export(
        &dir,
        &verifier,
        previous.as_deref().map(str::as_bytes),
        &mut |_, _| {},
    );
    let clean = report.as_ref().is_ok_and(|r| r.is_ok());
    for index in [0, size / 2, size.saturating_sub(1)] {
        match verify::prove_from_export(&dir, index) {
            Ok(proof) => {
                let entry = proof.extra.clone().unwrap_or_default();
                let verified = proof.verify(&entry, &verifier);
                assert!(
                    !clean || verified.is_ok(),
                    "a clean export gave a proof that does not verify: {verified:?}"
                );
            }
            Err(e) => assert!(
                !clean || size == 0,
                "a clean export gave no proof for {index}: {e}"
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(clean)
}

/// The files of an export of `size` entries in the order [`export`]'s
/// selectors number them: entry bundles, then hash tiles.
fn export_paths(size: u64) -> Vec<String> {
    let width = |n: u64| (size - n * tiles::TILE_WIDTH).min(tiles::TILE_WIDTH);
    let mut paths: Vec<String> = (0..size.div_ceil(tiles::TILE_WIDTH))
        .map(|n| tiles::entries_path(n, width(n)))
        .collect();
    paths.extend(
        tiles::tiles_for(size)
            .into_iter()
            .map(|(l, i, w)| tiles::tile_path(l, i, w)),
    );
    paths
}

fn signer() -> Option<note::SignerKey> {
    note::SignerKey::from_seed("iq.moi.ahtd/audit", note::TYPE_ED25519, [1; 32]).ok()
}

fn fixture() -> Option<[note::VerifierKey; 2]> {
    let log = signer()?;
    let w = note::SignerKey::from_seed("witness.example/w1", note::TYPE_COSIGNATURE_V1, [2; 32])
        .ok()?;
    Some([log.verifier(), w.verifier()])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;
    use crate::{Entry, EventType, Log};

    /// The fuzz input format reaches the verifier's deepest checks: a real
    /// export in that format is clean, and one flipped byte in any file of
    /// it is found.
    #[test]
    fn a_real_export_in_the_fuzz_format_is_clean_and_a_flipped_byte_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&tmp.path().join("log")).unwrap();
        let size = 300u16;
        for i in 0..size {
            log.append(Entry::new(EventType::DirectoryChanged, u64::from(i)))
                .unwrap();
        }
        let out = tmp.path().join("out");
        log.export(&out, &signer().unwrap()).unwrap();
        let paths = export_paths(u64::from(size));
        let files: Vec<Vec<u8>> = paths
            .iter()
            .map(|p| std::fs::read(out.join(p)).unwrap())
            .collect();
        let input = |flip: Option<usize>| {
            let mut data = size.to_be_bytes().to_vec();
            for (i, f) in files.iter().enumerate() {
                let mut f = f.clone();
                if flip == Some(i) {
                    let n = f.len() / 2;
                    f[n] ^= 1;
                }
                data.push(i as u8);
                data.extend_from_slice(&(f.len() as u16).to_be_bytes());
                data.extend_from_slice(&f);
            }
            data
        };
        assert_eq!(export_checked(&input(None)), Some(true));
        for (i, path) in paths.iter().enumerate() {
            assert_eq!(
                export_checked(&input(Some(i))),
                Some(false),
                "{path} altered"
            );
        }
    }
}
