//! The running node: QUIC server and client, inbound deliveries answered
//! with signed receipts, the outbox delivery loop with retries, and the audit
//! trail of both.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isnad_envelope::{
    seal, seal_signed, AgencyId, Body, Digest, EncryptionKey, EncryptionPublicKey, ErrorCode,
    Header, Kind, Limits, Message, MessageId, OpenError, Opened, Opener, Receipt, ReplayGuard,
    SenderKeys, SigningKey,
};
use isnad_log::{Entry, Log, SignerKey, VerifierKey};
use isnad_wire::{body_len, FrameError, Op, Request, Response, MAX_RESPONSE_BODY};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::audit::AuditWriter;
use crate::config::Config;
use crate::exchange;
use crate::health::{Condition, FreeSpaceProbe, Health};
use crate::idempotency;
use crate::metrics::Metrics;
use crate::node_core::inbound::{self, Stored};
use crate::node_core::outbound;
use crate::store::{
    Durability, InboxInsert, InboxRecord, OutState, OutboxRecord, Store, StoreError, Submission,
};
use crate::workflow::{self, WorkflowError};

#[path = "admission.rs"]
pub(crate) mod admission;
#[path = "export.rs"]
pub(crate) mod export;
#[path = "witness.rs"]
pub(crate) mod witness;

/// How long a QUIC handshake to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Why a request on a stream got no answer.
#[derive(Debug)]
struct RequestFailed {
    /// The connection is broken or unresponsive (not just this stream).
    connection: bool,
    /// What failed, for the delivery record and the logs.
    detail: String,
}

/// One peer's cached connection, behind its own lock.
type PeerSlot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;
/// QUIC application error code used when refusing a stream or connection.
const REFUSED: quinn::VarInt = quinn::VarInt::from_u32(0x49);
/// How often the TLS pins are re-evaluated ([`Directory::refresh_peers`])
/// and every open connection's peer is checked against them: a peer
/// dropped from the directory, its TLS key replaced, or its directory's
/// window ended, is disconnected within two of these (spec/transport.md §1).
pub const PIN_RECHECK: Duration = Duration::from_secs(1);

/// What the node needs from the federation layer: trusted keys, peers,
/// policy, and the mapping of TLS certificates to agencies.
pub trait Directory: SenderKeys + Send + Sync + 'static {
    /// How to reach an agency and encrypt to it, if it is in a trusted directory.
    fn peer(&self, agency: &AgencyId) -> Option<Peer>;
    /// Whether policy allows `sender` to send `kind` to `recipient`; the
    /// error names the rule that denies it.
    fn allows(&self, sender: &AgencyId, recipient: &AgencyId, kind: Kind) -> Result<(), String>;
    /// The agency whose listed TLS key is in this end-entity certificate.
    fn agency_of_certificate(&self, cert_der: &[u8]) -> Option<AgencyId>;
    /// Re-evaluates the accepted TLS identities at the current time (a
    /// directory's validity window may have ended since it was accepted).
    /// The node calls it every [`PIN_RECHECK`]; the default does nothing.
    fn refresh_peers(&self) {}
    /// The agency's audit-log verifier key (`log-key`), if listed.
    fn log_key(&self, _agency: &AgencyId) -> Option<VerifierKey> {
        None
    }
    /// The agency's witness cosigning key (`witness-key`, type 0x04), if listed.
    fn witness_key(&self, _agency: &AgencyId) -> Option<VerifierKey> {
        None
    }
    /// The route policy requires for `kind` from `sender` to `recipient`:
    /// `[sender, recipient]` for direct delivery, or through the central
    /// authorities (spec/relay.md §2). The default allows only direct routes.
    fn route(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        kind: Kind,
    ) -> Result<Vec<AgencyId>, String> {
        self.allows(sender, recipient, kind)
            .map(|()| vec![sender.clone(), recipient.clone()])
    }
    /// Whether a relayed message of inner kind `kind` may take `route`: it
    /// is the central-authority route between its ends and policy allows
    /// them to exchange `kind` that way (spec/relay.md §6 step 6). The
    /// default refuses all relayed traffic.
    fn allows_relayed(&self, route: &[AgencyId], kind: Kind) -> Result<(), String> {
        let _ = (route, kind);
        Err("this node's directory does not support relaying".into())
    }
}

/// Contact details of a peer agency.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Where its QUIC endpoint listens, as listed: `host:port` or an
    /// address, tried in order. Names are resolved when the node connects
    /// (without blocking), so a name that does not resolve now is a
    /// temporary delivery failure, not an unknown recipient.
    pub endpoints: Vec<String>,
    /// Its current encryption key.
    pub encryption_key: EncryptionPublicKey,
}

/// How long resolving one listed endpoint name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Peer {
    /// A peer at one socket address.
    pub fn at(addr: SocketAddr, encryption_key: EncryptionPublicKey) -> Self {
        Self {
            endpoints: vec![addr.to_string()],
            encryption_key,
        }
    }

    /// The first address of the listed endpoints that a socket bound to
    /// `local` can reach (an IPv4 socket cannot send to IPv6 addresses:
    /// `localhost` may resolve to `::1` first); addresses need no lookup.
    pub async fn resolve(&self, local: SocketAddr) -> Result<SocketAddr, String> {
        let usable = |a: &SocketAddr| local.is_ipv6() || a.is_ipv4();
        let mut why = String::from("no endpoint listed");
        for e in &self.endpoints {
            if let Ok(addr) = e.parse::<SocketAddr>() {
                if usable(&addr) {
                    return Ok(addr);
                }
                why = format!("endpoint {e} is not reachable from {local}");
                continue;
            }
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(e.as_str())).await {
                Ok(Ok(mut addrs)) => match addrs.find(usable) {
                    Some(addr) => return Ok(addr),
                    None => {
                        why = format!("endpoint {e} resolves to no address reachable from {local}")
                    }
                },
                Ok(Err(err)) => why = format!("cannot resolve endpoint {e}: {err}"),
                Err(_) => why = format!("resolving endpoint {e} timed out"),
            }
        }
        Err(why)
    }
}

/// The node's own keys and TLS configuration.
pub struct Identity {
    /// Signing key for messages and receipts.
    pub signing_key: SigningKey,
    /// Encryption keys (the current one first; older ones during a rotation overlap).
    pub encryption_keys: Vec<EncryptionKey>,
    /// rustls server configuration (TLS 1.3, mutual auth, ALPN `isnad/1`).
    pub tls_server: Arc<rustls::ServerConfig>,
    /// rustls client configuration (TLS 1.3, client certificate, ALPN `isnad/1`).
    pub tls_client: Arc<rustls::ClientConfig>,
    /// Witness cosigning key (type 0x04, `<agency>/witness`); without it the
    /// node does not serve as a witness (spec/witness.md).
    pub witness_key: Option<SignerKey>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}

