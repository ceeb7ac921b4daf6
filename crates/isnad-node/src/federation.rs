//! The node's view of the federation: the trust store (roots and verified
//! directories) behind the [`Directory`] trait, the TLS peer set kept in step
//! with it (replaced on import, re-evaluated at the current time by
//! [`Directory::refresh_peers`] so an expired directory's agencies drop
//! out), and directory imports written to the trust directory and the
//! audit log.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use isnad_envelope::{AgencyId, KeyId, Kind, SenderKey, SenderKeys};
use isnad_log::Entry;
use isnad_trust::tls::PeerSet;
use isnad_trust::{Accepted, Change, Decision, TrustError, TrustStore};

use crate::exchange;
use crate::node::now;
use crate::{Directory, Peer};

/// The trust store as a [`Directory`] for the node.
#[derive(Debug)]
pub struct Federation {
    store: RwLock<TrustStore>,
    peers: PeerSet,
    path: PathBuf,
}

impl Federation {
    /// Loads the trust directory at `path` (see `isnad trust`).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let store = TrustStore::load(path)?;
        let peers = PeerSet::default();
        peers.replace(store.tls_identities(now().0));
        Ok(Self {
            store: RwLock::new(store),
            peers,
            path: path.to_owned(),
        })
    }

    /// Wraps an in-memory store (tests, the demo); imports are saved to `path`.
    pub fn from_store(store: TrustStore, path: &Path) -> Self {
        let peers = PeerSet::default();
        peers.replace(store.tls_identities(now().0));
        Self {
            store: RwLock::new(store),
            peers,
            path: path.to_owned(),
        }
    }

    /// The TLS peer set the node's verifiers use.
    pub fn peers(&self) -> &PeerSet {
        &self.peers
    }

    /// A copy of the trust store.
    pub fn snapshot(&self) -> Option<TrustStore> {
        self.store.read().ok().map(|s| s.clone())
    }

    /// Accepts a signed directory, saves the store, refreshes the TLS peers,
    /// and returns the audit entries describing what changed (the caller
    /// appends them).
    pub fn import(&self, signed: &[u8]) -> Result<Vec<Entry>, TrustError> {
        let (secs, ms) = now();
        let mut store = self
            .store
            .write()
            .map_err(|_| TrustError::Io("trust store lock poisoned".into()))?;
        let accepted = store.accept(signed, secs)?;
        store.save(&self.path)?;
        self.peers.replace(store.tls_identities(secs));
        Ok(match accepted {
            Accepted::Unchanged => Vec::new(),
            Accepted::Updated {
                country,
                version,
                changes,
            } => change_entries(&country, version, &changes, ms),
        })
    }
}

/// The audit entries for an accepted directory version.
pub fn change_entries(country: &str, version: u64, changes: &[Change], ms: u64) -> Vec<Entry> {
    let mut out = vec![exchange::directory_changed(
        country,
        version,
        changes.len(),
        ms,
    )];
    for c in changes {
        match c {
            Change::KeyRotated { agency, kid, until } => {
                out.push(exchange::key_rotated(agency, kid, *until, ms));
            }
            Change::KeyRevoked {
                agency,
                kid,
                at,
                reason,
            } => {
                out.push(exchange::key_revoked(agency, kid, *at, reason.clone(), ms));
            }
            _ => {}
        }
    }
    out
}

impl SenderKeys for Federation {
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
        self.store.read().ok()?.sender_key(kid, now().0)
    }
}

impl Directory for Federation {
    fn peer(&self, agency: &AgencyId) -> Option<Peer> {
        let secs = now().0;
        let store = self.store.read().ok()?;
        let entry = store.agency(agency, secs)?;
        Some(Peer {
            endpoints: entry.endpoints.clone(),
            encryption_key: store.encryption_key(agency, secs)?,
        })
    }

    fn allows(&self, sender: &AgencyId, recipient: &AgencyId, kind: Kind) -> Result<(), String> {
        let store = self
            .store
            .read()
            .map_err(|_| "trust store unavailable".to_owned())?;
        match store.evaluate_direct(sender, recipient, kind, now().0) {
            Decision::Allowed { .. } => Ok(()),
            Decision::Denied(why) => Err(why),
        }
    }

    fn route(
        &self,
        sender: &AgencyId,
        recipient: &AgencyId,
        kind: Kind,
    ) -> Result<Vec<AgencyId>, String> {
        self.store
            .read()
            .map_err(|_| "trust store unavailable".to_owned())?
            .route(sender, recipient, kind, now().0)
    }

    fn allows_relayed(&self, route: &[AgencyId], kind: Kind) -> Result<(), String> {
        self.store
            .read()
            .map_err(|_| "trust store unavailable".to_owned())?
            .check_relayed(route, kind, now().0)
    }

    fn agency_of_certificate(&self, cert_der: &[u8]) -> Option<AgencyId> {
        self.peers.agency_of(cert_der)
    }

    fn refresh_peers(&self) {
        if let Ok(store) = self.store.read() {
            self.peers.replace(store.tls_identities(now().0));
        }
    }

    fn log_key(&self, agency: &AgencyId) -> Option<isnad_log::VerifierKey> {
        let store = self.store.read().ok()?;
        let text = store.agency(agency, now().0)?.log_key.as_deref()?;
        isnad_log::VerifierKey::parse(text).ok()
    }

    fn witness_key(&self, agency: &AgencyId) -> Option<isnad_log::VerifierKey> {
        let store = self.store.read().ok()?;
        let text = store.agency(agency, now().0)?.witness_key.as_deref()?;
        isnad_log::VerifierKey::parse(text).ok()
    }
}
