//! The node's path to its audit log: one writer thread takes every entry
//! queued by any task and appends them as one batch, so all of them share a
//! single fdatasync (group commit) and no task blocks a thread while waiting.
//!
//! The writer is the only appender of the node's log (a log directory has
//! one owner), so it knows the index each entry will get before appending:
//! a job may build entries that refer to their own indices (the `received`
//! and `receipt-sent` pair of a delivery share one sync that way).

use std::sync::mpsc;
use std::sync::Arc;

use isnad_log::{Entry, Log};
use tokio::sync::oneshot;

use crate::store::JoinOnDrop;

/// Most jobs appended in one batch.
const MAX_BATCH: usize = 4096;

/// Builds a job's entries from the index its first entry will get.
type Build = Box<dyn FnOnce(u64) -> Vec<Entry> + Send>;
type Reply = oneshot::Sender<Result<u64, String>>;

/// A handle to the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<(Build, Reply)>,
    /// The log's durable size after each batch (readers of new entries,
    /// e.g. the API's event stream, wait on it).
    grew: Arc<tokio::sync::watch::Sender<u64>>,
    /// Declared last: when the last clone goes, the thread appends what is
    /// queued, drops its log handle and is joined (see `Store`).
    _thread: Arc<JoinOnDrop>,
}

impl AuditWriter {
    /// Starts the writer thread for `log`.
    pub(crate) fn start(log: Arc<Log>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(Build, Reply)>();
        let grew = Arc::new(tokio::sync::watch::Sender::new(log.size()));
        let notify = Arc::clone(&grew);
        let handle = std::thread::Builder::new()
            .name("isnad-audit-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(x) => batch.push(x),
                            Err(_) => break,
                        }
                    }
                    write_batch(&log, batch);
                    notify.send_replace(log.size());
                }
            })?;
        Ok(Self {
            tx,
            grew,
            _thread: Arc::new(JoinOnDrop::new(handle)),
        })
    }

    /// A receiver of the log's size, updated after each batch is durable.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.grew.subscribe()
    }

    /// Appends the entries `build` makes from the index of the first one;
    /// resolves with that index once all of them are durable.
    pub(crate) async fn append_with(&self, build: Build) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((build, tx))
            .map_err(|_| "audit writer stopped".to_owned())?;
        rx.await.map_err(|_| "audit writer stopped".to_owned())?
    }
}

fn write_batch(log: &Log, batch: Vec<(Build, Reply)>) {
    let base = log.size();
    let mut entries = Vec::new();
    let mut replies = Vec::with_capacity(batch.len());
    for (build, reply) in batch {
        let first = base + entries.len() as u64;
        entries.extend(build(first));
        replies.push((first, reply));
    }
    let result = match log.append_batch(entries) {
        // Only this thread appends, so the indices are the ones promised.
        Ok(range) if range.start == base => Ok(()),
        Ok(range) => Err(format!(
            "log appended at {} instead of {base}: another appender?",
            range.start
        )),
        Err(e) => Err(e.to_string()),
    };
    for (first, reply) in replies {
        let _ = reply.send(result.clone().map(|()| first));
    }
}
