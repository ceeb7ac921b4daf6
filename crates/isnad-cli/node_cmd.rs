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
    // Everything `node run` would refuse is refused before a file exists.
    let cfg = node_config(&a.agency, a.listen, a.api, a.metrics)?;
    // The node's directory is created by the user the node runs as; when it
    // may not, say what to do instead of a bare "permission denied".
    create_private_dir(&a.dir).map_err(|e| not_writable(&a.dir, e))?;
    // Two `init`s racing on one directory: the second waits for nothing and
    // is refused here, before it looks at or writes anything.
    let _lock = NodeLock::acquire(&a.dir.join("state")).map_err(|e| {
        let hint = matches!(&e, isnad_log::lock::LockError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied);
        let e =
            anyhow::Error::new(e).context(format!("cannot take ownership of {}", a.dir.display()));
        if hint {
            e.context(permission_hint(&a.dir))
        } else {
            e
        }
    })?;
    if a.dir.join("config.toml").exists() {
        anyhow::bail!(
            "{} already holds a node (config.toml exists); choose another --dir",
            a.dir.display()
        );
    }
    write_node(&a.dir, &a.agency, &cfg)?;
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

/// `init`'s error when the node's directory cannot be created.
fn not_writable(dir: &Path, e: std::io::Error) -> anyhow::Error {
    let hint = e.kind() == std::io::ErrorKind::PermissionDenied;
    let e = anyhow::Error::new(e).context(format!("cannot create {}", dir.display()));
    if hint {
        e.context(permission_hint(dir))
    } else {
        e
    }
}

/// What to do when the user running `init` may not write the node's
/// directory (the service user cannot create `/var/lib/isnad`).
fn permission_hint(dir: &Path) -> String {
    format!(
        "{0} is not writable by this user: create it first, owned by the user the node runs as \
         (as root: install -d -m 0700 -o isnad -g isnad {0}), then run `isnad init` as that user",
        dir.display()
    )
}

