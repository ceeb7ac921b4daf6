//! The node's public vocabulary: what it needs from the federation layer
//! ([`Directory`]), its peers and identity, its errors, and the clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isnad_envelope::{
    AgencyId, EncryptionKey, EncryptionPublicKey, ErrorCode, Kind, MessageId, SenderKeys,
    SigningKey,
};
use isnad_log::{SignerKey, VerifierKey};
use isnad_wire::Response;

use crate::store::StoreError;
use crate::workflow::WorkflowError;

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
    /// The node calls it every [`PIN_RECHECK`](super::PIN_RECHECK); the default does nothing.
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

/// Seconds and milliseconds since the Unix epoch.
pub(crate) fn now() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.as_millis() as u64)
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

/// Resolves when the node's shutdown begins (see [`super::NodeHandle::spawn_service`]).
pub(crate) type StopSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
