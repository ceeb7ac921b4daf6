//! The file-backed append-only log with group commit.
//!
//! Directory layout (normative in `spec/audit-log.md` §6):
//!
//! ```text
//! <dir>/tile/...     full hash tiles and entry bundles (C2SP tlog-tiles), written once
//! <dir>/entries      the tail: "ISNADLG2" ‖ base ‖ root(base), then records from entry
//!                    `base`: u32 BE len ‖ leaf_hash(payload)[..4] ‖ payload
//! <dir>/checkpoint   the last signed checkpoint note (replaced atomically)
//! <dir>/version      the directory's format version (crate::format)
//! ```
//!
//! `append` returns only after `fdatasync` covered the entry. Concurrent
//! appenders share syncs (group commit, leader/follower): records are
//! encoded into a queue under a `Mutex`; an appender that finds no sync
//! running becomes the leader, takes the whole queue, writes it with one
//! positioned write and one `fdatasync` outside the lock, then marks it
//! durable. One sync runs at a time.
//!
//! Followers sleep on a futex word (a "bell", `atomic-wait`), one per
//! parity of the batch number their records joined, so that the leader
//! wakes all the followers it made durable with one `wake_all` and does not
//! disturb those queued for the next batch. Before that, if records were
//! queued meanwhile, it rings the next batch's bell and wakes one of its
//! followers to lead, so the next sync overlaps the wake-ups. A woken
//! follower checks an atomic durable counter without retaking the lock and
//! sleeps again if it was not (yet) made durable. This measured about 30 %
//! less CPU per append than unparking each follower in turn (one futex
//! syscall per thread) on a 2-vCPU machine.
//!
//! Gathering: the appenders a sync made durable usually come straight back
//! with their next entry, but waking them takes a while. A new leader that
//! has fewer appenders queued than the last sync made durable therefore
//! waits for them to queue again before it writes, at most as long as the
//! last `write` + `fdatasync` took (the last one to arrive unparks it). This
//! never changes what is durable when, only how many records share a sync:
//! with 64 writers on 2 vCPUs about 55 instead of 30 appends per `fdatasync`.
//! A lone appender (the node's audit writer thread) never waits, since its
//! last sync made exactly one appender durable.
//!
//! Failure: if a write or sync fails, nothing is marked durable any more
//! (a later `fdatasync` may succeed although earlier data was lost), the
//! leader gets the I/O error, every other appender not yet confirmed gets
//! [`LogError::Poisoned`], and so does every later operation until
//! [`Log::reopen`] brings the log back in place: it cuts the file back to
//! the last durable record (the failed batch's appenders were never told it
//! was durable, so nothing acknowledged goes and no index is skipped),
//! proves the disk takes writes again by preallocating and syncing, and
//! checks the records on disk against the tree. Until then the node reports
//! itself degraded (spec/transport.md §9).
//!
//! I/O seam: writes, length changes and syncs of the entries file go
//! through a [`DurableFile`] trait object (one virtual call per batch, next
//! to an `fdatasync`), so tests can inject `ENOSPC`/`EIO` and simulate power
//! loss with [`crate::disk::DiskFaults`].
//!
//! Preallocation: the entries file is extended with zeros a mebibyte at a
//! time, so most syncs flush only file data, not the file size and new
//! blocks, which halves `fdatasync` latency on ext4. Dropping the `Log` cuts
//! the zeros; after a crash, recovery cuts them as a zero-filled tail
//! (`spec/audit-log.md` §6.3).
//!
//! Tiles are the storage, written off the append path: once a batch is
//! durable and its leader has woken the next leader and its own followers,
//! that thread writes the bundle and hash tile files of every complete
//! bundle up to the durable size (one thread at a time; a leader that
//! finds another at it leaves the work to it), while the next batch is
//! written and synced. Before, with the tiles written between a batch's
//! `fdatasync` and its acknowledgement (and each bundle read back from the
//! tail with two reads per entry), durable appends with 64 writers went
//! from 6.7–8.2 to 12.3–13.0 µs each on a quiet 2-vCPU VM. The tile files
//! are not synced then: the tail still holds the entries, and `open`
//! writes the tiles of any complete bundle in the tail, so a crash before
//! or while they are written loses nothing and gives the same tree. A tile
//! write that fails poisons the log like a failed sync, without taking
//! back what was acknowledged (a batch being written then fails with the
//! error); [`Log::reopen`] writes the tiles before it succeeds.
//!
//! Every 64 bundles the tile writer prepares a rotation: it syncs those
//! files and the partial tiles at the new base, 16 at a time (a new
//! file's sync writes its inode and flushes the device's cache; syncs
//! issued together overlap, and on a journalled file system share commits:
//! 128 files in 17–44 ms instead of 72–433 ms one by one on the VM), and
//! the next leader, after its batch's sync, writes a new tail holding only
//! the records after the base, syncs it and renames it in place (three
//! syncs per 16 384 entries on the append path). The tail, and so what
//! `open` reads and hashes, stays near 16 640 entries whatever the size of
//! the log. Opening an entries file of the old layout ("ISNADLG1", every
//! record) migrates it the same way; until the rename it is untouched.
//!
//! Tree state: the right edge and a bounded cache of checked tiles
//! ([`crate::TiledTree`]): memory does not grow with the log. Every tile
//! read from disk is checked against the tree above it, so a damaged or
//! missing tile is reported with its path ([`LogError::TileCorrupted`],
//! [`LogError::TileMissing`]) and never used or rebuilt.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt as _, FileExt, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::disk::{DiskFaults, DurableFile};
use crate::entry::{Entry, EntryError, MAX_ENTRY_LEN};
use crate::lock::{DirLock, LockError};
use crate::merkle::{self, Hash, ProofError};
use crate::note::SignerKey;
use crate::tiled::TiledTree;
use crate::tiles::{self, TILE_WIDTH};
use crate::tilestore::{
    in_dir, io_err, sync_dir, Reader, Store, Written, TAIL_HEADER_LEN, TAIL_MAGIC,
};

pub(crate) mod serve;

/// The first 8 bytes of an entries file.
pub(crate) const ENTRIES_MAGIC: &[u8; 8] = b"ISNADLG1";
/// Name of the entries file inside the log directory.
pub(crate) const ENTRIES_FILE: &str = "entries";
/// Name of the last-signed-checkpoint file inside the log directory.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
/// Lock file inside the log directory: a [`crate::lock::DirLock`] (an
/// `flock` held for as long as the [`Log`] is open, released by the kernel
/// when the process dies) holding the owner's process id for messages.
/// The file is never removed.
pub const LOCK_FILE: &str = "lock";
/// The entries file is extended with zeros in steps of this many bytes, so
/// that most `fdatasync` calls flush only data, not the file size and block
/// allocation (about half the latency on ext4).
const PREALLOCATE: u64 = 1 << 20;
/// Bytes of framing before each record payload.
pub(crate) const RECORD_HEADER_LEN: u64 = 8;

