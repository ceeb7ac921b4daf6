//! The file-backed log: durability, recovery, corruption, export and the
//! verifier's tamper detection.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use isnad_log::note::{SignerKey, TYPE_COSIGNATURE_V1, TYPE_ED25519};
use isnad_log::{
    prove_from_export, verify_export, AuditError, Entry, EventType, Log, LogError, Problem,
};
use isnad_types::{AgencyId, MessageId};

fn key() -> SignerKey {
    SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [9; 32]).unwrap()
}

fn entry(i: u64) -> Entry {
    let mut e = Entry::new(EventType::Sent, 1_790_000_000_000 + i);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    e.message_id = Some(MessageId::from_bytes(id));
    e.sender = Some(AgencyId::new("iq.moi.ahtd").unwrap());
    e.recipient = Some(AgencyId::new("fr.mj.bepi").unwrap());
    e.envelope_sha256 = Some([i as u8; 32]);
    e
}

fn fill(dir: &Path, n: u64) -> Log {
    let (log, _) = Log::open(dir).unwrap();
    log.append_batch((0..n).map(entry)).unwrap();
    log
}

fn verify(dir: &Path) -> Vec<Problem> {
    verify_export(dir, &key().verifier(), None, &mut |_, _| {})
        .unwrap()
        .problems
}

#[test]
fn append_reopen_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(dir.path(), 10);
    assert_eq!(log.append(entry(10)).unwrap(), 10);
    let root = log.root_at(11).unwrap();
    let bytes = log.entry_bytes(4).unwrap();
    assert_eq!(Entry::decode(&bytes).unwrap().seq, 4);
    let proof = log.inclusion_proof(4, 11).unwrap();
    isnad_log::verify_inclusion(4, 11, &isnad_log::leaf_hash(&bytes), &proof, &root).unwrap();
    drop(log);
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!(report.size, 11);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.root_at(11).unwrap(), root);
    let c = log.consistency_proof(3, 11).unwrap();
    isnad_log::verify_consistency(3, 11, &log.root_at(3).unwrap(), &root, &c).unwrap();
    assert!(log.inclusion_proof(11, 11).is_err());
}

#[test]
fn concurrent_appends_get_distinct_durable_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    let log = Arc::new(log);
    // 64 threads share syncs; every eighth appends batches of 3 (the node's
    // path) between single appends. Each append must be durable (counted in
    // `size`) when it returns.
    let handles: Vec<_> = (0..64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..50 {
                    let at = log.append(entry(t * 1000 + i)).unwrap();
                    assert!(log.size() > at, "index {at} returned before it was durable");
                    got.push(at);
                    if t % 8 == 0 && i % 10 == 0 {
                        let r = log
                            .append_batch((0..3).map(|k| entry(t * 1000 + 500 + i + k)))
                            .unwrap();
                        assert_eq!(r.end - r.start, 3);
                        assert!(log.size() >= r.end);
                        got.extend(r);
                    }
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    let total = 64 * 50 + 8 * 5 * 3;
    assert_eq!(all, (0..total).collect::<Vec<_>>());
    // After the burst the group commit expects 64 appenders back; a lone
    // appender still completes (the leader's wait for them is bounded).
    assert_eq!(log.append(entry(1)).unwrap(), total);
    drop(log);
    let (log, _) = Log::open(dir.path()).unwrap();
    assert_eq!(log.size(), total + 1);
    for i in [0, total / 2, total] {
        assert_eq!(Entry::decode(&log.entry_bytes(i).unwrap()).unwrap().seq, i);
    }
}

#[test]
fn torn_tail_is_truncated_and_signed_entries_survive() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(dir.path(), 5);
    log.sign_checkpoint(&key()).unwrap();
    drop(log);
    let path = dir.path().join("entries");
    let full = fs::read(&path).unwrap();
    // A partial sixth record: header only, then half a payload.
    let one = entry(5).encode().unwrap();
    for cut in [3usize, 8, 8 + one.len() / 2] {
        let mut rec = (one.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(&isnad_log::leaf_hash(&one).as_bytes()[..4]);
        rec.extend_from_slice(&one);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&rec[..cut]).unwrap();
        drop(f);
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!(report.size, 5);
        assert_eq!(report.truncated_bytes, cut as u64);
        assert_eq!(fs::read(&path).unwrap(), full);
        drop(log);
    }
    // A complete final record with a bad checksum is a torn write too.
    let mut rec = (one.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&[0, 0, 0, 0]);
    rec.extend_from_slice(&one);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&rec)
        .unwrap();
    let (_, report) = Log::open(dir.path()).unwrap();
    assert_eq!(report.size, 5);
    // Zero-filled tail (file extended, data never written).
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0u8; 100])
        .unwrap();
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!((report.size, report.truncated_bytes), (5, 100));
    assert_eq!(log.append(entry(5)).unwrap(), 5);
}