/// Errors starting or operating the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The QUIC endpoint could not be bound or configured.
    #[error("cannot start QUIC endpoint on {addr}: {detail}")]
    Endpoint {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be appended to.
    #[error("audit log append failed: {0}")]
    Audit(String),
    /// The recipient is not in any trusted directory.
    #[error("recipient {0} is not in any trusted directory; import its country's directory first")]
    UnknownRecipient(AgencyId),
    /// Policy does not allow this message.
    #[error("policy denies it: {0}")]
    PolicyDenied(String),
    /// The message could not be sealed.
    #[error("cannot seal the message: {0}")]
    Seal(#[from] isnad_envelope::SealError),
    /// The system clock or random number generator failed.
    #[error("system clock or random number generator failed")]
    System,
    /// The MLA lifecycle or the intelligence handling rules forbid the
    /// message (spec/protocol.md §13); nothing was stored or sent.
    #[error("refused: {0}")]
    Workflow(#[from] WorkflowError),
    /// This node's own signing key is revoked in its country's directory:
    /// every receiver would refuse what it signs. Nothing was stored.
    #[error(
        "this node's signing key {kid} is revoked (revoked-at {at}) in its country's directory: \
         install the replacement key and restart the node (spec/federation.md §12.5); nothing was stored"
    )]
    SigningKeyRevoked {
        /// The key id (hex).
        kid: String,
        /// Its `revoked-at`.
        at: u64,
    },
    /// The node is degraded (its log or database fails, or the disk is
    /// below the free-space floor) and accepts no new work; nothing was
    /// stored. Try again later; the reason says what the operator must fix.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
#[derive(Debug, Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    pub(crate) directory: Arc<dyn Directory>,
    audit: Arc<Log>,
    writer: AuditWriter,
    log_key: Arc<SignerKey>,
    latest_checkpoint: Mutex<Option<String>>,
    witness: witness::State,
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    /// The node's condition (`ok` / `degraded`, spec/transport.md §9).
    health: Health,
    endpoint: quinn::Endpoint,
    /// Handshake, connection and body pools of incoming traffic.
    admission: Arc<admission::Admission>,
    pub(crate) limits: Limits,
    pub(crate) rng: SystemRandom,
    pub(crate) wake: Notify,
    /// Messages being delivered now (the delivery loop skips them).
    in_flight: Mutex<HashSet<[u8; 16]>>,
    /// Delivery slots: at most `delivery.max_in_flight` attempts at once.
    slots: Arc<Semaphore>,
    /// Logged refusals per peer in the current window (`limits.max_rejections_per_peer`).
    refusals: Mutex<HashMap<AgencyId, RefusalWindow>>,
    connections: tokio::sync::Mutex<HashMap<AgencyId, PeerSlot>>,
    shutdown: watch::Sender<bool>,
    /// Serialize messages changing the same request or share record.
    record_locks: workflow::RecordLocks,
    /// The node's running tasks, which [`NodeHandle::shutdown`] waits for.
    tasks: Arc<Tasks>,
    /// Waiters for a message's final state, woken by the delivery loop.
    waiters: Mutex<HashMap<[u8; 16], Vec<tokio::sync::oneshot::Sender<OutState>>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("agency", &self.config.agency)
            .finish_non_exhaustive()
    }
}

/// Seconds and milliseconds since the Unix epoch.
pub(crate) fn now() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_millis() as u64)
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
        let witness = witness::State::new(identity.witness_key.take(), &config.paths.state);
        let config_max_in_flight = config.delivery.max_in_flight;
        let health = Health::new(
            config.disk.free_space_floor_bytes,
            vec![config.paths.state.clone(), audit.dir().to_owned()],
        );
        let inner = Arc::new(Inner {
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
        inner.spawn(admission::accept_loop(Arc::clone(&inner)));
        inner.spawn(delivery_loop(Arc::clone(&inner)));
        inner.spawn(checkpoint_loop(Arc::clone(&inner)));
        inner.spawn(pin_loop(Arc::clone(&inner)));
        inner.spawn(health_loop(Arc::clone(&inner)));
        Ok(Self { inner })
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
            inner.relayed_record(route, &peer, &msg, secs, ms)?
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
        rec.reseal = Some(inner.own_copy(&msg)?);
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
    pub fn witness_status(&self) -> Result<witness::WitnessStatus, NodeError> {
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

/// Resolves when the node's shutdown begins (see [`NodeHandle::spawn_service`]).
pub(crate) type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How often the delivery loop looks for relayed messages that expired
/// without their end-to-end receipt.
const END_TO_END_CHECK: Duration = Duration::from_secs(1);

/// Longest [`NodeHandle::shutdown`] waits for the node's tasks.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Counts the node's spawned tasks.
#[derive(Debug, Default)]
struct Tasks {
    running: std::sync::atomic::AtomicUsize,
    done: Notify,
}

impl Tasks {
    fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn all_done(&self) {
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
struct TaskToken(Arc<Tasks>);

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
}

fn bind_endpoint(config: &Config, identity: &Identity) -> Result<quinn::Endpoint, NodeError> {
    let err = |detail: String| NodeError::Endpoint {
        addr: config.listen,
        detail,
    };
    let l = &config.limits;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(l.max_concurrent_streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        // No datagrams (transport.md §2): not advertised, none accepted.
        .datagram_receive_buffer_size(None)
        .receive_window(quinn::VarInt::from_u32(l.connection_receive_window))
        .stream_receive_window(quinn::VarInt::from_u32(l.stream_receive_window))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(l.idle_timeout_secs))
                .map_err(|e| err(e.to_string()))?,
        ))
        .keep_alive_interval(Some(Duration::from_secs((l.idle_timeout_secs / 3).max(1))));
    let transport = Arc::new(transport);
    let server_crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(Arc::clone(&identity.tls_server))
            .map_err(|e| err(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(Arc::clone(&transport));
    admission::bound_incoming(&mut server, l);
    let client_crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(Arc::clone(&identity.tls_client))
            .map_err(|e| err(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    let socket = admission::bind_socket(config.listen).map_err(|e| err(e.to_string()))?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| err(e.to_string()))?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

// ---------------------------------------------------------------------------
// Inbound

fn peer_agency(inner: &Inner, conn: &quinn::Connection) -> Option<AgencyId> {
    listed_agency(inner.directory.as_ref(), conn)
}

/// The agency the directory lists for the peer's certificate on `conn`.
fn listed_agency(directory: &dyn Directory, conn: &quinn::Connection) -> Option<AgencyId> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    directory.agency_of_certificate(leaf.as_ref())
}

/// Closes `conn` once its peer's certificate no longer maps to `peer` (the
/// agency dropped, its TLS key replaced, its directory expired), checking
/// every [`PIN_RECHECK`]; ends when the connection or the node does.
async fn close_when_unlisted(
    directory: Arc<dyn Directory>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    conn: quinn::Connection,
    peer: AgencyId,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PIN_RECHECK) => {}
            _ = conn.closed() => return,
            _ = stop.wait_for(|s| *s) => return,
        }
        if listed_agency(directory.as_ref(), &conn).as_ref() != Some(&peer) {
            tracing::info!(%peer, addr = %conn.remote_address(), "peer no longer listed; connection closed");
            metrics.rejected("unlisted");
            conn.close(REFUSED, b"no longer listed");
            return;
        }
    }
}

/// Re-evaluates the TLS pins every [`PIN_RECHECK`], so that new handshakes
/// are refused once a directory's window ends (a directory import replaces
/// them at once).
async fn pin_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        inner.directory.refresh_peers();
        tokio::select! {
            _ = tokio::time::sleep(PIN_RECHECK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn serve_connection(inner: Arc<Inner>, conn: quinn::Connection) {
    let Some(peer) = peer_agency(&inner, &conn) else {
        // The TLS verifier accepted a certificate the directory cannot map:
        // only possible if the directory changed in between. Refuse.
        conn.close(REFUSED, b"unknown peer");
        return;
    };
    let Some(_slot) = inner.admission.enter(&peer, &conn) else {
        conn.close(REFUSED, b"too many connections");
        return;
    };
    tracing::debug!(%peer, addr = %conn.remote_address(), "peer connected");
    inner.watch_listing(&conn, &peer);
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let task = Arc::clone(&inner);
        let peer = peer.clone();
        inner.spawn(async move {
            serve_stream(&task, &peer, send, recv).await;
        });
    }
}

async fn serve_stream(
    inner: &Inner,
    peer: &AgencyId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let limit = Duration::from_secs(inner.config.limits.stream_timeout_secs);
    // The throttle is checked before any byte of the body is read.
    let response = if inner.throttled(peer).await {
        let _ = recv.stop(REFUSED);
        inner.metrics.rejected("throttled");
        error_response(
            ErrorCode::Unavailable,
            None,
            Some("too many refused requests from this peer; try again later"),
        )
    } else {
        // The client has the stream time limit to send its whole request;
        // one left unfinished still gets its one answer (transport.md §2, §5).
        match tokio::time::timeout(limit, read_request(inner, peer, &mut recv)).await {
            Err(_) => {
                let _ = recv.stop(REFUSED);
                inner.metrics.rejected("stream-timeout");
                tracing::info!(%peer, "request refused: not complete within the stream time limit");
                error_response(
                    ErrorCode::Unavailable,
                    None,
                    Some("request not complete within the stream time limit"),
                )
            }
            // The body's budget is held until the request is answered.
            Ok(Ok((req, _budget))) => match req.op {
                Op::Deliver => inner.deliver_in(peer, req.payload).await,
                Op::AddCheckpoint => witness::serve(inner, peer, req.payload).await,
                _ => error_response(ErrorCode::Malformed, None, Some("unsupported op")),
            },
            Ok(Err(Unread::Busy(resp))) => {
                let _ = recv.stop(REFUSED);
                inner.metrics.rejected("body-budget");
                resp
            }
            Ok(Err(Unread::Frame(resp))) => {
                let _ = recv.stop(REFUSED);
                if let Response::Error { code, .. } = &resp {
                    tracing::info!(%peer, %code, "request refused: bad frame");
                    inner.log_rejected(peer, *code, "frame", None).await;
                }
                resp
            }
        }
    };
    write_answer(inner, &mut send, &response, limit).await;
}

/// Writes the one answer of a stream and finishes it, then waits for the
/// peer to read it, for at most `limit`.
async fn write_answer(
    inner: &Inner,
    send: &mut quinn::SendStream,
    response: &Response,
    limit: Duration,
) {
    let written = tokio::time::timeout(limit, async {
        if send.write_all(&response.encode()).await.is_ok() {
            let _ = send.finish();
            let _ = send.stopped().await;
        }
    })
    .await;
    if written.is_err() {
        inner.metrics.rejected("stream-timeout");
    }
}

pub(crate) fn error_response(
    code: ErrorCode,
    id: Option<MessageId>,
    detail: Option<&str>,
) -> Response {
    Response::Error {
        code,
        message_id: id,
        detail: detail.map(str::to_owned),
    }
}

/// Why a request was not read, with the answer.
enum Unread {
    /// The frame is bad: the peer's fault, logged and counted.
    Frame(Response),
    /// The peer's body budget (or the total) is used up: `unavailable`,
    /// neither logged nor counted (spec/transport.md §5).
    Busy(Response),
}

/// Reads one request frame, refusing oversize prefixes before reading the
/// body and bytes after the frame. The body's declared length is reserved
/// from `peer`'s budget before it is read (admission.rs).
async fn read_request(
    inner: &Inner,
    peer: &AgencyId,
    recv: &mut quinn::RecvStream,
) -> Result<(Request, admission::BodyPermit), Unread> {
    let truncated = || {
        Unread::Frame(error_response(
            ErrorCode::Malformed,
            None,
            Some("truncated frame"),
        ))
    };
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|_| truncated())?;
    let max = inner.limits.max_envelope_bytes + 1024;
    let len = body_len(prefix, max)
        .map_err(|e| Unread::Frame(error_response(e.code(), None, Some("frame too large"))))?;
    let budget = inner.admission.reserve(peer, len).ok_or_else(|| {
        Unread::Busy(error_response(
            ErrorCode::Unavailable,
            None,
            Some("too many request bytes in flight from this peer; try again later"),
        ))
    })?;
    let body = admission::read_body(recv, len)
        .await
        .ok_or_else(truncated)?;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => {}
        _ => {
            return Err(Unread::Frame(error_response(
                ErrorCode::Malformed,
                None,
                Some("bytes after the frame"),
            )))
        }
    }
    let request = Request::decode(&body)
        .map_err(|e: FrameError| Unread::Frame(error_response(e.code(), None, None)))?;
    Ok((request, budget))
}

/// The replay check backed by the inbox: a (sender, id) already stored is a
/// duplicate, and its record is kept to answer with the original receipt.
struct InboxGuard<'a> {
    store: &'a Store,
    hit: Option<InboxRecord>,
    failed: bool,
}