/// Complete bundles the tail holds before the log rotates it: their tiles
/// are synced and a new tail starts after them (`spec/audit-log.md` §6.2).
const ROTATE: u64 = 64 * TILE_WIDTH;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    // --- The disk or operating system failed ---
    /// Reading, writing or syncing a file failed. The message includes the
    /// OS error, which is therefore not also returned by `source()`: a
    /// printer that walks the cause chain would print it twice.
    #[error("{op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not the `source()` chain).
        error: io::Error,
    },
    /// Another `Log` in this process, or another live process, has the
    /// directory open. Only one writer may own a log; nothing was read or
    /// repaired. Stop the owner (a running node) or use its API (`isnad
    /// audit export --config`).
    #[error("log directory {} is in use by {}; stop it or use its API (e.g. isnad audit export --config)", .dir.display(), match .pid { Some(p) => format!("process {p}"), None => "another process".to_owned() })]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The owning process id as it wrote it in the lock file, when it
        /// could be read.
        pid: Option<u32>,
    },
    /// An earlier write or sync failed; the in-memory state may be ahead of
    /// the disk. Close the log and open it again to recover.
    #[error("an earlier write or sync failed; reopen the log to recover")]
    Poisoned,

    // --- The files on disk are not a valid log (needs an operator) ---
    /// The directory's `version` file names a format newer than this
    /// release reads: it was written by a newer release. Nothing was read
    /// or changed; run that release (or a newer one).
    #[error("log directory {} is format {found}, written by a newer release; this release reads up to format {supported}", .dir.display())]
    UnsupportedFormat {
        /// The log directory.
        dir: PathBuf,
        /// The format its `version` file names.
        found: u64,
        /// The newest format this release reads.
        supported: u64,
    },
    /// A tile or entry bundle the log needs is not on disk. Nothing was
    /// rebuilt; restore the file from a backup or a replica.
    #[error("{}: tile missing; nothing was rebuilt, restore it from a backup", .path.display())]
    TileMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A tile or entry bundle on disk does not match the tree (wrong size
    /// or content). Nothing was rebuilt; restore it from a backup or a
    /// replica.
    #[error("{}: tile damaged (does not match the tree); nothing was rebuilt, restore it from a backup", .path.display())]
    TileCorrupted {
        /// The damaged file.
        path: PathBuf,
    },
    /// The entries file does not start with the log magic.
    #[error("{path} is not an Isnad audit log (bad magic)")]
    NotALog {
        /// The file.
        path: PathBuf,
    },
    /// A record in the middle of the entries file is damaged and valid data
    /// follows it. Nothing was truncated; restore the file from a backup or
    /// a replica, or inspect it by hand.
    #[error("entries file corrupted at byte offset {offset} (entry index {index}); nothing was truncated, restore from backup")]
    Corrupted {
        /// Byte offset of the damaged record.
        offset: u64,
        /// Index the damaged record would have.
        index: u64,
    },
    /// The last signed checkpoint covers more entries than the file holds:
    /// acknowledged entries were lost or the file was replaced.
    #[error("the last signed checkpoint has {signed} entries but the log holds only {found}")]
    CheckpointAhead {
        /// Size of the last signed checkpoint.
        signed: u64,
        /// Entries found on disk.
        found: u64,
    },
    /// The entries on disk do not hash to the root of the last signed
    /// checkpoint: history was rewritten.
    #[error("the entries do not match the last signed checkpoint at size {size}")]
    CheckpointMismatch {
        /// Size of the last signed checkpoint.
        size: u64,
    },
    /// An export's target is not a new or empty directory, or something in
    /// it is in the way (a file or symbolic link where the export writes).
    /// An export never overwrites or follows links: name a new directory.
    #[error("export target {} exists and is not empty (or holds a link); name a new directory", .path.display())]
    ExportTarget {
        /// The directory or file in the way.
        path: PathBuf,
    },
    /// The stored checkpoint file cannot be parsed.
    #[error("stored checkpoint: {0}")]
    StoredCheckpoint(CheckpointError),

    // --- The caller asked for something invalid ---
    /// The entry does not satisfy the schema or is too large.
    #[error("invalid entry: {0}")]
    Entry(#[from] EntryError),
    /// The log key's name is not the origin of earlier checkpoints.
    #[error("log key {found:?} does not match the log's origin {expected:?}")]
    Origin {
        /// The origin of earlier checkpoints.
        expected: String,
        /// The key name given.
        found: String,
    },
    /// A proof or index request outside the tree.
    #[error("{0}")]
    Proof(#[from] ProofError),
    /// Signing the checkpoint failed.
    #[error("signing the checkpoint: {0}")]
    Sign(#[from] CheckpointError),
}

/// What [`Log::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Entries in the log after recovery.
    pub size: u64,
    /// Bytes cut off after the last good record: an incomplete final
    /// record (a torn write that was never acknowledged) and the zeros the
    /// log preallocates, which a process that did not close the log cleanly
    /// leaves behind; 0 after a clean close.
    pub truncated_bytes: u64,
    /// The last signed checkpoint, if any.
    pub last_signed: Option<Checkpoint>,
}

/// The audit log: append, sign checkpoints, export, prove.
///
/// `Log` is `Sync`: share it with an `Arc` between threads.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// The tail file.
    path: PathBuf,
    /// Tiles and bundles.
    store: Store,
    state: Mutex<State>,
    /// Mirror of `State::durable`, read by woken followers without the lock.
    durable: AtomicU64,
    /// Mirror of `State::epoch`, read by woken followers after `durable`.
    epoch: AtomicU64,
    /// Futex words the followers of a batch sleep on, by the parity of the
    /// batch number: bumped and woken when its sync finishes, when one of
    /// its appenders is wanted to lead, or when a sync fails.
    bells: [AtomicU32; 2],
    signing: Mutex<Option<Checkpoint>>,
    /// Held by the one thread writing tiles after a durable batch (see
    /// [`Log::tile_behind`]); taken before `state` when both are.
    tiler: Mutex<()>,
    /// Runs before each sync with the number of the sync (0, 1, …); an
    /// error it returns is taken as the sync's failure.
    #[cfg(test)]
    sync_hook: Mutex<Option<SyncHook>>,
    /// Runs before the tiles after a durable batch are written, with the
    /// size they are written up to.
    #[cfg(test)]
    tile_hook: Mutex<Option<SyncHook>>,
    /// Held for the lifetime of the `Log`; dropped last.
    _lock: DirLock,
}

#[cfg(test)]
struct SyncHook(Box<dyn Fn(u64) -> io::Result<()> + Send + Sync>);

#[cfg(test)]
impl std::fmt::Debug for SyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHook")
    }
}

/// A rotation whose tiles are synced: the tail is to start at `base`,
/// whose root is `root`.
#[derive(Debug, Clone, Copy)]
struct Rotation {
    base: u64,
    root: Hash,
}

/// The open tail file: replaced as a whole when the log rotates.
#[derive(Debug)]
struct Tail {
    /// For reads.
    file: File,
    /// Writes, length changes and syncs.
    io: Box<dyn DurableFile>,
}

#[derive(Debug)]
struct State {
    /// Full tiles on disk, the right edge in memory.
    tree: TiledTree,
    /// Index of the first entry in the tail file (a multiple of 256).
    base: u64,
    /// The tail file.
    tail: Arc<Tail>,
    /// Tile and bundle files written since the last rotation, not yet
    /// synced (the tail still holds their entries).
    unsynced: Vec<Written>,
    /// Tiles synced up to a new base, the tail not yet replaced: the next
    /// leader does it.
    rotation: Option<Rotation>,
    /// Writing or syncing tiles after a durable batch failed: the next
    /// batch fails with this error (and poisons the log) before it writes.
    tile_error: Option<LogError>,
    /// Byte offset of each tail record's header (entries `base..`).
    offsets: Vec<u64>,
    /// Records queued but not yet written.
    buf: Vec<u8>,
    /// File length once everything queued is written.
    end: u64,
    /// File length on disk: `end` plus zeros preallocated past it.
    allocated: u64,
    durable: u64,
    /// A leader is gathering, writing or syncing.
    syncing: bool,
    /// How many times `buf` was taken: the number of the batch that
    /// records queued now join.
    batches: u64,
    /// Appenders whose records joined `buf` since it was last taken.
    arrived: usize,
    /// Appenders the last sync made durable (its leader and followers): the
    /// next leader gathers until as many have queued again, or `gather_for`.
    expect: usize,
    /// How long the last `write` + `fdatasync` took: the longest a leader
    /// gathers.
    gather_for: Duration,
    /// A leader gathering a batch, to unpark once `arrived >= expect`.
    gatherer: Option<std::thread::Thread>,
    failed: bool,
    /// How many times [`Log::reopen`] brought the log back: an appender
    /// whose records were queued in an earlier epoch was not made durable
    /// (they were cut), whatever `durable` says now.
    epoch: u64,
}

impl Log {
    /// Opens the log in `dir`, creating it if needed, and recovers: a torn
    /// final record is truncated; a damaged record followed by data is
    /// [`LogError::Corrupted`]; the entries are checked against the last
    /// signed checkpoint.
    ///
    /// One `Log` owns a directory: a second open, from this process or
    /// another live one, fails with [`LogError::Locked`] (see [`LOCK_FILE`]).
    pub fn open(dir: &Path) -> Result<(Self, OpenReport), LogError> {
        Self::open_on(dir, None)
    }

    /// [`Log::open`] with the entries file's writes and syncs under a fault
    /// controller (tests: injected `ENOSPC`/`EIO`, simulated power loss).
    pub fn open_with_faults(
        dir: &Path,
        faults: &DiskFaults,
    ) -> Result<(Self, OpenReport), LogError> {
        Self::open_on(dir, Some(faults.clone()))
    }

