//! The node's durable state in redb: outbox, inbox, the replay set, and
//! metadata. Every write goes through one writer thread that batches the
//! pending writes of many tasks into a single transaction and one fsync
//! (group commit); a write's future resolves only after its commit is durable.
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

use isnad_envelope::{AgencyId, Digest, MessageId};
use redb::{
    Database, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Outbox: message id → [`OutboxRecord`].
const OUTBOX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("outbox");
/// Due index: next attempt (u64 BE) ‖ message id → ().
const DUE: TableDefinition<'_, &[u8], ()> = TableDefinition::new("outbox_due");
/// Inbox: message id ‖ sender id → [`InboxRecord`]. Also the replay set.
/// Relayed messages this node originated that await their end-to-end
/// receipt: expiry (seconds, big-endian) ‖ message id → ().
const AWAITING: TableDefinition<'_, &[u8], ()> = TableDefinition::new("outbox_awaiting_end_to_end");
const INBOX: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("inbox");
/// Envelope digest → inbox key, to answer exact retransmissions without decrypting.
const DIGESTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("inbox_digests");
/// Small metadata values.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

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

/// Delivery state of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutState {
    /// Waiting for delivery or a retry.
    Pending,
    /// Delivered; the receipt is stored.
    Delivered,
    /// Refused by the recipient with a final error.
    Failed,
    /// Expired before it could be delivered.
    Expired,
}

/// An outgoing message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Message id.
    pub id: [u8; 16],
    /// Recipient agency.
    pub recipient: String,
    /// Message kind (wire name).
    pub kind: String,
    /// The sealed envelope, exactly as sent.
    #[serde(with = "serde_bytes_vec")]
    pub envelope: Vec<u8>,
    /// SHA-256 of the envelope.
    pub digest: [u8; 32],
    /// Creation time (seconds).
    pub created: u64,
    /// Expiry time (seconds).
    pub expires: u64,
    /// Current state.
    pub state: OutState,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Next attempt time in milliseconds since the epoch (when pending).
    pub next_attempt_ms: u64,
    /// Last error seen, for operators.
    pub last_error: Option<String>,
    /// Index of our `sent` audit entry, once written.
    pub sent_index: Option<u64>,
    /// The recipient's signed receipt, once received.
    #[serde(with = "serde_opt_bytes")]
    pub receipt: Option<Vec<u8>>,
    /// The recipient's audit-log index from the receipt.
    pub peer_log_index: Option<u64>,
    /// When the receipt arrived (milliseconds).
    pub delivered_ms: Option<u64>,
    /// Index of our `receipt-received` / `delivery-failed` / `delivery-expired` entry.
    pub final_index: Option<u64>,
    /// For one hop of a relayed message: its end-to-end part
    /// (spec/relay.md); `recipient` and `envelope` are the hop's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayedOut>,
}

impl OutboxRecord {
    /// A new record, pending and due at `due_ms`, with nothing logged or
    /// received yet; `digest` is computed from `envelope`.
    pub fn pending(
        id: MessageId,
        recipient: &AgencyId,
        kind: &str,
        envelope: Vec<u8>,
        created: u64,
        expires: u64,
        due_ms: u64,
    ) -> Self {
        Self {
            id: *id.as_bytes(),
            recipient: recipient.to_string(),
            kind: kind.to_owned(),
            digest: Digest::sha256(&envelope).0,
            envelope,
            created,
            expires,
            state: OutState::Pending,
            attempts: 0,
            next_attempt_ms: due_ms,
            last_error: None,
            sent_index: None,
            receipt: None,
            peer_log_index: None,
            delivered_ms: None,
            final_index: None,
            relay: None,
        }
    }
}

