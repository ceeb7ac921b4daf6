//! Admission: what an unauthenticated source, and what a listed partner,
//! may hold of this node's connection slots and memory
//! (spec/transport.md §5, spec/threat-model.md).
//!
//! Three pools, each bounded on its own, so that filling one does not take
//! a slot of another:
//!
//! ```text
//! first packet ──▶ handshakes ──TLS done, agency known──▶ peer connections ──request──▶ body budget
//!                  max_handshakes in all                  max_connections in all        per agency
//!                  per validated address                  per agency, the oldest        and in all
//!                  Retry once unvalidated ones pile up    replaced by a newer one
//!                  deadline handshake_timeout_secs
//! ```
//!
//! - **Handshakes.** A connection attempt takes a handshake slot before
//!   the TLS handshake and gives it back when the handshake ends, fails or
//!   reaches its deadline (quinn has no handshake deadline of its own: the
//!   attempt is wrapped in a timeout and dropped, which closes it).
//!   Attempts from addresses QUIC has not validated are counted apart and
//!   only up to `retry_above_handshakes`; beyond that, each must first
//!   answer a QUIC Retry, which costs this node no state. A validated
//!   source address holds at most `max_handshakes_per_address` slots.
//!   Unvalidated attempts are not counted per address: their source may be
//!   spoofed, and counting them would let a spoofer use up a partner's
//!   address. Retry does not stop a flood from real addresses; the
//!   per-address limit does: an attacker needs `max_handshakes` /
//!   `max_handshakes_per_address` real addresses (32 with the defaults) to
//!   fill the pool, and holds each slot for at most the deadline.
//! - **Peer connections.** Only an authenticated connection (its
//!   certificate maps to a listed agency) takes a slot here, so
//!   unauthenticated traffic cannot take a partner's. An agency holds at
//!   most `max_connections_per_agency`; a newer connection closes its
//!   oldest, so a partner that restarts is never locked out by its own
//!   stale connections, and a hostile partner only churns its own.
//! - **Bodies.** A request body reserves its declared length from its
//!   agency's budget and from the total before any byte of it is read; a
//!   request that does not fit is answered `unavailable` at once (not
//!   queued: a queued stream would hold QUIC flow-control credit other
//!   streams of the connection need). The buffer grows as bytes arrive,
//!   so a trickling peer holds memory for what it sent, not for what it
//!   announced. QUIC's connection and stream receive windows bound what
//!   quinn buffers before the node reads it.
//!
//! Failed unauthenticated handshakes are counted in metrics and logged at
//! debug level, with one info line per minute summing them up: a flood of
//! them does not flood the log.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isnad_envelope::AgencyId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use crate::metrics::Metrics;

/// QUIC application error code used when refusing a stream or connection.
pub(crate) const REFUSED: quinn::VarInt = quinn::VarInt::from_u32(0x49);

/// The bounds of the three pools, from the node's `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_address: usize,
    pub(crate) retry_above_handshakes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_agency: usize,
    pub(crate) body_budget_per_agency: usize,
    pub(crate) body_budget_total: usize,
}

impl Bounds {
    pub(crate) fn from_limits(l: &LimitsConfig) -> Self {
        Self {
            max_handshakes: l.max_handshakes,
            max_handshakes_per_address: l.max_handshakes_per_address,
            retry_above_handshakes: l.retry_above_handshakes,
            handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
            max_connections: l.max_connections,
            max_connections_per_agency: l.max_connections_per_agency,
            body_budget_per_agency: l.body_budget_per_agency,
            body_budget_total: l.body_budget_total,
        }
    }
}

/// The node's admission state, shared by the accept loop and the streams.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) bounds: Bounds,
    metrics: Arc<Metrics>,
    handshakes: Mutex<HandshakeBook>,
    peers: Mutex<PeerPool>,
    budgets: Mutex<HashMap<AgencyId, Arc<Semaphore>>>,
    total_budget: Arc<Semaphore>,
    failures: Mutex<FailureSummary>,
}

