//! The running node: QUIC server and client, inbound deliveries answered
//! with signed receipts, the outbox delivery loop with retries, and the audit
//! trail of both.
//!
//! One module per path, each depending only on the ones below it:
//!
//! ```text
//! mod.rs          NodeHandle: start, submit, shutdown (the public API)
//!   inbound       accept_loop → serve_connection → serve_stream → deliver_in → accept_end_to_end
//!   outbound      delivery_loop → spawn_delivery → deliver_out → attempt → exchange → finish
//!   maintenance   recover, health_loop, checkpoint_loop
//!   connections   bind_endpoint, the connection cache, pin_loop
//!   witness       the witness role and the cosignatures of this node's checkpoints
//!   logging       audit entries appended, receipts signed, indexes noted
//!   inner         Inner: the shared services (state only)
//!   types         Directory, Peer, Identity, NodeError, now
//! ```

pub(crate) mod connections;
pub(crate) mod inbound;
pub(crate) mod inner;
pub(crate) mod logging;
pub(crate) mod maintenance;
pub(crate) mod outbound;
pub(crate) mod types;
pub(crate) mod witness;

pub use self::connections::PIN_RECHECK;
pub(crate) use self::types::now;
pub(crate) use self::types::StopSignal;
pub use self::types::{Directory, Identity, NodeError, Peer};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isnad_envelope::{
    seal, AgencyId, Body, Header, Kind, Limits, Message, MessageId, OpenError, Opened, Opener,
};
use isnad_log::{Entry, Log, SignerKey, VerifierKey};
use ring::rand::SystemRandom;
use tokio::sync::{watch, Notify, Semaphore};

use crate::admission::{self};
use crate::audit::AuditWriter;
use crate::config::Config;
use crate::health::{Condition, FreeSpaceProbe, Health};
use crate::idempotency;
use crate::metrics::Metrics;
use crate::sealing;
use crate::store::{InboxRecord, OutState, OutboxRecord, Store, Submission};
use crate::witnessing;
use crate::workflow::{self, WorkflowError};

use self::connections::{bind_endpoint, pin_loop};
use self::inbound::accept_loop;
use self::inner::{InFlightMark, Inner};
use self::maintenance::{checkpoint_loop, health_loop};
use self::outbound::delivery_loop;

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) inner: Arc<Inner>,
}

impl NodeHandle {
    /// Binds the QUIC endpoint and starts serving and delivering.
    pub async fn start(
        config: Config,
        identity: Identity,
        directory: Arc<dyn Directory>,
        audit: Arc<Log>,
        log_key: SignerKey,
        store: Store,
    ) -> Result<Self, NodeError> {
        let endpoint = bind_endpoint(&config, &identity)?;
        let limits = Limits {
            max_envelope_bytes: config.limits.max_envelope_bytes,
            revocation_grace_secs: config.limits.revocation_grace_secs,
            ..Limits::default()
        };
        let metrics = Arc::new(Metrics::default());
        let admission = admission::Admission::new(&config.limits, Arc::clone(&metrics));
        let (shutdown, _) = watch::channel(false);
        let mut identity = identity;
        let witness = witnessing::State::new(identity.witness_key.take(), &config.paths.state);
        let config_max_in_flight = config.delivery.max_in_flight;
        let health = Health::new(
            config.disk.free_space_floor_bytes,
            vec![config.paths.state.clone(), audit.dir().to_owned()],
        );
        let attachments =
            crate::attach_store::AttachStore::open(&config.paths.state, &config.attachments)
                .map_err(|e| {
                    NodeError::Store(crate::store::StoreError::Db(format!(
                        "attachment store: {e}"
                    )))
                })?;
        let inner = Arc::new(Inner {
            attachments: Arc::new(attachments),
            config,
            identity,
            directory,
            writer: AuditWriter::start(Arc::clone(&audit))
                .map_err(|e| NodeError::Audit(e.to_string()))?,
            audit,
            log_key: Arc::new(log_key),
            latest_checkpoint: Mutex::new(None),
            witness,
            store,
            metrics,
            health,
            endpoint,
            admission,
            limits,
            rng: SystemRandom::new(),
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            slots: Arc::new(Semaphore::new(config_max_in_flight)),
            refusals: Mutex::new(HashMap::new()),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            shutdown,
            record_locks: workflow::RecordLocks::new(),
            tasks: Arc::default(),
            waiters: Mutex::new(HashMap::new()),
        });
        inner.recover().await?;
        inner.spawn(accept_loop(Arc::clone(&inner)));
        inner.spawn(delivery_loop(Arc::clone(&inner)));
        inner.spawn(checkpoint_loop(Arc::clone(&inner)));
        inner.spawn(pin_loop(Arc::clone(&inner)));
        inner.spawn(health_loop(Arc::clone(&inner)));
        inner.spawn(crate::attach_transfer::sweep_loop(Arc::clone(&inner)));
        let node = Self { inner };
        node.spawn_service(|stop| crate::retention::purge_loop(Arc::clone(&node.inner), stop));
        Ok(node)
    }

