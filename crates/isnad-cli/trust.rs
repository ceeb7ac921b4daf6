//! `isnad trust …`: the roots a node trusts and the directories it holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use isnad_trust::{fingerprint, Accepted, Change, TrustStore};

use crate::directory::read_verifying_key;

/// Trust commands.
#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// Start a trust store with this node's own country root.
    #[command(
        after_help = "Example:\n  isnad trust init --trust-dir node/trust --country IQ --root iq-root/root.pub.cose"
    )]
    Init {
        /// The node's trust directory.
        #[arg(long)]
        trust_dir: PathBuf,
        /// Own country code.
        #[arg(long)]
        country: String,
        /// Own country's root public key (COSE_Key).
        #[arg(long)]
        root: PathBuf,
    },
    /// Trust a partner country's root. Confirm the printed fingerprint with
    /// the partner out of band before relying on it.
    #[command(
        after_help = "Example:\n  isnad trust add-partner --trust-dir node/trust --root fr-root.pub.cose --country FR"
    )]
    AddPartner {
        /// The node's trust directory.
        #[arg(long)]
        trust_dir: PathBuf,
        /// The partner's root public key (COSE_Key).
        #[arg(long)]
        root: PathBuf,
        /// The partner's country code.
        #[arg(long)]
        country: String,
    },
    /// Verify and hold a signed directory (own country or a partner's). A
    /// running node picks the change up within seconds and logs it.
    #[command(after_help = "Example:\n  isnad trust import --trust-dir node/trust fr-v3.cose")]
    Import {
        /// The node's trust directory.
        #[arg(long)]
        trust_dir: PathBuf,
        /// The signed directory file.
        file: PathBuf,
    },
    /// List trusted roots and held directories.
    #[command(after_help = "Example:\n  isnad trust list --trust-dir /var/lib/isnad/trust")]
    List {
        /// The node's trust directory.
        #[arg(long)]
        trust_dir: PathBuf,
    },
}

pub(crate) fn run(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TrustCommand::Init {
            trust_dir,
            country,
            root,
        } => {
            let key = read_verifying_key(&root)?;
            let store = TrustStore::new(&country, key.clone());
            store.save(&trust_dir)?;
            println!(
                "trust store created for {}; root fingerprint {}",
                country.to_uppercase(),
                fingerprint(&key)
            );
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::AddPartner {
            trust_dir,
            root,
            country,
        } => {
            let mut store = load(&trust_dir)?;
            let key = read_verifying_key(&root)?;
            store.add_partner(&country, key.clone())?;
            store.save(&trust_dir)?;
            println!(
                "now trusting {} root with fingerprint {}",
                country.to_uppercase(),
                fingerprint(&key)
            );
            println!("confirm this fingerprint with the partner by another channel (phone, in person) before exchanging");
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::Import { trust_dir, file } => {
            let mut store = load(&trust_dir)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match store
                .accept(&bytes, crate::node_cmd::unix_now()?)
                .context("directory refused")?
            {
                Accepted::Unchanged => println!("already held; nothing changed"),
                Accepted::Updated {
                    country,
                    version,
                    changes,
                } => {
                    store.save(&trust_dir)?;
                    println!(
                        "holding {} directory version {version}",
                        country.to_uppercase()
                    );
                    for c in &changes {
                        println!("  {}", describe_change(c));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TrustCommand::List { trust_dir } => {
            let store = load(&trust_dir)?;
            for (cc, key) in store.roots() {
                let own = if cc == store.own_country() {
                    " (own)"
                } else {
                    ""
                };
                println!("root {}{own}: {}", cc.to_uppercase(), fingerprint(key));
            }
            for (cc, h) in store.directories() {
                let d = &h.directory;
                println!(
                    "directory {} v{}: {}, valid until {}",
                    cc.to_uppercase(),
                    d.version,
                    crate::out::count(d.agencies.len() as u64, "agency", "agencies"),
                    crate::out::utc_secs(d.valid_until)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<TrustStore> {
    TrustStore::load(dir).with_context(|| {
        format!(
            "cannot load the trust store in {} (create it with `isnad trust init`)",
            dir.display()
        )
    })
}

/// One line per change, as an operator reads it.
fn describe_change(c: &Change) -> String {
    let kid = |k: &isnad_envelope::KeyId| k.to_hex()[..16].to_owned();
    match c {
        Change::AgencyAdded(a) => format!("agency added: {a}"),
        Change::AgencyRemoved(a) => format!("agency removed: {a}"),
        Change::KeyAdded { agency, kid: k } => format!("key added: {agency} {}…", kid(k)),
        Change::KeyRotated {
            agency,
            kid: k,
            until,
        } => format!("key rotated: {agency} {}… valid until {until}", kid(k)),
        Change::KeyRevoked {
            agency,
            kid: k,
            at,
            reason,
        } => format!(
            "key REVOKED: {agency} {}… at {at} ({})",
            kid(k),
            reason.as_deref().unwrap_or("no reason given")
        ),
        Change::ContactChanged(a) => format!("endpoints or TLS key changed: {a}"),
        Change::PolicyChanged => "policy rules changed".to_owned(),
        other => format!("{other:?}"),
    }
}