#[test]
fn corrupted_middle_is_reported_and_nothing_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    drop(fill(dir.path(), 6));
    let path = dir.path().join("entries");
    let mut data = fs::read(&path).unwrap();
    let rec = 8 + entry(0).encode().unwrap().len(); // all records have the same size here
    let offset = 48 + 2 * rec; // after the tail header (magic, base, root)
    data[offset + 20] ^= 0x01; // inside the payload of entry 2
    fs::write(&path, &data).unwrap();
    match Log::open(dir.path()) {
        Err(LogError::Corrupted { offset: o, index }) => {
            assert_eq!((o, index), (offset as u64, 2));
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), data, "nothing may be truncated");
    // A damaged length field in the middle is corruption too.
    data[offset + 20] ^= 0x01;
    data[offset] = 0xff;
    fs::write(&path, &data).unwrap();
    assert!(matches!(
        Log::open(dir.path()),
        Err(LogError::Corrupted { index: 2, .. })
    ));
}

#[test]
fn rewritten_history_conflicts_with_the_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(dir.path(), 4);
    log.sign_checkpoint(&key()).unwrap();
    drop(log);
    // Rebuild the entries file with different content and the same size.
    let other = tempfile::tempdir().unwrap();
    let (log2, _) = Log::open(other.path()).unwrap();
    log2.append_batch((10..14).map(entry)).unwrap();
    drop(log2);
    fs::copy(other.path().join("entries"), dir.path().join("entries")).unwrap();
    assert!(matches!(
        Log::open(dir.path()),
        Err(LogError::CheckpointMismatch { size: 4 })
    ));
    // A shorter file than the signed size is refused too.
    let third = tempfile::tempdir().unwrap();
    drop(fill(third.path(), 2));
    fs::copy(third.path().join("entries"), dir.path().join("entries")).unwrap();
    assert!(matches!(
        Log::open(dir.path()),
        Err(LogError::CheckpointAhead {
            signed: 4,
            found: 2
        })
    ));
}

#[test]
fn checkpoints_only_grow_and_keep_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(dir.path(), 3);
    let a = log.sign_checkpoint(&key()).unwrap();
    log.append(entry(3)).unwrap();
    let b = log.sign_checkpoint(&key()).unwrap();
    assert_eq!((a.checkpoint.size, b.checkpoint.size), (3, 4));
    let proof = log.consistency_proof(3, 4).unwrap();
    isnad_log::verify_consistency(3, 4, &a.checkpoint.root, &b.checkpoint.root, &proof).unwrap();
    let other = SignerKey::from_seed("fr.mj.bepi/audit", TYPE_ED25519, [1; 32]).unwrap();
    assert!(matches!(
        log.sign_checkpoint(&other),
        Err(LogError::Origin { .. })
    ));
    drop(log);
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!(report.last_signed.map(|c| c.size), Some(4));
    assert_eq!(log.last_signed().map(|c| c.root), Some(b.checkpoint.root));
}

/// An exported log of 600 entries: 2 full bundles and a partial one, and a
/// level-1 tile.
fn exported() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(&dir.path().join("log"), 600);
    let out = dir.path().join("export");
    let s = log.export(&out, &key()).unwrap();
    assert_eq!((s.size, s.bundles, s.tiles), (600, 3, 4));
    (dir, out)
}

