//! The node's witnessing state in memory (the durable part is in the
//! store) and the witnessing report of the API and `isnad witness status`.
//! The witness role itself is `node::witness`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use isnad_envelope::AgencyId;
use isnad_log::SignerKey;
use serde::Serialize;

/// The node's witnessing state (in memory; the durable part is in redb).
pub(crate) struct State {
    pub(crate) key: Option<Arc<SignerKey>>,
    pub(crate) forks_dir: PathBuf,
    pub(crate) latest: Mutex<Latest>,
    pub(crate) submitting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub(crate) struct Latest {
    pub(crate) note: Option<String>,
    pub(crate) size: u64,
    pub(crate) cosignatures: BTreeMap<AgencyId, String>,
}

/// Witnessing as the API and `isnad witness status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessStatus {
    /// Whether this node answers add-checkpoint requests.
    pub serving: bool,
    /// This node's witness verifier key, if it has one.
    pub witness_key: Option<String>,
    /// Partners' logs this node witnesses: the latest size and root it cosigned.
    pub witnessed: Vec<WitnessedLog>,
    /// Fork evidence files this node recorded (paths).
    pub forks: Vec<String>,
    /// This node's latest checkpoint and who cosigned it.
    pub own: OwnCheckpoint,
}

/// One partner log this node witnesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessedLog {
    /// The log origin (`<agency>/audit`).
    pub origin: String,
    /// Size of the latest checkpoint cosigned.
    pub size: u64,
    /// Its root hash (base64).
    pub root: String,
}

/// This node's latest checkpoint and its cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnCheckpoint {
    /// Its size (0 before the first checkpoint).
    pub size: u64,
    /// Witnesses (agencies) whose verified cosignature it carries.
    pub cosigned_by: Vec<String>,
    /// Configured witnesses.
    pub witnesses: Vec<String>,
    /// Cosignatures needed (k of n).
    pub quorum: usize,
    /// Whether `cosigned_by` reaches the quorum (false without witnesses).
    pub witnessed: bool,
}

impl State {
    pub(crate) fn new(key: Option<SignerKey>, state_dir: &Path) -> Self {
        Self {
            key: key.map(Arc::new),
            forks_dir: state_dir.join("forks"),
            latest: Mutex::new(Latest::default()),
            submitting: tokio::sync::Mutex::new(()),
        }
    }

    /// `note` followed by the verified cosignature lines collected for it.
    pub(crate) fn with_cosignatures(&self, note: String) -> String {
        let Ok(l) = self.latest.lock() else {
            return note;
        };
        if l.note.as_deref() != Some(note.as_str()) {
            return note;
        }
        let mut out = note;
        for line in l.cosignatures.values() {
            out.push_str(line);
        }
        out
    }
}