impl ReplayGuard for InboxGuard<'_> {
    fn first_sight(&mut self, sender: &AgencyId, id: &MessageId, _expires: u64) -> bool {
        match self.store.inbox_get(id, sender) {
            Ok(Some(rec)) => {
                self.hit = Some(rec);
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::error!(error = %e, "replay check failed");
                self.failed = true;
                false
            }
        }
    }
}

impl Inner {
    pub(crate) async fn append(&self, entry: Entry) -> Result<u64, NodeError> {
        self.append_with(Box::new(move |_| vec![entry])).await
    }

    /// The node's condition now (see [`crate::health`]).
    pub(crate) fn condition(&self) -> Condition {
        self.health
            .condition(self.audit.is_poisoned(), self.store.fault(), &self.metrics)
    }

    /// Tries to bring a failed log and database back (blocking: reopens,
    /// syncs). True when neither fails any more.
    fn reopen_storage(&self) -> bool {
        let log = self.audit.reopen();
        if let Err(e) = &log {
            tracing::debug!(error = %e, "audit log not reopened yet");
        }
        let db = self.store.reopen();
        if let Err(e) = &db {
            tracing::debug!(error = %e, "state database not reopened yet");
        }
        log.is_ok() && db.is_ok()
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
    async fn throttled(&self, peer: &AgencyId) -> bool {
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

    fn refusal_window(&self) -> Duration {
        Duration::from_secs(self.config.limits.rejection_window_secs)
    }

    /// Counts one logged refusal of `peer` in its current window.
    fn count_refusal(&self, peer: &AgencyId) {
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

    /// Logs the refusal of something `peer` sent on its own behalf, and
    /// counts it against `peer`'s refusal limit (transport.md §5).
    pub(crate) async fn log_rejected(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) {
        self.count_refusal(peer);
        self.log_rejected_relayed(peer, code, stage, digest).await;
    }

    /// Logs the refusal of relayed traffic `peer` (a relay) carried for
    /// others, without counting it against `peer`: throttling a relay would
    /// cut off every agency whose messages it carries (transport.md §5).
    pub(crate) async fn log_rejected_relayed(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) {
        self.metrics.rejected(code.as_str());
        let e = self.rejected_entry(peer, code, stage, digest);
        if let Err(err) = self.append(e).await {
            tracing::error!(error = %err, "could not log a rejection");
        }
    }

    /// A `rejected` entry for something `peer` sent, refused at `stage`.
    fn rejected_entry(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) -> Entry {
        exchange::rejected(peer, &self.config.agency, code, stage, digest, now().1)
    }

    /// Opens an envelope addressed to this node at `secs`, with the inbox
    /// as the replay set. On failure returns the answer for `peer`, after
    /// logging the rejection with `stage`; a replay of an accepted message
    /// is answered with the receipt given the first time.
    pub(crate) async fn open_checked(
        &self,
        peer: &AgencyId,
        envelope: &[u8],
        secs: u64,
        digest: Digest,
        stage: &str,
        relayed: bool,
    ) -> Result<Opened, Response> {
        let opener = Opener {
            me: &self.config.agency,
            keys: &self.identity.encryption_keys,
            limits: self.limits,
        };
        let mut guard = InboxGuard {
            store: &self.store,
            hit: None,
            failed: false,
        };
        let e = match opener.open(envelope, secs, self.directory.as_ref(), &mut guard) {
            Ok(o) => return Ok(o),
            Err(e) => e,
        };
        if let (OpenError::Replayed { .. }, Some(hit)) = (&e, guard.hit) {
            // Accepted before (a retransmission or a replay): never twice;
            // answer as the first time.
            self.metrics.duplicates.inc();
            return Err(Response::Receipt(hit.receipt));
        }
        if guard.failed {
            return Err(error_response(
                ErrorCode::Unavailable,
                None,
                Some("try again later"),
            ));
        }
        let detail = match &e {
            OpenError::Unauthentic(u) => u.detail().as_str().to_owned(),
            other => other.to_string(),
        };
        tracing::info!(
            id = e.message_id().map(tracing::field::display),
            %peer,
            code = %e.code(),
            %detail,
            stage,
            "message refused: envelope rejected"
        );
        if !relayed {
            self.count_refusal(peer);
        }
        self.log_rejected_relayed(peer, e.code(), stage, Some(digest))
            .await;
        let public_detail = match &e {
            OpenError::Unauthentic(_) => None,
            other => Some(other.to_string()),
        };
        // The id only once the signature verified (transport.md §3.2).
        Err(error_response(
            e.code(),
            e.message_id(),
            public_detail.as_deref(),
        ))
    }

    /// Handles one delivered envelope and returns the answer.
    async fn deliver_in(&self, peer: &AgencyId, envelope: Vec<u8>) -> Response {
        self.metrics.received_bytes.add(envelope.len() as u64);
        let digest = Digest::sha256(&envelope);
        // An exact retransmission: answer with the receipt we gave before.
        match self.store.inbox_by_digest(&digest) {
            Ok(Some(rec)) => {
                self.metrics.duplicates.inc();
                return Response::Receipt(rec.receipt);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "inbox lookup failed");
                return error_response(ErrorCode::Unavailable, None, Some("try again later"));
            }
        }
        // Degraded: no new work (spec/transport.md §9); the reason stays in
        // the local log and health, the peer only learns to retry.
        if self.condition().accepting().is_err() {
            self.metrics.rejected("degraded");
            return error_response(
                ErrorCode::Unavailable,
                None,
                Some("node degraded; try again later"),
            );
        }
        let secs = now().0;
        let opened = match self
            .open_checked(peer, &envelope, secs, digest, "open", false)
            .await
        {
            Ok(o) => o,
            Err(answer) => return answer,
        };
        let h = &opened.message.header;
        let kind = opened.message.body.kind();
        if &h.sender != peer {
            tracing::info!(id = %h.id, %peer, sender = %h.sender, "message refused: the sender is not the peer");
            self.log_rejected(
                peer,
                ErrorCode::PolicyDenied,
                "sender-is-not-peer",
                Some(digest),
            )
            .await;
            return error_response(
                ErrorCode::PolicyDenied,
                Some(h.id),
                Some("a node delivers only its own agency's messages"),
            );
        }
        if kind == Kind::Relay {
            return self.deliver_relay(peer, opened, envelope, digest).await;
        }
        if let Err(rule) = self.directory.allows(&h.sender, &h.recipient, kind) {
            tracing::info!(id = %h.id, %peer, %rule, "message refused: policy denies it");
            self.log_rejected(peer, ErrorCode::PolicyDenied, &rule, Some(digest))
                .await;
            return error_response(ErrorCode::PolicyDenied, Some(h.id), Some(&rule));
        }
        let hop = Hop {
            peer: peer.clone(),
            digest,
            via: Vec::new(),
        };
        self.accept_end_to_end(opened, envelope, hop).await
    }

    /// THE point where an opened end-to-end message addressed to this node
    /// is accepted, whether it came directly or through relays
    /// (spec/relay.md §7): every check that applies to all accepted
    /// messages belongs here, before the first audit entry. `envelope` is
    /// the end-to-end envelope (stored as received, still encrypted);
    /// `hop` says who handed it over and how.
    ///
    /// Durable order: audit entries, then the inbox record, then the answer.
    /// `received` and `receipt-sent` share one sync: the receipt carries the
    /// index of `received`, and `receipt-sent` names it (key 8).
    pub(crate) async fn accept_end_to_end(
        &self,
        opened: Opened,
        envelope: Vec<u8>,
        hop: Hop,
    ) -> Response {
        let (secs, ms) = now();
        let h = &opened.message.header;
        let kind = opened.message.body.kind();
        let digest = opened.envelope_digest;
        let via: Vec<String> = hop.via.iter().map(|a| a.to_string()).collect();
        let checked = self
            .record_locks
            .checked(|| workflow::check_incoming(&self.store, &opened.message, ms).map(|p| (p, ())))
            .await;
        let (mut plan, _record_lock) = match checked {
            Ok((p, (), lock)) => (p, lock),
            Err(err) => {
                let peer = via.is_empty().then_some(&hop.peer);
                return self.refuse_workflow(peer, h, &err, digest, ms).await;
            }
        };
        let acceptance = inbound::accept(
            &self.config.agency,
            h,
            kind,
            digest,
            &hop,
            plan.entries(),
            ms,
        );
        let (at, receipt) = match self.acknowledge(acceptance, secs).await {
            Ok(x) => x,
            Err(err) => {
                tracing::error!(error = %err, "cannot log or sign the receipt; refusing delivery");
                return error_response(ErrorCode::Unavailable, Some(h.id), Some("try again later"));
            }
        };
        let index = at.message;
        // The status-changed entries follow the acknowledged ones: their
        // indexes go into the records committed now.
        plan.set_indexes(at.tail);
        let rec = InboxRecord {
            id: h.id,
            sender: h.sender.clone(),
            kind,
            envelope,
            digest: digest.0,
            expires: h.expires,
            received_ms: ms,
            log_index: index,
            receipt: receipt.clone(),
            via: hop.via.clone(),
        };
        let stored = match self
            .store
            .insert_inbox_checked(rec, plan.writes().to_vec())
            .await
        {
            Ok(Some(InboxInsert::Stored)) => {
                tracing::info!(
                    id = %h.id,
                    peer = %hop.peer,
                    sender = %h.sender,
                    kind = kind.as_str(),
                    log_index = index,
                    "message received"
                );
                Stored::Stored
            }
            Ok(None) => {
                tracing::info!(id = %h.id, "request or share changed meanwhile; asking for a retry");
                Stored::Changed
            }
            Ok(Some(InboxInsert::Duplicate(existing))) => {
                self.metrics.duplicates.inc();
                Stored::Duplicate(existing.receipt)
            }
            Err(err) => {
                tracing::error!(error = %err, "inbox write failed");
                Stored::Failed(err.to_string())
            }
        };
        if stored != Stored::Stored {
            return self
                .answer_after_inbox(
                    &hop.peer,
                    h.id,
                    hop.digest,
                    at,
                    receipt,
                    stored,
                    Some((&h.sender, digest)),
                    ms,
                )
                .await;
        }
        self.metrics.inc(kind.as_str());
        if !hop.via.is_empty() {
            self.send_end_to_end_receipt(&opened, &hop.via, index, secs)
                .await;
        }
        Response::Receipt(receipt)
    }

    /// Carries out [`inbound::after_inbox`]: when the inbox did not store
    /// the message, the receipt already logged is withdrawn in the log
    /// before the peer is answered (spec/transport.md §7).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn answer_after_inbox(
        &self,
        peer: &AgencyId,
        id: MessageId,
        digest: Digest,
        at: inbound::Indexes,
        receipt: Vec<u8>,
        stored: Stored,
        end_to_end: Option<(&AgencyId, Digest)>,
        ms: u64,
    ) -> Response {
        let answer = inbound::after_inbox(
            &self.config.agency,
            peer,
            id,
            digest,
            at,
            receipt,
            stored,
            end_to_end,
            ms,
        );
        if !answer.withdraw.is_empty() {
            let entries = answer.withdraw;
            if let Err(e) = self.append_with(Box::new(move |_| entries)).await {
                tracing::error!(error = %e, %id, "could not log the withdrawal of an unsent receipt");
            }
        }
        answer.response
    }

    /// Answers a message the workflow refused: a final refusal is logged as
    /// `rejected`; a transient one (an earlier message still in transit)
    /// asks the peer to retry. A logged refusal counts against `peer`'s
    /// limit (the TLS peer, when it is the sender; `None` when relayed).
    async fn refuse_workflow(
        &self,
        peer: Option<&AgencyId>,
        h: &Header,
        err: &WorkflowError,
        digest: Digest,
        ms: u64,
    ) -> Response {
        let code = err.code();
        self.metrics.rejected(code.as_str());
        if code == ErrorCode::Unavailable {
            tracing::info!(id = %h.id, peer = peer.map(tracing::field::display), sender = %h.sender, %err, "message must wait; asking for a retry");
        } else {
            tracing::info!(id = %h.id, peer = peer.map(tracing::field::display), sender = %h.sender, %err, "message refused by the workflow");
            if let Some(peer) = peer {
                self.count_refusal(peer);
            }
            let entry = workflow::rejected_entry(h, err, digest.0, ms);
            if let Err(e) = self.append(entry).await {
                tracing::error!(error = %e, "could not log a rejection");
            }
        }
        error_response(code, Some(h.id), Some(&err.to_string()))
    }

    /// Appends a plan's `status-changed` entries and notes their indexes.
    pub(crate) async fn log_plan(&self, plan: &workflow::Plan) -> Result<(), NodeError> {
        let entries = plan.entries();
        if entries.is_empty() {
            return Ok(());
        }
        let first = self.append_with(Box::new(move |_| entries)).await?;
        if let Err(e) = self.store.note_indexes(None, plan.notes(first)).await {
            tracing::warn!(error = %e, "could not note status-changed log indexes");
        }
        Ok(())
    }

    /// After a receipt (for a relayed message: the end-to-end one): records
    /// the delivery of an `mla-request`.
    pub(crate) async fn workflow_receipt(&self, rec: &OutboxRecord, ms: u64) {
        let checked = self
            .record_locks
            .checked(|| {
                workflow::on_receipt(&self.store, &self.config.agency, rec, ms)
                    .map(|p| (p.unwrap_or_default(), ()))
            })
            .await;
        let (plan, _record_lock) = match checked {
            Ok((p, (), lock)) if !p.is_empty() => (p, lock),
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the delivery of a request");
                return;
            }
        };
        match self.store.commit_cases(plan.writes().to_vec()).await {
            Ok(true) => {
                if let Err(e) = self.log_plan(&plan).await {
                    tracing::error!(error = %e, "cannot log the delivery of a request");
                }
            }
            Ok(false) => {} // a later state arrived meanwhile
            Err(e) => tracing::error!(error = %e, "cannot record the delivery of a request"),
        }
    }