#[test]
fn export_verifies_and_proves() {
    let (_d, out) = exported();
    assert!(out.join("tile/0/000").is_file());
    assert!(out.join("tile/0/002.p/88").is_file());
    assert!(out.join("tile/1/000.p/2").is_file());
    assert!(out.join("tile/entries/002.p/88").is_file());
    assert_eq!(verify(&out), vec![]);
    for index in [0, 255, 256, 599] {
        let proof = prove_from_export(&out, index).unwrap();
        let entry = proof.extra.clone().unwrap();
        assert_eq!(Entry::decode(&entry).unwrap().seq, index);
        let text = proof.to_text();
        let parsed = isnad_log::TlogProof::parse(text.as_bytes()).unwrap();
        parsed.verify(&entry, &key().verifier()).unwrap();
        assert!(parsed
            .verify(
                &Entry::new(EventType::KeyRotated, 1).encode().unwrap(),
                &key().verifier()
            )
            .is_err());
    }
    assert!(prove_from_export(&out, 600).is_err());
}

#[test]
fn export_at_an_older_checkpoint_with_cosignatures_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(&dir.path().join("log"), 300);
    let old = log.sign_checkpoint(&key()).unwrap();
    log.append_batch((300..310).map(entry)).unwrap();
    // A witness cosigns the older checkpoint; the note carries its line.
    let witness = SignerKey::from_seed("fr.mj.bepi/witness", TYPE_COSIGNATURE_V1, [7; 32]).unwrap();
    let body = old.checkpoint.to_body();
    let mut signed = old.clone();
    signed
        .note
        .push_str(&witness.cosign(&body, 1_790_000_000).unwrap());
    let out = dir.path().join("export");
    let s = log.export_at(&out, &signed).unwrap();
    assert_eq!((s.size, s.bundles), (300, 2));
    assert_eq!(
        fs::read_to_string(out.join("checkpoint")).unwrap(),
        signed.note
    );
    assert_eq!(verify(&out), vec![]);
    assert_eq!(
        isnad_log::note::verify_cosignature(signed.note.as_bytes(), &witness.verifier()).unwrap(),
        1_790_000_000
    );
    // A checkpoint that is not of this log's tree is refused, nothing written.
    let other = dir.path().join("other");
    let mut forged = old.clone();
    forged.checkpoint.root = log.root_at(299).unwrap();
    assert!(matches!(
        log.export_at(&other, &forged),
        Err(LogError::CheckpointMismatch { size: 300 })
    ));
    let mut ahead = old;
    ahead.checkpoint.size = 311;
    assert!(matches!(
        log.export_at(&other, &ahead),
        Err(LogError::CheckpointMismatch { size: 311 })
    ));
    assert!(!other.exists());
}

#[test]
fn flipped_bit_in_an_entry_is_reported_with_its_index() {
    let (_d, out) = exported();
    let p = out.join("tile/entries/001");
    let mut data = fs::read(&p).unwrap();
    let per = data.len() / 256;
    let at = 10 * per + per - 3; // inside entry 256 + 10, near its end (envelope hash)
    data[at] ^= 0x04;
    fs::write(&p, &data).unwrap();
    let problems = verify(&out);
    assert!(
        problems.contains(&Problem::TileHash {
            path: "tile/0/001".into(),
            level: 0,
            position: 10,
            index: Some(266),
        }),
        "{problems:?}"
    );
}

#[test]
fn flipped_bit_in_a_tile_is_reported() {
    let (_d, out) = exported();
    let p = out.join("tile/1/000.p/2");
    let mut data = fs::read(&p).unwrap();
    data[40] ^= 0x80;
    fs::write(&p, &data).unwrap();
    let problems = verify(&out);
    assert_eq!(
        problems,
        vec![Problem::TileHash {
            path: "tile/1/000.p/2".into(),
            level: 1,
            position: 1,
            index: None
        }]
    );
}

