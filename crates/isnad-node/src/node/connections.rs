//! The QUIC endpoint and the connections to peers: binding, the connection
//! cache, and closing connections whose peer is no longer listed.

use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::AgencyId;
use tokio::sync::watch;

use crate::admission::{self, REFUSED};
use crate::config::Config;
use crate::metrics::Metrics;

use super::inner::Inner;
use super::types::{Directory, Identity, NodeError, Peer};

/// How long a QUIC handshake to a peer may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the TLS pins are re-evaluated ([`Directory::refresh_peers`])
/// and every open connection's peer is checked against them: a peer
/// dropped from the directory, its TLS key replaced, or its directory's
/// window ended, is disconnected within two of these (spec/transport.md §1).
pub const PIN_RECHECK: Duration = Duration::from_secs(1);

pub(super) fn bind_endpoint(
    config: &Config,
    identity: &Identity,
) -> Result<quinn::Endpoint, NodeError> {
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

pub(super) fn peer_agency(inner: &Inner, conn: &quinn::Connection) -> Option<AgencyId> {
    listed_agency(inner.directory.as_ref(), conn)
}

/// The agency the directory lists for the peer's certificate on `conn`.
pub(super) fn listed_agency(
    directory: &dyn Directory,
    conn: &quinn::Connection,
) -> Option<AgencyId> {
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
pub(super) async fn close_when_unlisted(
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
pub(super) async fn pin_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        inner.directory.refresh_peers();
        tokio::select! {
            _ = tokio::time::sleep(PIN_RECHECK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Inner {
    /// The cached connection to `agency`, or a new one. Deliveries to one
    /// peer share one connection and wait for one handshake; other peers are
    /// not held up.
    pub(crate) async fn connection(
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
    pub(super) fn watch_listing(&self, conn: &quinn::Connection, peer: &AgencyId) {
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
    pub(super) async fn forget_connection(&self, agency: &AgencyId, failed: &quinn::Connection) {
        failed.close(quinn::VarInt::from_u32(0), b"reconnecting");
        let slot = self.connections.lock().await.get(agency).cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot.as_ref().map(quinn::Connection::stable_id) == Some(failed.stable_id()) {
                *slot = None;
            }
        }
    }
}
