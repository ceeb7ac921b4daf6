//! The node's durable state in redb. The store owns every table; each
//! module below owns its tables and typed records, and no code outside
//! the store opens a table:
//!
//! | module | tables | records |
//! |---|---|---|
//! | [`outbox`] | `outbox`, `outbox_due`, `outbox_awaiting_end_to_end` | [`OutboxRecord`] |
//! | [`inbox`] | `inbox` (also the replay set), `inbox_digests` | [`InboxRecord`] |
//! | [`cases`] | `mla_requests`, `intel_shares` | [`isnad_mla::RequestRecord`], [`isnad_mla::ShareRecord`] |
//! | `idempotency` | `idempotency_keys`, `idempotency_by_time` | [`crate::idempotency::Claim`] |
//! | `witness` | `witness_latest`, `witness_submitted` | checkpoint notes, cosignatures |
//! | [`retention`] | `purged`, `outbox_unlogged`, `retention_queue` | [`PurgeMark`] |
//! | here | `meta` | small values by name |
//!
//! Records are parsed once, when read: message ids, agency ids and kinds
//! are their types, not text checked again on every delivery attempt. Their
//! encoding on disk is unchanged from the untyped records (`codec`, and
//! `crate::format_tests`, which compares them with bytes written by the
//! earlier code).
//!
//! Every write goes through one writer thread that batches the pending
//! writes of many tasks into a single transaction and one fsync (group
//! commit); a write's future resolves only after its commit is durable.
//!
//! A failed commit (disk full, I/O error) fails every write of its batch,
//! and redb then refuses every later operation on that handle. The store
//! drops the handle, reports the fault ([`Store::fault`], which the node's
//! health shows), fails reads and writes at once meanwhile, and
//! [`Store::reopen`] opens the database again once the disk takes writes
//! (redb's repair rolls back to the last durable commit, so what was
//! acknowledged is kept).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase as _, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

pub mod cases;
mod codec;
pub mod format;
pub(crate) mod idempotency;
pub mod inbox;
pub mod outbox;
mod queue;
pub mod retention;
pub(crate) mod witness;
mod writer;

pub use cases::{Case, CaseKey, CaseView, CaseWrite, IndexNote};
pub use inbox::{InboxInsert, InboxRecord};
pub use outbox::{OutState, OutboxRecord, RelayedOut, ResealCopy, Submission};
pub use queue::PurgeTarget;
pub use retention::PurgeMark;
pub(crate) use writer::JoinOnDrop;
use writer::{Job, Opener, Slot};

/// Small metadata values.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or committed (disk full,
    /// permissions, corruption). The operation did not take effect.
    #[error("state database error: {0}")]
    Db(String),
    /// A stored record could not be decoded: the state file is damaged or
    /// was written by an incompatible version.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The writer thread has stopped (the node is shutting down).
    #[error("state store is shut down")]
    Closed,
    /// An earlier commit failed; the database is closed until
    /// [`Store::reopen`] succeeds (the node retries with backoff). The
    /// operation did not take effect.
    #[error("state database unavailable after a failed write: {0}")]
    Failing(String),
    /// The database was written by a newer release, or its format version
    /// is damaged (`crate::formats`). Nothing was read or changed.
    #[error(transparent)]
    Format(#[from] format::FormatError),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Whether a write must be on disk before its future resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd before the write completes: anything acknowledged to a client
    /// or a peer.
    Durable,
    /// Committed (visible to readers) but synced only with the next durable
    /// commit: bookkeeping that recovery can redo, such as a delivered mark
    /// (a lost one means a redelivery, which the recipient answers with its
    /// original receipt).
    Lazy,
}

/// The state store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Slot>,
    /// The database file, if it is one (copied by [`Store::backup_to`]).
    path: Option<Arc<std::path::PathBuf>>,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Declared last: dropped after `db` and `jobs`, so when the last clone
    /// goes, the writer thread has no sender left, finishes the queued jobs,
    /// drops its database handle, and is joined: the file is closed when
    /// the last `Store` is dropped, and can be opened again right away.
    _writer: Arc<JoinOnDrop>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Page cache of the database. redb's default (1 GiB) keeps every page
/// written, so resident memory grew with the stored messages (about 2.5 KiB
/// per message in the soak test); with this bound it is flat once the cache
/// is full. Pages not cached are read through the OS page cache.
const CACHE_BYTES: usize = 2 << 20;

