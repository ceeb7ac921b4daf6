//! `isnad init` and `isnad node run`: create a node's files, run the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use isnad_envelope::{AgencyId, EncryptionCurve, EncryptionKey, SignatureAlgorithm, SigningKey};
use isnad_log::{Log, SignerKey};
use isnad_node::config::Config;
use isnad_node::federation::Federation;
use isnad_node::node_dir::{create_private_dir, NodeLock};
use isnad_node::store::Store;
use isnad_node::{Identity, NodeHandle};
use isnad_trust::tls::{configs, TlsIdentity};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::keys::{read_encryption_key, read_signing_key, write_private, write_public};

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs())
}

/// Arguments of `isnad init`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad init --dir /var/lib/isnad --agency iq.moi.ahtd --country IQ --listen 0.0.0.0:7401\n\n\
Creates DIR/config.toml (documented defaults), DIR/keys/ (signing, encryption,\n\
TLS, audit-log and witness keys; private files mode 0600; the API token) and empty\n\
DIR/state and DIR/log, then prints the next steps."
)]
pub(crate) struct InitArgs {
    /// The node's directory (created).
    #[arg(long)]
    dir: PathBuf,
    /// The agency id, e.g. iq.moi.ahtd.
    #[arg(long)]
    agency: AgencyId,
    /// The country code; must match the agency id's first label.
    #[arg(long)]
    country: String,
    /// UDP address for QUIC.
    #[arg(long)]
    listen: SocketAddr,
    /// Loopback address of the local API.
    #[arg(long, default_value = "127.0.0.1:7480")]
    api: SocketAddr,
    /// Loopback address of the metrics endpoint.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

/// `isnad node …`.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run the node until SIGINT/SIGTERM.
    #[command(
        after_help = "Example:\n  isnad node run --config /var/lib/isnad/config.toml\n\n\
Logs go to stderr (RUST_LOG=info|debug; ISNAD_LOG_FORMAT=json for JSON lines)."
    )]
    Run {
        /// The config file.
        #[arg(long, env = "ISNAD_CONFIG", default_value = "config.toml")]
        config: PathBuf,
    },
}

pub(crate) fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    if a.agency.country() != a.country.to_ascii_lowercase() {
        anyhow::bail!(
            "agency {} does not belong to country {}",
            a.agency,
            a.country
        );
    }
    // Two `init`s racing on one directory: the second waits for nothing and
    // is refused here, before it looks at or writes anything.
    let _lock = NodeLock::acquire(&a.dir.join("state"))
        .with_context(|| format!("cannot take ownership of {}", a.dir.display()))?;
    if a.dir.join("config.toml").exists() {
        anyhow::bail!(
            "{} already holds a node (config.toml exists); choose another --dir",
            a.dir.display()
        );
    }
    create_node(&a.dir, &a.agency, a.listen, a.api, a.metrics)?;
    let d = a.dir.display();
    println!("node {} created in {d}", a.agency);
    println!("next steps:");
    println!("  1. give your country's root operator this node's entry:");
    println!(
        "       isnad directory add-node --draft {}.json --node {d} --role ROLE --endpoint HOST:{}",
        a.country.to_lowercase(),
        a.listen.port()
    );
    println!("  2. set up trust with your country's root and import the signed directory:");
    println!(
        "       isnad trust init --trust-dir {d}/trust --country {} --root ROOT.pub.cose",
        a.country.to_uppercase()
    );
    println!("       isnad trust import --trust-dir {d}/trust DIRECTORY.cose");
    println!("  3. run it:  isnad node run --config {d}/config.toml");
    Ok(ExitCode::SUCCESS)
}

