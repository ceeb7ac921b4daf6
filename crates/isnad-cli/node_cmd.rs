//! `isnad init` and `isnad node run`: create a node's files, run the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use isnad_envelope::AgencyId;
use isnad_node::config::Config;
use isnad_node::node_dir::{NodeDir, RunningNode};

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
    /// Make every key of the node in a PKCS#11 token (`--pkcs11` names the
    /// token and a label prefix: objects `<object>-sign`, `-enc`, `-tls`,
    /// `-log`, `-witness`); only public halves are written, and the config
    /// names the keys (`[keys]`) and the module and PIN source (`[pkcs11]`).
    #[command(flatten)]
    token: crate::token::TokenArgs,
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
    let mut cfg = node_config(&a.agency, a.listen, a.api, a.metrics)?;
    if let Some(base) = &a.token.pkcs11 {
        let mut pkcs11 = a.token.config()?;
        pkcs11.sessions = 4;
        // The PIN file is named absolutely: the config lives elsewhere.
        if let Some(f) = pkcs11.pin_file.as_mut() {
            *f = std::path::absolute(&*f)?;
        }
        cfg.keys = isnad_node::token_keys::generate_node_keys(&pkcs11, base)?;
        cfg.pkcs11 = Some(pkcs11);
    }
    // The node's directory is created by the user the node runs as; when it
    // may not, say what to do instead of a bare "permission denied".
    NodeDir::init(&a.dir, &cfg).map_err(|e| {
        let hint = e.permission_denied();
        let e = anyhow::Error::new(e);
        if hint {
            e.context(permission_hint(&a.dir))
        } else {
            e
        }
    })?;
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
    Ok(NodeDir::create(dir, &cfg)?)
}

/// Loads the node of `config_path` and starts it, with its API, metrics
/// endpoint and directory watcher. Startup errors say which file is wrong.
pub(crate) async fn start(config_path: &Path) -> anyhow::Result<RunningNode> {
    Ok(NodeDir::open(config_path)?.start().await?)
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
        running.shutdown().await;
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