/// What to do with a new connection attempt.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Start the handshake.
    Accept,
    /// Ask the client to prove its address first (QUIC Retry).
    Retry,
    /// Refuse, counted under this reason.
    Refuse(&'static str),
    /// Drop without an answer (the source is validated and over its own
    /// limit: answering would only cost this node more), counted under
    /// this reason.
    Ignore(&'static str),
}

/// [`Decision`] carried out: an accepted attempt holds its slot.
#[derive(Debug)]
pub(crate) enum Admit {
    Start(HandshakeSlot),
    Retry,
    Refuse(&'static str),
    Ignore(&'static str),
}

/// Handshakes in progress.
#[derive(Debug, Default)]
struct HandshakeBook {
    total: usize,
    unvalidated: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl HandshakeBook {
    /// The decision for an attempt from `ip`, whose address QUIC has
    /// validated or not, and which may still be sent a Retry or not.
    fn decide(&self, b: &Bounds, ip: IpAddr, validated: bool, may_retry: bool) -> Decision {
        if !validated {
            if self.unvalidated >= b.retry_above_handshakes || self.total >= b.max_handshakes {
                return if may_retry {
                    Decision::Retry
                } else {
                    Decision::Refuse("handshake-limit")
                };
            }
            return Decision::Accept;
        }
        if self.by_address.get(&ip).copied().unwrap_or(0) >= b.max_handshakes_per_address {
            return Decision::Ignore("handshake-per-address");
        }
        if self.total >= b.max_handshakes {
            return Decision::Refuse("handshake-limit");
        }
        Decision::Accept
    }

    fn enter(&mut self, ip: IpAddr, validated: bool) {
        self.total += 1;
        if validated {
            *self.by_address.entry(ip).or_default() += 1;
        } else {
            self.unvalidated += 1;
        }
    }

    fn leave(&mut self, ip: IpAddr, validated: bool) {
        self.total = self.total.saturating_sub(1);
        if !validated {
            self.unvalidated = self.unvalidated.saturating_sub(1);
            return;
        }
        if let Some(n) = self.by_address.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_address.remove(&ip);
            }
        }
    }
}

/// A handshake slot, given back on drop.
#[derive(Debug)]
pub(crate) struct HandshakeSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
    validated: bool,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if let Ok(mut book) = self.admission.handshakes.lock() {
            book.leave(self.ip, self.validated);
            self.admission
                .metrics
                .handshakes_in_progress
                .set(book.total as u64);
        }
    }
}

/// Authenticated incoming connections by agency, oldest first.
#[derive(Debug, Default)]
struct PeerPool {
    total: usize,
    next_id: u64,
    by_agency: HashMap<AgencyId, VecDeque<(u64, quinn::Connection)>>,
}

/// An authenticated connection's slot in the peer pool, given back on drop.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    admission: Arc<Admission>,
    agency: AgencyId,
    id: u64,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.admission.peers.lock() {
            let mut removed = false;
            if let Some(list) = pool.by_agency.get_mut(&self.agency) {
                let before = list.len();
                list.retain(|(id, _)| *id != self.id);
                removed = list.len() < before;
                if list.is_empty() {
                    pool.by_agency.remove(&self.agency);
                }
            }
            if removed {
                pool.total = pool.total.saturating_sub(1);
            }
            self.admission
                .metrics
                .peer_connections
                .set(pool.total as u64);
        }
    }
}

/// Bytes of one request body reserved from its agency's budget and the
/// total, given back on drop.
#[derive(Debug)]
pub(crate) struct BodyPermit {
    admission: Arc<Admission>,
    _own: OwnedSemaphorePermit,
    total: OwnedSemaphorePermit,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        // The permits are released after this body runs; count them as gone.
        let bytes = self.total.num_permits();
        let a = &self.admission;
        let in_use = a
            .bounds
            .body_budget_total
            .saturating_sub(a.total_budget.available_permits() + bytes);
        a.metrics.body_bytes_in_flight.set(in_use as u64);
    }
}

/// Failed handshakes since the last summary line.
#[derive(Debug)]
struct FailureSummary {
    since: Instant,
    count: u64,
}

/// Interval of the info line summing up failed handshakes.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// First allocation for a request body; it grows as bytes arrive.
const FIRST_BODY_CHUNK: usize = 64 * 1024;

impl Admission {
    pub(crate) fn new(limits: &LimitsConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let bounds = Bounds::from_limits(limits);
        Arc::new(Self {
            bounds,
            metrics,
            handshakes: Mutex::default(),
            peers: Mutex::default(),
            budgets: Mutex::default(),
            total_budget: Arc::new(Semaphore::new(bounds.body_budget_total)),
            failures: Mutex::new(FailureSummary {
                since: Instant::now(),
                count: 0,
            }),
        })
    }