    fn open_on(dir: &Path, faults: Option<DiskFaults>) -> Result<(Self, OpenReport), LogError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        // Ownership first: nothing is read, created or repaired before it.
        let lock = DirLock::acquire(dir, LOCK_FILE)?;
        let format = crate::format::check(dir)?;
        let store = Store {
            dir: dir.to_owned(),
            faults,
        };
        let path = dir.join(ENTRIES_FILE);
        let loaded = load(&store, &path)?;
        let Loaded {
            tail,
            mut tree,
            base,
            offsets,
            end,
            truncated,
            legacy,
        } = loaded;
        // A format-1 entries file was moved into tiles by `load` (durably):
        // only now does the marker name the current format.
        crate::format::mark_current(dir, format)?;
        let size = tree.size();
        let last = read_stored_checkpoint(dir)?;
        if let Some(cp) = &last {
            if cp.size > size {
                return Err(LogError::CheckpointAhead {
                    signed: cp.size,
                    found: size,
                });
            }
            let root = tree
                .root_at(&Reader(&store), cp.size)
                .map_err(|e| in_dir(dir, e))?;
            if root != cp.root {
                return Err(LogError::CheckpointMismatch { size: cp.size });
            }
        }
        let report = OpenReport {
            size,
            truncated_bytes: truncated,
            last_signed: last.clone(),
        };
        let log = Self {
            dir: dir.to_owned(),
            path,
            store,
            state: Mutex::new(State {
                tree,
                base,
                tail: Arc::new(tail),
                unsynced: Vec::new(),
                rotation: None,
                tile_error: None,
                offsets,
                buf: Vec::new(),
                end,
                allocated: end,
                durable: size,
                syncing: false,
                batches: 0,
                arrived: 0,
                expect: 0,
                gather_for: Duration::ZERO,
                gatherer: None,
                failed: false,
                epoch: 0,
            }),
            durable: AtomicU64::new(size),
            epoch: AtomicU64::new(0),
            bells: [AtomicU32::new(0), AtomicU32::new(0)],
            signing: Mutex::new(last),
            tiler: Mutex::new(()),
            #[cfg(test)]
            sync_hook: Mutex::new(None),
            #[cfg(test)]
            tile_hook: Mutex::new(None),
            _lock: lock,
        };
        // Entries of complete bundles still only in the tail (a log in the
        // old layout, or a crash before their tiles were written or synced)
        // go to tiles now, and the tail starts after them. (A clean close
        // does this already: see `Drop`.)
        if legacy || size - base >= TILE_WIDTH {
            log.store_tiles(size)?;
            if let Some(r) = log.prepare_rotation(true)? {
                log.swap_tail(r, end)?;
            }
        }
        Ok((log, report))
    }

    /// Appends `entry` and returns its index once it is durable (covered by
    /// `fdatasync`). The log assigns `entry.seq` = the index.
    pub fn append(&self, entry: Entry) -> Result<u64, LogError> {
        self.append_batch(std::iter::once(entry)).map(|r| r.start)
    }

    /// Appends several entries with consecutive indexes, durably, and
    /// returns their index range. Either all are queued or none.
    pub fn append_batch(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Range<u64>, LogError> {
        let mut st = self.lock();
        if st.failed {
            return Err(LogError::Poisoned);
        }
        let first = st.tree.size();
        let buf_start = st.buf.len();
        let mut queued = Vec::new();
        for mut entry in entries {
            entry.seq = first + queued.len() as u64;
            let at = st.buf.len();
            st.buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN as usize]);
            if let Err(e) = entry.encode_into(&mut st.buf) {
                st.buf.truncate(buf_start);
                return Err(e.into());
            }
            let len = st.buf.len() - at - RECORD_HEADER_LEN as usize;
            let leaf = merkle::leaf_hash(&st.buf[at + RECORD_HEADER_LEN as usize..]);
            st.buf[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
            st.buf[at + 4..at + 8].copy_from_slice(&leaf.as_bytes()[..4]);
            queued.push((leaf, (at - buf_start) as u64, len as u64));
        }
        let base = st.end;
        for (leaf, rel, len) in &queued {
            st.tree.push(*leaf);
            st.offsets.push(base + rel);
            st.end = base + rel + RECORD_HEADER_LEN + len;
        }
        let last = st.tree.size();
        if first == last {
            return Ok(first..last);
        }
        st.arrived += 1;
        let epoch = st.epoch;
        let mut gatherer = None;
        if st.arrived >= st.expect {
            gatherer = st.gatherer.take();
        }
        // The records join the batch the next take of `buf` writes.
        let bell = &self.bells[(st.batches % 2) as usize];
        loop {
            // Durable in this epoch is durable, even if the log was
            // poisoned since (writing tiles after the batch failed).
            if st.epoch != epoch {
                return Err(LogError::Poisoned);
            }
            if st.durable >= last {
                return Ok(first..last);
            }
            if st.failed {
                return Err(LogError::Poisoned);
            }
            if !st.syncing {
                // One sync at a time, so the records are still queued.
                self.lead(st)?;
                st = self.lock();
                continue;
            }
            // Follow: sleep on the batch's bell until it rings (the batch's
            // sync finished, a leader is wanted, or something failed), then
            // check the durable counter without taking the lock.
            let rung = bell.load(Ordering::Acquire);
            drop(st);
            if let Some(g) = gatherer.take() {
                g.unpark();
            }
            atomic_wait::wait(bell, rung);
            // `durable` first: a reopen bumps the epoch before anything
            // makes `durable` grow again.
            if self.durable.load(Ordering::Acquire) >= last
                && self.epoch.load(Ordering::Acquire) == epoch
            {
                return Ok(first..last);
            }
            st = self.lock();
        }
    }

    /// Gathers (see the module docs), writes and syncs everything queued
    /// (the caller's records included), then rings the batch's bell and,
    /// if records were queued meanwhile, wakes one of their appenders to
    /// lead the next batch. Returns the write or sync error, if any.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> Result<(), LogError> {
        st.syncing = true;
        // Gather: appenders arriving now queue behind this leader (`syncing`
        // is set); the one that completes `expect` unparks it.
        if st.arrived < st.expect {
            let deadline = Instant::now() + st.gather_for;
            let me = std::thread::current();
            while st.arrived < st.expect {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st.gatherer = Some(me.clone());
                drop(st);
                std::thread::park_timeout(deadline - now);
                st = self.lock();
            }
            st.gatherer = None;
        }
        let batch = std::mem::take(&mut st.buf);
        let members = std::mem::take(&mut st.arrived);
        let target = st.tree.size();
        let number = st.batches;
        st.batches += 1;
        let at = st.end - batch.len() as u64;
        let tail = Arc::clone(&st.tail);
        // Zeros to write after the batch when it passes the preallocated end.
        let mut zeros = 0;
        if st.end > st.allocated {
            let allocated = st.end.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE;
            zeros = allocated - st.end;
            st.allocated = allocated;
        }
        // Tiles written after an earlier batch failed: this batch fails
        // with that error before it writes, and poisons the log.
        let tile_error = st.tile_error.take();
        let rotation = st.rotation.take();
        drop(st);
        let started = Instant::now();
        let mut result = match tile_error {
            Some(e) => Err(e),
            None => self.write_batch(&tail, &batch, at, zeros, number),
        };
        let took = started.elapsed();
        drop(tail);
        // A rotation whose tiles are synced replaces the tail now, while no
        // other batch writes: a failure fails the batch like a failed sync.
        let written = at + batch.len() as u64;
        if let (Ok(()), Some(r)) = (&result, rotation) {
            result = self.swap_tail(r, written);
        }
        let mut st = self.lock();
        // Tiles written meanwhile failed: the batch fails with that error.
        if let Some(e) = st.tile_error.take() {
            if result.is_ok() {
                result = Err(e);
            }
        }
        st.syncing = false;
        st.gather_for = took;
        st.expect = members;
        if st.buf.is_empty() {
            // Reuse the allocation for the next batch.
            let mut b = batch;
            b.clear();
            st.buf = b;
        }
        let this = &self.bells[(number % 2) as usize];
        let next = &self.bells[((number + 1) % 2) as usize];
        let lead_next = result.is_ok() && !st.buf.is_empty();
        let tiles_due = result.is_ok() && st.tree.tiled() + TILE_WIDTH <= target;
        match result {
            Ok(()) => {
                st.durable = target;
                self.durable.store(target, Ordering::Release);
                this.fetch_add(1, Ordering::Release);
                if lead_next {
                    next.fetch_add(1, Ordering::Release);
                }
            }
            Err(_) => {
                st.failed = true;
                this.fetch_add(1, Ordering::Release);
                next.fetch_add(1, Ordering::Release);
            }
        }
        drop(st);
        // Wake the next leader first: its sync then overlaps the wake-ups.
        if lead_next {
            atomic_wait::wake_one(next);
        } else if result.is_err() {
            atomic_wait::wake_all(next);
        }
        atomic_wait::wake_all(this);
        // The batch is durable and its appenders are awake: tiles it
        // completed are written now, off the path of the next batch.
        if tiles_due {
            self.tile_behind();
        }
        result
    }

    /// Writes a batch (and the zeros of a preallocation) at byte `at` of
    /// the tail and syncs it.
    fn write_batch(
        &self,
        tail: &Tail,
        batch: &[u8],
        at: u64,
        zeros: u64,
        number: u64,
    ) -> Result<(), LogError> {
        let result = tail.io.write_all_at(batch, at).and_then(|()| {
            if zeros == 0 {
                return Ok(());
            }
            let end = at + batch.len() as u64;
            tail.io.write_all_at(&vec![0; zeros as usize], end)
        });
        #[cfg(test)]
        let result = result.and_then(|()| {
            match &*self.sync_hook.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(hook) => (hook.0)(number),
                None => Ok(()),
            }
        });
        #[cfg(not(test))]
        let _ = number;
        result
            .and_then(|()| tail.io.sync_data())
            .map_err(io_err("append to", &self.path))
    }

    /// Writes the tiles and bundles that durable entries complete, and
    /// when a rotation is due syncs them for the next leader to replace
    /// the tail ([`Log::prepare_rotation`]). Runs after a batch is durable
    /// and its appenders woken, in the thread that led it, so the next
    /// batch's write and sync overlap it; one thread at a time (one that
    /// finds another at it leaves the work to it and the next leaders).
    /// Nothing waits for it: the tail holds every entry until a rotation
    /// replaces it, and `open` writes whatever tiles a crash left
    /// unwritten. A failure poisons the log ([`Log::tile_failed`]).
    fn tile_behind(&self) {
        let _tiling = match self.tiler.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if let Err(e) = self.tile_pending(false) {
            // The batches were acknowledged; the next one reports the error.
            let _ = self.tile_failed(e);
        }
    }

    /// The work of [`Log::tile_behind`], with the tiler lock held: tiles
    /// up to the durable size, until none is left; it stops when the log
    /// is poisoned, unless `reopening` (the poisoned log is being brought
    /// back and nobody leads).
    fn tile_pending(&self, reopening: bool) -> Result<(), LogError> {
        loop {
            let upto = {
                let st = self.lock();
                if !reopening && (st.failed || st.tile_error.is_some()) {
                    return Ok(());
                }
                if st.tree.tiled() + TILE_WIDTH > st.durable {
                    return Ok(());
                }
                st.durable
            };
            #[cfg(test)]
            if let Some(hook) = &*self.tile_hook.lock().unwrap_or_else(|p| p.into_inner()) {
                (hook.0)(upto).map_err(io_err("write tiles in", &self.dir))?;
            }
            self.store_tiles(upto)?;
            self.prepare_rotation(false)?;
        }
    }

    /// Writing tiles after a durable batch failed: the log is poisoned like
    /// after a failed sync. If a batch is being written, it fails with the
    /// error (it is not acknowledged; [`Log::reopen`] cuts it); otherwise
    /// the log is poisoned now, every waiting appender woken, and the error
    /// given back.
    fn tile_failed(&self, e: LogError) -> Option<LogError> {
        let mut st = self.lock();
        if st.failed {
            return Some(e);
        }
        if st.syncing {
            st.tile_error = Some(e);
            return None;
        }
        st.failed = true;
        for bell in &self.bells {
            bell.fetch_add(1, Ordering::Release);
        }
        drop(st);
        for bell in &self.bells {
            atomic_wait::wake_all(bell);
        }
        Some(e)
    }

    /// Writes the bundles and hash tiles that the first `upto` entries
    /// complete (not synced: the tail still holds the entries).
    fn store_tiles(&self, upto: u64) -> Result<(), LogError> {
        // Copied under the lock, hashed outside it: appenders queue meanwhile.
        let (snapshot, tiled, offsets, tail) = {
            let st = self.lock();
            if st.tree.tiled() + TILE_WIDTH > upto {
                return Ok(());
            }
            let from = (st.tree.tiled() - st.base) as usize;
            let to = (upto - st.base) as usize;
            (
                st.tree.snapshot(upto),
                st.tree.tiled(),
                st.offsets[from..to].to_vec(),
                Arc::clone(&st.tail),
            )
        };
        let prepared = snapshot.prepare();
        let tiles = &prepared.tiles;
        let mut paths = Vec::new();
        let mut scratch = Vec::new();
        for (level, index, hashes) in tiles {
            if *level == 0 {
                // The bundle's first 255 records are one read: they end
                // where the last one starts. The last one is read alone
                // (what follows it may be a batch being written).
                let first = index * TILE_WIDTH;
                let at = &offsets[(first - tiled) as usize..][..TILE_WIDTH as usize];
                let last = TILE_WIDTH as usize - 1;
                let mut chunk = vec![0u8; (at[last] - at[0]) as usize];
                FileExt::read_exact_at(&tail.file, &mut chunk, at[0])
                    .map_err(io_err("read", &self.path))?;
                let mut bundle = Vec::with_capacity(chunk.len() + 2 * TILE_WIDTH as usize);
                for (k, &offset) in at[..last].iter().enumerate() {
                    let index = first + k as u64;
                    let payload = record_in(&chunk, offset - at[0], offset, index)?;
                    bundle.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                    bundle.extend_from_slice(payload);
                }
                read_at(
                    &tail.file,
                    &self.path,
                    at[last],
                    first + last as u64,
                    &mut scratch,
                )?;
                bundle.extend_from_slice(&(scratch.len() as u16).to_be_bytes());
                bundle.extend_from_slice(&scratch);
                paths.push(
                    self.store
                        .write_file(&tiles::entries_path(*index, TILE_WIDTH), &bundle)?,
                );
            }
            let mut data = Vec::with_capacity(hashes.len() * 32);
            for h in hashes {
                data.extend_from_slice(h.as_bytes());
            }
            paths.push(
                self.store
                    .write_file(&tiles::tile_path(*level, *index, TILE_WIDTH), &data)?,
            );
        }
        let mut st = self.lock();
        st.tree.commit_prepared(prepared);
        st.unsynced.extend(paths);
        Ok(())
    }

    /// Syncs the tiles and bundles written since the last rotation and
    /// the partial tiles at the last full bundle (then their directories),
    /// so that a tail starting there may replace the current one. With
    /// `now` (at open) it always does and returns the rotation for the
    /// caller to carry out; otherwise only when [`ROTATE`] entries past the
    /// tail's base are in tiles and no rotation is pending, and the next
    /// leader carries it out ([`Log::swap_tail`]). A crash before the swap
    /// leaves the old tail, which holds every entry after its base.
    fn prepare_rotation(&self, now: bool) -> Result<Option<Rotation>, LogError> {
        let (base, root, edge, mut files) = {
            let mut st = self.lock();
            let base = st.tree.tiled();
            if !now && (st.rotation.is_some() || base - st.base < ROTATE) {
                return Ok(None);
            }
            let root = self.tree_root(&mut st, base)?;
            (base, root, st.tree.edge(), std::mem::take(&mut st.unsynced))
        };
        let result = edge
            .iter()
            .try_for_each(|(level, index, hashes)| {
                let mut data = Vec::with_capacity(hashes.len() * 32);
                for h in hashes {
                    data.extend_from_slice(h.as_bytes());
                }
                let rel = tiles::tile_path(*level, *index, hashes.len() as u64);
                files.push(self.store.write_file(&rel, &data)?);
                Ok(())
            })
            .and_then(|()| self.store.sync_files(&files));
        let mut st = self.lock();
        if let Err(e) = result {
            files.append(&mut st.unsynced);
            st.unsynced = files;
            return Err(e);
        }
        let rotation = Rotation { base, root };
        if !now {
            st.rotation = Some(rotation);
        }
        Ok(Some(rotation))
    }

    /// Starts a new tail at the rotation's base, whose tiles are synced:
    /// writes it (header and the records after the base, up to byte
    /// `written` of the old tail), syncs it and renames it over the old
    /// one. A crash at any point leaves either tail, and either opens. Only
    /// a leader (or `open`) calls it: no batch is written meanwhile.
    fn swap_tail(&self, rotation: Rotation, written: u64) -> Result<(), LogError> {
        let Rotation {
            base: new_base,
            root,
        } = rotation;
        let (from, tail) = {
            let st = self.lock();
            let from = st
                .offsets
                .get((new_base - st.base) as usize)
                .copied()
                .unwrap_or(written);
            (from, Arc::clone(&st.tail))
        };
        let new_tail = self.write_tail(&tail, from, written, new_base, &root)?;
        let mut st = self.lock();
        // Byte `from` of the old tail is byte TAIL_HEADER_LEN of the new
        // one. (The old tail's header may be shorter: a format-1 file's is
        // 8 bytes, so `from` can be below TAIL_HEADER_LEN.)
        let moved = |x: u64| x - from + TAIL_HEADER_LEN;
        let drop_n = (new_base - st.base) as usize;
        st.offsets.drain(..drop_n);
        for o in &mut st.offsets {
            *o = moved(*o);
        }
        st.end = moved(st.end);
        st.allocated = moved(written);
        st.base = new_base;
        st.tail = Arc::new(new_tail);
        Ok(())
    }

    /// The I/O of [`Log::swap_tail`]: the new tail put in place. Returns
    /// it, opened.
    fn write_tail(
        &self,
        tail: &Tail,
        from: u64,
        written: u64,
        new_base: u64,
        root: &Hash,
    ) -> Result<Tail, LogError> {
        let mut rest = vec![0u8; (written - from) as usize];
        FileExt::read_exact_at(&tail.file, &mut rest, from).map_err(io_err("read", &self.path))?;
        let tmp = self.dir.join("entries.tmp");
        let io = self.store.create(&tmp)?;
        let mut head = Vec::with_capacity(TAIL_HEADER_LEN as usize);
        head.extend_from_slice(TAIL_MAGIC);
        head.extend_from_slice(&new_base.to_be_bytes());
        head.extend_from_slice(root.as_bytes());
        io.write_all_at(&head, 0)
            .and_then(|()| io.write_all_at(&rest, TAIL_HEADER_LEN))
            .and_then(|()| io.sync_data())
            .map_err(io_err("write", &tmp))?;
        drop(io);
        fs::rename(&tmp, &self.path).map_err(io_err("rename", &self.path))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io_err("open", &self.path))?;
        let io = file
            .try_clone()
            .map_err(io_err("open", &self.path))
            .and_then(|f| self.store.wrap(f, &self.path))?;
        Ok(Tail { file, io })
    }

    /// The root at `size` through the tiles.
    fn tree_root(&self, st: &mut State, size: u64) -> Result<Hash, LogError> {
        st.tree
            .root_at(&Reader(&self.store), size)
            .map_err(|e| in_dir(&self.dir, e))
    }

    /// Writes the tiles and bundles of every complete bundle that is
    /// durable now, before returning. They are otherwise written just after
    /// the batch that completes them (by its leader, see the module docs),
    /// so the files under `tile/` may lag the durable size briefly; a
    /// reader of the directory (the HTTP read path) calls this before it
    /// serves the files of a checkpoint. Not synced: the tail holds the
    /// entries until a rotation syncs their tiles. A failure poisons the
    /// log like a failed sync ([`Log::reopen`]).
    pub fn write_tiles(&self) -> Result<(), LogError> {
        let _tiling = self.tiler.lock().unwrap_or_else(|p| p.into_inner());
        if self.lock().failed {
            return Err(LogError::Poisoned);
        }
        self.tile_pending(false)
            .map_err(|e| self.tile_failed(e).unwrap_or(LogError::Poisoned))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an earlier write or sync failed and the log refuses
    /// appends ([`LogError::Poisoned`]) until [`Log::reopen`].
    pub fn is_poisoned(&self) -> bool {
        self.lock().failed
    }

    /// Brings a poisoned log back in place once the disk takes writes
    /// again; does nothing if the log is not poisoned.
    ///
    /// Reads the tail file back (a rotation the failure interrupted may or
    /// may not have replaced it; either holds every durable entry), cuts it
    /// after the last durable record (the records of the failed batch and
    /// of those queued behind it were never acknowledged; their appenders
    /// got an error), preallocates past it and syncs (the proof that writes
    /// succeed again), and checks the tree against the one in memory: the
    /// durable entries are all there with the same root, and the next
    /// append gets the next index. On error the log stays poisoned; call
    /// again later.
    pub fn reopen(&self) -> Result<(), LogError> {
        // No tiles are written meanwhile (lock order: tiler, then state).
        let _tiling = self.tiler.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.lock();
        if !st.failed {
            return Ok(());
        }
        // No sync runs now: a leader sets `failed` as it finishes, and
        // nobody leads while it is set.
        let durable = st.durable;
        let want = self.tree_root(&mut st, durable)?;
        let Loaded {
            tail,
            mut tree,
            base,
            mut offsets,
            end,
            ..
        } = load(&self.store, &self.path)?;
        if tree.size() < durable {
            return Err(LogError::CheckpointAhead {
                signed: durable,
                found: tree.size(),
            });
        }
        let keep = offsets
            .get((durable - base) as usize)
            .copied()
            .unwrap_or(end);
        offsets.truncate((durable - base) as usize);
        tree.truncate(durable);
        let allocated = keep.div_ceil(PREALLOCATE) * PREALLOCATE + PREALLOCATE;
        tail.io
            .set_len(keep)
            .and_then(|()| {
                tail.io
                    .write_all_at(&vec![0; (allocated - keep) as usize], keep)
            })
            .and_then(|()| tail.io.sync_data())
            .map_err(io_err("reopen", &self.path))?;
        let got = tree
            .root_at(&Reader(&self.store), durable)
            .map_err(|e| in_dir(&self.dir, e))?;
        if got != want {
            return Err(LogError::CheckpointMismatch { size: durable });
        }
        st.tree = tree;
        st.base = base;
        st.tail = Arc::new(tail);
        // Tiles from `base` on are written again as bundles complete.
        st.unsynced.clear();
        st.rotation = None;
        st.tile_error = None;
        st.offsets = offsets;
        st.end = keep;
        st.allocated = allocated;
        st.buf.clear();
        st.arrived = 0;
        st.expect = 0;
        st.gatherer = None;
        st.epoch += 1;
        self.epoch.store(st.epoch, Ordering::Release);
        // The tiles a failure left unwritten, now, while nobody leads: a
        // disk that still fails leaves the log poisoned.
        drop(st);
        self.tile_pending(true)?;
        self.lock().failed = false;
        Ok(())
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.lock().durable
    }

    /// Root hash of the tree at `size` (at most the durable size).
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        let mut st = self.lock();
        check_durable(&st, size)?;
        self.tree_root(&mut st, size)
    }

    /// Inclusion proof for `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        let mut st = self.lock();
        check_durable(&st, size)?;
        st.tree
            .inclusion_proof(&Reader(&self.store), index, size)
            .map_err(|e| in_dir(&self.dir, e))
    }

    /// Consistency proof between two sizes (both at most the durable size).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, LogError> {
        let mut st = self.lock();
        check_durable(&st, second)?;
        st.tree
            .consistency_proof(&Reader(&self.store), first, second)
            .map_err(|e| in_dir(&self.dir, e))
    }

    /// Reads the bytes of durable entry `index` from disk (checked against
    /// the tree).
    pub fn entry_bytes(&self, index: u64) -> Result<Vec<u8>, LogError> {
        let (at, tail) = {
            let st = self.lock();
            if index >= st.durable {
                return Err(ProofError::IndexOutOfRange {
                    index,
                    size: st.durable,
                }
                .into());
            }
            if index < st.base {
                drop(st);
                let mut bundle = self.bundle(index / TILE_WIDTH)?;
                return Ok(bundle.swap_remove((index % TILE_WIDTH) as usize));
            }
            (st.offsets[(index - st.base) as usize], Arc::clone(&st.tail))
        };
        let mut payload = Vec::new();
        read_at(&tail.file, &self.path, at, index, &mut payload)?;
        Ok(payload)
    }

    /// The 256 entries of stored bundle `n`, checked against its hash tile.
    fn bundle(&self, n: u64) -> Result<Vec<Vec<u8>>, LogError> {
        let rel = tiles::entries_path(n, TILE_WIDTH);
        let data = self.store.read(&rel)?;
        let corrupt = || LogError::TileCorrupted {
            path: self.dir.join(&rel),
        };
        let items = tiles::split_bundle(&data, TILE_WIDTH as usize).map_err(|_| corrupt())?;
        let leaves = {
            let mut st = self.lock();
            st.tree
                .leaf_tile(&Reader(&self.store), n)
                .map_err(|e| in_dir(&self.dir, e))?
        };
        if items
            .iter()
            .zip(&leaves)
            .any(|(e, leaf)| merkle::leaf_hash(e) != *leaf)
        {
            return Err(corrupt());
        }
        Ok(items.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// The last signed checkpoint, if any.
    pub fn last_signed(&self) -> Option<Checkpoint> {
        self.signing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signs a checkpoint of the current durable tree with the log key and
    /// persists it (atomically, synced) before returning the signed note.
    ///
    /// The log only ever signs its own durable state, so two checkpoints it
    /// signs are always consistent; sizes never decrease; the key name must
    /// equal the origin of earlier checkpoints.
    pub fn sign_checkpoint(&self, key: &SignerKey) -> Result<SignedCheckpoint, LogError> {
        let mut last = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let (size, root) = {
            let mut st = self.lock();
            if st.failed {
                return Err(LogError::Poisoned);
            }
            let size = st.durable;
            (size, self.tree_root(&mut st, size)?)
        };
        if let Some(prev) = last.as_ref() {
            if prev.origin != key.name() {
                return Err(LogError::Origin {
                    expected: prev.origin.clone(),
                    found: key.name().to_owned(),
                });
            }
            // Durable size only grows and the tree is append-only; these are
            // invariants, checked again because signing is irrevocable.
            if size < prev.size || self.root_at(prev.size)? != prev.root {
                return Err(LogError::CheckpointMismatch { size: prev.size });
            }
        }
        let cp = Checkpoint::new(key.name(), size, root)?;
        let note = cp.sign(key)?;
        self.store_checkpoint(note.as_bytes())?;
        *last = Some(cp.clone());
        Ok(SignedCheckpoint {
            checkpoint: cp,
            note,
        })
    }

    /// Makes `signed` (a checkpoint of this log signed earlier, e.g. the
    /// latest one published before a restore from backup) the stored
    /// checkpoint, so that this log opens and signs only consistently with
    /// it. Its root must be this log's root at its size
    /// ([`LogError::CheckpointMismatch`], [`LogError::CheckpointAhead`]);
    /// a stored checkpoint at least as large is kept. The caller vouches
    /// that `signed.note` is the signed note of `signed.checkpoint`.
    pub fn adopt_checkpoint(&self, signed: &SignedCheckpoint) -> Result<(), LogError> {
        let mut last = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let cp = &signed.checkpoint;
        if cp.size > self.size() {
            return Err(LogError::CheckpointAhead {
                signed: cp.size,
                found: self.size(),
            });
        }
        if self.root_at(cp.size)? != cp.root {
            return Err(LogError::CheckpointMismatch { size: cp.size });
        }
        if last.as_ref().is_some_and(|prev| prev.size >= cp.size) {
            return Ok(());
        }
        self.store_checkpoint(signed.note.as_bytes())?;
        *last = Some(cp.clone());
        Ok(())
    }

    /// Replaces the stored checkpoint with `note`, atomically and durably.
    fn store_checkpoint(&self, note: &[u8]) -> Result<(), LogError> {
        let tmp = self.dir.join("checkpoint.tmp");
        let dst = self.dir.join(CHECKPOINT_FILE);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            f.write_all(note).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("sync", &tmp))?;
        }
        fs::rename(&tmp, &dst).map_err(io_err("rename", &dst))?;
        sync_dir(&self.dir)
    }

    /// Writes a copy of this log that [`Log::open`] opens, into the new
    /// directory `out` (mode 0700; it must not exist), while appends go on:
    /// the stored checkpoint first, then the bundles and hash tiles (read
    /// back and checked) and a tail with the durable records after them,
    /// each file 0600 and synced, then the directories. Returns the number
    /// of entries copied, at least the size of the stored checkpoint, which
    /// is returned too.
    pub fn backup_to(&self, out: &Path) -> Result<(u64, Option<Checkpoint>), LogError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(out)
            .map_err(io_err("create directory", out))?;
        let checkpoint = match fs::read(self.dir.join(CHECKPOINT_FILE)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read", &self.dir.join(CHECKPOINT_FILE))(e)),
        };
        // Taken after the checkpoint: it covers at most what is durable now.
        let (size, tiled, root) = {
            let mut st = self.lock();
            if st.failed {
                return Err(LogError::Poisoned);
            }
            let size = st.durable;
            // Tiles (and a rotation) may run ahead of the durable size while
            // a batch completes: the copy's tail starts at a full bundle
            // that is durable.
            let tiled = st.tree.tiled().min(size / TILE_WIDTH * TILE_WIDTH);
            (size, tiled, self.tree_root(&mut st, tiled)?)
        };
        let mut records = Vec::new();
        for i in tiled..size {
            let payload = self.entry_bytes(i)?;
            records.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            records.extend_from_slice(&merkle::leaf_hash(&payload).as_bytes()[..4]);
            records.extend_from_slice(&payload);
        }
        let copy = Store {
            dir: out.to_owned(),
            faults: None,
        };
        let mut paths = Vec::new();
        for n in 0..tiled / TILE_WIDTH {
            let items = self.bundle(n)?;
            let mut data = Vec::new();
            for e in &items {
                data.extend_from_slice(&(e.len() as u16).to_be_bytes());
                data.extend_from_slice(e);
            }
            paths.push(copy.write_file(&tiles::entries_path(n, TILE_WIDTH), &data)?);
        }
        for (level, index, width) in tiles::tiles_for(tiled) {
            let data = self.tile_bytes(level, index, width)?;
            paths.push(copy.write_file(&tiles::tile_path(level, index, width), &data)?);
        }
        let tail = out.join(ENTRIES_FILE);
        let io = copy.create(&tail)?;
        let mut head = Vec::with_capacity(TAIL_HEADER_LEN as usize);
        head.extend_from_slice(TAIL_MAGIC);
        head.extend_from_slice(&tiled.to_be_bytes());
        head.extend_from_slice(root.as_bytes());
        io.write_all_at(&head, 0)
            .and_then(|()| io.write_all_at(&records, TAIL_HEADER_LEN))
            .and_then(|()| io.sync_data())
            .map_err(io_err("write", &tail))?;
        if let Some(cp) = checkpoint {
            let dst = out.join(CHECKPOINT_FILE);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)
                .map_err(io_err("create", &dst))?;
            f.write_all(&cp).map_err(io_err("write", &dst))?;
            f.sync_all().map_err(io_err("sync", &dst))?;
        }
        copy.sync_files(&paths)?;
        sync_dir(out)?;
        Ok((size, read_stored_checkpoint(out)?))
    }

    /// The hashes of hash tile `level`/`index` of `width` as bytes, read
    /// through the tree (stored full tiles are checked).
    fn tile_bytes(&self, level: u32, index: u64, width: u64) -> Result<Vec<u8>, LogError> {
        let mut st = self.lock();
        let lvl = level * tiles::TILE_HEIGHT;
        let mut data = Vec::with_capacity(width as usize * 32);
        for j in 0..width {
            let h = st
                .tree
                .node(&Reader(&self.store), lvl, index * TILE_WIDTH + j)
                .map_err(|e| in_dir(&self.dir, e))?;
            data.extend_from_slice(h.as_bytes());
        }
        Ok(data)
    }

    /// Signs a checkpoint of the current durable tree (see
    /// [`Log::sign_checkpoint`]) and writes the C2SP tlog-tiles export of
    /// exactly that tree to `out`: tiles, entry bundles, then `checkpoint`.
    pub fn export(&self, out: &Path, key: &SignerKey) -> Result<ExportSummary, LogError> {
        let signed = self.sign_checkpoint(key)?;
        self.export_at(out, &signed)
    }

    /// Writes the C2SP tlog-tiles export of the tree at an already signed
    /// checkpoint of this log to `out`: tiles, entry bundles, then
    /// `checkpoint` holding `signed.note` verbatim (which may carry witness
    /// cosignature lines after the log's signature).
    ///
    /// The checkpoint may be older than the current tree; its size must not
    /// exceed the durable size and its root must be this log's root at that
    /// size ([`LogError::CheckpointMismatch`] otherwise). The caller vouches
    /// that `signed.note` is the signed note of `signed.checkpoint`. Full
    /// tiles and bundles are read from the log's own tiles and checked on
    /// the way.
    pub fn export_at(
        &self,
        out: &Path,
        signed: &SignedCheckpoint,
    ) -> Result<ExportSummary, LogError> {
        let size = signed.checkpoint.size;
        if size > self.size() || self.root_at(size)? != signed.checkpoint.root {
            return Err(LogError::CheckpointMismatch { size });
        }
        prepare_export_dir(out)?;
        let mut summary = ExportSummary {
            size,
            tiles: 0,
            bundles: 0,
        };
        for (level, index, width) in tiles::tiles_for(size) {
            let data = self.tile_bytes(level, index, width)?;
            write_file(out, &tiles::tile_path(level, index, width), &data)?;
            summary.tiles += 1;
        }
        for n in 0..size.div_ceil(TILE_WIDTH) {
            let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
            let bundle = self.bundle_bytes(n, width)?;
            write_file(out, &tiles::entries_path(n, width), &bundle)?;
            summary.bundles += 1;
        }
        write_file(out, tiles::CHECKPOINT_PATH, signed.note.as_bytes())?;
        Ok(summary)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Complete bundles still in the tail go to tiles and the tail
        // starts after them, so that the next open does not have to (it
        // would otherwise write and sync up to 64 bundles' tiles, about a
        // second on a loaded VM). Best effort: `open` does it otherwise.
        let (failed, rotate, end) = {
            let st = self.lock();
            (st.failed, st.durable - st.base >= TILE_WIDTH, st.end)
        };
        if !failed && rotate && self.write_tiles().is_ok() {
            if let Ok(Some(r)) = self.prepare_rotation(true) {
                let _ = self.swap_tail(r, end);
            }
        }
        // Cut the preallocated zeros. Best effort: recovery cuts them too.
        let st = self.lock();
        if !st.failed && st.buf.is_empty() && st.allocated > st.end {
            let _ = st.tail.io.set_len(st.end);
        }
    }
}

