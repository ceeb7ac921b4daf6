//! `isnad backup` (of a running node, through its API) and `isnad restore`
//! (into a new node directory, checked against what the node published).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::{open_checkpoint, read_verified_export, Log, SignedCheckpoint, VerifierKey};
use isnad_node::backup::{check_restore, copy_node_dir, RestoreError};
use isnad_node::node_dir::NodeLock;

/// Arguments of `isnad backup`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad backup --config /var/lib/isnad/config.toml --out /srv/isnad-backups/2026-12-03\n\n\
The running node writes a consistent copy of its state database, audit log,\n\
keys, trust store and configuration into OUT (a new directory on its machine;\n\
private files stay mode 0600) while it keeps working. Keep backups as safe as\n\
the keys they hold."
)]
pub(crate) struct BackupArgs {
    /// The running node's config file.
    #[arg(long, env = "ISNAD_CONFIG", default_value = "config.toml")]
    config: PathBuf,
    /// The backup directory to create (must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `isnad restore`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad restore --backup /srv/isnad-backups/2026-12-03 --dir /var/lib/isnad \\\n    --published latest-checkpoint.txt --entries-from /srv/isnad-exports/2026-12-05\n\n\
--published is the latest checkpoint the node published (its log/checkpoint if\n\
the old disk is readable, the checkpoint of the newest export auditors hold, or\n\
a witness's view from `isnad witness status` on a partner). If it is beyond the\n\
backup's log, --entries-from must name an export that covers it: its entries\n\
are appended after checking them. Otherwise the restore is refused, so that the\n\
restored node never signs a history contradicting one it published."
)]
pub(crate) struct RestoreArgs {
    /// The backup directory (written by `isnad backup`).
    #[arg(long)]
    backup: PathBuf,
    /// The node directory to create (must not exist).
    #[arg(long)]
    dir: PathBuf,
    /// The latest checkpoint (signed note) the node published.
    #[arg(long)]
    published: PathBuf,
    /// An export (C2SP tlog-tiles) of the node's log covering the published
    /// checkpoint, for the entries appended after the backup.
    #[arg(long)]
    entries_from: Option<PathBuf>,
}

pub(crate) fn backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    // The node writes the backup on its own machine, where this runs (its
    // API is loopback only): a relative --out is relative to here.
    let out = std::path::absolute(&a.out)
        .with_context(|| format!("cannot resolve {}", a.out.display()))?;
    let client = crate::client::Client::with_timeout(
        &crate::client::NodeRef { config: a.config },
        std::time::Duration::from_secs(3600),
    )?;
    let v = client.json(
        "POST",
        "/v1/backup",
        Some(serde_json::json!({ "out": out })),
    )?;
    println!(
        "backed up to {}: audit log {} entries (checkpoint {}), state {} bytes",
        out.display(),
        v["log_size"],
        v["checkpoint_size"],
        v["state_bytes"]
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let key_path = a.backup.join("keys").join("log.pub");
    let key_text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read the node's log key {}", key_path.display()))?;
    let key = VerifierKey::parse(key_text.trim())
        .with_context(|| format!("{} is not a verifier key", key_path.display()))?;
    let note = std::fs::read(&a.published)
        .with_context(|| format!("cannot read {}", a.published.display()))?;
    // A checkpoint that is not this node's, a backup behind or against
    // it, an export that does not verify: verification failed (exit 2).
    let published = match open_checkpoint(&note, &key) {
        Ok(c) => c,
        Err(e) => {
            return refused(anyhow::Error::new(e).context(format!(
                "{} is not a checkpoint signed by this node's log key {}",
                a.published.display(),
                key.name()
            )))
        }
    };
    copy_node_dir(&a.backup, &a.dir)
        .with_context(|| format!("cannot copy {} to {}", a.backup.display(), a.dir.display()))?;
    // From here on a failure removes what this restore created.
    let made = Created(Some(a.dir.clone()));
    let adopted = match restore_into(&a, &key, &published, &note) {
        Ok(n) => n,
        Err(e)
            if e.downcast_ref::<Refused>().is_some()
                || e.downcast_ref::<RestoreError>().is_some() =>
        {
            return refused(e)
        }
        Err(e) => return Err(e),
    };
    made.keep();
    println!(
        "restored {} from {}: audit log {} entries, consistent with the published checkpoint of size {}",
        a.dir.display(),
        a.backup.display(),
        adopted,
        published.size
    );
    println!(
        "messages acknowledged after the backup are not in the restored state; partners' receipts and logs show which"
    );
    println!(
        "start it with: isnad node run --config {}",
        a.dir.join("config.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Brings the copied log up to the published checkpoint and stores that
/// checkpoint (or the export's, if larger); returns the log size.
fn restore_into(
    a: &RestoreArgs,
    key: &VerifierKey,
    published: &isnad_log::Checkpoint,
    note: &[u8],
) -> anyhow::Result<u64> {
    let _lock = NodeLock::acquire(&a.dir.join("state"))?;
    let log_dir = a.dir.join("log");
    let (log, _) =
        Log::open(&log_dir).with_context(|| format!("cannot open {}", log_dir.display()))?;
    let mut adopt = vec![SignedCheckpoint {
        checkpoint: published.clone(),
        note: String::from_utf8(note.to_vec()).context("the published checkpoint is not UTF-8")?,
    }];
    if let Some(export) = &a.entries_from {
        let (report, audited) = read_verified_export(export, key)
            .with_context(|| format!("cannot read the export {}", export.display()))?;
        let Some(audited) = audited else {
            return Err(Refused(format!(
                "the export {} does not verify ({}); it cannot fill the log",
                export.display(),
                crate::out::count(report.problems.len() as u64, "problem", "problems")
            ))
            .into());
        };
        let have = log.size();
        let size = audited.checkpoint.size;
        if size > have {
            let missing = audited.entries.into_iter().skip(have as usize);
            log.append_batch(missing)
                .with_context(|| format!("cannot append to {}", log_dir.display()))?;
        }
        // The export's root covers the backup's entries too: a backup of
        // another history fails here.
        if log.root_at(size)? != audited.checkpoint.root {
            return Err(Refused(format!(
                "the export {} does not extend the backup's log (another history)",
                export.display()
            ))
            .into());
        }
        adopt.push(SignedCheckpoint {
            checkpoint: audited.checkpoint,
            note: audited.note,
        });
    }
    check_restore(&log, published)?;
    // The larger becomes the stored checkpoint: the node then opens and
    // signs only consistently with it (audit-log.md §6.3).
    adopt.sort_by_key(|s| s.checkpoint.size);
    for signed in &adopt {
        log.adopt_checkpoint(signed)
            .with_context(|| format!("cannot store the checkpoint in {}", log_dir.display()))?;
    }
    Ok(log.size())
}

/// A restore refused because what it was given does not verify.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Prints a verification failure; exit status 2 (README, "Exit codes").
fn refused(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    eprintln!("error: {}", crate::out::causes(&e));
    Ok(ExitCode::from(crate::exit::FAILED))
}

/// A directory this command created, removed on failure.
struct Created(Option<PathBuf>);

impl Created {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
