//! The C2SP tlog-tiles read path over a live log: the bytes of any hash
//! tile and entry bundle the durable tree has, read while appends go on
//! (`spec/audit-log.md` §7.1). A node's HTTP server and the export both
//! take their files from here, so what an auditor fetches and what an
//! export holds are the same bytes.
//!
//! Full tiles and bundles below the tail are the log's own stored files,
//! checked against the tree on the way (a damaged one is an error naming
//! it, never served); partial tiles and bundles, and full ones still in
//! the tail, are computed from the right edge and the tail.

use super::{Log, LogError};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};

/// Whether the tree of `size` leaves has hash tile `level`/`index` of
/// `width` hashes (a full tile for 256, else a partial one, which any
/// larger tree also has: partial tiles are prefixes of their full tile).
pub fn has_tile(size: u64, level: u32, index: u64, width: u64) -> bool {
    let shift = level.saturating_mul(TILE_HEIGHT);
    if shift >= 64 || width == 0 || width > TILE_WIDTH {
        return false;
    }
    index
        .checked_mul(TILE_WIDTH)
        .and_then(|first| first.checked_add(width))
        .is_some_and(|end| end <= size >> shift)
}

/// Whether the tree of `size` leaves has entry bundle `index` of `width`
/// entries.
pub fn has_bundle(size: u64, index: u64, width: u64) -> bool {
    has_tile(size, 0, index, width)
}

impl Log {
    /// The bytes of hash tile `level`/`index` of `width` hashes (256: the
    /// full tile), as the tlog-tiles read path serves it, or `None` when
    /// the durable tree does not have it (yet).
    pub fn read_tile(
        &self,
        level: u32,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, LogError> {
        if !has_tile(self.size(), level, index, width) {
            return Ok(None);
        }
        self.tile_bytes(level, index, width).map(Some)
    }

    /// The bytes of entry bundle `index` of `width` entries (each a
    /// big-endian `u16` length and the entry), or `None` when the durable
    /// log does not have it (yet).
    pub fn read_bundle(&self, index: u64, width: u64) -> Result<Option<Vec<u8>>, LogError> {
        if !has_bundle(self.size(), index, width) {
            return Ok(None);
        }
        self.bundle_bytes(index, width).map(Some)
    }

    /// The stored checkpoint note (the last one [`Log::sign_checkpoint`]
    /// or [`Log::adopt_checkpoint`] made durable), or `None` before the
    /// first.
    pub fn checkpoint_note(&self) -> Result<Option<Vec<u8>>, LogError> {
        let path = self.dir.join(super::CHECKPOINT_FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::tilestore::io_err("read", &path)(e)),
        }
    }

    /// The bytes of bundle `n` of `width` entries, which the durable log
    /// has: the stored bundle file (checked) below the tail, else the
    /// entries read from the tail.
    pub(super) fn bundle_bytes(&self, n: u64, width: u64) -> Result<Vec<u8>, LogError> {
        let first = n * TILE_WIDTH;
        let items = if first + TILE_WIDTH <= self.lock().base {
            self.bundle(n)?
        } else {
            (first..first + width)
                .map(|i| self.entry_bytes(i))
                .collect::<Result<_, _>>()?
        };
        let mut bundle = Vec::new();
        for e in items.iter().take(width as usize) {
            bundle.extend_from_slice(&(e.len() as u16).to_be_bytes());
            bundle.extend_from_slice(e);
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;
    use crate::tiles;
    use crate::{Entry, EventType};

    #[test]
    fn tiles_exist_once_the_durable_tree_covers_them() {
        // 256 * 3 + 10 leaves: level 0 has tiles 0..3 full and 3.p/10;
        // level 1 has 3 nodes: 0.p/1..=3.
        let size = 256 * 3 + 10;
        assert!(has_tile(size, 0, 2, 256));
        assert!(!has_tile(size, 0, 3, 256));
        assert!(has_tile(size, 0, 3, 10));
        assert!(!has_tile(size, 0, 3, 11));
        assert!(has_tile(size, 0, 0, 7), "a prefix of a full tile");
        assert!(has_tile(size, 1, 0, 3));
        assert!(!has_tile(size, 1, 0, 4));
        assert!(!has_tile(size, 0, 0, 0));
        assert!(!has_tile(size, 0, 0, 257));
        assert!(!has_tile(u64::MAX, 8, 0, 1), "no level 8: 64 tree levels");
        assert!(!has_tile(u64::MAX, 0, u64::MAX, 256), "no overflow");
        assert!(has_bundle(size, 3, 10));
        assert!(!has_bundle(size, 4, 1));
    }

    #[test]
    fn served_files_are_the_export_files() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(&dir.path().join("log")).unwrap();
        for t in 0..(256 * 2 + 3) {
            let mut e = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000 + t);
            e.reason = Some(format!("entry {t}"));
            log.append(e).unwrap();
        }
        let key =
            crate::SignerKey::generate("example/audit", &ring::rand::SystemRandom::new()).unwrap();
        let out = dir.path().join("export");
        let summary = log.export(&out, &key).unwrap();
        let size = summary.size;
        for (level, index, width) in tiles::tiles_for(size) {
            let path = tiles::tile_path(level, index, width);
            let served = log.read_tile(level, index, width).unwrap().unwrap();
            assert_eq!(served, std::fs::read(out.join(&path)).unwrap(), "{path}");
        }
        for n in 0..size.div_ceil(TILE_WIDTH) {
            let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
            let path = tiles::entries_path(n, width);
            let served = log.read_bundle(n, width).unwrap().unwrap();
            assert_eq!(served, std::fs::read(out.join(&path)).unwrap(), "{path}");
        }
        assert_eq!(log.read_tile(0, 2, 4).unwrap(), None, "not yet existing");
        assert_eq!(log.read_bundle(3, 1).unwrap(), None);
        assert_eq!(log.read_tile(1, 0, 3).unwrap(), None);
    }
}
