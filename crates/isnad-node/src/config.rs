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
    /// The file names a `format` newer than this release reads (it was
    /// written for a newer release), or 0.
    #[error("config {path} is format {found}; this release reads formats 1 to {supported}: run the release it was written for, or a newer one")]
    Format {
        /// The file.
        path: PathBuf,
        /// The `format` it names.
        found: u32,
        /// The newest format this release reads.
        supported: u32,
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
    /// The configuration's format version ([`crate::formats::CONFIG_FORMAT`]);
    /// absent = 1, the format of release 0.1.0.
    #[serde(default = "config_format_1")]
    pub format: u32,
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
    /// The audit log's read-only HTTP endpoint for auditors and witnesses
    /// (C2SP tlog-tiles); off unless `listen` is set.
    #[serde(default)]
    pub log_http: LogHttpConfig,
    /// Retention of message content (spec/audit-log.md §2.6); absent =
    /// kept for ever.
    #[serde(
        default,
        skip_serializing_if = "crate::retention::RetentionConfig::is_default"
    )]
    pub retention: crate::retention::RetentionConfig,
    /// Attachment staging: quotas, sync interval, lifetime (transport.md §10).
    #[serde(default)]
    pub attachments: crate::attach_store::AttachmentsConfig,
    /// Private keys held in a PKCS#11 token, by role (absent = files).
    #[serde(
        default,
        skip_serializing_if = "crate::token_keys::KeysConfig::is_empty"
    )]
    pub keys: crate::token_keys::KeysConfig,
    /// The PKCS#11 module and PIN source, when `[keys]` names token keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<crate::token_keys::Pkcs11Config>,
}

/// The audit log served read-only over HTTP as the C2SP tlog-tiles read
/// path (`GET /checkpoint`, `/tile/…`; spec/audit-log.md §7.1), for
/// `isnad audit sync`, auditors and witnesses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogHttpConfig {
    /// TCP address to serve on; absent = not served. A loopback address
    /// unless `expose_to_network` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Allow a `listen` address that is not loopback: anyone who reaches
    /// it reads the whole audit log (entries carry no plaintext, but names,
    /// times and digests of every exchange). Put it behind the auditors'
    /// network or a reverse proxy with TLS and access control.
    pub expose_to_network: bool,
}