    /// Decides on an attempt and, if it is accepted, takes its slot.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, validated: bool, may_retry: bool) -> Admit {
        let Ok(mut book) = self.handshakes.lock() else {
            return Admit::Refuse("handshake-limit");
        };
        match book.decide(&self.bounds, ip, validated, may_retry) {
            Decision::Accept => {
                book.enter(ip, validated);
                self.metrics.handshakes_in_progress.set(book.total as u64);
                Admit::Start(HandshakeSlot {
                    admission: Arc::clone(self),
                    ip,
                    validated,
                })
            }
            Decision::Retry => Admit::Retry,
            Decision::Refuse(reason) => Admit::Refuse(reason),
            Decision::Ignore(reason) => Admit::Ignore(reason),
        }
    }

    /// Takes a slot for `conn`, authenticated as `agency`: closes the
    /// agency's oldest connection when it is at its cap; `None` (the caller
    /// refuses `conn`) when all partners together are at theirs.
    pub(crate) fn enter(
        self: &Arc<Self>,
        agency: &AgencyId,
        conn: &quinn::Connection,
    ) -> Option<PeerSlot> {
        let mut pool = self.peers.lock().ok()?;
        let at_cap = pool
            .by_agency
            .get(agency)
            .is_some_and(|l| l.len() >= self.bounds.max_connections_per_agency);
        if at_cap {
            let oldest = pool.by_agency.get_mut(agency).and_then(VecDeque::pop_front);
            if let Some((_, old)) = oldest {
                old.close(REFUSED, b"replaced by a newer connection");
                pool.total = pool.total.saturating_sub(1);
                self.metrics.rejected("connection-replaced");
                tracing::debug!(peer = %agency, "oldest connection replaced by a newer one");
            }
        } else if pool.total >= self.bounds.max_connections {
            self.metrics.rejected("connection-limit");
            tracing::warn!(peer = %agency, limit = self.bounds.max_connections,
                "authenticated connection refused: all connection slots taken");
            return None;
        }
        pool.next_id += 1;
        let id = pool.next_id;
        pool.by_agency
            .entry(agency.clone())
            .or_default()
            .push_back((id, conn.clone()));
        pool.total += 1;
        self.metrics.peer_connections.set(pool.total as u64);
        Some(PeerSlot {
            admission: Arc::clone(self),
            agency: agency.clone(),
            id,
        })
    }

    /// Reserves `len` bytes for a request body of `agency`, or `None` when
    /// its budget or the total is used up.
    pub(crate) fn reserve(self: &Arc<Self>, agency: &AgencyId, len: usize) -> Option<BodyPermit> {
        let n = u32::try_from(len).ok()?;
        let budget =
            {
                let mut all = self.budgets.lock().ok()?;
                Arc::clone(all.entry(agency.clone()).or_insert_with(|| {
                    Arc::new(Semaphore::new(self.bounds.body_budget_per_agency))
                }))
            };
        let own = budget.try_acquire_many_owned(n).ok()?;
        let total = Arc::clone(&self.total_budget)
            .try_acquire_many_owned(n)
            .ok()?;
        let in_use = self
            .bounds
            .body_budget_total
            .saturating_sub(self.total_budget.available_permits());
        self.metrics.body_bytes_in_flight.set(in_use as u64);
        Some(BodyPermit {
            admission: Arc::clone(self),
            _own: own,
            total,
        })
    }

    /// Counts a failed unauthenticated handshake, logs it at debug level,
    /// and sums failures up in one info line per minute.
    pub(crate) fn handshake_failed(
        &self,
        addr: SocketAddr,
        reason: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        self.metrics.handshakes_failed.inc();
        self.metrics.rejected(reason);
        tracing::debug!(%addr, reason, error = %detail, "incoming handshake failed");
        let Ok(mut s) = self.failures.lock() else {
            return;
        };
        s.count += 1;
        if s.since.elapsed() >= SUMMARY_EVERY {
            tracing::info!(
                failed = s.count,
                secs = s.since.elapsed().as_secs(),
                "incoming handshakes failed (details at debug level)"
            );
            *s = FailureSummary {
                since: Instant::now(),
                count: 0,
            };
        }
    }
}

/// Bounds what quinn keeps of connection attempts the accept loop has not
/// yet decided on (it decides at once; these only cap a burst): at most
/// four times `max_handshakes` attempts, 64 KiB of packets each after the
/// first and 4 MiB in all.
pub(crate) fn bound_incoming(server: &mut quinn::ServerConfig, l: &LimitsConfig) {
    server
        .max_incoming(l.max_handshakes.saturating_mul(4))
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(4 * 1024 * 1024);
}

