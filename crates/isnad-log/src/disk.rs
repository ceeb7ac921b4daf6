//! The storage seam under durable files: what the log (and, through a
//! `redb` backend, the node's state database) does to a file that must
//! survive a crash, and a fault layer for tests.
//!
//! [`DurableFile`] is the small set of operations whose effect on disk
//! matters: positioned writes, length changes and `fdatasync`. The real
//! file ([`std::fs::File`]) implements it; the log calls it once per batch
//! through a trait object, which costs nothing next to the `fdatasync` it
//! wraps. Reads go to the file directly: what a read sees is the page cache,
//! which is the same with or without the seam.
//!
//! [`DiskFaults`] is the test side (not for production): files opened
//! through it ([`DiskFaults::open`]) can be made to fail their next writes
//! or syncs with `ENOSPC` or `EIO`, and a crash can be simulated. Power loss
//! keeps only what a completed sync covered; `kill -9` keeps the page cache
//! too, so a missing sync goes unnoticed by a kill test. [`DiskFaults::crash`]
//! freezes the disk (every later write, length change or sync fails and
//! changes nothing), and [`DiskFaults::restore`] then rolls every file back
//! to what its last successful sync covered — an undo record of the bytes
//! each unsynced write or truncation replaced is kept per file until the
//! next sync. The controller stays frozen, so that handles of the crashed
//! process dropped late change nothing: the restarted process opens the
//! files anew (without a controller, or with a new one).
//!
//! The model covers file contents and lengths; creating, renaming and
//! removing files and syncing directories are not part of it (a file
//! renamed away or replaced by a rename is left as it is at restore).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The operations on a durable file whose effect on disk matters.
#[allow(clippy::len_without_is_empty)] // A file's length, not a collection's.
pub trait DurableFile: std::fmt::Debug + Send + Sync {
    /// Writes all of `buf` at byte `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Sets the file's length (new bytes read as zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at byte `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl DurableFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// Which error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `ENOSPC`: no space left on the device.
    NoSpace,
    /// `EIO`: an I/O error of the device.
    Io,
}

impl Fault {
    fn error(self) -> io::Error {
        // Linux errno values (the node runs on Linux).
        match self {
            Fault::NoSpace => io::Error::from_raw_os_error(28),
            Fault::Io => io::Error::from_raw_os_error(5),
        }
    }
}

/// A fault controller for the files opened through it (tests only): inject
/// `ENOSPC`/`EIO` on writes or syncs, crash, restore. Cheap to clone; all
/// clones control the same files.
#[derive(Debug, Clone, Default)]
pub struct DiskFaults(Arc<Controller>);

#[derive(Debug, Default)]
struct Controller {
    /// Fail writes and length changes with this fault.
    writes: Mutex<Option<Fault>>,
    /// Fail syncs with this fault.
    syncs: Mutex<Option<Fault>>,
    /// Fail writes and length changes of files under this path.
    writes_under: Mutex<Option<(PathBuf, Fault)>>,
    /// Crashed: everything fails and changes nothing until `restore`.
    frozen: AtomicBool,
    /// Crash automatically when this many more syncs have completed (0 = off).
    crash_after_syncs: AtomicU64,
    /// Operations refused by an injected fault or the crash.
    refused: AtomicU64,
    /// Successful syncs.
    syncs_done: AtomicU64,
    files: Mutex<Vec<Arc<Mutex<Undo>>>>,
}

/// What a file looked like at its last successful sync: its length then,
/// and the bytes each later write or truncation replaced, oldest first.
#[derive(Debug)]
struct Undo {
    path: PathBuf,
    /// The file's inode: a path renamed over since names another file.
    ino: u64,
    synced_len: u64,
    replaced: Vec<(u64, Vec<u8>)>,
}