/// A checkpoint and its signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note text (C2SP signed-note), as served to auditors.
    pub note: String,
}

/// What [`Log::export`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// Tree size of the exported checkpoint.
    pub size: u64,
    /// Hash tiles written.
    pub tiles: u64,
    /// Entry bundles written.
    pub bundles: u64,
}

enum Record {
    /// A complete record with a valid checksum: payload and leaf hash.
    Ok(Vec<u8>, Hash),
    /// Fewer bytes than the header or declared payload before EOF.
    Short,
    /// Length out of range or checksum mismatch.
    Bad,
}

fn read_record(r: &mut impl Read, scratch: &mut Vec<u8>) -> io::Result<Record> {
    let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
    if !read_full(r, &mut hdr)? {
        return Ok(Record::Short);
    }
    let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len == 0 || len > MAX_ENTRY_LEN {
        return Ok(Record::Bad);
    }
    scratch.resize(len, 0);
    if !read_full(r, scratch)? {
        return Ok(Record::Short);
    }
    let leaf = merkle::leaf_hash(scratch);
    if leaf.as_bytes()[..4] != hdr[4..8] {
        return Ok(Record::Bad);
    }
    Ok(Record::Ok(scratch.clone(), leaf))
}

/// Reads the record of entry `index` at byte `offset` of the tail into
/// `payload`, checksum checked.
fn read_at(
    file: &File,
    path: &Path,
    offset: u64,
    index: u64,
    payload: &mut Vec<u8>,
) -> Result<(), LogError> {
    let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
    FileExt::read_exact_at(file, &mut hdr, offset).map_err(io_err("read", path))?;
    let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len == 0 || len > MAX_ENTRY_LEN {
        return Err(LogError::Corrupted { offset, index });
    }
    payload.resize(len, 0);
    FileExt::read_exact_at(file, payload, offset + RECORD_HEADER_LEN)
        .map_err(io_err("read", path))?;
    if merkle::leaf_hash(payload).as_bytes()[..4] != hdr[4..8] {
        return Err(LogError::Corrupted { offset, index });
    }
    Ok(())
}

