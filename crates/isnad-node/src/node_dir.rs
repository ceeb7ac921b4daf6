//! A node's directory: creating it, loading it, and assembling the running
//! node from it — keys, TLS configurations, the audit log, the state
//! database, the local API, the metrics endpoint and the trust-directory
//! watcher. `isnad init` and `isnad node run` are thin shells around
//! [`NodeDir::init`], [`NodeDir::open`] and [`NodeDir::start`]; tests and
//! embedders that bring their own directory and storage call
//! [`NodeHandle::start`] directly.
//!
//! ```text
//! NodeDir::init(dir, config)      keys/ state/ log/ trust/ config.toml (new)
//! NodeDir::open(config.toml)      lock → keys → trust → TLS → log → token
//!                                 → startup warnings → state database
//! NodeDir::start()                NodeHandle::start → API → metrics
//!                                 → log tiles (log_http) → directory
//!                                 watcher (a node task)
//! RunningNode::shutdown()         NodeHandle::shutdown: waits for all of them
//! ```
//!
//! One owner per node: every command that opens a node's state takes the
//! node lock before it reads, creates or repairs anything.
//! A node's files (keys, state database, audit log, trust store) may sit in
//! separate directories (`[paths]` in the config); the lock lives in the
//! state directory, as `node.lock` (an `flock` held on an open descriptor,
//! released by the kernel when the owner exits or dies; see
//! [`isnad_log::lock`]). `isnad node run`, `isnad init` and `isnad keygen`
//! into a node's key directory take it; the audit log additionally locks
//! its own directory, so an offline `isnad audit export` of a running
//! node's log is refused as well. Order: node lock, then log lock.
//!
//! Directories a node creates are private (0700), like its key files.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use isnad_log::lock::{DirLock, LockError};
use isnad_log::{Log, SignerKey};
use isnad_trust::tls::configs_with_key;

use crate::config::Config;
use crate::federation::Federation;
use crate::store::Store;
use crate::{Directory, Identity, NodeHandle};

mod error;
pub(crate) mod files;
mod keys;
mod warnings;
mod watch;

pub use error::NodeDirError;
pub use files::{read_encryption_key, read_signing_key, write_private, write_public};

/// A node's directory, loaded and owned: its lock is held, its keys, trust
/// store, audit log and state database are open, nothing runs yet.
pub struct NodeDir {
    config_path: PathBuf,
    config: Config,
    lock: NodeLock,
    identity: Identity,
    federation: Arc<Federation>,
    log: Log,
    log_key: SignerKey,
    store: Store,
    token: String,
    warnings: Vec<String>,
    key_health: Option<Arc<crate::token_keys::KeyHealth>>,
}

impl NodeDir {
    /// Creates a new node in `dir` for `config` (already checked): the
    /// directory itself, then under the node lock `keys/` (signing,
    /// encryption, TLS, audit-log and witness keys, private files mode
    /// 0600; the API token), empty `state/`, `log/` and `trust/`, and
    /// `config.toml`. Refused if `dir` already holds a `config.toml`.
    pub fn init(dir: &Path, config: &Config) -> Result<(), NodeDirError> {
        files::init(dir, config)
    }

    /// Writes a node's keys, directories and `config.toml` into `dir`
    /// without the checks of [`NodeDir::init`] (for a federation that
    /// builds fresh directories, such as `isnad demo`).
    pub fn create(dir: &Path, config: &Config) -> Result<(), NodeDirError> {
        files::write_node(dir, config)
    }

    /// Loads the node of the configuration file `config_path`: takes the
    /// node lock before anything else is read, created or repaired, then
    /// reads the keys, loads the trust store, builds the TLS
    /// configurations, opens the state database (refusing one written by a
    /// newer release before the log is touched), opens the audit log
    /// (logging how much of an unclean tail it cut), reads the API token
    /// and logs every [startup warning](NodeDir::warnings) at warn level.
    /// Each error names the file that is wrong.
    pub fn open(config_path: &Path) -> Result<Self, NodeDirError> {
        let config = Config::load(config_path)?;
        let lock =
            NodeLock::acquire(&config.paths.state).map_err(|source| NodeDirError::Owned {
                config: config_path.to_owned(),
                source,
            })?;
        let keys = &config.paths.keys;
        let node_keys = keys::NodeKeys::load(&config)?;
        let key_health = node_keys.health.clone();
        let (signing_key, enc, log_key, witness_key) = (
            node_keys.signing,
            node_keys.encryption,
            node_keys.log,
            node_keys.witness,
        );
        let federation = Arc::new(Federation::load(&config.paths.trust).map_err(|source| {
            NodeDirError::Trust {
                path: config.paths.trust.clone(),
                source,
            }
        })?);
        let (tls_server, tls_client) =
            configs_with_key(&node_keys.tls_cert, node_keys.tls_key, federation.peers()).map_err(
                |source| NodeDirError::Tls {
                    key: keys.join("tls.key.der"),
                    cert: keys.join("tls.cert.der"),
                    source,
                },
            )?;
        // The state database before the log: a database written by a newer
        // release is refused untouched, and so must the log be (opening the
        // log may cut an unclean tail or migrate its format).
        let state_file = config.paths.state.join("state.redb");
        let store = Store::open(&state_file).map_err(|source| NodeDirError::State {
            path: state_file,
            source,
        })?;
        let (log, report) = Log::open(&config.paths.log).map_err(|source| NodeDirError::Log {
            path: config.paths.log.clone(),
            source,
        })?;
        if report.truncated_bytes > 0 {
            tracing::warn!(
                bytes = report.truncated_bytes,
                "audit log: cut the bytes after the last complete record (preallocated space left by an unclean stop, or an incomplete final record never acknowledged)"
            );
        }
        let token = std::fs::read_to_string(&config.api.token_file).map_err(|source| {
            NodeDirError::Token {
                path: config.api.token_file.clone(),
                source,
            }
        })?;
        let warnings = warnings::startup_warnings(&warnings::StartupFacts {
            config: &config,
            federation: &federation,
            signing_key: &signing_key,
            tls_cert: &node_keys.tls_cert,
            log_key: &log_key,
            witness_key: witness_key.as_ref(),
            token: &token,
        });
        for w in &warnings {
            tracing::warn!("WARNING: {w}");
        }
        let identity = Identity {
            signing_key,
            encryption_keys: vec![enc],
            tls_server,
            tls_client,
            witness_key,
        };
        Ok(Self {
            config_path: config_path.to_owned(),
            config,
            lock,
            identity,
            federation,
            log,
            log_key,
            store,
            token,
            warnings,
            key_health,
        })
    }