#[test]
fn truncated_files_are_reported() {
    let (_d, out) = exported();
    let p = out.join("tile/0/002.p/88");
    let data = fs::read(&p).unwrap();
    fs::write(&p, &data[..data.len() - 1]).unwrap();
    let b = out.join("tile/entries/000");
    let data = fs::read(&b).unwrap();
    fs::write(&b, &data[..data.len() - 5]).unwrap();
    let problems = verify(&out);
    assert!(problems
        .iter()
        .any(|p| matches!(p, Problem::TileSize { path, .. } if path == "tile/0/002.p/88")));
    assert!(problems
        .iter()
        .any(|p| matches!(p, Problem::Bundle { path, .. } if path == "tile/entries/000")));
    fs::remove_file(&b).unwrap();
    assert!(verify(&out).contains(&Problem::MissingFile {
        path: "tile/entries/000".into()
    }));
}

#[test]
fn consistently_replaced_entries_fail_the_root() {
    // Tiles rewritten to match altered entries still fail against the signed root.
    let (_d, out) = exported();
    let dir2 = tempfile::tempdir().unwrap();
    let log2 = Log::open(dir2.path()).unwrap().0;
    log2.append_batch((1000..1600).map(entry)).unwrap();
    let out2 = dir2.path().join("x");
    log2.export(&out2, &key()).unwrap();
    fs::copy(out.join("checkpoint"), out2.join("checkpoint")).unwrap();
    let problems = verify(&out2);
    assert!(
        matches!(problems.as_slice(), [Problem::RootMismatch { .. }]),
        "{problems:?}"
    );
}

#[test]
fn checkpoint_signature_tampering_and_previous() {
    let (_d, out) = exported();
    let cp = fs::read_to_string(out.join("checkpoint")).unwrap();
    // Previous = the same checkpoint: consistent.
    let r = verify_export(&out, &key().verifier(), Some(cp.as_bytes()), &mut |_, _| {}).unwrap();
    assert!(r.is_ok());
    // A previous checkpoint from a forked log of the same key: inconsistent.
    let fork = tempfile::tempdir().unwrap();
    let flog = Log::open(fork.path()).unwrap().0;
    flog.append_batch((5000..5010).map(entry)).unwrap();
    let fcp = flog.sign_checkpoint(&key()).unwrap();
    let r = verify_export(
        &out,
        &key().verifier(),
        Some(fcp.note.as_bytes()),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(matches!(
        r.problems.as_slice(),
        [Problem::Inconsistent {
            previous_size: 10,
            ..
        }]
    ));
    // Flip one bit of the signature.
    let sig_at = cp.rfind(' ').unwrap() + 5;
    let mut bytes = cp.into_bytes();
    bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
    fs::write(out.join("checkpoint"), &bytes).unwrap();
    assert!(matches!(
        verify_export(&out, &key().verifier(), None, &mut |_, _| {}),
        Err(AuditError::Checkpoint { .. })
    ));
    // The wrong key.
    let other = SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [3; 32]).unwrap();
    assert!(verify_export(&out, &other.verifier(), None, &mut |_, _| {}).is_err());
}

#[test]
fn one_owner_per_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(dir.path(), 1);
    let before = fs::read(dir.path().join("entries")).unwrap();
    // A second open in this process is refused, also through another path,
    // and names the owner.
    let me = std::process::id();
    assert!(matches!(
        Log::open(dir.path()),
        Err(LogError::Locked { pid: Some(p), .. }) if p == me
    ));
    let other_path = dir.path().join(".").join("");
    assert!(matches!(
        Log::open(&other_path),
        Err(LogError::Locked { .. })
    ));
    // The refused opens left the owner's lock and its entries alone: a
    // third open is still refused (it used to find the lock file removed).
    assert!(matches!(
        Log::open(dir.path()),
        Err(LogError::Locked { .. })
    ));
    assert_eq!(fs::read(dir.path().join("entries")).unwrap(), before);
    log.append(entry(7)).unwrap();
    drop(log);
    // Closing releases the lock; the file stays. A pid left in it (a dead
    // owner, pid 1 that always exists) is not a lock.
    fs::write(dir.path().join(isnad_log::LOCK_FILE), "1").unwrap();
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!(report.size, 2);
    assert_eq!(
        fs::read_to_string(dir.path().join(isnad_log::LOCK_FILE))
            .unwrap()
            .trim(),
        me.to_string()
    );
    drop(log);
}

