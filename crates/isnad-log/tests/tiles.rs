//! Tiles are the storage (spec/audit-log.md §6): full tiles and bundles on
//! disk, a tail after them, migration of the old layout, and the faults of
//! issue 18 (a damaged or missing tile, a crash between tiles and the tail,
//! a full disk while writing a tile).
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::fs;
use std::path::Path;

use isnad_log::disk::{DiskFaults, Fault};
use isnad_log::{
    leaf_hash, verify_export, verify_inclusion, Entry, EventType, Log, LogError, SignerKey, Tree,
};

fn entry(i: u64) -> Entry {
    let mut e = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000 + i);
    e.reason = Some(format!("directory serial {i}"));
    e
}

fn key() -> SignerKey {
    SignerKey::from_seed("iq.moi.ahtd/audit", isnad_log::note::TYPE_ED25519, [7; 32]).unwrap()
}

/// The leaves of entries `0..n` as the log stores them (seq = index).
fn leaves(n: u64) -> Tree {
    Tree::from_leaves((0..n).map(|i| {
        let mut e = entry(i);
        e.seq = i;
        leaf_hash(&e.encode().unwrap())
    }))
}

fn append(log: &Log, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i < to {
        let n = batch.min(to - i);
        let r = log.append_batch((i..i + n).map(entry)).unwrap();
        assert_eq!(r, i..i + n);
        i += n;
    }
}

fn magic(dir: &Path) -> Vec<u8> {
    fs::read(dir.join("entries")).unwrap()[..8].to_vec()
}

/// A log past a rotation keeps its history in tiles and bundles and only
/// the right edge in the tail file; it reopens to the same tree, serves
/// entries and proofs from tiles, and exports a log that verifies.
#[test]
fn tiles_hold_the_history_and_the_tail_only_the_right_edge() {
    let dir = tempfile::tempdir().unwrap();
    let n = 64 * 256 + 300;
    let (log, _) = Log::open(dir.path()).unwrap();
    append(&log, 0, n, 100);
    let tree = leaves(n);
    assert_eq!(log.root_at(n).unwrap(), tree.root());
    assert!(dir.path().join("tile/entries/000").is_file());
    assert!(dir.path().join("tile/entries/064").is_file());
    assert!(dir.path().join("tile/0/064").is_file());
    assert!(dir.path().join("tile/1/000.p/64").is_file());
    drop(log);
    // The tail holds the entries after the last rotation only.
    let rec = 8 + entry(0).encode().unwrap().len() as u64 + 2;
    let tail = fs::metadata(dir.path().join("entries")).unwrap().len();
    assert!(tail < 48 + 600 * rec, "tail of {tail} bytes holds history");
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!((report.size, report.truncated_bytes), (n, 0));
    assert_eq!(log.root_at(n).unwrap(), tree.root());
    for i in [0, 255, 256, 9_999, 16_383, 16_384, n - 1] {
        let e = Entry::decode(&log.entry_bytes(i).unwrap()).unwrap();
        assert_eq!((e.seq, e.time_ms), (i, 1_790_000_000_000 + i));
        let proof = log.inclusion_proof(i, n).unwrap();
        assert_eq!(proof, tree.inclusion_proof(i, n).unwrap());
        let leaf = leaf_hash(&log.entry_bytes(i).unwrap());
        verify_inclusion(i, n, &leaf, &proof, &tree.root()).unwrap();
    }
    assert_eq!(
        log.consistency_proof(1000, n).unwrap(),
        tree.consistency_proof(1000, n).unwrap()
    );
    let out = dir.path().join("export");
    log.export(&out, &key()).unwrap();
    let report = verify_export(&out, &key().verifier(), None, &mut |_, _| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        fs::read(out.join("tile/entries/003")).unwrap(),
        fs::read(dir.path().join("tile/entries/003")).unwrap()
    );
    // Appends go on after the reopen.
    append(&log, n, n + 10, 3);
    assert_eq!(log.root_at(n + 10).unwrap(), leaves(n + 10).root());
}

/// Writes a log in the old layout: "ISNADLG1" and every record.
fn write_old_layout(dir: &Path, n: u64) {
    fs::create_dir_all(dir).unwrap();
    let mut data = b"ISNADLG1".to_vec();
    for i in 0..n {
        let mut e = entry(i);
        e.seq = i;
        let payload = e.encode().unwrap();
        data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        data.extend_from_slice(&leaf_hash(&payload).as_bytes()[..4]);
        data.extend_from_slice(&payload);
    }
    fs::write(dir.join("entries"), data).unwrap();
}

