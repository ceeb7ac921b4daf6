//! The node's path to its audit log: one writer thread takes every entry
//! queued by any task and appends them as one batch, so all of them share a
//! single fdatasync (group commit) and no task blocks a thread while waiting.

use std::sync::mpsc;
use std::sync::Arc;

use isnad_log::{Entry, Log, LogError};
use tokio::sync::oneshot;

/// Most entries appended in one batch.
const MAX_BATCH: usize = 4096;

type Reply = oneshot::Sender<Result<u64, String>>;

/// A handle to the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<(Entry, Reply)>,
}

impl AuditWriter {
    /// Starts the writer thread for `log`.
    pub(crate) fn start(log: Arc<Log>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(Entry, Reply)>();
        std::thread::Builder::new()
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
                    let (entries, replies): (Vec<Entry>, Vec<Reply>) = batch.into_iter().unzip();
                    match log.append_batch(entries) {
                        Ok(range) => {
                            for (index, reply) in range.zip(replies) {
                                let _ = reply.send(Ok(index));
                            }
                        }
                        Err(e) => {
                            let msg = describe(&e);
                            for reply in replies {
                                let _ = reply.send(Err(msg.clone()));
                            }
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Appends `entry`; resolves with its index once it is durable.
    pub(crate) async fn append(&self, entry: Entry) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((entry, tx))
            .map_err(|_| "audit writer stopped".to_owned())?;
        rx.await.map_err(|_| "audit writer stopped".to_owned())?
    }
}

fn describe(e: &LogError) -> String {
    e.to_string()
}