/// The end-to-end part of an outgoing relay hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedOut {
    /// The route, originator first, final recipient last.
    pub route: Vec<String>,
    /// SHA-256 of the inner (end-to-end) envelope.
    pub inner_digest: [u8; 32],
    /// The final recipient's end-to-end receipt (originator only), once routed back.
    #[serde(default, with = "serde_opt_bytes")]
    pub end_to_end_receipt: Option<Vec<u8>>,
    /// The final recipient's audit-log index from that receipt.
    #[serde(default)]
    pub end_to_end_index: Option<u64>,
    /// Index of the `delivery-expired` entry logged when the message expired
    /// without its end-to-end receipt (originator only, spec/relay.md §8).
    #[serde(default)]
    pub end_to_end_missing_index: Option<u64>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// Message id.
    pub id: [u8; 16],
    /// Authenticated sender agency.
    pub sender: String,
    /// Message kind (wire name).
    pub kind: String,
    /// The envelope exactly as received (still encrypted).
    #[serde(with = "serde_bytes_vec")]
    pub envelope: Vec<u8>,
    /// SHA-256 of the envelope.
    pub digest: [u8; 32],
    /// Signed expiry of the message (the replay entry is kept at least until then).
    pub expires: u64,
    /// When it was accepted (milliseconds).
    pub received_ms: u64,
    /// Index of our `received` audit entry.
    pub log_index: u64,
    /// The receipt we returned (tagged COSE_Sign1).
    #[serde(with = "serde_bytes_vec")]
    pub receipt: Vec<u8>,
    /// For a message that came through relays: the route, originator first
    /// (spec/relay.md). Empty for direct delivery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let v = ciborium::value::Value::deserialize(d)?;
        v.into_bytes()
            .map_err(|_| serde::de::Error::custom("expected bytes"))
    }
}

mod serde_opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match ciborium::value::Value::deserialize(d)? {
            ciborium::value::Value::Null => Ok(None),
            v => v
                .into_bytes()
                .map(Some)
                .map_err(|_| serde::de::Error::custom("expected bytes")),
        }
    }
}

