//! The log's files on disk: full tiles and entry bundles in the C2SP
//! tlog-tiles layout under `<dir>/tile/`, and the tail file `<dir>/entries`
//! holding the records after the last rotation (`spec/audit-log.md` §6).
//!
//! ```text
//! <dir>/tile/<L>/<N>            full hash tile (256 hashes), written once
//! <dir>/tile/<L>/<N>.p/<W>      partial tile at a rotation point (L >= 1)
//! <dir>/tile/entries/<N>        full entry bundle (256 entries), written once
//! <dir>/entries                 "ISNADLG2" ‖ base u64 BE ‖ root(base) ‖ records
//! ```
//!
//! Every tile and bundle file goes through the storage seam
//! ([`crate::disk::DurableFile`]), so the fault layer reaches it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::disk::{DiskFaults, DurableFile};
use crate::log::LogError;
use crate::merkle::Hash;
use crate::tiled::{TileError, TileReader};
use crate::tiles::{self, TILE_WIDTH};

/// First 8 bytes of a tail file.
pub(crate) const TAIL_MAGIC: &[u8; 8] = b"ISNADLG2";
/// Magic ‖ base ‖ root.
pub(crate) const TAIL_HEADER_LEN: u64 = 8 + 8 + 32;

/// Threads that sync the files of a rotation at once. Each `fdatasync` of
/// a new file writes its inode and flushes the device's cache (on ext4
/// with a journal: waits for a journal commit); syncs issued together
/// overlap and share those flushes and commits. Measured on the 2-vCPU VM under other
/// sessions' disk traffic: 128 new files synced one after the other took
/// 72-433 ms, by 8 threads 32-77 ms, by 16 threads 17-44 ms, by 32 or 64
/// threads no less (16-39 and 23-27 ms).
const SYNC_THREADS: usize = 16;

/// A file written and not yet synced, with the handle that wrote it.
pub(crate) type Written = (PathBuf, Box<dyn DurableFile>);

/// Where the log's files are and how they are opened for writing.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) faults: Option<DiskFaults>,
}

impl Store {
    /// Opens (creating, emptying) `path` for writing through the seam.
    pub(crate) fn create(&self, path: &Path) -> Result<Box<dyn DurableFile>, LogError> {
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err("create directory", parent))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("create", path))?;
        self.wrap(file, path)
    }

    /// Puts an open file behind the seam.
    pub(crate) fn wrap(&self, file: File, path: &Path) -> Result<Box<dyn DurableFile>, LogError> {
        match &self.faults {
            None => Ok(Box::new(file)),
            Some(f) => Ok(Box::new(f.wrap(file, path).map_err(io_err("open", path))?)),
        }
    }

    /// Writes a tile or bundle file, not synced: the handle is kept for
    /// [`Store::sync_files`] (a sync through the handle that wrote).
    pub(crate) fn write_file(&self, rel: &str, data: &[u8]) -> Result<Written, LogError> {
        let path = self.dir.join(rel);
        let f = self.create(&path)?;
        f.write_all_at(data, 0).map_err(io_err("write", &path))?;
        Ok((path, f))
    }

    /// Syncs the written files, several at once (see [`SYNC_THREADS`]),
    /// and then their directories.
    pub(crate) fn sync_files(&self, files: &[Written]) -> Result<(), LogError> {
        let threads = files.len().min(SYNC_THREADS);
        if threads > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        s.spawn(move || {
                            files
                                .iter()
                                .skip(t)
                                .step_by(threads)
                                .try_for_each(|(p, f)| f.sync_data().map_err(io_err("sync", p)))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            })?;
        } else {
            for (p, f) in files {
                f.sync_data().map_err(io_err("sync", p))?;
            }
        }
        let mut dirs = BTreeSet::new();
        for (p, _) in files {
            let mut d = p.parent();
            while let Some(dir) = d {
                if !dir.starts_with(&self.dir) || !dirs.insert(dir.to_owned()) {
                    break;
                }
                d = dir.parent();
            }
        }
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        Ok(())
    }

    /// The bytes of a stored file of the layout; a missing one is
    /// [`LogError::TileMissing`].
    pub(crate) fn read(&self, rel: &str) -> Result<Vec<u8>, LogError> {
        let path = self.dir.join(rel);
        fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LogError::TileMissing { path: path.clone() }
            } else {
                io_err("read", &path)(e)
            }
        })
    }

    /// The hashes of partial tile `level`/`index` of `width`.
    pub(crate) fn read_partial(
        &self,
        level: u32,
        index: u64,
        width: u64,
    ) -> Result<Vec<Hash>, LogError> {
        let rel = tiles::tile_path(level, index, width);
        let data = self.read(&rel)?;
        if data.len() as u64 != 32 * width {
            return Err(LogError::TileCorrupted {
                path: self.dir.join(rel),
            });
        }
        data.chunks_exact(32)
            .map(|c| {
                Hash::from_slice(c).map_err(|_| LogError::TileCorrupted {
                    path: self.dir.join(tiles::tile_path(level, index, width)),
                })
            })
            .collect()
    }
}

/// Reads full tiles from the store; a tile that fails its check is reported
/// with its path.
pub(crate) struct Reader<'a>(pub(crate) &'a Store);

impl TileReader for Reader<'_> {
    type Error = LogError;
    fn read_tile(&self, level: u32, index: u64) -> Result<Vec<u8>, LogError> {
        self.0.read(&tiles::tile_path(level, index, TILE_WIDTH))
    }
}

impl From<TileError> for LogError {
    /// The tile's path is relative to the log directory here;
    /// [`in_dir`] makes it absolute.
    fn from(e: TileError) -> Self {
        match e {
            TileError::Length { level, index, .. } | TileError::Mismatch { level, index } => {
                LogError::TileCorrupted {
                    path: PathBuf::from(tiles::tile_path(level, index, TILE_WIDTH)),
                }
            }
            TileError::Proof(p) => LogError::Proof(p),
            // Non-exhaustive upstream: any other tile fault is damage too.
            _ => LogError::TileCorrupted {
                path: PathBuf::from("tile"),
            },
        }
    }
}

/// Makes the path of a tile error absolute under `dir`.
pub(crate) fn in_dir(dir: &Path, e: LogError) -> LogError {
    match e {
        LogError::TileCorrupted { path } if path.is_relative() => LogError::TileCorrupted {
            path: dir.join(path),
        },
        e => e,
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |error| LogError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}
