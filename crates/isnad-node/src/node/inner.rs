//! The services every path of the node shares ([`Inner`]): configuration,
//! keys, the audit writer, the store, metrics, health, the endpoint and the
//! bookkeeping of tasks, messages in flight and refusals. The paths
//! (`inbound`, `outbound`, `connections`, `maintenance`, `logging`) add
//! their own methods in their own files; this one only holds the state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isnad_envelope::{AgencyId, ErrorCode, Limits};
use isnad_log::{Entry, Log, SignerKey};
use ring::rand::SystemRandom;
use tokio::sync::{watch, Notify, Semaphore};

use crate::admission::{self};
use crate::audit::AuditWriter;
use crate::config::Config;
use crate::health::{Condition, Health};
use crate::metrics::Metrics;
use crate::sealing::Sealer;
use crate::store::{OutState, Store};
use crate::witnessing;
use crate::workflow::{self};

use super::types::{Directory, Identity, NodeError};

/// One peer's cached connection, behind its own lock.
pub(super) type PeerSlot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    pub(crate) directory: Arc<dyn Directory>,
    pub(super) audit: Arc<Log>,
    pub(super) writer: AuditWriter,
    pub(super) log_key: Arc<SignerKey>,
    pub(super) latest_checkpoint: Mutex<Option<String>>,
    pub(super) witness: witnessing::State,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    /// The node's condition (`ok` / `degraded`, spec/transport.md §9).
    pub(crate) health: Health,
    pub(super) endpoint: quinn::Endpoint,
    /// Handshake, connection and body pools of incoming traffic.
    pub(super) admission: Arc<admission::Admission>,
    pub(crate) limits: Limits,
    pub(crate) rng: SystemRandom,
    pub(crate) wake: Notify,
    /// Messages being delivered now (the delivery loop skips them).
    pub(super) in_flight: Mutex<HashSet<[u8; 16]>>,
    /// Delivery slots: at most `delivery.max_in_flight` attempts at once.
    pub(super) slots: Arc<Semaphore>,
    /// Logged refusals per peer in the current window (`limits.max_rejections_per_peer`).
    pub(super) refusals: Mutex<HashMap<AgencyId, RefusalWindow>>,
    pub(super) connections: tokio::sync::Mutex<HashMap<AgencyId, PeerSlot>>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Serialize messages changing the same request or share record.
    pub(super) record_locks: workflow::RecordLocks,
    /// The node's running tasks, which [`NodeHandle::shutdown`] waits for.
    pub(super) tasks: Arc<Tasks>,
    /// Waiters for a message's final state, woken by the delivery loop.
    pub(super) waiters: Mutex<HashMap<[u8; 16], Vec<tokio::sync::oneshot::Sender<OutState>>>>,
    /// Attachments staged under the state directory (crate::attach_store).
    pub(crate) attachments: Arc<crate::attach_store::AttachStore>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("agency", &self.config.agency)
            .finish_non_exhaustive()
    }
}

/// Counts the node's spawned tasks.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    pub(super) running: std::sync::atomic::AtomicUsize,
    pub(super) done: Notify,
}

impl Tasks {
    pub(super) fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) async fn all_done(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            done.await;
        }
    }
}

/// Counts one task as running while it lives.
pub(super) struct TaskToken(Arc<Tasks>);

impl Drop for TaskToken {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.done.notify_waiters();
        }
    }
}