    /// Appends an acceptance batch ([`inbound::Acceptance`]) in one
    /// durable append and signs the receipt for its first
    /// acknowledgement. Returns where the entries landed and that receipt.
    pub(crate) async fn acknowledge(
        &self,
        acceptance: inbound::Acceptance,
        secs: u64,
    ) -> Result<(inbound::Indexes, Vec<u8>), NodeError> {
        let (id, to, digest) = acceptance.receipt();
        let layout = acceptance.clone();
        let first = self
            .append_with(Box::new(move |first| acceptance.entries(first)))
            .await?;
        let at = layout.indexes(first);
        let (_, receipt) = self.make_receipt(&to, id, digest, at.receipt, secs)?;
        Ok((at, receipt))
    }

    /// The `exp` of a receipt signed at `secs`: the longest lifetime a
    /// message may have (`max_lifetime_secs`, 90 days), so a receipt
    /// returned to a retry made before the message expired still verifies
    /// (spec/protocol.md §4.4).
    pub(crate) fn receipt_expires(&self, secs: u64) -> u64 {
        exchange::receipt_expires(secs, &self.limits)
    }

    /// Signs a receipt to `to` for message `id` delivered as the envelope
    /// with `digest`, naming our log entry `index`; returns the receipt's
    /// own message id and its bytes.
    pub(crate) fn make_receipt(
        &self,
        to: &AgencyId,
        id: MessageId,
        digest: Digest,
        index: u64,
        secs: u64,
    ) -> Result<(MessageId, Vec<u8>), NodeError> {
        let receipt_id = MessageId::time_ordered(secs.saturating_mul(1000), &self.rng)
            .map_err(|_| NodeError::System)?;
        let body = Receipt {
            message_id: id,
            envelope_digest: digest,
            log_index: index,
            received_at: secs,
        };
        let msg = exchange::receipt(&self.config.agency, to, receipt_id, body, &self.limits);
        let bytes = seal_signed(&msg, &self.identity.signing_key, &self.limits, &self.rng)?;
        Ok((msg.header.id, bytes))
    }