/// The configuration `init` writes, checked as `node run` checks it (a
/// non-loopback API or metrics address is refused here, not at start-up).
fn node_config(
    agency: &AgencyId,
    listen: SocketAddr,
    api: SocketAddr,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<Config> {
    let mut cfg = Config::parse(&format!("agency = \"{agency}\"\nlisten = \"{listen}\"\n"))
        .map_err(|e| anyhow::anyhow!(e))?;
    cfg.api.listen = api;
    cfg.metrics_listen = metrics;
    cfg.check().map_err(|e| anyhow::anyhow!("refused: {e}"))?;
    Ok(cfg)
}

/// Creates a node's files in `dir`.
pub(crate) fn create_node(
    dir: &Path,
    agency: &AgencyId,
    listen: SocketAddr,
    api: SocketAddr,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let cfg = node_config(agency, listen, api, metrics)?;
    write_node(dir, agency, &cfg)
}

/// Writes the keys, directories and `config.toml` of a node.
fn write_node(dir: &Path, agency: &AgencyId, cfg: &Config) -> anyhow::Result<()> {
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
    let log_key_path = keys.join("log.key");
    let not_key = || format!("{} is not an audit-log signer key", log_key_path.display());
    let log_key_text = String::from_utf8(read("log.key")?).with_context(not_key)?;
    let log_key = SignerKey::parse(log_key_text.trim()).with_context(not_key)?;
    // Optional: a node created before witnessing existed has no witness key.
    let witness_path = keys.join("witness.key");
    let witness_key = match std::fs::read_to_string(&witness_path) {
        Ok(t) => Some(SignerKey::parse(t.trim()).with_context(|| {
            format!("{} is not a witness cosigning key", witness_path.display())
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", witness_path.display())),
    };
    let federation = Arc::new(Federation::load(&config.paths.trust).with_context(|| {
        format!(
            "cannot load the trust store {} (isnad trust init / import)",
            config.paths.trust.display()
        )
    })?);
    let (tls_server, tls_client) = configs(&tls, federation.peers()).with_context(|| {
        format!(
            "{} and {} are not a usable TLS key (PKCS#8 DER) and certificate",
            keys.join("tls.key.der").display(),
            keys.join("tls.cert.der").display()
        )
    })?;
    let (log, report) = Log::open(&config.paths.log)
        .with_context(|| format!("cannot open the audit log {}", config.paths.log.display()))?;
    if report.truncated_bytes > 0 {
        tracing::warn!(
            bytes = report.truncated_bytes,
            "audit log: cut the bytes after the last complete record (preallocated space left by an unclean stop, or an incomplete final record never acknowledged)"
        );
    }
    let token = std::fs::read_to_string(&config.api.token_file).with_context(|| {
        format!(
            "cannot read the API token {}",
            config.api.token_file.display()
        )
    })?;
    for w in startup_warnings(&StartupFacts {
        config: &config,
        federation: &federation,
        signing_key: &signing_key,
        tls_cert: &tls.cert_der,
        log_key: &log_key,
        witness_key: witness_key.as_ref(),
        token: &token,
    }) {
        tracing::warn!("WARNING: {w}");
    }
    let state_file = config.paths.state.join("state.redb");
    let store = Store::open(&state_file)
        .with_context(|| format!("cannot open the node's state {}", state_file.display()))?;
    let identity = Identity {
        signing_key,
        encryption_keys: vec![enc],
        tls_server,
        tls_client,
        witness_key,
    };
    let dir: Arc<dyn isnad_node::Directory> = federation.clone();
    let node = NodeHandle::start(config.clone(), identity, dir, Arc::new(log), log_key, store)
        .await
        .with_context(|| {
            format!(
                "cannot start the node of {} (QUIC on {})",
                config_path.display(),
                config.listen
            )
        })?;
    let api = isnad_node::api::serve(node.clone(), config.api.listen, token.trim().to_owned())
        .await
        .with_context(|| format!("cannot bind the API address {}", config.api.listen))?;
    if let Some(m) = config.metrics_listen {
        isnad_node::api::serve_metrics(node.clone(), m)
            .await
            .with_context(|| format!("cannot bind the metrics address {m}"))?;
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

/// What [`startup_warnings`] looks at: the node as loaded, before it starts.
struct StartupFacts<'a> {
    config: &'a Config,
    federation: &'a Federation,
    signing_key: &'a SigningKey,
    tls_cert: &'a [u8],
    log_key: &'a SignerKey,
    witness_key: Option<&'a SignerKey>,
    token: &'a str,
}

/// Mistakes that let a node start but not work (or not safely): each is
/// logged at warn level when `node run` starts, with what to do about it.
fn startup_warnings(f: &StartupFacts<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let (config, agency) = (f.config, &f.config.agency);
    if f.token.trim().is_empty() {
        out.push(format!(
            "the API token {} is empty: every request to the local API is refused with 401 \
             (write a random token into it, e.g. `openssl rand -hex 32`)",
            config.api.token_file.display()
        ));
    }
    if config.witness.serve && f.witness_key.is_none() {
        out.push(format!(
            "[witness] serve = true but {} is missing: this node cosigns nothing for its partners \
             (create the node with `isnad init`, or set serve = false)",
            config.paths.keys.join("witness.key").display()
        ));
    }
    let keys = &config.paths.keys;
    let private = [
        "sign.key.pem",
        "enc.key.pem",
        "tls.key.der",
        "log.key",
        "witness.key",
    ]
    .map(|n| keys.join(n));
    for path in private.iter().chain([&config.api.token_file]) {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(format!(
                    "the private file {} has mode {mode:04o}: other users can read it \
                     (chmod 600 {})",
                    path.display(),
                    path.display()
                ));
            }
        }
    }
    let origin = isnad_log::origin_for(agency);
    if f.log_key.name() != origin {
        out.push(format!(
            "the configured agency is {agency} but the audit-log key {} is for {:?} \
             (expected {origin:?}): config.toml and keys/ belong to different nodes",
            keys.join("log.key").display(),
            f.log_key.name()
        ));
    }
    let witness_name = isnad_log::witness::witness_name_for(agency);
    if let Some(w) = f.witness_key.filter(|w| w.name() != witness_name) {
        out.push(format!(
            "the configured agency is {agency} but the witness key {} is for {:?} \
             (expected {witness_name:?}): config.toml and keys/ belong to different nodes",
            keys.join("witness.key").display(),
            w.name()
        ));
    }
    let now = unix_now().unwrap_or(0);
    let snapshot = f.federation.snapshot();
    match snapshot.as_ref().and_then(|s| s.agency(agency, now)) {
        None => out.push(format!(
            "no directory held in {} lists {agency}: partners cannot reach this node and it \
             can send to no one (have the country's root operator add it with \
             `isnad directory add-node`, then `isnad trust import` the signed directory)",
            config.paths.trust.display()
        )),
        Some(entry) => {
            let kid = f.signing_key.key_id();
            let listed = entry.signing_keys.iter().any(|k| {
                isnad_envelope::VerifyingKey::from_cose_key(&k.key).is_ok_and(|v| v.key_id() == kid)
            });
            let tls = isnad_trust::tls::spki_sha256(f.tls_cert)
                .is_ok_and(|spki| spki == entry.tls_spki_sha256);
            if !listed || !tls {
                out.push(format!(
                    "the directory lists {agency} with other keys than those in {} \
                     ({}): partners will refuse this node's messages and connections",
                    keys.display(),
                    match (listed, tls) {
                        (false, false) => "signing key and TLS certificate",
                        (false, true) => "signing key",
                        _ => "TLS certificate",
                    }
                ));
            }
        }
    }
    out
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
        tracing::info!(agency = %running.node.agency(), quic = ?running.node.local_addr(), api = %running.api, "node running");
        eprintln!("isnad node {} running: QUIC {:?}, API http://{}", running.node.agency(), running.node.local_addr(), running.api);
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
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

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("ISNAD_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
