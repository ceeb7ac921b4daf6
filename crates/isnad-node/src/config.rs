//! The node's TOML configuration, with documented defaults
//! (deploy/README.md lists every key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use isnad_envelope::AgencyId;
use serde::{Deserialize, Serialize};

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("config {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("config {path}: {message}")]
    Range {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The node configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's agency id, e.g. `iq.moi.ahtd`.
    pub agency: AgencyId,
    /// UDP address the QUIC endpoint listens on.
    pub listen: SocketAddr,
    /// Directories, relative to the config file unless absolute.
    #[serde(default)]
    pub paths: Paths,
    /// Local HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Prometheus metrics endpoint (loopback only); absent = disabled.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Transport limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Delivery and retry behaviour.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Audit-log checkpoints.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Witnessing (spec/witness.md): of partners' logs, and of this node's log.
    #[serde(default)]
    pub witness: WitnessConfig,
    /// Disk: the free-space floor below which no new work is accepted.
    #[serde(default)]
    pub disk: DiskConfig,
}

/// Disk space (spec/transport.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Bytes that must stay free under the state and log directories: below
    /// it the node is degraded (`disk-below-floor`) and refuses new
    /// submissions and incoming messages, so that the bookkeeping of what
    /// it accepted keeps room. 0 disables the check. Default 1 GiB.
    pub free_space_floor_bytes: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            free_space_floor_bytes: 1 << 30,
        }
    }
}

/// Witnessing: this node as a witness of its partners' audit logs, and the
/// partners that witness this node's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessConfig {
    /// Answer add-checkpoint requests from federated partners (needs
    /// `witness.key` in the keys directory).
    pub serve: bool,
    /// Agencies whose nodes are asked to cosign each checkpoint of this
    /// node's log; empty = the log is not witnessed.
    pub witnesses: Vec<AgencyId>,
    /// Cosignatures a checkpoint needs to count as witnessed (k of n);
    /// 0 = all of `witnesses`.
    pub quorum: usize,
}

impl Default for WitnessConfig {
    fn default() -> Self {
        Self {
            serve: true,
            witnesses: Vec::new(),
            quorum: 0,
        }
    }
}

impl WitnessConfig {
    /// The number of cosignatures that make a checkpoint witnessed.
    pub fn required(&self) -> usize {
        if self.quorum == 0 {
            self.witnesses.len()
        } else {
            self.quorum
        }
    }
}

/// Where the node keeps its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Keys: `sign.key.pem`, `enc.key.pem`, `tls.key.der`, `tls.cert.der`, `log.key`.
    pub keys: PathBuf,
    /// redb state file directory.
    pub state: PathBuf,
    /// Audit log directory.
    pub log: PathBuf,
    /// Trust store: roots and signed directories.
    pub trust: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            keys: "keys".into(),
            state: "state".into(),
            log: "log".into(),
            trust: "trust".into(),
        }
    }
}

/// The local HTTP API for case-management systems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Loopback address to listen on.
    pub listen: SocketAddr,
    /// File holding the bearer token (created with mode 0600 by `isnad init`).
    pub token_file: PathBuf,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            token_file: "keys/api.token".into(),
        }
    }
}

/// Transport limits, enforced per connection and stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest envelope accepted, bytes (the protocol maximum is 4 MiB).
    pub max_envelope_bytes: usize,
    /// Concurrent bidirectional streams a peer may open on one connection.
    pub max_concurrent_streams: u32,
    /// Idle timeout of a connection, seconds.
    pub idle_timeout_secs: u64,
    /// Time allowed for one request stream from open to response, seconds.
    pub stream_timeout_secs: u64,
    /// Concurrent incoming connections.
    pub max_connections: usize,
    /// Refusals of one peer's requests logged per `rejection_window_secs`;
    /// once reached, that peer's further requests in the window are
    /// answered `unavailable` unprocessed (spec/transport.md §5). 0: no
    /// limit.
    pub max_rejections_per_peer: u32,
    /// The window of `max_rejections_per_peer`, seconds.
    pub rejection_window_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            idle_timeout_secs: 30,
            stream_timeout_secs: 30,
            max_connections: 256,
            max_rejections_per_peer: 1000,
            rejection_window_secs: 60,
        }
    }
}

