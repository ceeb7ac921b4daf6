//! `verify_export` with a previous checkpoint checks only what is new since
//! it (spec/audit-log.md §9.1): the entries after it and the tiles above
//! them, tied to the previous root through the stored tiles; a rewritten
//! history, a damaged new entry or tile and a wrong root are still found.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::fs;
use std::path::{Path, PathBuf};

use isnad_log::note::{SignerKey, TYPE_ED25519};
use isnad_log::{tiles, verify_export, Entry, EventType, Log, Problem, Report};

fn key() -> SignerKey {
    SignerKey::from_seed("iq.moi.ahtd/audit", TYPE_ED25519, [9; 32]).unwrap()
}

fn entry(i: u64) -> Entry {
    let mut e = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000 + i);
    e.reason = Some(format!("entry {i}"));
    e
}

/// Entries of the log: full and partial level-0 tiles, a partial level-1
/// tile (78 nodes).
const SIZE: u64 = 20_000;

/// A log of `SIZE` entries with checkpoints signed at each of `at`, and its
/// export at `SIZE`. Returns the notes of the checkpoints.
fn log_with_checkpoints(dir: &Path, at: &[u64]) -> (PathBuf, Vec<String>) {
    let (log, _) = Log::open(&dir.join("log")).unwrap();
    let mut notes = Vec::new();
    for &m in at {
        let size = log.size();
        log.append_batch((size..m).map(entry)).unwrap();
        notes.push(log.sign_checkpoint(&key()).unwrap().note);
    }
    let size = log.size();
    log.append_batch((size..SIZE).map(entry)).unwrap();
    let out = dir.join("export");
    log.export(&out, &key()).unwrap();
    (out, notes)
}

fn since(out: &Path, previous: &str) -> Report {
    verify_export(
        out,
        &key().verifier(),
        Some(previous.as_bytes()),
        &mut |_, _| {},
    )
    .unwrap()
}

#[test]
fn only_the_new_part_is_read_and_it_ties_to_both_roots() {
    let dir = tempfile::tempdir().unwrap();
    let at = [0, 255, 256, 257, 5_000, SIZE - 1, SIZE];
    let (out, notes) = log_with_checkpoints(dir.path(), &at);
    for (m, note) in at.iter().zip(&notes) {
        let r = since(&out, note);
        assert!(r.is_ok(), "since {m}: {:?}", r.problems);
        assert_eq!(r.checked_from, m / 256 * 256, "since {m}");
    }
    // Without a previous checkpoint everything is read.
    let full = verify_export(&out, &key().verifier(), None, &mut |_, _| {}).unwrap();
    assert!(full.is_ok() && full.checked_from == 0);

    // What is before the bundle holding the previous end is not read again:
    // bundle 0 removed, the check since 5 000 still passes; the full one
    // does not.
    fs::remove_file(out.join("tile/entries/000")).unwrap();
    assert!(since(&out, &notes[4]).is_ok());
    let full = verify_export(&out, &key().verifier(), None, &mut |_, _| {}).unwrap();
    assert!(!full.is_ok());
}

#[test]
fn a_damaged_new_entry_or_tile_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (out, notes) = log_with_checkpoints(dir.path(), &[5_000]);
    // A new entry: the last full bundle.
    let n = SIZE / 256 - 1;
    let path = out.join(tiles::entries_path(n, 256));
    let mut bytes = fs::read(&path).unwrap();
    let keep = bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let r = since(&out, &notes[0]);
    assert!(
        r.problems.iter().any(|p| matches!(
            p,
            Problem::TileHash { level: 0, .. } | Problem::Entry { .. }
        )),
        "{:?}",
        r.problems
    );
    fs::write(&path, keep).unwrap();
    assert!(since(&out, &notes[0]).is_ok());
    // A new level-1 hash: the last of the partial level-1 tile.
    let path = out.join(tiles::tile_path(1, 0, SIZE >> 8));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let r = since(&out, &notes[0]);
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::TileHash { level: 1, .. })),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_rewritten_history_before_the_previous_checkpoint_is_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let (out, notes) = log_with_checkpoints(dir.path(), &[5_000]);
    // An old level-1 hash the new tree is built on (the partial level-1
    // tile: its first 19 nodes are complete at 5 000).
    let path = out.join(tiles::tile_path(1, 0, SIZE >> 8));
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let r = since(&out, &notes[0]);
    assert!(
        r.problems.iter().any(|p| matches!(
            p,
            Problem::Inconsistent {
                previous_size: 5_000,
                ..
            }
        )),
        "{:?}",
        r.problems
    );

    // A previous checkpoint of another log under the same key (a fork).
    let other = tempfile::tempdir().unwrap();
    let (flog, _) = Log::open(other.path()).unwrap();
    flog.append_batch((0..1000).map(|i| entry(i + 7))).unwrap();
    let fork = flog.sign_checkpoint(&key()).unwrap().note;
    let (out, _) = log_with_checkpoints(&other.path().join("b"), &[]);
    let r = since(&out, &fork);
    assert!(
        matches!(
            r.problems.as_slice(),
            [Problem::Inconsistent {
                previous_size: 1000,
                ..
            }]
        ),
        "{:?}",
        r.problems
    );
}