#[test]
fn export_never_writes_into_an_existing_tree_or_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(&dir.path().join("log"), 3);
    // Not empty: refused, the file in the way untouched.
    let busy = dir.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("checkpoint"), "mine").unwrap();
    assert!(matches!(
        log.export(&busy, &key()),
        Err(LogError::ExportTarget { .. })
    ));
    assert_eq!(fs::read_to_string(busy.join("checkpoint")).unwrap(), "mine");
    // A link to an empty directory is not an empty directory.
    let target = dir.path().join("elsewhere");
    fs::create_dir(&target).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        log.export(&link, &key()),
        Err(LogError::ExportTarget { .. })
    ));
    assert!(fs::read_dir(&target).unwrap().next().is_none());
    // A new or empty directory is fine.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    log.export(&empty, &key()).unwrap();
    log.export(&dir.path().join("new"), &key()).unwrap();
}

#[test]
fn log_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let log = fill(&log_dir, 1);
    log.sign_checkpoint(&key()).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log_dir), 0o700);
    for f in ["entries", "checkpoint", isnad_log::LOCK_FILE] {
        assert_eq!(mode(&log_dir.join(f)), 0o600, "{f}");
    }
}

#[test]
fn backup_while_appending_is_a_log_that_opens_with_every_durable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(fill(&dir.path().join("log"), 100));
    log.sign_checkpoint(&key()).unwrap();
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 100..400 {
                log.append(entry(i)).unwrap();
            }
        })
    };
    let out = dir.path().join("backup");
    let (size, checkpoint) = log.backup_to(&out).unwrap();
    writer.join().unwrap();
    assert!(size >= 100);
    assert_eq!(checkpoint.map(|c| c.size), Some(100));
    // A refused second backup into the same place.
    assert!(log.backup_to(&out).is_err());
    let (copy, report) = Log::open(&out).unwrap();
    assert_eq!(report.truncated_bytes, 0, "no preallocated zeros copied");
    assert_eq!(copy.size(), size);
    assert_eq!(copy.root_at(size).unwrap(), log.root_at(size).unwrap());
    assert_eq!(report.last_signed.map(|c| c.size), Some(100));
}

#[test]
fn an_adopted_checkpoint_binds_what_the_log_signs_and_opens() {
    let dir = tempfile::tempdir().unwrap();
    let log = fill(&dir.path().join("a"), 5);
    let at3 = {
        let other = fill(&dir.path().join("b"), 3);
        other.sign_checkpoint(&key()).unwrap()
    };
    let at5 = log.sign_checkpoint(&key()).unwrap();
    drop(log);
    // A log of 4 of the same entries: the checkpoint at 5 is ahead of it.
    let short = fill(&dir.path().join("c"), 4);
    assert!(matches!(
        short.adopt_checkpoint(&at5),
        Err(LogError::CheckpointAhead {
            signed: 5,
            found: 4
        })
    ));
    // A log whose entries differ at size 3 contradicts it.
    let (other, _) = Log::open(&dir.path().join("d")).unwrap();
    other.append_batch((10..13).map(entry)).unwrap();
    assert!(matches!(
        other.adopt_checkpoint(&at3),
        Err(LogError::CheckpointMismatch { size: 3 })
    ));
    // Consistent: stored, and a smaller one after it changes nothing.
    short.adopt_checkpoint(&at3).unwrap();
    drop(short);
    let (short, report) = Log::open(&dir.path().join("c")).unwrap();
    assert_eq!(report.last_signed.map(|c| c.size), Some(3));
    let grown = fill(&dir.path().join("e"), 5);
    grown.adopt_checkpoint(&at5).unwrap();
    grown.adopt_checkpoint(&at3).unwrap();
    drop(grown);
    let (_, report) = Log::open(&dir.path().join("e")).unwrap();
    assert_eq!(report.last_signed.map(|c| c.size), Some(5));
    drop(short);
}
