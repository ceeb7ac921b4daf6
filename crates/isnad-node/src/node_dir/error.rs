//! What can go wrong creating, loading or starting a node's directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use isnad_log::lock::LockError;

/// An error of [`NodeDir`](super::NodeDir): each names the file or address
/// at fault and says what was being done; its source says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeDirError {
    // The operator's files: missing, unreadable or not what they should be.
    /// The configuration file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A key file cannot be read.
    #[error("cannot read {what} {path}")]
    ReadKey {
        /// Which key (`signing key`, `encryption key`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file does not hold a usable key.
    #[error("{path} is not a usable {what}")]
    BadKey {
        /// Which key.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: isnad_envelope::KeyError,
    },
    /// A key file the node needs is missing or unreadable.
    #[error("missing key file {path}")]
    MissingKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audit-log signer key or the witness cosigning key is malformed.
    #[error("{path} is not {what}")]
    BadSignerKey {
        /// `an audit-log signer key` or `a witness cosigning key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A key configured in `[keys]` cannot be used from its PKCS#11 token
    /// (wrong PIN, absent token, missing key ...: the source names the
    /// token and what to do; a wrong PIN is not retried).
    #[error("{role} key in PKCS#11 token: {source}")]
    TokenKey {
        /// The key role (`signing`, `encryption`, `tls`, `log`, `witness`).
        role: &'static str,
        /// Why.
        source: crate::token_keys::KeyLoadError,
    },
    /// An optional file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The trust store cannot be loaded.
    #[error("cannot load the trust store {} (isnad trust init / import)", path.display())]
    Trust {
        /// The trust directory.
        path: PathBuf,
        /// Why.
        source: isnad_trust::TrustError,
    },
    /// The TLS key and certificate do not make a TLS configuration.
    #[error(
        "{} and {} are not a usable TLS key (PKCS#8 DER) and certificate",
        key.display(),
        cert.display()
    )]
    Tls {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// Why.
        source: isnad_trust::TrustError,
    },
    /// The API token file cannot be read.
    #[error("cannot read the API token {}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory given to `init` already holds a node.
    #[error("{} already holds a node (config.toml exists); choose another --dir", dir.display())]
    Exists {
        /// The directory.
        dir: PathBuf,
    },

    // Ownership: another process owns the node.
    /// The node's state directory is locked by another owner.
    #[error("cannot start the node of {}: its state directory is owned elsewhere", config.display())]
    Owned {
        /// The configuration file.
        config: PathBuf,
        /// The lock's refusal (it names the owner).
        source: LockError,
    },
    /// `init` cannot take the node lock of the directory it creates.
    #[error("cannot take ownership of {}", dir.display())]
    Claim {
        /// The node's directory.
        dir: PathBuf,
        /// The lock's refusal.
        source: LockError,
    },

    // The machine: storage and addresses.
    /// The node's directory cannot be created (by this user).
    #[error("cannot create {}", dir.display())]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory cannot be created.
    #[error("cannot create {}", path.display())]
    Create {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file cannot be written and synced.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration cannot be written as TOML.
    #[error("{0}")]
    ConfigText(String),
    /// A new key cannot be generated (the random number generator or the
    /// crypto library failed).
    #[error(transparent)]
    Keygen(Box<dyn std::error::Error + Send + Sync>),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {}", path.display())]
    Log {
        /// The log directory.
        path: PathBuf,
        /// Why.
        source: isnad_log::LogError,
    },
    /// The state database cannot be opened.
    #[error("cannot open the node's state {}", path.display())]
    State {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: crate::store::StoreError,
    },
    /// The node cannot start (its QUIC endpoint, usually).
    #[error("cannot start the node of {} (QUIC on {listen})", config.display())]
    Start {
        /// The configuration file.
        config: PathBuf,
        /// The QUIC address.
        listen: SocketAddr,
        /// Why.
        source: Box<crate::NodeError>,
    },
    /// The local API's address cannot be bound.
    #[error("cannot bind the API address {addr}")]
    BindApi {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics endpoint's address cannot be bound.
    #[error("cannot bind the metrics address {addr}")]
    BindMetrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The audit log's read-only HTTP address (`[log_http] listen`)
    /// cannot be bound.
    #[error("cannot bind the audit log's HTTP address {addr} (log_http.listen)")]
    BindLogHttp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl NodeDirError {
    /// Whether this user may not create or lock the node's directory
    /// (`init` then says how to create it for the service user).
    pub fn permission_denied(&self) -> bool {
        match self {
            Self::NotWritable { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            Self::Claim {
                source: LockError::Io { source, .. },
                ..
            } => source.kind() == std::io::ErrorKind::PermissionDenied,
            _ => false,
        }
    }
}