impl Store {
    /// Opens (or creates) the database file and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // A new database file is private (redb would create it 0644); an
        // empty file is a new database to redb.
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Db(format!(
                        "cannot create {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        let file = Arc::new(path.to_owned());
        let path = path.to_owned();
        Self::open_by(
            Box::new(move || {
                Ok(redb::Builder::new()
                    .set_cache_size(CACHE_BYTES)
                    .create(&path)?)
            }),
            Some(file),
        )
    }

    /// [`Store::open`] on a custom redb storage backend, made anew by
    /// `backend` each time the database is (re)opened: tests put the file
    /// under a fault controller (`crate::storage`).
    pub fn open_with_backend<B: redb::StorageBackend>(
        backend: impl Fn() -> std::io::Result<B> + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        Self::open_by(
            Box::new(move || {
                let b = backend().map_err(|e| StoreError::Db(e.to_string()))?;
                Ok(redb::Builder::new()
                    .set_cache_size(CACHE_BYTES)
                    .create_with_backend(b)?)
            }),
            None,
        )
    }

    fn open_by(open: Opener, path: Option<Arc<std::path::PathBuf>>) -> Result<Self, StoreError> {
        let db = Arc::new(open_tables(&open)?);
        let slot = Arc::new(Slot {
            open,
            current: RwLock::new(Some(db)),
            failing: AtomicBool::new(false),
            failed: Mutex::new((String::new(), None)),
        });
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let wslot = Arc::clone(&slot);
        let handle = std::thread::Builder::new()
            .name("isnad-store-writer".into())
            .spawn(move || writer::writer_loop(&wslot, &rx))
            .map_err(|e| StoreError::Db(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            db: slot,
            path,
            jobs: tx,
            _writer: Arc::new(JoinOnDrop::new(handle)),
        })
    }

    /// Why the database is unavailable, if a commit failed and it was not
    /// reopened since (the node's health shows it).
    pub fn fault(&self) -> Option<String> {
        if !self.db.failing.load(Ordering::SeqCst) {
            return None;
        }
        Some(
            self.db
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }

    /// After a failed commit: closes the failed handle (waiting up to a
    /// second for reads still using it) and opens the database again,
    /// which also proves the disk takes a durable commit. `Ok(true)` when
    /// the store is back, `Ok(false)` when it had not failed; on error it
    /// stays failed (call again later).
    pub fn reopen(&self) -> Result<bool, StoreError> {
        if !self.db.failing.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut failed = self.db.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = failed.1.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                failed.1 = Some(old);
                return Err(StoreError::Failing(
                    "the failed handle is still in use".into(),
                ));
            }
        }
        let db = open_tables(&self.db.open).map_err(|e| StoreError::Failing(e.to_string()))?;
        *self.db.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        self.db.failing.store(false, Ordering::SeqCst);
        Ok(true)
    }

    /// Runs `f` inside a write transaction shared with other concurrent
    /// writes; resolves after the commit is durable. `f` must check before it
    /// writes: an `Err` from `f` does not undo what `f` already wrote.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_with(Durability::Durable, f).await
    }

    /// [`Store::write`] with a choice of [`Durability`].
    pub async fn write_with<R: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = (
            durability,
            Box::new(move |txn| {
                let r = f(txn);
                Box::new(move |commit: Result<(), StoreError>| {
                    let _ = tx.send(commit.and(r));
                })
            }),
        );
        if self.db.failing.load(Ordering::SeqCst) {
            return Err(self.db.failing_error());
        }
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        // A job dropped unrun: the database failed meanwhile.
        rx.await.map_err(|_| {
            if self.db.failing.load(Ordering::SeqCst) {
                self.db.failing_error()
            } else {
                StoreError::Closed
            }
        })?
    }

    /// Writes a consistent copy of the database to `dest` (a new file,
    /// mode 0600, synced) while the node runs: the copy is made by the
    /// writer thread right after a durable commit and before it starts the
    /// next transaction, so it holds exactly the committed state. Readers
    /// go on meanwhile; writers wait for the copy.
    pub async fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        let src = self.path.clone().ok_or_else(|| {
            StoreError::Db("this database is not a file; it cannot be copied".into())
        })?;
        let dest = dest.to_owned();
        let (tx, rx) = oneshot::channel();
        let job: Job = (
            Durability::Durable,
            Box::new(move |_txn| {
                Box::new(move |commit: Result<(), StoreError>| {
                    let r = commit.and_then(|()| {
                        copy_new(&src, &dest).map_err(|e| {
                            StoreError::Db(format!(
                                "cannot copy {} to {}: {e}",
                                src.display(),
                                dest.display()
                            ))
                        })
                    });
                    let _ = tx.send(r);
                })
            }),
        );
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Writes a metadata value durably.
    pub async fn set_meta(&self, key: &'static str, value: Vec<u8>) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(META)?.insert(key, value.as_slice())?;
            Ok(())
        })
        .await
    }
}