/// The payload of the record of entry `index` at byte `rel` of `chunk`
/// (byte `offset` of the tail), checksum checked.
fn record_in(chunk: &[u8], rel: u64, offset: u64, index: u64) -> Result<&[u8], LogError> {
    let corrupted = || LogError::Corrupted { offset, index };
    let rel = usize::try_from(rel).map_err(|_| corrupted())?;
    let hdr = chunk
        .get(rel..rel + RECORD_HEADER_LEN as usize)
        .ok_or_else(corrupted)?;
    let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len == 0 || len > MAX_ENTRY_LEN {
        return Err(corrupted());
    }
    let start = rel + RECORD_HEADER_LEN as usize;
    let payload = chunk.get(start..start + len).ok_or_else(corrupted)?;
    if merkle::leaf_hash(payload).as_bytes()[..4] != hdr[4..8] {
        return Err(corrupted());
    }
    Ok(payload)
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on EOF before that.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The tail file read back, with the tree it and the tiles make.
struct Loaded {
    tail: Tail,
    tree: TiledTree,
    base: u64,
    offsets: Vec<u64>,
    end: u64,
    truncated: u64,
    /// The tail is an entries file of the old layout (every entry, no
    /// tiles): [`Log::open`] moves it to tiles.
    legacy: bool,
}

/// Opens the tail file at `path` (creating an empty log if there is none),
/// reads the partial tiles at its base and checks them against the root in
/// its header, checks the last full tile, scans the records after the
/// header and cuts a torn tail.
fn load(store: &Store, path: &Path) -> Result<Loaded, LogError> {
    let dir = &store.dir;
    if fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        write_new_tail(store, path)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut head = vec![0u8; len.min(TAIL_HEADER_LEN) as usize];
    FileExt::read_exact_at(&file, &mut head, 0).map_err(io_err("read", path))?;
    let (legacy, base, root, start) = if head.starts_with(ENTRIES_MAGIC) {
        (true, 0, None, ENTRIES_MAGIC.len() as u64)
    } else if head.len() as u64 == TAIL_HEADER_LEN && head.starts_with(TAIL_MAGIC) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[8..16]);
        let root = Hash::from_slice(&head[16..48]).map_err(|_| LogError::NotALog {
            path: path.to_owned(),
        })?;
        (false, u64::from_be_bytes(b), Some(root), TAIL_HEADER_LEN)
    } else if (len as usize) < ENTRIES_MAGIC.len() && ENTRIES_MAGIC.starts_with(&head) {
        // A creation of the old layout interrupted before its header was
        // complete: an empty log.
        drop(file);
        write_new_tail(store, path)?;
        return load(store, path);
    } else {
        return Err(LogError::NotALog {
            path: path.to_owned(),
        });
    };
    if !base.is_multiple_of(TILE_WIDTH) {
        return Err(LogError::NotALog {
            path: path.to_owned(),
        });
    }
    let io = file
        .try_clone()
        .map_err(io_err("open", path))
        .and_then(|f| store.wrap(f, path))?;
    let mut partial = Vec::new();
    let mut top = None;
    for level in 1..8u32 {
        let n = base >> (tiles::TILE_HEIGHT * level);
        if n == 0 {
            break;
        }
        let width = n % TILE_WIDTH;
        if width == 0 {
            partial.push(Vec::new());
            continue;
        }
        partial.push(store.read_partial(level, n / TILE_WIDTH, width)?);
        top = Some(dir.join(tiles::tile_path(level, n / TILE_WIDTH, width)));
    }
    let edge_damaged = || LogError::TileCorrupted {
        path: top.clone().unwrap_or_else(|| path.to_owned()),
    };
    let mut tree = TiledTree::from_edge(base, partial).map_err(|_| edge_damaged())?;
    if let Some(root) = root {
        let got = tree
            .root_at(&Reader(store), base)
            .map_err(|e| in_dir(dir, e))?;
        if got != root {
            return Err(edge_damaged());
        }
    }
    if base > 0 {
        // The newest full tiles, checked up to the edge.
        tree.leaf_tile(&Reader(store), base / TILE_WIDTH - 1)
            .map_err(|e| in_dir(dir, e))?;
    }
    let (leaves, offsets, end, truncated) = recover(&file, path, start)?;
    for leaf in leaves {
        tree.push(leaf);
    }
    if truncated > 0 {
        io.set_len(end).map_err(io_err("truncate", path))?;
        io.sync_data().map_err(io_err("sync", path))?;
    }
    Ok(Loaded {
        tail: Tail { file, io },
        tree,
        base,
        offsets,
        end,
        truncated,
        legacy,
    })
}