/// An entries file of the old layout is moved to tiles at open. A
/// migration that fails half-way (the syncs of its tiles fail) leaves the
/// old file in place, and the next open migrates again, even over a torn
/// tile the failed attempt left.
#[test]
fn the_old_layout_is_migrated_at_open_and_again_after_a_failed_migration() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let n = 1000;
    write_old_layout(&dir, n);
    let old = fs::read(dir.join("entries")).unwrap();
    let faults = DiskFaults::new();
    faults.fail_syncs(Some(Fault::Io));
    let r = Log::open_with_faults(&dir, &faults);
    assert!(matches!(r, Err(LogError::Io { .. })), "{r:?}");
    assert_eq!(fs::read(dir.join("entries")).unwrap(), old, "old file kept");
    // The failed attempt wrote tiles; tear one.
    let torn = dir.join("tile/0/001");
    let len = fs::metadata(&torn).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (log, report) = Log::open(&dir).unwrap();
    assert_eq!(report.size, n);
    assert_eq!(magic(&dir), b"ISNADLG2");
    assert_eq!(log.root_at(n).unwrap(), leaves(n).root());
    assert_eq!(fs::metadata(&torn).unwrap().len(), 8192);
    for i in [0, 300, 999] {
        let e = Entry::decode(&log.entry_bytes(i).unwrap()).unwrap();
        assert_eq!(e.seq, i);
    }
    drop(log);
    let (_, report) = Log::open(&dir).unwrap();
    assert_eq!(report.size, n);
}

/// An old-layout file shorter than one entry bundle (a young node's log, as
/// in the release-0.1.0 fixture) migrates too: its 8-byte header is shorter
/// than the tail's, which the rotation's offset arithmetic must allow for
/// (it underflowed before).
#[test]
fn an_old_layout_shorter_than_one_bundle_is_migrated() {
    for n in [0, 1, 20, 255, 256, 257] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        write_old_layout(&dir, n);
        let (log, report) = Log::open(&dir).unwrap();
        assert_eq!(report.size, n, "{n} entries");
        assert_eq!(magic(&dir), b"ISNADLG2");
        assert_eq!(log.root_at(n).unwrap(), leaves(n).root(), "{n} entries");
        for i in (0..n).step_by(7) {
            let e = Entry::decode(&log.entry_bytes(i).unwrap()).unwrap();
            assert_eq!(e.seq, i);
        }
        // The log appends after the migration and reopens with everything.
        assert_eq!(log.append(entry(n)).unwrap(), n);
        drop(log);
        let (_, report) = Log::open(&dir).unwrap();
        assert_eq!(report.size, n + 1, "{n} entries");
    }
}

fn restore(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}

/// A tile or bundle missing or damaged is reported with its path, at open
/// when open reads it (the partial tiles at the tail's base, the newest
/// full tile, the tiles under the stored checkpoint) and otherwise when it
/// is read; nothing is rebuilt.
#[test]
fn a_missing_or_damaged_tile_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    {
        let (log, _) = Log::open(&dir).unwrap();
        append(&log, 0, 100, 50);
        log.sign_checkpoint(&key()).unwrap();
        append(&log, 100, 600, 50);
    }
    // Reopening moves the two complete bundles to tiles (base 512).
    drop(Log::open(&dir).unwrap());
    let expect = |rel: &str, missing: bool| {
        let path = dir.join(rel);
        let r = Log::open(&dir).map(|_| ());
        match r {
            Err(LogError::TileMissing { path: p }) if missing => assert_eq!(p, path),
            Err(LogError::TileCorrupted { path: p }) if !missing => assert_eq!(p, path),
            other => panic!("{rel}: {other:?}"),
        }
    };
    for rel in ["tile/0/001", "tile/1/000.p/2", "tile/0/000"] {
        let path = dir.join(rel);
        let good = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        expect(rel, true);
        let mut bad = good.clone();
        bad[40] ^= 1;
        restore(&path, &bad);
        expect(rel, false);
        restore(&path, &good);
    }
    // A bundle no open reads: found when read, with its path.
    let path = dir.join("tile/entries/001");
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    restore(&path, &bad);
    let (log, _) = Log::open(&dir).unwrap();
    match log.entry_bytes(300) {
        Err(LogError::TileCorrupted { path: p }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    let r = log.export(&tmp.path().join("out"), &key());
    assert!(matches!(r, Err(LogError::TileCorrupted { .. })), "{r:?}");
    assert!(log.entry_bytes(100).is_ok(), "bundle 000 is intact");
    drop(log);
    restore(&path, &good);
    let (log, _) = Log::open(&dir).unwrap();
    assert_eq!(log.root_at(600).unwrap(), leaves(600).root());
}

/// Power loss at any of the syncs of a run that crosses a rotation (tail
/// syncs, the tile syncs of the rotation, the new tail's sync): the log
/// opens and holds every acknowledged entry.
#[test]
fn a_crash_between_tiles_and_the_tail_loses_nothing_acknowledged() {
    // 32 tail syncs reach the rotation (sync 33 to 162: 128 bundles and
    // tiles, a partial tile, the new tail), then the new tail's.
    for crash_at in [32, 33, 100, 160, 161, 162, 163, 164] {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::new();
        let (log, _) = Log::open_with_faults(dir.path(), &faults).unwrap();
        faults.crash_after_syncs(crash_at);
        let mut acked = 0;
        while acked < 64 * 256 + 1024 {
            match log.append_batch((acked..acked + 512).map(entry)) {
                Ok(r) => acked = r.end,
                Err(_) => break,
            }
        }
        assert!(faults.crashed(), "crash point {crash_at} not reached");
        drop(log);
        faults.restore().unwrap();
        let (log, report) = Log::open(dir.path()).unwrap();
        assert!(
            report.size >= acked,
            "crash at {crash_at}: {report:?} < {acked}"
        );
        assert_eq!(
            log.root_at(acked).unwrap(),
            leaves(acked).root(),
            "crash at {crash_at}"
        );
        for i in [0, acked / 2, acked.saturating_sub(1)] {
            if i < acked {
                assert_eq!(Entry::decode(&log.entry_bytes(i).unwrap()).unwrap().seq, i);
            }
        }
    }
}

/// ENOSPC while writing a tile, which happens after the batch that
/// completes it is durable: that batch is acknowledged (the tail holds it),
/// the log is poisoned like after a failed sync, so the next append gets
/// an error and nothing acknowledged is lost; once space is back, `reopen`
/// writes the tile and appends go on.
#[test]
fn a_full_disk_while_writing_a_tile_poisons_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = DiskFaults::new();
    let (log, _) = Log::open_with_faults(dir.path(), &faults).unwrap();
    append(&log, 0, 255, 50);
    faults.fail_writes_under(Some((&dir.path().join("tile"), Fault::NoSpace)));
    assert_eq!(log.append(entry(255)).unwrap(), 255);
    assert!(log.is_poisoned());
    assert!(matches!(log.append(entry(256)), Err(LogError::Poisoned)));
    assert_eq!(log.size(), 256);
    assert!(log.reopen().is_err(), "the tile directory is still full");
    assert!(log.is_poisoned());
    faults.heal();
    log.reopen().unwrap();
    assert!(dir.path().join("tile/entries/000").is_file());
    assert_eq!(log.append(entry(256)).unwrap(), 256);
    drop(log);
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!(report.size, 257);
    assert_eq!(log.root_at(257).unwrap(), leaves(257).root());
}