    /// The node's condition now: `ok`, or `degraded` with the reasons
    /// (spec/transport.md §9).
    pub fn condition(&self) -> Condition {
        self.inner.condition()
    }

    /// Replaces how the free space under the state and log directories is
    /// measured (tests simulate a full disk with it).
    #[doc(hidden)]
    pub fn set_free_space_probe(&self, probe: FreeSpaceProbe) {
        self.inner.health.set_probe(probe);
    }

    /// Tells the node how to learn that a private key's device (a PKCS#11
    /// token) fails: while it names one, the node is degraded
    /// (`key-unavailable`) and refuses new work
    /// ([`crate::token_keys::KeyHealth::probe`]).
    pub fn set_key_probe(&self, probe: crate::health::KeyProbe) {
        self.inner.health.set_key_probe(probe);
    }

    /// The bound QUIC address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// This node's agency.
    pub fn agency(&self) -> &AgencyId {
        &self.inner.config.agency
    }

    /// The state store (read access for the API and CLI).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The configured envelope size limit (`limits.max_envelope_bytes`).
    pub fn max_envelope_bytes(&self) -> usize {
        self.inner.limits.max_envelope_bytes
    }

    /// Accepts a message from a local client: seals it, stores it durably,
    /// logs `sent`, and only then returns its id. Delivery follows.
    pub async fn submit(
        &self,
        recipient: AgencyId,
        body: Body,
        ttl_secs: Option<u64>,
    ) -> Result<MessageId, NodeError> {
        self.submit_keyed(recipient, body, ttl_secs, None).await
    }

