//! Entry points for the fuzz targets in `fuzz/` (not a stable API): the
//! pure parsers' targets from `isnad_tlog::fuzzing` and the export
//! verifier's.

pub use isnad_tlog::fuzzing::*;

use crate::merkle::{Hash, Tree};
use crate::{checkpoint, tiles, verify};

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
