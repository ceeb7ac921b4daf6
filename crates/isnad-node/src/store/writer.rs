//! The writer thread: one write transaction per batch of queued jobs,
//! committed durably if any job asks for it (group commit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, WriteTransaction};

use super::{Durability, StoreError};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

pub(super) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write job and whether its effect must be on disk when it completes.
pub(super) type Job = (
    Durability,
    Box<dyn FnOnce(&WriteTransaction) -> Finish + Send>,
);

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
pub(super) type Opener = Box<dyn Fn() -> Result<Database, StoreError> + Send + Sync>;

/// The open database, or why it is closed.
pub(super) struct Slot {
    pub(super) open: Opener,
    pub(super) current: RwLock<Option<Arc<Database>>>,
    /// A commit failed and the database was not reopened since.
    pub(super) failing: AtomicBool,
    /// Why, and the handle that failed (closed once nothing uses it).
    pub(super) failed: Mutex<(String, Option<Arc<Database>>)>,
}

impl Slot {
    pub(super) fn db(&self) -> Result<Arc<Database>, StoreError> {
        // The read guard is dropped before `failed` is locked: `reopen`
        // takes them in the other order (the two used to deadlock).
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        current.ok_or_else(|| self.failing_error())
    }

    pub(super) fn failing_error(&self) -> StoreError {
        let why = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        StoreError::Failing(why.0.clone())
    }

    /// Takes the failed handle out of service (once per failure).
    pub(super) fn fail(&self, why: String) {
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

pub(super) fn writer_loop(slot: &Slot, rx: &std::sync::mpsc::Receiver<Job>) {
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