    /// [`NodeHandle::submit`] under a client's idempotency key: the key is
    /// bound to the message in the transaction that stores it (see
    /// [`crate::idempotency`]); if the key was bound meanwhile, nothing is
    /// stored and the answer is [`WorkflowError::Conflict`].
    pub async fn submit_keyed(
        &self,
        recipient: AgencyId,
        body: Body,
        ttl_secs: Option<u64>,
        key: Option<idempotency::Claim>,
    ) -> Result<MessageId, NodeError> {
        let inner = &self.inner;
        if let Some(at) = inner.own_key_revoked(now().0) {
            return Err(NodeError::SigningKeyRevoked {
                kid: inner.identity.signing_key.key_id().to_hex(),
                at,
            });
        }
        inner
            .condition()
            .accepting()
            .map_err(NodeError::Unavailable)?;
        let (peer, route) = self.route(&recipient, body.kind())?;
        let ttl = ttl_secs.unwrap_or(inner.config.delivery.default_ttl_secs);
        let (secs, ms) = now();
        let id = MessageId::time_ordered(ms, &inner.rng).map_err(|_| NodeError::System)?;
        let kind = body.kind();
        let msg = Message {
            header: Header {
                id,
                sender: inner.config.agency.clone(),
                recipient: recipient.clone(),
                created: secs,
                expires: secs.saturating_add(ttl),
            },
            body,
        };
        let (plan, checked_msg, record_lock) = inner
            .record_locks
            .checked(|| {
                let mut m = msg.clone();
                workflow::check_outgoing(&inner.store, &mut m, ms).map(|p| (p, m))
            })
            .await?;
        let msg = checked_msg;
        let mut rec = if route.len() > 2 {
            sealing::relayed_record(&inner.sealer(), route, &peer, &msg, secs, ms)?
        } else {
            let envelope = seal(
                &msg,
                &inner.identity.signing_key,
                &peer.encryption_key,
                &inner.limits,
                &inner.rng,
            )?;
            OutboxRecord::pending(id, &recipient, kind, envelope, secs, msg.header.expires, ms)
        };
        // What a re-seal needs if this key is revoked before delivery
        // (direct or relayed: this node signs both as originator).
        rec.reseal = Some(sealing::own_copy(&inner.sealer(), &msg)?);
        // Marked in flight before it is stored, so the delivery loop leaves
        // it alone until its `sent` entry is logged and this task hands it
        // over (no delivery before `sent`, no second delivery). A relayed
        // message awaits its end-to-end receipt (spec/relay.md §8).
        let mark = InFlightMark::new(inner, *rec.id.as_bytes());
        let submission = Submission {
            cases: plan.writes().to_vec(),
            claim: key,
            now_ms: ms,
        };
        let stored = inner.store.insert_submission(rec.clone(), submission).await;
        let sent_index = match stored {
            Ok(true) => {
                drop(record_lock);
                // Accepted once the outbox commit succeeded, whatever
                // happens to the log now (spec/transport.md §9): if the
                // `sent` entries cannot be logged, they are logged when the
                // log is back, before any delivery (`spawn_delivery`).
                match inner.log_submitted(&rec, &plan).await {
                    Ok(i) => Some(i),
                    Err(e) => {
                        tracing::debug!(error = %e, %id, "accepted; its sent entry waits for the log");
                        None
                    }
                }
            }
            Ok(false) => return Err(WorkflowError::Conflict.into()),
            Err(e) => return Err(e.into()),
        };
        inner.metrics.submitted.inc();
        // A free slot: deliver at once (the delivery loop need not scan the
        // outbox for it); otherwise the loop picks it up when one frees.
        let stopping = *inner.shutdown.borrow();
        match (sent_index, Arc::clone(&inner.slots).try_acquire_owned()) {
            (Some(sent_index), Ok(permit)) if !stopping => {
                mark.hand_over();
                Arc::clone(inner).spawn_delivery(*rec.id.as_bytes(), Some(sent_index), permit);
            }
            _ => {
                drop(mark);
                inner.wake.notify_one();
            }
        }
        Ok(id)
    }

    /// How `recipient` is reached, if it is in a trusted directory and
    /// policy allows this node's agency to send it `kind`: the recipient's
    /// directory entry and the route (`[self, recipient]` for direct
    /// delivery, or through the central authorities, spec/relay.md §2).
    pub fn route(
        &self,
        recipient: &AgencyId,
        kind: Kind,
    ) -> Result<(Peer, Vec<AgencyId>), NodeError> {
        let inner = &self.inner;
        let peer = inner
            .directory
            .peer(recipient)
            .ok_or_else(|| NodeError::UnknownRecipient(recipient.clone()))?;
        let route = inner
            .directory
            .route(&inner.config.agency, recipient, kind)
            .map_err(NodeError::PolicyDenied)?;
        Ok((peer, route))
    }

    /// Opens a stored inbox message again (decrypt on read).
    pub fn read_inbox(&self, rec: &InboxRecord) -> Result<Opened, OpenError> {
        let inner = &self.inner;
        let opener = Opener {
            me: &inner.config.agency,
            keys: &inner.identity.encryption_keys,
            limits: inner.limits,
        };
        opener.reopen_accepted(&rec.envelope, inner.directory.as_ref())
    }

    /// The audit log.
    pub fn log(&self) -> &Arc<Log> {
        &self.inner.audit
    }

    /// Signs a checkpoint of the audit log now (if it grew since the last
    /// one) and returns the latest signed checkpoint note.
    pub async fn checkpoint_now(&self) -> Result<String, NodeError> {
        self.inner.checkpoint().await
    }