/// Power loss after the batch that completes a bundle is durable and
/// before its tiles are written (they are written after the batch is
/// acknowledged): the batch is acknowledged, and the log opens with the
/// same tree, writing the missing bundle and tile from the tail; an
/// export of it verifies.
#[test]
fn a_crash_between_a_durable_batch_and_its_tiles_keeps_the_tree() {
    // Bundle 0 alone, and bundles 0 to 63 (a rotation's worth at once).
    for (before, upto) in [(250, 300), (60 * 256, 64 * 256 + 10)] {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::new();
        let (log, _) = Log::open_with_faults(dir.path(), &faults).unwrap();
        append(&log, 0, before, 1000);
        let first = before / 256;
        let bundle = dir.path().join(format!("tile/entries/{first:03}"));
        assert!(!bundle.exists());
        // The disk freezes right after the next sync: the tail's.
        faults.crash_after_syncs(1);
        let r = log.append_batch((before..upto).map(entry)).unwrap();
        assert_eq!(r, before..upto);
        assert!(faults.crashed());
        drop(log);
        faults.restore().unwrap();
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!(report.size, upto, "{before}..{upto}");
        assert_eq!(log.root_at(upto).unwrap(), leaves(upto).root());
        assert!(dir.path().join("tile/entries/000").is_file());
        for i in [0, 255, upto - 1] {
            assert_eq!(Entry::decode(&log.entry_bytes(i).unwrap()).unwrap().seq, i);
        }
        let out = dir.path().join("export");
        log.export(&out, &key()).unwrap();
        let report = verify_export(&out, &key().verifier(), None, &mut |_, _| {}).unwrap();
        assert!(report.is_ok(), "{before}..{upto}");
    }
}

/// A clean close moves the complete bundles to tiles and starts the tail
/// after them (before, the tail kept every entry since the last rotation
/// and the next open wrote and synced their tiles): the next open finds a
/// short tail, changes nothing and gives the same tree.
#[test]
fn a_clean_close_rotates_so_the_next_open_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    append(&log, 0, 600, 100);
    drop(log);
    let tail = fs::read(dir.path().join("entries")).unwrap();
    assert_eq!(&tail[..8], b"ISNADLG2");
    let base = u64::from_be_bytes(tail[8..16].try_into().unwrap());
    assert_eq!(base, 512);
    assert!(dir.path().join("tile/entries/001").is_file());
    let (log, report) = Log::open(dir.path()).unwrap();
    assert_eq!((report.size, report.truncated_bytes), (600, 0));
    assert_eq!(fs::read(dir.path().join("entries")).unwrap(), tail);
    assert_eq!(log.root_at(600).unwrap(), leaves(600).root());
    assert_eq!(
        Entry::decode(&log.entry_bytes(300).unwrap()).unwrap().seq,
        300
    );
}