    async fn checkpoint(self: &Arc<Self>) -> Result<String, NodeError> {
        let log = Arc::clone(&self.audit);
        let key = Arc::clone(&self.log_key);
        let signed = tokio::task::spawn_blocking(move || log.sign_checkpoint(&key))
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        if let Ok(mut c) = self.latest_checkpoint.lock() {
            *c = Some(signed.note.clone());
        }
        witness::after_checkpoint(self, &signed);
        Ok(signed.note)
    }

    // -----------------------------------------------------------------------
    // Outbound

    /// Logs a submitted message: its `sent` entries and its plan's
    /// `status-changed` entries in one durable append, then their indexes
    /// in the outbox and case records in one lazy write (losing that write
    /// in a crash only means a second `sent` entry for the same message
    /// after restart, see [`Inner::recover`]).
    pub(crate) async fn log_submitted(
        &self,
        rec: &OutboxRecord,
        plan: &workflow::Plan,
    ) -> Result<u64, NodeError> {
        let mut entries = self.sent_entries(rec);
        let sent = entries.len() as u64;
        entries.extend(plan.entries());
        let first = self.append_with(Box::new(move |_| entries)).await?;
        let noted = self
            .store
            .note_indexes(Some((rec.id, first)), plan.notes(first + sent))
            .await;
        if let Err(e) = noted {
            tracing::error!(error = %e, "could not record the sent and status-changed indexes");
        }
        Ok(first)
    }