/// Creates a node's files in `dir`.
pub(crate) fn create_node(
    dir: &Path,
    agency: &AgencyId,
    listen: SocketAddr,
    api: SocketAddr,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let keys = dir.join("keys");
    for sub in ["keys", "state", "log", "trust"] {
        let d = dir.join(sub);
        create_private_dir(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let rng = SystemRandom::new();
    let sign = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let enc = EncryptionKey::generate(EncryptionCurve::P256, &rng)?;
    write_private(&keys.join("sign.key.pem"), sign.to_pkcs8_pem().as_bytes())?;
    write_public(
        &keys.join("sign.pub.cose"),
        &sign.verifying_key().to_cose_key(),
    )?;
    write_private(&keys.join("enc.key.pem"), enc.to_pkcs8_pem().as_bytes())?;
    write_public(&keys.join("enc.pub.cose"), &enc.public_key().to_cose_key())?;
    let tls = TlsIdentity::generate(agency)?;
    write_private(&keys.join("tls.key.der"), &tls.key_der)?;
    write_public(&keys.join("tls.cert.der"), &tls.cert_der)?;
    let log_key = SignerKey::generate(&isnad_log::origin_for(agency), &rng)?;
    write_private(&keys.join("log.key"), log_key.to_secret_string().as_bytes())?;
    write_public(
        &keys.join("log.pub"),
        format!("{}\n", log_key.verifier()).as_bytes(),
    )?;
    let witness_key =
        SignerKey::generate_cosigner(&isnad_log::witness::witness_name_for(agency), &rng)?;
    write_private(
        &keys.join("witness.key"),
        witness_key.to_secret_string().as_bytes(),
    )?;
    write_public(
        &keys.join("witness.pub"),
        format!("{}\n", witness_key.verifier()).as_bytes(),
    )?;
    let mut token = [0u8; 32];
    rng.fill(&mut token)
        .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    write_private(&keys.join("api.token"), hex::encode(token).as_bytes())?;
    let mut cfg = Config::parse(&format!("agency = \"{agency}\"\nlisten = \"{listen}\"\n"))
        .map_err(|e| anyhow::anyhow!(e))?;
    cfg.api.listen = api;
    cfg.metrics_listen = metrics;
    let text = format!(
        "# Isnad node configuration. Every key is documented in deploy/README.md;\n\
         # the values below are the defaults unless set by `isnad init`.\n{}",
        cfg.to_toml().map_err(|e| anyhow::anyhow!(e))?
    );
    write_public(&dir.join("config.toml"), text.as_bytes())?;
    Ok(())
}

/// A node started in this process.
pub(crate) struct Running {
    /// Held while the node runs: one owner per node.
    pub(crate) _lock: NodeLock,
    pub(crate) node: NodeHandle,
    pub(crate) federation: Arc<Federation>,
    pub(crate) api: SocketAddr,
    pub(crate) config: Config,
}

/// Loads everything a node needs from its config and starts it, with its
/// API and metrics endpoints. Startup errors say which file is wrong.
pub(crate) async fn start(config_path: &Path) -> anyhow::Result<Running> {
    let config = Config::load(config_path)?;
    // Ownership before anything else is read, created or repaired.
    let lock = NodeLock::acquire(&config.paths.state).with_context(|| {
        format!(
            "cannot start the node of {}: its state directory is owned elsewhere",
            config_path.display()
        )
    })?;
    let keys = &config.paths.keys;
    let signing_key = read_signing_key(&keys.join("sign.key.pem"))?;
    let enc = read_encryption_key(&keys.join("enc.key.pem"))?;
    let read = |n: &str| {
        std::fs::read(keys.join(n))
            .with_context(|| format!("missing key file {}", keys.join(n).display()))
    };
    let tls = TlsIdentity {
        cert_der: read("tls.cert.der")?,
        key_der: read("tls.key.der")?,
    };
    let log_key_text = String::from_utf8(read("log.key")?).context("log.key is not text")?;
    let log_key =
        SignerKey::parse(log_key_text.trim()).context("log.key is not an audit-log signer key")?;
    // Optional: a node created before witnessing existed has no witness key.
    let witness_key = match std::fs::read_to_string(keys.join("witness.key")) {
        Ok(t) => {
            Some(SignerKey::parse(t.trim()).context("witness.key is not a witness cosigning key")?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("cannot read witness.key"),
    };
    let federation = Arc::new(Federation::load(&config.paths.trust).with_context(|| {
        format!(
            "cannot load the trust store {} (isnad trust init / import)",
            config.paths.trust.display()
        )
    })?);
    let (tls_server, tls_client) = configs(&tls, federation.peers())?;
    let (log, report) = Log::open(&config.paths.log)
        .with_context(|| format!("cannot open the audit log {}", config.paths.log.display()))?;
    if report.truncated_bytes > 0 {
        tracing::warn!(
            bytes = report.truncated_bytes,
            "audit log: cut the bytes after the last complete record (preallocated space left by an unclean stop, or an incomplete final record never acknowledged)"
        );
    }
    let store = Store::open(&config.paths.state.join("state.redb"))?;
    let identity = Identity {
        signing_key,
        encryption_keys: vec![enc],
        tls_server,
        tls_client,
        witness_key,
    };
    let dir: Arc<dyn isnad_node::Directory> = federation.clone();
    let node =
        NodeHandle::start(config.clone(), identity, dir, Arc::new(log), log_key, store).await?;
    let token = std::fs::read_to_string(&config.api.token_file).with_context(|| {
        format!(
            "cannot read the API token {}",
            config.api.token_file.display()
        )
    })?;
    let api = isnad_node::api::serve(node.clone(), config.api.listen, token.trim().to_owned())
        .await
        .context("cannot bind the API address")?;
    if let Some(m) = config.metrics_listen {
        isnad_node::api::serve_metrics(node.clone(), m)
            .await
            .context("cannot bind the metrics address")?;
    }
    tokio::spawn(watch_trust(
        node.clone(),
        Arc::clone(&federation),
        config.paths.trust.clone(),
    ));
    Ok(Running {
        _lock: lock,
        node,
        federation,
        api,
        config,
    })
}

/// Re-reads the trust directory every few seconds; directories an operator
/// imported with `isnad trust import` are accepted and logged.
async fn watch_trust(node: NodeHandle, federation: Arc<Federation>, trust: PathBuf) {
    let mut seen: std::collections::BTreeMap<PathBuf, SystemTime> =
        std::collections::BTreeMap::new();
    loop {
        if let Ok(rd) = std::fs::read_dir(trust.join("directories")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "cose") {
                    continue;
                }
                let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
                    continue;
                };
                if seen.get(&p) == Some(&mtime) {
                    continue;
                }
                seen.insert(p.clone(), mtime);
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                match federation.import(&bytes) {
                    Ok(entries) if !entries.is_empty() => {
                        tracing::info!(file = %p.display(), "directory change accepted");
                        if let Err(e) = node.record(entries).await {
                            tracing::error!(error = %e, "could not log a directory change");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(file = %p.display(), error = %e, "directory refused"),
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

pub(crate) fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::Run { config } = cmd;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = start(&config).await?;
        let quic = running
            .node
            .local_addr()
            .map_or_else(|| "not bound".to_owned(), |a| a.to_string());
        tracing::info!(agency = %running.node.agency(), %quic, api = %running.api, "node running");
        if !json_logs() {
            eprintln!(
                "isnad node {} running: QUIC {quic}, API http://{}",
                running.node.agency(),
                running.api
            );
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })
    .map(|()| ExitCode::SUCCESS)
    .or_else(|e| {
        if !json_logs() {
            return Err(e);
        }
        // With JSON logs, stderr carries JSON only: the fatal error too.
        tracing::error!(error = %crate::out::causes(&e), "node stopped");
        Ok(ExitCode::from(crate::exit::USAGE))
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs go to stderr: JSON lines with `ISNAD_LOG_FORMAT=json` (nothing
/// else is written to stderr then), else text, coloured only when stderr is
/// a terminal and `NO_COLOR` is unset or empty (https://no-color.org).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_logs() {
        builder.json().with_ansi(false).try_init()
    } else {
        builder.with_ansi(colour()).try_init()
    };
}

/// `ISNAD_LOG_FORMAT=json`.
fn json_logs() -> bool {
    std::env::var("ISNAD_LOG_FORMAT").as_deref() == Ok("json")
}

/// Colour only on a terminal, and never with `NO_COLOR` set (non-empty).
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