impl Inner {
    /// Spawns a task of the node. The task's future (and so everything it
    /// holds, such as the store) is dropped before it counts as done.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = TaskToken(Arc::clone(&self.tasks));
        tokio::spawn(async move {
            task.await;
            drop(token);
        });
    }

    pub(crate) async fn append(&self, entry: Entry) -> Result<u64, NodeError> {
        self.append_with(Box::new(move |_| vec![entry])).await
    }

    /// The narrow handle sealing needs (crate::sealing, crate::reseal).
    pub(crate) fn sealer(&self) -> Sealer<'_> {
        Sealer {
            me: &self.config.agency,
            identity: &self.identity,
            directory: self.directory.as_ref(),
            limits: self.limits,
            rng: &self.rng,
        }
    }

    /// The node's condition now (see [`crate::health`]).
    pub(crate) fn condition(&self) -> Condition {
        self.health
            .condition(self.audit.is_poisoned(), self.store.fault(), &self.metrics)
    }

    /// Appends the entries `build` makes from the first one's index; returns
    /// that index once all are durable.
    pub(crate) async fn append_with(
        &self,
        build: Box<dyn FnOnce(u64) -> Vec<Entry> + Send>,
    ) -> Result<u64, NodeError> {
        let started = std::time::Instant::now();
        let r = self
            .writer
            .append_with(build)
            .await
            .map_err(NodeError::Audit);
        if r.is_ok() {
            self.metrics.log_appends.inc();
            self.metrics
                .append_latency
                .observe_ms(started.elapsed().as_millis() as u64);
        }
        r
    }

    /// Whether `peer` has used up its logged refusals for the current
    /// window (spec/transport.md §5): its requests are then answered
    /// `unavailable` without being processed, so a listed peer cannot grow
    /// this node's log without bound. The first throttled request of a
    /// window is logged as one `rejected` entry (stage `throttled`).
    pub(super) async fn throttled(&self, peer: &AgencyId) -> bool {
        let limit = self.config.limits.max_rejections_per_peer;
        if limit == 0 {
            return false;
        }
        let window = self.refusal_window();
        let first = {
            let Ok(mut all) = self.refusals.lock() else {
                return false;
            };
            let Some(w) = all.get_mut(peer) else {
                return false;
            };
            if w.start.elapsed() >= window || w.count < limit {
                return false;
            }
            !std::mem::replace(&mut w.throttle_logged, true)
        };
        if first {
            tracing::warn!(%peer, limit, "peer throttled: too many refused requests");
            let mut e = self.rejected_entry(peer, ErrorCode::Unavailable, "throttled", None);
            e.detail.insert("limit".into(), limit.to_string());
            e.detail.insert(
                "window-secs".into(),
                self.config.limits.rejection_window_secs.to_string(),
            );
            if let Err(err) = self.append(e).await {
                tracing::error!(error = %err, "could not log a throttled peer");
            }
        }
        true
    }

    pub(super) fn refusal_window(&self) -> Duration {
        Duration::from_secs(self.config.limits.rejection_window_secs)
    }

    /// Counts one logged refusal of `peer` in its current window.
    pub(super) fn count_refusal(&self, peer: &AgencyId) {
        let window = self.refusal_window();
        if let Ok(mut all) = self.refusals.lock() {
            let w = all
                .entry(peer.clone())
                .or_insert_with(RefusalWindow::starting);
            if w.start.elapsed() >= window {
                *w = RefusalWindow::starting();
            }
            w.count = w.count.saturating_add(1);
        }
    }

    /// Whether message `id` is being submitted or delivered now.
    pub(super) fn is_in_flight(&self, id: &[u8; 16]) -> bool {
        self.in_flight
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    /// Marks message `id` as being delivered (the delivery loop skips it);
    /// false if it was already.
    pub(super) fn mark_in_flight(&self, id: [u8; 16]) -> bool {
        self.in_flight
            .lock()
            .map(|mut s| s.insert(id))
            .unwrap_or(false)
    }

    pub(super) fn unmark_in_flight(&self, id: &[u8; 16]) {
        if let Ok(mut s) = self.in_flight.lock() {
            s.remove(id);
        }
    }
}

/// A message marked in flight by `submit`; unmarked when dropped (also when
/// the submitting task is cancelled, e.g. a local API client that went
/// away), unless handed over to a delivery task, which unmarks it itself.
pub(super) struct InFlightMark<'a> {
    pub(super) inner: &'a Inner,
    pub(super) id: Option<[u8; 16]>,
}

impl<'a> InFlightMark<'a> {
    pub(super) fn new(inner: &'a Inner, id: [u8; 16]) -> Self {
        inner.mark_in_flight(id);
        Self {
            inner,
            id: Some(id),
        }
    }

    pub(super) fn hand_over(mut self) {
        self.id = None;
    }
}

impl Drop for InFlightMark<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.inner.unmark_in_flight(&id);
        }
    }
}

/// One peer's logged refusals in the current window.
#[derive(Debug)]
pub(super) struct RefusalWindow {
    /// When the window began (monotonic: a clock step cannot stretch it).
    pub(super) start: std::time::Instant,
    pub(super) count: u32,
    /// Whether this window's throttling was logged already.
    pub(super) throttle_logged: bool,
}

impl RefusalWindow {
    pub(super) fn starting() -> Self {
        Self {
            start: std::time::Instant::now(),
            count: 0,
            throttle_logged: false,
        }
    }
}