    /// The latest signed checkpoint note, if one was signed since start,
    /// with the witnesses' verified cosignature lines collected so far.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.inner
            .latest_checkpoint
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .map(|n| self.inner.witness.with_cosignatures(n))
    }

    /// Witnessing state: partners' logs witnessed, fork evidence, and the
    /// cosignatures of this node's latest checkpoint (spec/witness.md).
    pub fn witness_status(&self) -> Result<witnessing::WitnessStatus, NodeError> {
        Ok(witness::status(&self.inner)?)
    }

    /// Waits until message `id` leaves the pending state (delivered, failed
    /// or expired) and returns that state; `None` if it is unknown.
    pub async fn wait_final(&self, id: &MessageId) -> Result<Option<OutState>, NodeError> {
        let rx = {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if let Ok(mut w) = self.inner.waiters.lock() {
                w.entry(*id.as_bytes()).or_default().push(tx);
            }
            rx
        };
        // Checked after registering, so a completion in between is not missed.
        let done = match self.inner.store.outbox(id)? {
            None => Some(None),
            Some(r) if r.state != OutState::Pending => Some(Some(r.state)),
            Some(_) => None,
        };
        if let Some(result) = done {
            // Already final: nothing will wake these waiters, drop them.
            if let Ok(mut w) = self.inner.waiters.lock() {
                w.remove(id.as_bytes());
            }
            return Ok(result);
        }
        Ok(rx.await.ok())
    }

    /// Appends entries to the audit log (e.g. directory changes the operator
    /// imported); returns once they are durable.
    pub async fn record(&self, entries: Vec<Entry>) -> Result<(), NodeError> {
        if !entries.is_empty() {
            self.inner.append_with(Box::new(move |_| entries)).await?;
        }
        Ok(())
    }

    /// Runs `task` as one of the node's tasks ([`NodeHandle::shutdown`]
    /// waits for it), handing it a future that resolves when shutdown
    /// begins: the local API and metrics servers stop accepting then and
    /// finish the requests they are serving.
    pub(crate) fn spawn_service<F>(&self, task: impl FnOnce(StopSignal) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.inner.shutdown.subscribe();
        let signal: StopSignal = Box::pin(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        self.inner.spawn(task(signal));
    }

    /// `note` followed by the verified cosignature lines collected for it.
    pub(crate) fn with_cosignatures(&self, note: String) -> String {
        self.inner.witness.with_cosignatures(note)
    }

    /// The key that verifies this node's checkpoints.
    pub(crate) fn log_verifier(&self) -> VerifierKey {
        self.inner.log_key.verifier()
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A receiver of the audit log's durable size, updated whenever the
    /// node's entries become durable (what the API's event stream waits on).
    pub fn watch_log(&self) -> watch::Receiver<u64> {
        self.inner.writer.subscribe()
    }

    /// A receiver that turns `true` when shutdown begins (long-lived
    /// responses such as the event stream end then).
    pub(crate) fn watch_shutdown(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Asks the delivery loop to look at the outbox now.
    pub fn kick(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops accepting connections and deliveries, closes the endpoint
    /// gracefully, waits for it to drain and for every task of the node to
    /// end (a delivery attempt in progress ends with the connection). Once
    /// this returned, dropping the last handle closes the state database and
    /// the audit log at once, so a node can be started on them again.
    /// Everything acknowledged is already durable, so nothing is lost
    /// whether or not this runs.
    pub async fn shutdown(&self) {
        // `send_replace`, not `send`: `send` leaves the value unchanged when
        // no task has subscribed yet (a shutdown right after start), and the
        // tasks subscribing later would never see it.
        self.inner.shutdown.send_replace(true);
        self.inner.wake.notify_waiters();
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.endpoint.wait_idle()).await;
        if tokio::time::timeout(SHUTDOWN_WAIT, self.inner.tasks.all_done())
            .await
            .is_err()
        {
            tracing::warn!(
                running = self.inner.tasks.running(),
                "node tasks still running {SHUTDOWN_WAIT:?} after shutdown"
            );
        }
    }
}

/// Longest [`NodeHandle::shutdown`] waits for the node's tasks.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