    /// Mistakes that let this node start but not work (or not safely),
    /// each with what to do about it; [`NodeDir::open`] logged them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts the node ([`NodeHandle::start`]), its local API, its metrics
    /// endpoint if configured, and the directory watcher, which accepts
    /// and logs the signed directories an operator imports into the trust
    /// store (`isnad trust import`). All of them are tasks of the node:
    /// [`RunningNode::shutdown`] waits for each.
    pub async fn start(self) -> Result<RunningNode, NodeDirError> {
        let (config, federation) = (self.config, self.federation);
        let dir: Arc<dyn Directory> = federation.clone();
        let log = Arc::new(self.log);
        let node = NodeHandle::start(
            config.clone(),
            self.identity,
            dir,
            log,
            self.log_key,
            self.store,
        )
        .await
        .map_err(|source| NodeDirError::Start {
            config: self.config_path,
            listen: config.listen,
            source: Box::new(source),
        })?;
        if let Some(h) = &self.key_health {
            node.set_key_probe(h.key_probe());
        }
        let token = self.token.trim().to_owned();
        let api = crate::api::serve(node.clone(), config.api.listen, token)
            .await
            .map_err(|source| NodeDirError::BindApi {
                addr: config.api.listen,
                source,
            })?;
        if let Some(addr) = config.metrics_listen {
            crate::api::serve_metrics(node.clone(), addr)
                .await
                .map_err(|source| NodeDirError::BindMetrics { addr, source })?;
        }
        if let Some(addr) = config.log_http.listen {
            crate::log_http::serve(node.clone(), addr)
                .await
                .map_err(|source| NodeDirError::BindLogHttp { addr, source })?;
        }
        watch::spawn(&node, Arc::clone(&federation), config.paths.trust.clone());
        Ok(RunningNode {
            _lock: self.lock,
            node,
            federation,
            api,
            config,
        })
    }
}

impl std::fmt::Debug for NodeDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDir")
            .field("config_path", &self.config_path)
            .field("agency", &self.config.agency)
            .finish_non_exhaustive()
    }
}

/// A node started from its directory, with its API, metrics endpoint and
/// directory watcher. Holds the node lock until dropped.
#[derive(Debug)]
pub struct RunningNode {
    _lock: NodeLock,
    /// The node.
    pub node: NodeHandle,
    /// Its trust store, which the directory watcher updates.
    pub federation: Arc<Federation>,
    /// The bound address of the local API.
    pub api: SocketAddr,
    /// The configuration it runs with.
    pub config: Config,
}

impl RunningNode {
    /// Stops the node and waits for every task of it, the API, metrics and
    /// directory watcher included ([`NodeHandle::shutdown`]).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}

/// The node lock file inside the state directory.
pub const NODE_LOCK_FILE: &str = "node.lock";

/// Exclusive ownership of a node's state, held while it lives.
#[derive(Debug)]
pub struct NodeLock {
    _lock: DirLock,
}

impl NodeLock {
    /// Creates the state directory if needed (mode 0700) and takes the
    /// node lock in it. Refused with [`LockError::Held`], naming the
    /// owner's pid, while another process (or another `NodeLock` in this
    /// one) holds it.
    pub fn acquire(state_dir: &Path) -> Result<Self, LockError> {
        create_private_dir(state_dir).map_err(|source| LockError::Io {
            op: "create the directory of",
            path: state_dir.join(NODE_LOCK_FILE),
            source,
        })?;
        Ok(Self {
            _lock: DirLock::acquire(state_dir, NODE_LOCK_FILE)?,
        })
    }
}

/// Creates `dir` and its missing parents with mode 0700 (an existing
/// directory keeps its mode).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;

    #[test]
    fn one_lock_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        let first = NodeLock::acquire(&state).unwrap();
        assert!(matches!(
            NodeLock::acquire(&state),
            Err(LockError::Held { pid: Some(p), .. }) if p == std::process::id()
        ));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(first);
        NodeLock::acquire(&state).unwrap();
    }
}