fn encode<T: Serialize>(t: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(t, &mut out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    ciborium::de::from_reader(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn due_key(at_ms: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

fn inbox_key(id: &MessageId, sender: &AgencyId) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(sender.as_str().as_bytes());
    k
}

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write job and whether its effect must be on disk when it completes.
type Job = (
    Durability,
    Box<dyn FnOnce(&WriteTransaction) -> Finish + Send>,
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

/// Joins a background thread when dropped (the thread must be about to end:
/// its channel's senders are all gone).
#[derive(Debug)]
pub(crate) struct JoinOnDrop(Option<std::thread::JoinHandle<()>>);

impl JoinOnDrop {
    pub(crate) fn new(handle: std::thread::JoinHandle<()>) -> Self {
        Self(Some(handle))
    }
}

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            // Never join from the thread itself (a job dropping the last
            // handle): it ends on its own once this returns.
            if h.thread().id() != std::thread::current().id() && h.join().is_err() {
                tracing::error!("a background writer thread panicked");
            }
        }
    }
}

/// How the database is opened (again, after a failure).
type Opener = Box<dyn Fn() -> Result<Database, StoreError> + Send + Sync>;

/// The open database, or why it is closed.
struct Slot {
    open: Opener,
    current: RwLock<Option<Arc<Database>>>,
    /// A commit failed and the database was not reopened since.
    failing: AtomicBool,
    /// Why, and the handle that failed (closed once nothing uses it).
    failed: Mutex<(String, Option<Arc<Database>>)>,
}

impl Slot {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        // The read guard is dropped before `failed` is locked: `reopen`
        // takes them in the other order (the two used to deadlock).
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        current.ok_or_else(|| self.failing_error())
    }

    fn failing_error(&self) -> StoreError {
        let why = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        StoreError::Failing(why.0.clone())
    }

    /// Takes the failed handle out of service (once per failure).
    fn fail(&self, why: String) {
        let db = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if !self.failing.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %why, "state database write failed; refusing new work until it is reopened");
            *failed = (why, db);
        } else if db.is_some() {
            failed.1 = db;
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Outcome of inserting a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxInsert {
    /// Newly stored.
    Stored,
    /// Already present (a retry or replay): the stored record.
    Duplicate(Box<InboxRecord>),
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
            .spawn(move || writer_loop(&wslot, &rx))
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

    /// One value of a text-keyed table another module owns (e.g. the
    /// witness state); `None` if the key or the table does not exist yet.
    pub(crate) fn text_keyed(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every pair of a text-keyed table another module owns, in key order.
    pub(crate) fn all_text_keyed(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        t.iter()?
            .map(|i| {
                let (k, v) = i?;
                Ok((k.value().to_owned(), v.value().to_vec()))
            })
            .collect()
    }

    /// Stores a new outgoing message, due now.
    pub async fn insert_outbox(&self, rec: OutboxRecord) -> Result<(), StoreError> {
        self.insert_outbox_with(rec, |_| Ok(true)).await.map(|_| ())
    }

    /// Stores a new outgoing message in the same transaction as the writes
    /// of `also`, which checks first and writes only if it returns `true`;
    /// on `false` nothing is stored and `false` is returned.
    pub(crate) async fn insert_outbox_with(
        &self,
        rec: OutboxRecord,
        also: impl FnOnce(&WriteTransaction) -> Result<bool, StoreError> + Send + 'static,
    ) -> Result<bool, StoreError> {
        self.write(move |txn| {
            if !also(txn)? {
                return Ok(false);
            }
            let bytes = encode(&rec)?;
            txn.open_table(OUTBOX)?
                .insert(&rec.id[..], bytes.as_slice())?;
            txn.open_table(DUE)?
                .insert(&due_key(rec.next_attempt_ms, &rec.id)[..], ())?;
            Ok(true)
        })
        .await
    }

    /// Reads, changes and writes one outbox record inside one transaction,
    /// keeping the due index in step. Returns the new record, or `None` if
    /// there is no such message. Concurrent changes cannot interleave: all
    /// writes run one after another on the writer thread.
    pub async fn modify_outbox(
        &self,
        id: [u8; 16],
        durability: Durability,
        f: impl FnOnce(&mut OutboxRecord) + Send + 'static,
    ) -> Result<Option<OutboxRecord>, StoreError> {
        self.write_with(durability, move |txn| Self::modify_outbox_in(txn, id, f))
            .await
    }

    /// [`Store::modify_outbox`] inside a transaction.
    fn modify_outbox_in(
        txn: &WriteTransaction,
        id: [u8; 16],
        f: impl FnOnce(&mut OutboxRecord),
    ) -> Result<Option<OutboxRecord>, StoreError> {
        let mut out = txn.open_table(OUTBOX)?;
        let old: OutboxRecord = match out.get(&id[..])? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        let mut new = old.clone();
        f(&mut new);
        new.id = id;
        let bytes = encode(&new)?;
        out.insert(&id[..], bytes.as_slice())?;
        let was = (old.state == OutState::Pending).then_some(old.next_attempt_ms);
        let is = (new.state == OutState::Pending).then_some(new.next_attempt_ms);
        if was != is {
            let mut due = txn.open_table(DUE)?;
            if let Some(at) = was {
                due.remove(&due_key(at, &id)[..])?;
            }
            if let Some(at) = is {
                due.insert(&due_key(at, &id)[..], ())?;
            }
        }
        Ok(Some(new))
    }

    /// Inside a transaction: notes that relayed message `id`, which this
    /// node originated, awaits its end-to-end receipt until `expires`
    /// (seconds); see [`Store::awaiting_end_to_end`].
    pub(crate) fn await_end_to_end(
        txn: &WriteTransaction,
        id: [u8; 16],
        expires: u64,
    ) -> Result<(), StoreError> {
        txn.open_table(AWAITING)?
            .insert(&due_key(expires, &id)[..], ())?;
        Ok(())
    }

    /// Relayed messages noted by [`Store::await_end_to_end`] whose expiry
    /// is at or before `now_secs`: (expiry, id), earliest first, at most
    /// `limit`.
    pub(crate) fn awaiting_end_to_end(
        &self,
        now_secs: u64,
        limit: usize,
    ) -> Result<Vec<(u64, [u8; 16])>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(AWAITING)?;
        let end = due_key(now_secs, &[0xff; 16]);
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(..=&end[..])?.take(limit) {
            let (k, _) = item?;
            let (mut at, mut id) = ([0u8; 8], [0u8; 16]);
            at.copy_from_slice(&k.value()[..8]);
            id.copy_from_slice(&k.value()[8..]);
            out.push((u64::from_be_bytes(at), id));
        }
        Ok(out)
    }

    /// Ends the wait for message `id`'s end-to-end receipt noted at
    /// `expires`, after applying `f` to its outbox record (if it is still
    /// there), in one durable transaction.
    pub(crate) async fn settle_end_to_end(
        &self,
        id: [u8; 16],
        expires: u64,
        f: impl FnOnce(&mut OutboxRecord) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.write(move |txn| {
            txn.open_table(AWAITING)?
                .remove(&due_key(expires, &id)[..])?;
            Self::modify_outbox_in(txn, id, f).map(|_| ())
        })
        .await
    }

    /// Inside a transaction: records the index of a message's `sent` audit
    /// entry in its outbox record (nothing if the record is gone).
    pub(crate) fn note_sent_index(
        txn: &WriteTransaction,
        id: [u8; 16],
        index: u64,
    ) -> Result<(), StoreError> {
        Self::modify_outbox_in(txn, id, |rec| rec.sent_index = Some(index)).map(|_| ())
    }

    /// One outbox record.
    pub fn outbox(&self, id: &MessageId) -> Result<Option<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        t.get(&id.as_bytes()[..])?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The ids of pending messages due at or before `now_ms`, earliest
    /// first, at most `limit`, leaving out those `skip` names. Only the due
    /// index is read: whoever delivers one reads its record then.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(&[u8; 16]) -> bool,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let due = txn.open_table(DUE)?;
        let end = due_key(now_ms, &[0xff; 16]);
        let mut ids = Vec::new();
        for item in due.range::<&[u8]>(..=&end[..])? {
            let (k, _) = item?;
            let mut id = [0u8; 16];
            id.copy_from_slice(&k.value()[8..]);
            if skip(&id) {
                continue;
            }
            ids.push(id);
            if ids.len() >= limit {
                break;
            }
        }
        Ok(ids)
    }

    /// The earliest next-attempt time of any pending message.
    pub fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let due = txn.open_table(DUE)?;
        let first = due.first()?;
        Ok(first.map(|(k, _)| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&k.value()[..8]);
            u64::from_be_bytes(b)
        }))
    }

    /// Every outbox record (for listings and recovery).
    pub fn all_outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        t.iter()?.map(|i| decode(i?.1.value())).collect()
    }

    /// At most `limit` outbox records in id order, starting after `after`.
    /// Ids made by this node are time-ordered, so this is oldest first.
    pub fn outbox_page(
        &self,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        // Keys are 16 bytes, so `id ‖ 0x00` is the first key after `id`.
        let start: Vec<u8> = after
            .map(|a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0);
                k
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in t.range::<&[u8]>(start.as_slice()..)? {
            if out.len() >= limit {
                break;
            }
            out.push(decode(item?.1.value())?);
        }
        Ok(out)
    }

    /// At least `limit` inbox records (fewer only at the end) in (id,
    /// sender) order, starting after every record of id `after`. A page
    /// never splits the records of one id (different senders may reuse an
    /// id; at most one record per listed agency), so it may hold more than
    /// `limit`, and the last record's id is the cursor of the next page.
    pub fn inbox_page(
        &self,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(INBOX)?;
        // Sender ids are ASCII, so `id ‖ 0xff` sorts after every key of `id`.
        let start: Vec<u8> = after
            .map(|a| {
                let mut k = a.as_bytes().to_vec();
                k.push(0xff);
                k
            })
            .unwrap_or_default();
        let mut out: Vec<InboxRecord> = Vec::new();
        for item in t.range::<&[u8]>(start.as_slice()..)? {
            let (k, v) = item?;
            if out.len() >= limit && out.last().map(|r| &r.id[..]) != k.value().get(..16) {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Counts of pending outbox messages.
    pub fn pending_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        Ok(txn.open_table(DUE)?.len()?)
    }

    /// Looks up an inbox record by the digest of its envelope.
    pub fn inbox_by_digest(&self, digest: &Digest) -> Result<Option<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let d = txn.open_table(DIGESTS)?;
        let Some(key) = d.get(&digest.0[..])? else {
            return Ok(None);
        };
        let inbox = txn.open_table(INBOX)?;
        inbox
            .get(key.value())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Looks up an inbox record by sender and message id.
    pub fn inbox_get(
        &self,
        id: &MessageId,
        sender: &AgencyId,
    ) -> Result<Option<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let inbox = txn.open_table(INBOX)?;
        inbox
            .get(inbox_key(id, sender).as_slice())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// Inbox records with this message id (normally one).
    pub fn inbox_by_id(&self, id: &MessageId) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let inbox = txn.open_table(INBOX)?;
        let start = id.as_bytes().to_vec();
        let mut end = start.clone();
        end.push(0xff);
        let mut out = Vec::new();
        for item in inbox.range::<&[u8]>(start.as_slice()..end.as_slice())? {
            out.push(decode(item?.1.value())?);
        }
        Ok(out)
    }

    /// Every inbox record.
    pub fn all_inbox(&self) -> Result<Vec<InboxRecord>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = txn.open_table(INBOX)?;
        t.iter()?.map(|i| decode(i?.1.value())).collect()
    }

    /// Stores a received message unless (sender, id) is already present, in
    /// which case the stored record is returned: the replay set and the
    /// inbox are one table, so a message is accepted at most once.
    pub async fn insert_inbox(&self, rec: InboxRecord) -> Result<InboxInsert, StoreError> {
        self.insert_inbox_with(rec, |_| Ok(true))
            .await?
            .ok_or_else(|| StoreError::Db("inbox insert refused".into()))
    }

    /// [`Store::insert_inbox`] in one transaction with the writes of `also`
    /// (run only for a new message; it checks first and writes only if it
    /// returns `true`). `None`: `also` refused, nothing was stored.
    pub(crate) async fn insert_inbox_with(
        &self,
        rec: InboxRecord,
        also: impl FnOnce(&WriteTransaction) -> Result<bool, StoreError> + Send + 'static,
    ) -> Result<Option<InboxInsert>, StoreError> {
        self.write(move |txn| {
            let id = MessageId::from_bytes(rec.id);
            let sender =
                AgencyId::new(&rec.sender).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let key = inbox_key(&id, &sender);
            let inbox = txn.open_table(INBOX)?;
            if let Some(existing) = inbox.get(key.as_slice())? {
                return Ok(Some(InboxInsert::Duplicate(Box::new(decode(
                    existing.value(),
                )?))));
            }
            drop(inbox);
            if !also(txn)? {
                return Ok(None);
            }
            let bytes = encode(&rec)?;
            txn.open_table(INBOX)?
                .insert(key.as_slice(), bytes.as_slice())?;
            txn.open_table(DIGESTS)?
                .insert(&rec.digest[..], key.as_slice())?;
            Ok(Some(InboxInsert::Stored))
        })
        .await
    }

    /// A read transaction (for the workflow tables).
    pub(crate) fn read_txn(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.db()?.begin_read()?)
    }

    /// Stores, in one durable transaction, the inbox record of a relay hop
    /// received (its replay entry) and the outbox record forwarding it. If
    /// the hop is already in the inbox, nothing is written and the stored
    /// record is returned; if the outbox already holds the id (a message id
    /// reused to collide with another message), nothing is written and
    /// `Ok(None)` is returned.
    pub async fn insert_relay_forward(
        &self,
        hop: InboxRecord,
        forward: OutboxRecord,
    ) -> Result<Option<InboxInsert>, StoreError> {
        self.write(move |txn| {
            let id = MessageId::from_bytes(hop.id);
            let sender =
                AgencyId::new(&hop.sender).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let key = inbox_key(&id, &sender);
            let mut inbox = txn.open_table(INBOX)?;
            if let Some(existing) = inbox.get(key.as_slice())? {
                return Ok(Some(InboxInsert::Duplicate(Box::new(decode(
                    existing.value(),
                )?))));
            }
            let mut out = txn.open_table(OUTBOX)?;
            if out.get(&forward.id[..])?.is_some() {
                return Ok(None);
            }
            inbox.insert(key.as_slice(), encode(&hop)?.as_slice())?;
            txn.open_table(DIGESTS)?
                .insert(&hop.digest[..], key.as_slice())?;
            out.insert(&forward.id[..], encode(&forward)?.as_slice())?;
            txn.open_table(DUE)?
                .insert(&due_key(forward.next_attempt_ms, &forward.id)[..], ())?;
            Ok(Some(InboxInsert::Stored))
        })
        .await
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
    let txn = db.begin_write()?;
    txn.open_table(OUTBOX)?;
    txn.open_table(DUE)?;
    txn.open_table(INBOX)?;
    txn.open_table(DIGESTS)?;
    txn.open_table(META)?;
    txn.open_table(AWAITING)?;
    crate::workflow::create_tables(&txn)?;
    crate::idempotency::create_tables(&txn)?;
    txn.commit()?;
    Ok(db)
}