/// Writes the tail of an empty log at `path` (a temporary file renamed in
/// place, so a crash leaves no half-written header).
fn write_new_tail(store: &Store, path: &Path) -> Result<(), LogError> {
    let tmp = store.dir.join("entries.tmp");
    let io = store.create(&tmp)?;
    let mut head = Vec::with_capacity(TAIL_HEADER_LEN as usize);
    head.extend_from_slice(TAIL_MAGIC);
    head.extend_from_slice(&0u64.to_be_bytes());
    head.extend_from_slice(merkle::empty_root().as_bytes());
    io.write_all_at(&head, 0)
        .and_then(|()| io.sync_data())
        .map_err(io_err("write", &tmp))?;
    drop(io);
    fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    sync_dir(&store.dir)
}

/// Whether `size` is at most the durable size.
fn check_durable(st: &State, size: u64) -> Result<(), LogError> {
    if size > st.durable {
        return Err(ProofError::SizeOrder {
            first: size,
            second: st.durable,
        }
        .into());
    }
    Ok(())
}

/// Scans the records of a tail file from byte `start`. Returns their leaf
/// hashes and offsets, the end of the last good record and how many bytes
/// after it are a torn tail.
fn recover(
    file: &File,
    path: &Path,
    start: u64,
) -> Result<(Vec<Hash>, Vec<u64>, u64, u64), LogError> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(start))
        .map_err(io_err("seek", path))?;
    let mut leaves = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = start;
    let mut scratch = Vec::new();
    while offset < len {
        match read_record(&mut r, &mut scratch).map_err(io_err("read", path))? {
            Record::Ok(payload, leaf) => {
                offsets.push(offset);
                leaves.push(leaf);
                offset += RECORD_HEADER_LEN + payload.len() as u64;
            }
            Record::Short => return Ok((leaves, offsets, offset, len - offset)),
            Record::Bad => {
                // Damage confined to the final record is a torn append; damage
                // with anything but zeros after it is corruption.
                if tail_is_torn(file, path, offset, len)? {
                    return Ok((leaves, offsets, offset, len - offset));
                }
                return Err(LogError::Corrupted {
                    offset,
                    index: leaves.len() as u64,
                });
            }
        }
    }
    Ok((leaves, offsets, offset, 0))
}