impl DiskFaults {
    /// A controller with no faults set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens `path` (read and write, created if missing) as a file under
    /// this controller. Its current content counts as synced.
    pub fn open(&self, path: &Path) -> io::Result<FaultyFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        self.wrap(file, path)
    }

    /// Puts an open file under this controller (its current content counts
    /// as synced).
    pub fn wrap(&self, file: File, path: &Path) -> io::Result<FaultyFile> {
        let meta = file.metadata()?;
        let undo = Arc::new(Mutex::new(Undo {
            path: path.to_owned(),
            ino: std::os::unix::fs::MetadataExt::ino(&meta),
            synced_len: meta.len(),
            replaced: Vec::new(),
        }));
        lock(&self.0.files).push(Arc::clone(&undo));
        Ok(FaultyFile {
            file,
            undo,
            faults: self.clone(),
        })
    }

    /// Fails every later write and length change with `fault` (`None`: let
    /// them through again).
    pub fn fail_writes(&self, fault: Option<Fault>) {
        *lock(&self.0.writes) = fault;
    }

    /// Fails every later write and length change of a file whose path
    /// starts with `prefix` (e.g. a log's `tile` directory) with `fault`
    /// (`None`: let them through again).
    pub fn fail_writes_under(&self, prefix: Option<(&Path, Fault)>) {
        *lock(&self.0.writes_under) = prefix.map(|(p, f)| (p.to_owned(), f));
    }

    /// Fails every later sync with `fault` (`None`: let them through again).
    pub fn fail_syncs(&self, fault: Option<Fault>) {
        *lock(&self.0.syncs) = fault;
    }

    /// Clears the injected write and sync faults (space came back).
    pub fn heal(&self) {
        self.fail_writes(None);
        self.fail_writes_under(None);
        self.fail_syncs(None);
    }

    /// Power is cut now: every later write, length change or sync fails
    /// and changes nothing, until [`DiskFaults::restore`].
    pub fn crash(&self) {
        self.0.frozen.store(true, Ordering::SeqCst);
    }

    /// Cuts power right after the `n`-th successful sync from now (`n` ≥ 1).
    pub fn crash_after_syncs(&self, n: u64) {
        self.0.crash_after_syncs.store(n, Ordering::SeqCst);
    }

    /// Whether the disk is crashed (frozen).
    pub fn crashed(&self) -> bool {
        self.0.frozen.load(Ordering::SeqCst)
    }

    /// After a crash: rolls each file back to what its last successful
    /// sync covered and forgets the files. The controller stays crashed
    /// (handles still open change nothing); open the files anew.
    pub fn restore(&self) -> io::Result<()> {
        if !self.crashed() {
            return Err(io::Error::other("restore without a crash"));
        }
        let files = std::mem::take(&mut *lock(&self.0.files));
        for undo in files {
            let mut u = lock(&undo);
            // A file renamed away since (a temporary file put in place) or
            // replaced by a rename is not there to roll back: renames are
            // outside the model.
            let f = match std::fs::OpenOptions::new().write(true).open(&u.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if std::os::unix::fs::MetadataExt::ino(&f.metadata()?) != u.ino {
                continue;
            }
            for (offset, bytes) in u.replaced.drain(..).rev() {
                FileExt::write_all_at(&f, &bytes, offset)?;
            }
            f.set_len(u.synced_len)?;
            f.sync_all()?;
        }
        Ok(())
    }

    /// Operations refused so far by an injected fault or the crash.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::SeqCst)
    }

    /// Successful syncs so far.
    pub fn syncs(&self) -> u64 {
        self.0.syncs_done.load(Ordering::SeqCst)
    }

    fn check(&self, which: &Mutex<Option<Fault>>) -> io::Result<()> {
        if self.0.frozen.load(Ordering::SeqCst) {
            self.0.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Fault::Io.error());
        }
        if let Some(f) = *lock(which) {
            self.0.refused.fetch_add(1, Ordering::SeqCst);
            return Err(f.error());
        }
        Ok(())
    }
}

/// A file under a [`DiskFaults`] controller.
#[derive(Debug)]
pub struct FaultyFile {
    file: File,
    undo: Arc<Mutex<Undo>>,
    faults: DiskFaults,
}

impl FaultyFile {
    /// The fault set for files under a path, if this file is under it.
    fn check_under(&self, u: &Undo) -> io::Result<()> {
        if let Some((prefix, f)) = &*lock(&self.faults.0.writes_under) {
            if u.path.starts_with(prefix) {
                self.faults.0.refused.fetch_add(1, Ordering::SeqCst);
                return Err(f.error());
            }
        }
        Ok(())
    }

    /// Remembers the bytes in `[offset, offset + len)` that exist now.
    fn save(&self, u: &mut Undo, offset: u64, len: u64) -> io::Result<()> {
        let end = self.file.metadata()?.len().min(offset.saturating_add(len));
        if end > offset {
            let mut old = vec![0u8; (end - offset) as usize];
            FileExt::read_exact_at(&self.file, &mut old, offset)?;
            u.replaced.push((offset, old));
        }
        Ok(())
    }
}

impl DurableFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.check(&self.faults.0.writes)?;
        let mut u = lock(&self.undo);
        self.check_under(&u)?;
        self.save(&mut u, offset, buf.len() as u64)?;
        FileExt::write_all_at(&self.file, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check(&self.faults.0.writes)?;
        let mut u = lock(&self.undo);
        self.check_under(&u)?;
        self.save(&mut u, len, u64::MAX - len)?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check(&self.faults.0.syncs)?;
        let mut u = lock(&self.undo);
        self.file.sync_data()?;
        u.synced_len = self.file.metadata()?.len();
        u.replaced.clear();
        drop(u);
        self.faults.0.syncs_done.fetch_add(1, Ordering::SeqCst);
        let left = &self.faults.0.crash_after_syncs;
        if left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok_and(|n| n == 1)
        {
            self.faults.crash();
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.file, buf, offset)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;

    /// Writes and truncations after the last sync are undone by a crash;
    /// synced ones stay; injected faults refuse and change nothing.
    #[test]
    fn crash_keeps_exactly_what_a_sync_covered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faults = DiskFaults::new();
        let f = faults.open(&path).unwrap();
        f.write_all_at(b"hello world", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"HELLO", 0).unwrap();
        f.write_all_at(b"!!!", 11).unwrap();
        f.set_len(8).unwrap();
        faults.fail_writes(Some(Fault::NoSpace));
        let e = f.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        faults.crash();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        drop(f);
        faults.restore().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        // A sync covers everything before it.
        let faults = DiskFaults::new();
        let f = faults.open(&path).unwrap();
        f.write_all_at(b"J", 0).unwrap();
        f.sync_data().unwrap();
        faults.crash_after_syncs(1);
        f.write_all_at(b"K", 1).unwrap();
        f.sync_data().unwrap();
        assert!(faults.crashed());
        drop(f);
        faults.restore().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"JKllo world");
    }
}