/// The `format` a config text names, if it is TOML with a non-negative
/// integer `format` (larger than `u32` reads as `u32::MAX`).
fn format_of(text: &str) -> Option<u32> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let n = table.get("format")?.as_integer()?;
    (n >= 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

/// A config without `format` is of release 0.1.0's format.
fn config_format_1() -> u32 {
    1
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
    /// How long after a signer key's `revoked-at` messages signed with it
    /// are still accepted on arrival (those in flight at the revocation),
    /// seconds; later ones are refused whatever creation time they claim
    /// (spec/protocol.md §5.2 step 9c). At most one day.
    pub revocation_grace_secs: u64,
    /// Concurrent bidirectional streams a peer may open on one connection.
    pub max_concurrent_streams: u32,
    /// Idle timeout of a connection, seconds.
    pub idle_timeout_secs: u64,
    /// Time allowed for one request stream from open to response, seconds.
    pub stream_timeout_secs: u64,
    /// Authenticated incoming connections, all partners together; a
    /// connection counts from the end of its TLS handshake
    /// (spec/transport.md §5).
    pub max_connections: usize,
    /// Authenticated incoming connections of one partner agency; a newer
    /// one closes that agency's oldest (a restarted partner is not locked
    /// out by its stale connections).
    pub max_connections_per_agency: usize,
    /// Time allowed for a TLS handshake from the first packet, seconds;
    /// then the attempt is dropped and its slot freed.
    pub handshake_timeout_secs: u64,
    /// Unauthenticated handshakes in progress, all sources together;
    /// further attempts are refused.
    pub max_handshakes: usize,
    /// Handshakes in progress from one validated source IP address.
    pub max_handshakes_per_address: usize,
    /// Handshakes from unvalidated addresses in progress before every
    /// further attempt must first prove its address with a QUIC Retry;
    /// 0: always.
    pub retry_above_handshakes: usize,
    /// QUIC connection-level receive window, bytes: what a peer may have
    /// in flight on one connection before this node has read it.
    pub connection_receive_window: u32,
    /// QUIC stream-level receive window, bytes.
    pub stream_receive_window: u32,
    /// Bytes of request bodies one agency may have in flight (being read
    /// or processed) at once; a request beyond it is answered
    /// `unavailable` before its body is read. At least
    /// `max_envelope_bytes` + 1024.
    pub body_budget_per_agency: usize,
    /// Bytes of request bodies in flight from all agencies together.
    pub body_budget_total: usize,
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
            revocation_grace_secs: 600,
            max_concurrent_streams: 256,
            idle_timeout_secs: 30,
            stream_timeout_secs: 30,
            max_connections: 256,
            max_connections_per_agency: 4,
            handshake_timeout_secs: 5,
            max_handshakes: 128,
            max_handshakes_per_address: 4,
            retry_above_handshakes: 16,
            connection_receive_window: 4 * 1024 * 1024,
            stream_receive_window: 1024 * 1024,
            body_budget_per_agency: 16 * 1024 * 1024,
            body_budget_total: 64 * 1024 * 1024,
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
        // The format first: a newer release's file may have keys or types
        // this release does not parse, and is refused as newer, not invalid.
        if let Some(found) = format_of(&text) {
            if found == 0 || found > crate::formats::CONFIG_FORMAT {
                return Err(ConfigError::Format {
                    path: path.to_owned(),
                    found,
                    supported: crate::formats::CONFIG_FORMAT,
                });
            }
        }
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        if cfg.format == 0 || cfg.format > crate::formats::CONFIG_FORMAT {
            return Err(ConfigError::Format {
                path: path.to_owned(),
                found: cfg.format,
                supported: crate::formats::CONFIG_FORMAT,
            });
        }
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
        crate::token_keys::resolve(&mut cfg.pkcs11, base);
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

    /// Checks the values' ranges and that the local API and metrics
    /// listen on loopback (what [`Config::load`] refuses).
    pub fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_envelope_bytes == 0 || l.max_envelope_bytes > 4 * 1024 * 1024 {
            return Err("limits.max_envelope_bytes must be 1..=4194304".into());
        }
        if l.revocation_grace_secs > 86_400 {
            return Err("limits.revocation_grace_secs must be 0..=86400".into());
        }
        if l.max_concurrent_streams == 0
            || l.idle_timeout_secs == 0
            || l.stream_timeout_secs == 0
            || l.max_connections == 0
            || l.rejection_window_secs == 0
            || l.max_connections_per_agency == 0
            || l.handshake_timeout_secs == 0
            || l.max_handshakes == 0
            || l.max_handshakes_per_address == 0
            || l.stream_receive_window == 0
        {
            return Err("limits must be positive".into());
        }
        if l.connection_receive_window < l.stream_receive_window {
            return Err(
                "limits.connection_receive_window must be at least limits.stream_receive_window"
                    .into(),
            );
        }
        let frame = l.max_envelope_bytes + 1024;
        if l.body_budget_per_agency < frame || l.body_budget_total < l.body_budget_per_agency {
            return Err(format!(
                "limits.body_budget_per_agency must be at least max_envelope_bytes + 1024 \
                 ({frame}) and limits.body_budget_total at least body_budget_per_agency"
            ));
        }
        if l.body_budget_total > u32::MAX as usize {
            return Err("limits.body_budget_total must be below 4 GiB".into());
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
        if let Some(addr) = self.log_http.listen {
            if !addr.ip().is_loopback() && !self.log_http.expose_to_network {
                return Err(format!(
                    "log_http.listen {addr} is not a loopback address: set \
                     log_http.expose_to_network = true to serve the audit log to that network"
                ));
            }
        }
        self.retention.rules()?;
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
        // A body budget that cannot hold one largest request is refused.
        let c = Config::parse(
            "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n[limits]\nbody_budget_per_agency = 4194304",
        );
        assert!(c
            .map(|c| c.check())
            .is_ok_and(|r| r.is_err_and(|e| e.contains("body_budget_per_agency"))));
        let c = Config::parse(
            "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n[witness]\nwitnesses = [\"fr.mj\"]\nquorum = 2",
        );
        assert!(c
            .map(|c| c.check())
            .is_ok_and(|r| r.is_err_and(|e| e.contains("quorum"))));
    }

    #[test]
    fn format_absent_is_1_written_explicitly_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.toml");
        let old = "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n";
        std::fs::write(&path, old).unwrap_or_else(|e| panic!("{e}"));
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.format, 1);
        let written = c.to_toml().unwrap_or_else(|e| panic!("{e}"));
        assert!(written.starts_with("format = 1\n"), "{written}");
        for bad in [0, crate::formats::CONFIG_FORMAT + 1] {
            std::fs::write(&path, format!("format = {bad}\n{old}"))
                .unwrap_or_else(|e| panic!("{e}"));
            match Config::load(&path) {
                Err(ConfigError::Format {
                    found, supported, ..
                }) => {
                    assert_eq!((found, supported), (bad, crate::formats::CONFIG_FORMAT));
                }
                other => panic!("expected a format error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_newer_format_is_refused_as_such_even_with_keys_this_release_does_not_know() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.toml");
        let newer = crate::formats::CONFIG_FORMAT + 1;
        // A newer release's config: a key added, an old key retyped.
        let text = format!(
            "format = {newer}\nagency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n\
             added-later = true\n[limits]\nmax_envelope_bytes = \"1 MiB\"\n"
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        match Config::load(&path) {
            Err(ConfigError::Format { found, .. }) => assert_eq!(found, newer),
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn the_log_is_served_on_a_network_only_when_said_explicitly() -> Result<(), String> {
        let base = "agency = \"iq.moi\"\nlisten = \"127.0.0.1:1\"\n";
        let c = Config::parse(base)?;
        assert_eq!(c.log_http.listen, None, "off by default");
        let c = Config::parse(&format!("{base}[log_http]\nlisten = \"127.0.0.1:7481\"\n"))?;
        c.check()?;
        let c = Config::parse(&format!("{base}[log_http]\nlisten = \"0.0.0.0:7481\"\n"))?;
        assert!(c
            .check()
            .is_err_and(|e| e.contains("log_http.expose_to_network")));
        let c = Config::parse(&format!(
            "{base}[log_http]\nlisten = \"0.0.0.0:7481\"\nexpose_to_network = true\n"
        ))?;
        c.check()?;
        assert_eq!(Config::parse(&c.to_toml()?)?, c);
        Ok(())
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