/// A bad record at `offset` is a torn tail if it is the last record in the
/// file (its declared extent ends at EOF) or everything after its header is
/// zero (a file extended but never written).
fn tail_is_torn(file: &File, path: &Path, offset: u64, len: u64) -> Result<bool, LogError> {
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(offset))
        .map_err(io_err("seek", path))?;
    let mut hdr = [0u8; 8];
    if !read_full(&mut r, &mut hdr).map_err(io_err("read", path))? {
        return Ok(true);
    }
    let declared = u64::from(u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]));
    if declared > 0 && declared <= MAX_ENTRY_LEN as u64 && offset + 8 + declared <= len {
        // The record's own bytes may be torn; only zeros (preallocation)
        // may follow its declared extent.
        r.seek(SeekFrom::Start(offset + 8 + declared))
            .map_err(io_err("seek", path))?;
        return all_zero(&mut r, path);
    }
    all_zero(&mut r, path)
}

/// Whether everything from the reader's position to EOF is zero.
fn all_zero(r: &mut impl Read, path: &Path) -> Result<bool, LogError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

fn read_stored_checkpoint(dir: &Path) -> Result<Option<Checkpoint>, LogError> {
    let path = dir.join(CHECKPOINT_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let text = crate::note::text_unverified(&data)
        .map_err(|e| LogError::StoredCheckpoint(CheckpointError::Note(e)))?;
    Checkpoint::parse_body(text)
        .map(Some)
        .map_err(LogError::StoredCheckpoint)
}

impl From<LockError> for LogError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { dir, pid } => Self::Locked { dir, pid },
            LockError::Io { op, path, source } => Self::Io {
                op,
                path,
                error: source,
            },
        }
    }
}

/// Makes `out` an export target: created, or an existing empty directory
/// (not a symbolic link); missing parents are created. An export never
/// writes into anything else.
fn prepare_export_dir(out: &Path) -> Result<(), LogError> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    match fs::create_dir(out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(out).map_err(io_err("inspect", out))?;
            let empty = meta.is_dir()
                && fs::read_dir(out)
                    .map_err(io_err("read directory", out))?
                    .next()
                    .is_none();
            if empty {
                Ok(())
            } else {
                Err(LogError::ExportTarget {
                    path: out.to_owned(),
                })
            }
        }
        Err(e) => Err(io_err("create directory", out)(e)),
    }
}