/// Copies `src` to the new file `dest` (mode 0600, never overwriting) and
/// syncs it; returns the bytes copied.
fn copy_new(src: &Path, dest: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut from = std::fs::File::open(src)?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    let n = std::io::copy(&mut from, &mut to)?;
    to.sync_all()?;
    Ok(n)
}

/// Opens the database and creates the tables (a durable commit).
fn open_tables(open: &Opener) -> Result<Database, StoreError> {
    let db = open()?;
    format::upgrade_state(&db)?;
    let txn = db.begin_write()?;
    txn.open_table(outbox::OUTBOX)?;
    txn.open_table(outbox::DUE)?;
    txn.open_table(inbox::INBOX)?;
    txn.open_table(inbox::DIGESTS)?;
    txn.open_table(META)?;
    txn.open_table(outbox::AWAITING)?;
    txn.open_table(cases::REQUESTS)?;
    txn.open_table(cases::SHARES)?;
    txn.open_table(retention::PURGED)?;
    txn.open_table(queue::UNLOGGED)?;
    txn.open_table(queue::QUEUE)?;
    idempotency::create_tables(&txn)?;
    txn.commit()?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use isnad_envelope::{AgencyId, Digest, Kind, MessageId};

    use super::*;

    fn rec(id: u8, due: u64) -> OutboxRecord {
        let to = AgencyId::new("fr.mj.bepi").unwrap_or_else(|e| panic!("{e}"));
        let mut r = OutboxRecord::pending(
            MessageId::from_bytes([id; 16]),
            &to,
            Kind::MlaRequest,
            vec![1, 2, 3],
            1,
            100,
            due,
        );
        r.digest = [id; 32];
        r
    }

    #[tokio::test]
    async fn outbox_due_order_and_update() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.redb"))?;
        store.insert_outbox(rec(2, 200)).await?;
        store.insert_outbox(rec(1, 100)).await?;
        store.insert_outbox(rec(3, 300)).await?;
        let due: Vec<u8> = store
            .due(250, 10, &|_| false)?
            .iter()
            .map(|id| id.as_bytes()[0])
            .collect();
        let skipped: Vec<u8> = store
            .due(250, 10, &|id| id.as_bytes()[0] == 1)?
            .iter()
            .map(|id| id.as_bytes()[0])
            .collect();
        assert_eq!(skipped, vec![2]);
        assert_eq!(due, vec![1, 2]);
        assert_eq!(store.next_due_ms()?, Some(100));
        store
            .modify_outbox(MessageId::from_bytes([1; 16]), Durability::Durable, |r| {
                r.state = OutState::Delivered
            })
            .await?;
        assert!(store
            .modify_outbox(MessageId::from_bytes([9; 16]), Durability::Lazy, |_| {})
            .await?
            .is_none());
        assert_eq!(store.next_due_ms()?, Some(200));
        assert_eq!(store.pending_count()?, 2);
        assert_eq!(
            store
                .outbox(&MessageId::from_bytes([1; 16]))?
                .map(|r| r.state),
            Some(OutState::Delivered)
        );
        Ok(())
    }

    #[tokio::test]
    async fn inbox_accepts_once_and_survives_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.redb");
        let r = InboxRecord {
            id: MessageId::from_bytes([9; 16]),
            sender: AgencyId::new("iq.moi.ahtd")?,
            kind: Kind::MlaRequest,
            envelope: vec![7; 10],
            digest: [4; 32],
            expires: 100,
            received_ms: 5,
            log_index: 3,
            receipt: vec![8; 5],
            via: Vec::new(),
        };
        {
            let store = Store::open(&path)?;
            assert_eq!(store.insert_inbox(r.clone()).await?, InboxInsert::Stored);
            assert_eq!(
                store.insert_inbox(r.clone()).await?,
                InboxInsert::Duplicate(Box::new(r.clone()))
            );
        }
        // The writer thread holds the database until its channel closes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let store = Store::open(&path)?;
        assert_eq!(store.inbox_by_digest(&Digest([4; 32]))?, Some(r.clone()));
        assert_eq!(store.inbox_by_id(&MessageId::from_bytes([9; 16]))?, vec![r]);
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.redb"))?;
        let mut tasks = Vec::new();
        for i in 0..200u8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.insert_outbox(rec(i, u64::from(i))).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        assert_eq!(store.pending_count()?, 200);
        Ok(())
    }
}