/// Delivery behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// First retry delay, milliseconds.
    pub initial_backoff_ms: u64,
    /// Largest retry delay, seconds.
    pub max_backoff_secs: u64,
    /// Random jitter applied to each delay, percent (0–50).
    pub jitter_percent: u8,
    /// Lifetime of a message when the client gives none, seconds.
    pub default_ttl_secs: u64,
    /// Deliveries in flight at once (all peers).
    pub max_in_flight: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            max_backoff_secs: 300,
            jitter_percent: 20,
            default_ttl_secs: 7 * 24 * 3600,
            max_in_flight: 256,
        }
    }
}

/// Checkpoint publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Seconds between signed checkpoints (when the log grew).
    pub interval_secs: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { interval_secs: 60 }
    }
}

impl Config {
    /// Reads and checks a config file; relative paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        cfg.check().map_err(|message| ConfigError::Range {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.paths.keys,
            &mut cfg.paths.state,
            &mut cfg.paths.log,
            &mut cfg.paths.trust,
            &mut cfg.api.token_file,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Renders as TOML.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }

    fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_envelope_bytes == 0 || l.max_envelope_bytes > 4 * 1024 * 1024 {
            return Err("limits.max_envelope_bytes must be 1..=4194304".into());
        }
        if l.max_concurrent_streams == 0
            || l.idle_timeout_secs == 0
            || l.stream_timeout_secs == 0
            || l.max_connections == 0
            || l.rejection_window_secs == 0
        {
            return Err("limits must be positive".into());
        }
        if self.delivery.jitter_percent > 50 {
            return Err("delivery.jitter_percent must be 0..=50".into());
        }
        if self.delivery.max_in_flight == 0 || self.delivery.initial_backoff_ms == 0 {
            return Err(
                "delivery.max_in_flight and delivery.initial_backoff_ms must be positive".into(),
            );
        }
        let w = &self.witness;
        if w.quorum > w.witnesses.len() {
            return Err(format!(
                "witness.quorum is {} but only {} witnesses are listed",
                w.quorum,
                w.witnesses.len()
            ));
        }
        if w.witnesses.contains(&self.agency) {
            return Err("witness.witnesses must not list this node's own agency".into());
        }
        if w.witnesses.len() > 64 {
            return Err("witness.witnesses lists more than 64 agencies".into());
        }
        if !self.api.listen.ip().is_loopback() {
            return Err(
                "api.listen must be a loopback address: the local API is not for the network"
                    .into(),
            );
        }
        if self.metrics_listen.is_some_and(|m| !m.ip().is_loopback()) {
            return Err("metrics_listen must be a loopback address".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() -> Result<(), String> {
        let c = Config::parse("agency = \"iq.moi.ahtd\"\nlisten = \"127.0.0.1:7401\"\n")?;
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.delivery.initial_backoff_ms, 500);
        c.check()?;
        let again = Config::parse(&c.to_toml()?)?;
        assert_eq!(again, c);
        Ok(())
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        assert!(Config::parse("agency = \"IQ\"\nlisten = \"127.0.0.1:1\"")
            .is_err_and(|e| e.contains("agency")));
        assert!(
            Config::parse("agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\nfoo = 1")
                .is_err_and(|e| e.contains("foo"))
        );
        let c = Config::parse(
            "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n[api]\nlisten = \"0.0.0.0:80\"",
        );
        assert!(c.map(|c| c.check()).is_ok_and(|r| r.is_err()));
        let c = Config::parse(
            "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n[witness]\nwitnesses = [\"fr.mj\"]\nquorum = 2",
        );
        assert!(c
            .map(|c| c.check())
            .is_ok_and(|r| r.is_err_and(|e| e.contains("quorum"))));
    }

    #[test]
    fn witness_quorum_defaults_to_all() -> Result<(), String> {
        let c = Config::parse(
            "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n[witness]\nwitnesses = [\"fr.mj\", \"jo.psd\"]",
        )?;
        assert!(c.witness.serve);
        assert_eq!(c.witness.required(), 2);
        c.check()?;
        Ok(())
    }
}