/// Writes a new file of an export: its parent directories are created by
/// the export itself (an existing one must be a real directory, not a
/// link), and the file must not exist (`O_CREAT | O_EXCL`, which also
/// refuses a symbolic link in its place).
fn write_file(out: &Path, rel: &str, data: &[u8]) -> Result<(), LogError> {
    let path = out.join(rel);
    let mut dir = out.to_owned();
    if let Some(parent) = Path::new(rel).parent() {
        for part in parent.components() {
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = fs::symlink_metadata(&dir).map_err(io_err("inspect", &dir))?;
                    if !meta.is_dir() {
                        return Err(LogError::ExportTarget { path: dir });
                    }
                }
                Err(e) => return Err(io_err("create directory", &dir)(e)),
            }
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                LogError::ExportTarget { path: path.clone() }
            } else {
                io_err("create", &path)(e)
            }
        })?;
    f.write_all(data).map_err(io_err("write", &path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use std::sync::mpsc;
    use std::sync::Arc;

    use isnad_types::{AgencyId, MessageId};

    use super::*;
    use crate::entry::EventType;

    fn entry(t: u64, k: u64) -> Entry {
        let mut e = Entry::new(EventType::Sent, 1_790_000_000_000 + k);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&t.to_be_bytes());
        id[8..].copy_from_slice(&k.to_be_bytes());
        e.message_id = Some(MessageId::from_bytes(id));
        e.sender = Some(AgencyId::new("iq.moi.ahtd").unwrap());
        e.recipient = Some(AgencyId::new("fr.mj.bepi").unwrap());
        e.envelope_sha256 = Some([k as u8; 32]);
        e
    }

    fn set_hook(log: &Log, hook: impl Fn(u64) -> io::Result<()> + Send + Sync + 'static) {
        *log.sync_hook.lock().unwrap() = Some(SyncHook(Box::new(hook)));
    }

    fn set_tile_hook(log: &Log, hook: impl Fn(u64) -> io::Result<()> + Send + Sync + 'static) {
        *log.tile_hook.lock().unwrap() = Some(SyncHook(Box::new(hook)));
    }

    /// Many threads append single entries and small batches at once: every
    /// index is handed out exactly once, each is durable when returned, and
    /// the reopened log holds every entry at the index its appender got.
    #[test]
    fn hammered_appends_return_each_index_once_and_survive_reopen() {
        const THREADS: u64 = 48;
        const ROUNDS: u64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path()).unwrap();
        let log = Arc::new(log);
        let got: Vec<Vec<(u64, MessageId)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let log = &log;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for k in 0..ROUNDS {
                            // Batches of 1, 2 or 3 entries.
                            let n = 1 + (t + k) % 3;
                            let batch: Vec<Entry> = (0..n).map(|j| entry(t, k * 4 + j)).collect();
                            let ids: Vec<MessageId> =
                                batch.iter().map(|e| e.message_id.unwrap()).collect();
                            let range = log.append_batch(batch).unwrap();
                            assert_eq!(range.end - range.start, n);
                            assert!(log.size() >= range.end, "returned before durable");
                            mine.extend(range.zip(ids));
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<(u64, MessageId)> = got.into_iter().flatten().collect();
        all.sort_by_key(|(i, _)| *i);
        let total = all.len() as u64;
        assert_eq!(
            all.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..total).collect::<Vec<_>>()
        );
        assert_eq!(log.size(), total);
        drop(log);
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!((report.size, report.truncated_bytes), (total, 0));
        for (i, id) in all {
            let e = Entry::decode(&log.entry_bytes(i).unwrap()).unwrap();
            assert_eq!((e.seq, e.message_id), (i, Some(id)));
        }
    }

    /// A failed sync fails its own appenders and those queued behind it,
    /// makes nothing more durable, refuses later appends, and the log
    /// reopens with at least the entries durable before the failure.
    #[test]
    fn failed_sync_fails_every_unconfirmed_appender_and_poisons() {
        let dir = tempfile::tempdir().unwrap();
        let (owned, _) = Log::open(dir.path()).unwrap();
        let log = &owned;
        log.append(entry(0, 0)).unwrap();
        // Batch 1's sync waits for the test's go, then fails.
        let (go, wait) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        set_hook(log, move |n| {
            if n == 1 {
                wait.lock().unwrap().recv().unwrap();
                return Err(io::Error::other("injected sync failure"));
            }
            Ok(())
        });
        std::thread::scope(|s| {
            let leader = s.spawn(|| log.append(entry(1, 0)));
            let until = |f: &dyn Fn(&State) -> bool| {
                while !f(&log.lock()) {
                    std::thread::yield_now();
                }
            };
            until(&|st| st.syncing && st.batches == 2);
            let behind: Vec<_> = (0..2)
                .map(|k| s.spawn(move || log.append_batch((0..2).map(|j| entry(2 + k, j)))))
                .collect();
            until(&|st| st.arrived == 2);
            go.send(()).unwrap();
            let r = leader.join().unwrap();
            assert!(matches!(r, Err(LogError::Io { .. })), "{r:?}");
            for h in behind {
                let r = h.join().unwrap();
                assert!(matches!(r, Err(LogError::Poisoned)), "{r:?}");
            }
        });
        assert_eq!(log.size(), 1);
        assert!(matches!(log.append(entry(9, 0)), Err(LogError::Poisoned)));
        let key = SignerKey::from_seed("a.example/audit", crate::note::TYPE_ED25519, [1; 32]);
        let signed = log.sign_checkpoint(&key.unwrap());
        assert!(matches!(signed, Err(LogError::Poisoned)));
        drop(owned);
        // The failed batch's bytes were written, so reopening may find it.
        let (_, report) = Log::open(dir.path()).unwrap();
        assert!(report.size == 1 || report.size == 2, "{report:?}");
    }

    /// ENOSPC on a sync poisons the log; `reopen` fails while the disk is
    /// still full and brings the log back in place once it is not: the
    /// failed entry is cut (its appender got an error), the next append
    /// gets the next index, and a fresh open finds exactly the
    /// acknowledged entries.
    #[test]
    fn poisoned_log_reopens_in_place_once_writes_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::new();
        let (log, _) = Log::open_with_faults(dir.path(), &faults).unwrap();
        log.append_batch((0..3).map(|k| entry(0, k))).unwrap();
        faults.fail_syncs(Some(crate::disk::Fault::NoSpace));
        assert!(matches!(log.append(entry(1, 0)), Err(LogError::Io { .. })));
        assert!(log.is_poisoned());
        assert!(matches!(log.append(entry(1, 1)), Err(LogError::Poisoned)));
        assert!(log.reopen().is_err(), "the disk is still full");
        assert!(log.is_poisoned());
        faults.heal();
        log.reopen().unwrap();
        assert!(!log.is_poisoned());
        assert_eq!(log.size(), 3);
        assert_eq!(log.append(entry(2, 0)).unwrap(), 3);
        drop(log);
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!(report.size, 4);
        let ids: Vec<_> = (0..4)
            .map(|i| {
                Entry::decode(&log.entry_bytes(i).unwrap())
                    .unwrap()
                    .message_id
            })
            .collect();
        let want: Vec<_> = [entry(0, 0), entry(0, 1), entry(0, 2), entry(2, 0)]
            .into_iter()
            .map(|e| e.message_id)
            .collect();
        assert_eq!(ids, want);
    }

    /// Power loss after any number of syncs: every entry `append` returned
    /// is there after the restore, and the log opens cleanly.
    #[test]
    fn power_loss_keeps_every_acknowledged_entry() {
        for crash_at in 1..=6u64 {
            let dir = tempfile::tempdir().unwrap();
            let faults = DiskFaults::new();
            let (log, _) = Log::open_with_faults(dir.path(), &faults).unwrap();
            faults.crash_after_syncs(crash_at);
            let mut acked = 0;
            for k in 0..10 {
                match log.append_batch((0..(k % 3 + 1)).map(|j| entry(k, j))) {
                    Ok(r) => acked = r.end,
                    Err(_) => break,
                }
            }
            drop(log);
            faults.restore().unwrap();
            let (_, report) = Log::open(dir.path()).unwrap();
            assert_eq!(report.size, acked, "crash after sync {crash_at}");
        }
    }

    /// Zero padding preallocated past the records is cut on a clean close
    /// and by recovery after a crash, and appends go on from the end.
    #[test]
    fn preallocated_zeros_are_cut_on_close_and_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENTRIES_FILE);
        let (log, _) = Log::open(dir.path()).unwrap();
        log.append_batch((0..3).map(|k| entry(0, k))).unwrap();
        let len = fs::metadata(&path).unwrap().len();
        assert!(len >= PREALLOCATE, "file not preallocated: {len}");
        let end = log.lock().end;
        drop(log);
        assert_eq!(fs::metadata(&path).unwrap().len(), end);
        // A crash leaves the zeros: recovery cuts them.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(end + 5000).unwrap();
        drop(f);
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!((report.size, report.truncated_bytes), (3, 5000));
        assert_eq!(log.append(entry(0, 3)).unwrap(), 3);
    }

    /// The tiles a batch completes are written after it is durable, off
    /// the path of the next batches: while the thread writing bundle 0 is
    /// held, its own append is already durable and other appenders go on
    /// being acknowledged (with tiles written before a batch counted as
    /// durable, they would all wait). Once it goes on, it writes every
    /// bundle completed meanwhile, and the log reopens to the same tree.
    #[test]
    fn tiles_are_written_after_the_batch_is_durable_and_off_the_next_ones_path() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path()).unwrap();
        log.append_batch((0..255).map(|k| entry(0, k))).unwrap();
        let (go, wait) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        set_tile_hook(&log, move |_| {
            // Held until the test says go (bounded: the test fails first).
            let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(20));
            Ok(())
        });
        let bundle = |n: u64| dir.path().join(tiles::entries_path(n, TILE_WIDTH));
        std::thread::scope(|s| {
            let tiler = s.spawn(|| log.append(entry(1, 0)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while log.size() < 256 {
                assert!(Instant::now() < deadline, "entry 255 never became durable");
                std::thread::yield_now();
            }
            // Its appender is still writing tiles; others are not held.
            for k in 0..300 {
                assert_eq!(log.append(entry(2, k)).unwrap(), 256 + k);
            }
            assert!(!tiler.is_finished());
            assert!(!bundle(0).exists());
            go.send(()).unwrap();
            drop(go); // Later calls of the hook do not wait.
            assert_eq!(tiler.join().unwrap().unwrap(), 255);
        });
        assert!(bundle(0).is_file() && bundle(1).is_file());
        let root = log.root_at(556).unwrap();
        drop(log);
        let (log, report) = Log::open(dir.path()).unwrap();
        assert_eq!(report.size, 556);
        assert_eq!(log.root_at(556).unwrap(), root);
    }

    #[test]
    fn an_io_error_prints_its_cause_once() {
        let e = io_err("create directory", Path::new("/x/log"))(io::Error::from_raw_os_error(20));
        let text = e.to_string();
        assert!(text.starts_with("create directory /x/log: "), "{text}");
        assert_eq!(text.matches("os error 20").count(), 1, "{text}");
        // In the message, so not also in the source chain.
        assert!(std::error::Error::source(&e).is_none());
    }
}