    /// The `sent` entries for an outbox record: its own (the first; its
    /// index is the record's `sent_index`), then for a relayed message this
    /// node originated the end-to-end one (spec/relay.md §9).
    pub(crate) fn sent_entries(&self, rec: &OutboxRecord) -> Vec<Entry> {
        let mut e = exchange::sent(
            &self.config.agency,
            rec.id,
            Some(rec.recipient.clone()),
            rec.kind.as_str(),
            rec.digest,
            rec.created * 1000,
        );
        if let Some(from) = rec.reseal.as_ref().and_then(|r| r.resealed_from) {
            // A re-seal supersedes the earlier `sent` (spec/cross-check.md §3.1).
            e.detail
                .insert("resealed-from".into(), Digest(from).to_hex());
        }
        let mut end_to_end = crate::relay::end_to_end_sent(&mut e, rec, &self.config.agency);
        if let (Some(end), Some(from)) = (
            end_to_end.as_mut(),
            rec.reseal.as_ref().and_then(|r| r.inner_resealed_from),
        ) {
            // The re-sealed inner envelope supersedes the earlier one too.
            end.detail
                .insert("resealed-from".into(), Digest(from).to_hex());
        }
        std::iter::once(e).chain(end_to_end).collect()
    }

    /// This node's signing key's `revoked-at`, if its directory revokes it
    /// as of `now`.
    pub(crate) fn own_key_revoked(&self, now: u64) -> Option<u64> {
        self.directory
            .sender_key(&self.identity.signing_key.key_id())?
            .revoked_at
            .filter(|at| now >= *at)
    }

    /// After a crash: every outbox message whose `sent` entry is missing
    /// gets it now, and so does every request or share event whose
    /// `status-changed` entry is missing (spec/transport.md §7). At start,
    /// queued messages sealed with a revoked key of this node are re-sealed
    /// first (their new `sent` entries are then missing, crate::reseal).
    async fn recover(self: &Arc<Self>) -> Result<(), NodeError> {
        for rec in self.store.all_outbox()? {
            let rec =
                if !self.is_in_flight(rec.id.as_bytes()) && self.reseal_if_revoked(&rec).await? {
                    match self.store.outbox(&rec.id)? {
                        Some(now) => now,
                        None => continue,
                    }
                } else {
                    rec
                };
            // A message in flight belongs to the task submitting or
            // delivering it, which logs its `sent` entry itself (recovery
            // also runs after a storage fault, while submissions go on).
            if rec.sent_index.is_none() && !self.is_in_flight(rec.id.as_bytes()) {
                tracing::warn!(id = %rec.id, "logging a sent entry missed before a crash");
                self.log_submitted(&rec, &workflow::Plan::default()).await?;
            }
        }
        let changes = workflow::unlogged_changes(&self.store, &self.config.agency)?;
        let missed = changes.entries().len();
        if missed > 0 {
            tracing::warn!(
                count = missed,
                "logging status changes missed before a crash"
            );
            self.log_plan(&changes).await?;
        }
        Ok(())
    }