fn writer_loop(slot: &Slot, rx: &std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|(d, _)| *d == Durability::Durable);
        // Dropping the jobs drops their reply channels: every waiter gets
        // an error and nothing was written.
        let Ok(db) = slot.db() else {
            continue;
        };
        let mut txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                drop(db);
                slot.fail(e.to_string());
                continue;
            }
        };
        if !durable {
            if let Err(e) = txn.set_durability(redb::Durability::None) {
                tracing::warn!(error = %e, "lazy commit not possible, committing durably");
            }
        }
        let finishers: Vec<Finish> = batch.into_iter().map(|(_, job)| job(&txn)).collect();
        let result = txn.commit().map_err(StoreError::from);
        drop(db);
        if let Err(e) = &result {
            slot.fail(e.to_string());
        }
        for f in finishers {
            f(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Failing(e.to_string())),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u8, due: u64) -> OutboxRecord {
        let to = AgencyId::new("fr.mj.bepi").unwrap_or_else(|e| panic!("{e}"));
        let mut r = OutboxRecord::pending(
            MessageId::from_bytes([id; 16]),
            &to,
            "mla-request",
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
            .map(|id| id[0])
            .collect();
        let skipped: Vec<u8> = store
            .due(250, 10, &|id| id[0] == 1)?
            .iter()
            .map(|id| id[0])
            .collect();
        assert_eq!(skipped, vec![2]);
        assert_eq!(due, vec![1, 2]);
        assert_eq!(store.next_due_ms()?, Some(100));
        store
            .modify_outbox([1; 16], Durability::Durable, |r| {
                r.state = OutState::Delivered
            })
            .await?;
        assert!(store
            .modify_outbox([9; 16], Durability::Lazy, |_| {})
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
            id: [9; 16],
            sender: "iq.moi.ahtd".into(),
            kind: "mla-request".into(),
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