/// Receive buffer asked for the listening UDP socket (the kernel caps it
/// at `net.core.rmem_max`): under a flood of first packets a small buffer
/// overflows while the endpoint is busy, and a partner's packet lost there
/// costs it a retransmission timeout (about a second).
const SOCKET_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the node's UDP socket, with a receive buffer sized for floods
/// (best effort: the default is kept if the kernel refuses).
pub(crate) fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_RECV_BUFFER) {
        tracing::debug!(error = %e, "could not enlarge the UDP receive buffer");
    }
    Ok(socket)
}

/// Reads a body of `len` bytes, growing the buffer as bytes arrive (never
/// beyond `len`); `None` if the stream ends or fails first.
pub(crate) async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(len.min(FIRST_BODY_CHUNK));
    while body.len() < len {
        let chunk = recv.read_chunk(len - body.len(), true).await.ok()??;
        let need = body.len() + chunk.bytes.len();
        if need > body.capacity() {
            let target = need.max(body.capacity().saturating_mul(2)).min(len);
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk.bytes);
    }
    Some(body)
}

/// Bytes of request bodies reserved now (for tests).
#[cfg(test)]
fn reserved(a: &Admission) -> usize {
    a.bounds.body_budget_total - a.total_budget.available_permits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds::from_limits(&LimitsConfig::default())
    }

    #[test]
    fn unvalidated_attempts_are_retried_once_they_pile_up() {
        let b = bounds();
        let mut book = HandshakeBook::default();
        let ip: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..b.retry_above_handshakes {
            assert_eq!(book.decide(&b, ip, false, true), Decision::Accept);
            book.enter(ip, false);
        }
        assert_eq!(book.decide(&b, ip, false, true), Decision::Retry);
        // Spoofable attempts are not counted against their address.
        assert!(book.by_address.is_empty());
        // A validated attempt from the same address is still accepted…
        for _ in 0..b.max_handshakes_per_address {
            assert_eq!(book.decide(&b, ip, true, false), Decision::Accept);
            book.enter(ip, true);
        }
        // …up to the per-address limit; another address is not affected.
        assert_eq!(
            book.decide(&b, ip, true, false),
            Decision::Ignore("handshake-per-address")
        );
        let other: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(book.decide(&b, other, true, false), Decision::Accept);
        book.leave(ip, true);
        assert_eq!(book.decide(&b, ip, true, false), Decision::Accept);
    }

    #[test]
    fn the_total_bounds_every_source() {
        let b = Bounds {
            max_handshakes: 3,
            ..bounds()
        };
        let mut book = HandshakeBook::default();
        for i in 0..3u8 {
            book.enter([127, 0, 0, i + 2].into(), true);
        }
        let ip: IpAddr = [127, 0, 0, 9].into();
        assert_eq!(
            book.decide(&b, ip, true, false),
            Decision::Refuse("handshake-limit")
        );
        assert_eq!(book.decide(&b, ip, false, true), Decision::Retry);
        assert_eq!(
            book.decide(&b, ip, false, false),
            Decision::Refuse("handshake-limit")
        );
        // Retry always when the threshold is 0.
        let b0 = Bounds {
            retry_above_handshakes: 0,
            ..bounds()
        };
        assert_eq!(
            HandshakeBook::default().decide(&b0, ip, false, true),
            Decision::Retry
        );
    }

    #[test]
    fn body_budget_is_per_agency_and_total() -> Result<(), Box<dyn std::error::Error>> {
        let limits = LimitsConfig {
            body_budget_per_agency: 100,
            body_budget_total: 150,
            ..LimitsConfig::default()
        };
        let a = Admission::new(&limits, Arc::default());
        let (x, y) = (AgencyId::new("iq.moi.ahtd")?, AgencyId::new("fr.mj.bepi")?);
        let p1 = a.reserve(&x, 60).ok_or("first")?;
        assert!(a.reserve(&x, 60).is_none(), "x's own budget");
        let p2 = a.reserve(&y, 80).ok_or("y has its own budget")?;
        assert!(a.reserve(&y, 20).is_none(), "the total");
        assert_eq!(reserved(&a), 140);
        drop(p1);
        assert_eq!(reserved(&a), 80);
        assert!(a.reserve(&x, 60).is_some());
        drop(p2);
        assert_eq!(reserved(&a), 0);
        Ok(())
    }
}