    /// The cached connection to `agency`, or a new one. Deliveries to one
    /// peer share one connection and wait for one handshake; other peers are
    /// not held up.
    async fn connection(
        &self,
        agency: &AgencyId,
        peer: &Peer,
    ) -> Result<quinn::Connection, String> {
        let slot = {
            let mut conns = self.connections.lock().await;
            Arc::clone(conns.entry(agency.clone()).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            let listed = listed_agency(self.directory.as_ref(), c).as_ref() == Some(agency);
            if c.close_reason().is_none() && listed {
                return Ok(c.clone());
            }
            if !listed {
                c.close(REFUSED, b"no longer listed");
            }
        }
        *slot = None;
        // Names are resolved only for a new connection (a cached one goes
        // on working while the resolver is down).
        let addr = peer.resolve(self.config.listen).await?;
        let connecting = self
            .endpoint
            .connect(addr, agency.as_str())
            .map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("no answer from {addr} within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        self.watch_listing(&conn, agency);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Closes `conn` once `peer` is no longer listed with its certificate
    /// ([`close_when_unlisted`]).
    fn watch_listing(&self, conn: &quinn::Connection, peer: &AgencyId) {
        self.spawn(close_when_unlisted(
            Arc::clone(&self.directory),
            Arc::clone(&self.metrics),
            self.shutdown.subscribe(),
            conn.clone(),
            peer.clone(),
        ));
    }

    /// Closes `failed` and drops it from `agency`'s slot, unless the slot
    /// holds another connection by now: a request that failed on an old
    /// connection must not close the new one other requests already use
    /// (under loss, each failure used to close the next connection too).
    async fn forget_connection(&self, agency: &AgencyId, failed: &quinn::Connection) {
        failed.close(quinn::VarInt::from_u32(0), b"reconnecting");
        let slot = self.connections.lock().await.get(agency).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.as_ref().map(quinn::Connection::stable_id) == Some(failed.stable_id()) {
                *slot = None;
            }
        }
    }

    /// One delivery attempt; updates the record and the log in the order
    /// [`outbound::Settled`] gives: the entry first, then the record.
    async fn deliver_out(&self, rec: OutboxRecord) -> Result<OutState, NodeError> {
        let id = rec.id;
        let (secs, ms) = now();
        let me = &self.config.agency;
        let recipient = rec.recipient.clone();
        let mut settled = if outbound::expired(secs, rec.expires) {
            outbound::expire(me, &recipient, rec, ms)
        } else {
            let attempt = match self.directory.peer(&recipient) {
                None => outbound::Attempt::Transport(format!(
                    "{recipient} is not in any trusted directory"
                )),
                Some(peer) => self.attempt(&recipient, &peer, &rec, secs).await,
            };
            let mut random = [0u8; 2];
            let _ = self.rng.fill(&mut random);
            let cx = outbound::Context {
                me,
                recipient: &recipient,
                secs,
                ms,
                backoff: self.backoff(),
                random,
                own_revoked: self.own_key_revoked(secs),
            };
            if let outbound::Attempt::Transport(err) = &attempt {
                tracing::debug!(%id, %recipient, error = %err, attempt = rec.attempts + 1, "delivery attempt failed");
                self.metrics.retries.inc();
            }
            outbound::settle(cx, rec, attempt)
        };
        if let Some(e) = settled.entry.take() {
            let index = self.append(e).await?;
            settled.logged(index);
        }
        let rec = settled.record;
        match settled.outcome {
            outbound::Outcome::Delivered => {
                self.workflow_receipt(&rec, ms).await;
                tracing::info!(%id, peer = %recipient, peer_index = rec.peer_log_index, "message sent: receipt received");
                self.metrics.delivered.inc();
                self.metrics
                    .latency
                    .observe_ms(ms.saturating_sub(rec.created * 1000));
            }
            outbound::Outcome::Failed => {
                self.metrics.failed.inc();
                tracing::warn!(%id, peer = %recipient, error = rec.last_error.as_deref(), "message refused by the peer");
            }
            outbound::Outcome::Expired => {
                self.metrics.expired.inc();
                tracing::warn!(%id, %recipient, "message expired undelivered");
            }
            outbound::Outcome::Retry => {}
        }
        self.finish(rec).await
    }

    /// The delivery retry schedule of the configuration.
    fn backoff(&self) -> outbound::Backoff {
        let d = &self.config.delivery;
        outbound::Backoff {
            initial_ms: d.initial_backoff_ms,
            max_secs: d.max_backoff_secs,
            jitter_percent: d.jitter_percent,
        }
    }

    /// Stores the updated record (keeping a `sent` index recorded meanwhile)
    /// and wakes whoever waits for its final state.
    async fn finish(&self, rec: OutboxRecord) -> Result<OutState, NodeError> {
        let (id, state) = (rec.id, rec.state);
        // Lazy: if this is lost in a crash the message is delivered again and
        // the recipient answers with the same receipt.
        self.store
            .modify_outbox(id, Durability::Lazy, move |stored| {
                let sent = stored.sent_index;
                // An end-to-end receipt may have come back while this attempt
                // was in flight (a retried hop): keep it.
                let e2e = stored.relay.take();
                *stored = rec;
                stored.sent_index = stored.sent_index.or(sent);
                if let (Some(now), Some(e2e)) = (stored.relay.as_mut(), e2e) {
                    now.end_to_end_receipt =
                        now.end_to_end_receipt.take().or(e2e.end_to_end_receipt);
                    now.end_to_end_index = now.end_to_end_index.or(e2e.end_to_end_index);
                }
            })
            .await?;
        if state != OutState::Pending {
            let waiters = self
                .waiters
                .lock()
                .ok()
                .and_then(|mut w| w.remove(id.as_bytes()));
            for w in waiters.unwrap_or_default() {
                let _ = w.send(state);
            }
        }
        Ok(state)
    }

    /// One attempt, started at `secs`: the receipt is checked as of then
    /// (before the message's expiry, spec/transport.md §6).
    async fn attempt(
        &self,
        recipient: &AgencyId,
        peer: &Peer,
        rec: &OutboxRecord,
        secs: u64,
    ) -> outbound::Attempt {
        match self
            .exchange(recipient, peer, Op::Deliver, rec.envelope.clone())
            .await
        {
            Ok(answer) => outbound::classify(
                &self.config.agency,
                recipient,
                rec,
                answer,
                secs,
                self.directory.as_ref(),
                self.limits,
            ),
            Err(e) => outbound::Attempt::Transport(e),
        }
    }

    /// One request on a new stream of the (cached) connection to `agency`,
    /// and its decoded answer.
    async fn exchange(
        &self,
        agency: &AgencyId,
        peer: &Peer,
        op: Op,
        payload: Vec<u8>,
    ) -> Result<Response, String> {
        let conn = self.connection(agency, peer).await?;
        let body = self.request_on(&conn, op, payload).await;
        match body {
            Ok(body) => Response::decode(&body).map_err(|e| e.to_string()),
            Err(e) => {
                // A failure of the connection (closed, or no answer in
                // time): the next request makes a new one. A failure of
                // this stream alone leaves the others on it alone.
                if e.connection || conn.close_reason().is_some() {
                    self.forget_connection(agency, &conn).await;
                }
                Err(e.detail)
            }
        }
    }

    /// One request on a new stream of `conn`, and the answer's body.
    async fn request_on(
        &self,
        conn: &quinn::Connection,
        op: Op,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RequestFailed> {
        let conn_err = |e: &dyn std::fmt::Display| RequestFailed {
            connection: true,
            detail: e.to_string(),
        };
        let stream_err = |e: &dyn std::fmt::Display| RequestFailed {
            connection: false,
            detail: e.to_string(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| conn_err(&e))?;
        let frame = Request { op, payload }.encode();
        match send.write_all(&frame).await {
            Ok(()) => {
                let _ = send.finish();
            }
            // The server stopped reading (a refusal before the whole body,
            // transport.md §2): its one answer still comes; read it.
            Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(conn_err(&e)),
        }
        let mut prefix = [0u8; 4];
        let limit = Duration::from_secs(self.config.limits.stream_timeout_secs);
        tokio::time::timeout(limit, async {
            recv.read_exact(&mut prefix)
                .await
                .map_err(|e| stream_err(&e))?;
            let len = body_len(prefix, MAX_RESPONSE_BODY).map_err(|e| stream_err(&e))?;
            let mut body = vec![0u8; len];
            recv.read_exact(&mut body)
                .await
                .map_err(|e| stream_err(&e))?;
            Ok::<_, RequestFailed>(body)
        })
        .await
        .map_err(|_| conn_err(&"response timeout"))?
    }

    /// Whether message `id` is being submitted or delivered now.
    fn is_in_flight(&self, id: &[u8; 16]) -> bool {
        self.in_flight
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    /// Marks message `id` as being delivered (the delivery loop skips it);
    /// false if it was already.
    fn mark_in_flight(&self, id: [u8; 16]) -> bool {
        self.in_flight
            .lock()
            .map(|mut s| s.insert(id))
            .unwrap_or(false)
    }

    fn unmark_in_flight(&self, id: &[u8; 16]) {
        if let Ok(mut s) = self.in_flight.lock() {
            s.remove(id);
        }
    }

    /// Runs one delivery attempt of message `id` (already marked in flight)
    /// as a node task. Its record is read here, when the attempt starts, so
    /// a message delivered meanwhile is not delivered twice; `sent_index`
    /// is its `sent` entry if the caller knows it and the record may not
    /// yet. When the message stays pending (a retry is scheduled) the
    /// delivery loop is woken to plan it.
    fn spawn_delivery(
        self: Arc<Self>,
        id: [u8; 16],
        sent_index: Option<u64>,
        permit: OwnedSemaphorePermit,
    ) {
        let inner = Arc::clone(&self);
        self.spawn(async move {
            let stopping = *inner.shutdown.borrow();
            let state = match inner.store.outbox(&MessageId::from_bytes(id)) {
                // Shutting down: no new attempt on a closing endpoint (the
                // message stays due and is delivered after the restart).
                Ok(Some(_)) if stopping => Ok(OutState::Pending),
                Ok(Some(mut now)) if now.state == OutState::Pending => {
                    // Sealed with a key of this node revoked meanwhile (its
                    // directory changed): re-sealed, its new `sent` logged below.
                    let checked = match inner.reseal_if_revoked(&now).await {
                        Ok(true) => match inner.store.outbox(&MessageId::from_bytes(id)) {
                            Ok(Some(resealed)) => {
                                now = resealed;
                                Ok(())
                            }
                            Ok(None) => Ok(()),
                            Err(e) => Err(e.into()),
                        },
                        Ok(false) => {
                            now.sent_index = now.sent_index.or(sent_index);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    // No delivery before `sent`: a message accepted while
                    // the log failed gets its entry now.
                    let logged = match (checked, now.sent_index) {
                        (Err(e), _) => Err(e),
                        (Ok(()), Some(_)) => Ok(()),
                        (Ok(()), None) => inner
                            .log_submitted(&now, &workflow::Plan::default())
                            .await
                            .map(|i| now.sent_index = Some(i)),
                    };
                    match logged {
                        Ok(()) => inner.deliver_out(now).await,
                        Err(e) => Err(e),
                    }
                }
                // Delivered (or given up) meanwhile, or gone: nothing to do.
                Ok(Some(now)) => Ok(now.state),
                Ok(None) => Ok(OutState::Failed),
                Err(e) => Err(e.into()),
            };
            // A failed bookkeeping write backs off like a failed delivery
            // (no new delivery starts meanwhile); logged once per row of
            // failures, and not at all when the node's condition already
            // says its storage fails.
            match &state {
                Err(e) => {
                    inner.metrics.bookkeeping_failures.inc();
                    let d = &inner.config.delivery;
                    let first = inner.health.bookkeeping_failed(
                        Duration::from_millis(d.initial_backoff_ms),
                        Duration::from_secs(d.max_backoff_secs),
                    );
                    if first && !inner.condition().storage_fails() {
                        tracing::error!(error = %e, "delivery bookkeeping failed; backing off");
                    } else {
                        tracing::debug!(error = %e, "delivery bookkeeping failed");
                    }
                }
                Ok(_) => inner.health.bookkeeping_ok(),
            }
            inner.unmark_in_flight(&id);
            drop(permit);
            if !matches!(state, Ok(s) if s != OutState::Pending) {
                inner.wake.notify_one();
            }
        });
    }

    /// Relayed messages this node originated whose expiry has passed: one
    /// that was handed to the first relay but never got its end-to-end
    /// receipt is logged as `delivery-expired` (detail `end-to-end`) and
    /// marked, so it is not silently lost after the first hop (spec/relay.md
    /// §8). One still pending is left to the delivery loop, which logs its
    /// own expiry.
    async fn check_end_to_end(&self) {
        let (secs, ms) = now();
        let due = match self.store.awaiting_end_to_end(secs, 256) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the end-to-end watch list");
                return;
            }
        };
        for (expires, id) in due {
            let rec = match self.store.outbox(&id) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    return;
                }
            };
            let mut index = None;
            match outbound::end_to_end(&self.config.agency, id, rec.as_ref(), ms) {
                outbound::EndToEnd::Wait => continue,
                outbound::EndToEnd::Settle => {}
                outbound::EndToEnd::Missing(e) => {
                    match self.append(*e).await {
                        Ok(i) => index = Some(i),
                        Err(err) => {
                            tracing::error!(error = %err, "cannot log a missing end-to-end receipt");
                            return;
                        }
                    }
                    self.metrics.end_to_end_missing.inc();
                    let to = rec
                        .as_ref()
                        .and_then(|r| r.relay.as_ref())
                        .and_then(|x| x.route.last());
                    tracing::warn!(%id, ?to, "relayed message expired without its end-to-end receipt");
                }
            }
            let settled = self
                .store
                .settle_end_to_end(id, expires, move |r| {
                    if let (Some(x), Some(i)) = (r.relay.as_mut(), index) {
                        x.end_to_end_missing_index = Some(i);
                    }
                })
                .await;
            if let Err(e) = settled {
                tracing::error!(error = %e, "cannot settle an end-to-end wait");
                return;
            }
        }
    }
}

/// A message marked in flight by `submit`; unmarked when dropped (also when
/// the submitting task is cancelled, e.g. a local API client that went
/// away), unless handed over to a delivery task, which unmarks it itself.
struct InFlightMark<'a> {
    inner: &'a Inner,
    id: Option<[u8; 16]>,
}

impl<'a> InFlightMark<'a> {
    fn new(inner: &'a Inner, id: [u8; 16]) -> Self {
        inner.mark_in_flight(id);
        Self {
            inner,
            id: Some(id),
        }
    }

    fn hand_over(mut self) {
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
struct RefusalWindow {
    /// When the window began (monotonic: a clock step cannot stretch it).
    start: std::time::Instant,
    count: u32,
    /// Whether this window's throttling was logged already.
    throttle_logged: bool,
}

impl RefusalWindow {
    fn starting() -> Self {
        Self {
            start: std::time::Instant::now(),
            count: 0,
            throttle_logged: false,
        }
    }
}

pub(crate) use crate::exchange::Ack;
pub(crate) use crate::node_core::inbound::Hop;

async fn delivery_loop(inner: Arc<Inner>) {
    let stop = inner.shutdown.subscribe();
    let mut checked_end_to_end: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        // While the log or the database fails, or after a bookkeeping
        // failure, no delivery starts: the health loop wakes this one when
        // storage is back (spec/transport.md §9).
        let hold = if inner.condition().storage_fails() {
            Some(Duration::from_secs(1))
        } else {
            inner.health.held_for()
        };
        if let Some(hold) = hold {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(hold) => {}
            }
            continue;
        }
        if checked_end_to_end.is_none_or(|t| t.elapsed() >= END_TO_END_CHECK) {
            checked_end_to_end = Some(std::time::Instant::now());
            inner.check_end_to_end().await;
        }
        let (_, ms) = now();
        let busy = |id: &MessageId| {
            inner
                .in_flight
                .lock()
                .map(|s| s.contains(id.as_bytes()))
                .unwrap_or(true)
        };
        let due = match inner
            .store
            .due(ms, inner.config.delivery.max_in_flight, &busy)
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        inner
            .metrics
            .queue_depth
            .set(inner.store.pending_count().unwrap_or(0));
        for id in due {
            if *stop.borrow() {
                return;
            }
            let id = *id.as_bytes();
            if !inner.mark_in_flight(id) {
                continue;
            }
            let Ok(permit) = Arc::clone(&inner.slots).acquire_owned().await else {
                return;
            };
            if *stop.borrow() {
                return;
            }
            Arc::clone(&inner).spawn_delivery(id, None, permit);
        }
        let wait_ms = match inner.store.next_due_ms() {
            Ok(Some(t)) => t.saturating_sub(now().1).clamp(10, 1000),
            _ => 1000,
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
    }
}

/// Longest wait between two attempts to bring a failed log or database
/// back (the attempts back off from `delivery.initial_backoff_ms`).
const MAX_REOPEN_WAIT: Duration = Duration::from_secs(10);

/// The first and the longest wait between attempts to reopen failing
/// storage: the delivery backoff's, both at most [`MAX_REOPEN_WAIT`]
/// whatever the configured delivery backoff is (an initial backoff above it
/// used to make `clamp` panic and end the health task).
fn reopen_backoff(initial_ms: u64, max_secs: u64) -> (Duration, Duration) {
    let initial = Duration::from_millis(initial_ms.max(1)).min(MAX_REOPEN_WAIT);
    let max = Duration::from_secs(max_secs)
        .min(MAX_REOPEN_WAIT)
        .max(initial);
    (initial, max)
}

/// Watches the node's condition (spec/transport.md §9): logs its changes,
/// and while the log or the database fails tries to bring them back, with
/// backoff; once both are back, logs what could not be logged meanwhile
/// (as after a crash) and wakes the delivery loop.
async fn health_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let (initial, max) = reopen_backoff(
        inner.config.delivery.initial_backoff_ms,
        inner.config.delivery.max_backoff_secs,
    );
    let mut wait = initial;
    loop {
        let sleep = if inner.condition().storage_fails() {
            let i = Arc::clone(&inner);
            inner.health.set_catching_up(true);
            let back = tokio::task::spawn_blocking(move || i.reopen_storage())
                .await
                .unwrap_or(false);
            if back {
                if let Err(e) = inner.recover().await {
                    tracing::debug!(error = %e, "logging what was missed failed");
                }
                inner.health.set_catching_up(false);
                inner.condition();
                inner.wake.notify_one();
                wait = initial;
            } else {
                inner.health.set_catching_up(false);
                wait = wait.saturating_mul(2).min(max);
            }
            wait
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Signs a checkpoint every `checkpoint.interval_secs` when the log grew.
async fn checkpoint_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let every = Duration::from_secs(inner.config.checkpoint.interval_secs.max(1));
    let mut signed_size = None;
    loop {
        let size = inner.audit.size();
        // Growth by witnesses' cosignature records alone does not call for a
        // new checkpoint (that would need witnessing, and so on forever).
        if signed_size != Some(size)
            && !signed_size.is_some_and(|from| witness::only_cosignatures(&inner.audit, from, size))
        {
            match inner.checkpoint().await {
                Ok(_) => signed_size = Some(size),
                Err(e) => tracing::error!(error = %e, "cannot sign a checkpoint"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_backoff_is_bounded_for_any_delivery_backoff() {
        let s = Duration::from_secs;
        assert_eq!(reopen_backoff(50, 1), (Duration::from_millis(50), s(1)));
        assert_eq!(
            reopen_backoff(500, 300),
            (Duration::from_millis(500), MAX_REOPEN_WAIT)
        );
        // An initial delivery backoff above the bound (valid config) used
        // to panic here.
        assert_eq!(
            reopen_backoff(15_000, 1),
            (MAX_REOPEN_WAIT, MAX_REOPEN_WAIT)
        );
        assert_eq!(
            reopen_backoff(0, 0),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
    }
}
