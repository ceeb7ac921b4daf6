//! Online backup of a running node (`POST /v1/backup`, `isnad backup`) and
//! the check a restore makes against what the node already published.
//!
//! A backup is a node directory: `config.toml` (the node's configuration
//! with its paths made relative: `keys`, `state`, `log`, `trust`), `keys/`,
//! `trust/`, `state/` (the database and a witness's fork evidence) and
//! `log/`, plus `BACKUP` (a text summary).
//! Each part is consistent on its own while the node keeps working: the
//! database is copied by its writer thread between two transactions, right
//! after a durable commit; the log is copied as its stored checkpoint, then
//! every entry durable at that moment (never fewer than the checkpoint
//! covers). Parts are copied in that order — state first, log last — so the
//! log holds at least the entries of everything the state records.
//!
//! What a backup cannot hold is what happened after it: entries appended
//! and checkpoints published later. A restore must therefore be told the
//! latest checkpoint the node published ([`check_restore`]): if it is
//! beyond the backup's log, the missing entries must come from an export
//! that covers them, or the restore is refused, so that a restored node
//! never signs a checkpoint contradicting one it published (a fork its
//! witnesses and auditors would see). The check is in this crate, the file
//! work of the restore in the CLI.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use isnad_log::{Checkpoint, Log};
use serde::Serialize;

use crate::NodeHandle;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup directory.
    pub out: PathBuf,
    /// Entries of the audit log in the backup.
    pub log_size: u64,
    /// Size of the last checkpoint in the backup, if the node signed one.
    pub checkpoint_size: Option<u64>,
    /// Bytes of the state database copied.
    pub state_bytes: u64,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    // --- The operator asked for something the node will not do ---
    /// The target is not an absolute path.
    #[error("backup directory {0} must be an absolute path on the node's machine")]
    NotAbsolute(PathBuf),
    /// The target exists; a backup never writes into an existing directory.
    #[error("backup directory {0} exists; name a new one")]
    Exists(PathBuf),

    // --- The node's machine failed ---
    /// Creating, reading or writing a file failed (named in the message).
    #[error("backup failed: {0}")]
    Io(String),
}

impl NodeHandle {
    /// Writes a backup of this running node to the new directory `out`
    /// (see the module documentation). The file work runs on the blocking
    /// thread pool; the node keeps serving meanwhile.
    pub async fn backup(&self, out: &Path) -> Result<BackupReport, BackupError> {
        if !out.is_absolute() {
            return Err(BackupError::NotAbsolute(out.to_owned()));
        }
        match std::fs::symlink_metadata(out) {
            Ok(_) => return Err(BackupError::Exists(out.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", out, e)),
        }
        let config = self.config().clone();
        let mkdir = |d: &Path| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(d)
                .map_err(|e| io_err("create", d, e))
        };
        mkdir(out)?;
        for sub in ["keys", "trust", "state"] {
            mkdir(&out.join(sub))?;
        }
        // The state first, so the log copied afterwards covers everything
        // the state refers to.
        let state_bytes = self
            .store()
            .backup_to(&out.join("state").join("state.redb"))
            .await
            .map_err(|e| BackupError::Io(e.to_string()))?;
        let log = std::sync::Arc::clone(self.log());
        let dir = out.to_owned();
        let (log_size, checkpoint_size) = tokio::task::spawn_blocking(move || {
            copy_tree(&config.paths.keys, &dir.join("keys"))?;
            // The rest of the state directory (a witness's fork evidence):
            // everything but the database, copied above, and the lock.
            copy_tree_except(
                &config.paths.state,
                &dir.join("state"),
                &["state.redb", crate::node_dir::NODE_LOCK_FILE],
            )?;
            copy_tree(&config.paths.trust, &dir.join("trust"))?;
            // The API token, where it lives outside the key directory.
            let token = dir.join("keys").join("api.token");
            if !token.exists() {
                let data = std::fs::read(&config.api.token_file)
                    .map_err(|e| io_err("read", &config.api.token_file, e))?;
                write_new(&token, &data, 0o600)?;
            }
            let (size, checkpoint) = log
                .backup_to(&dir.join("log"))
                .map_err(|e| BackupError::Io(e.to_string()))?;
            let mut cfg = config.clone();
            cfg.paths = crate::config::Paths::default();
            cfg.api.token_file = "keys/api.token".into();
            let text = format!(
                "# Isnad node configuration, from a backup (paths relative to this file).\n{}",
                cfg.to_toml().map_err(BackupError::Io)?
            );
            write_new(&dir.join("config.toml"), text.as_bytes(), 0o600)?;
            let summary = format!(
                "Isnad node backup of {agency}\n\
                 audit log entries: {size}\n\
                 last checkpoint in the backup: {cp}\n\
                 Restore with: isnad restore --backup <this directory> --dir <new node directory> \
                 --published <the latest checkpoint this node published> \
                 [--entries-from <an export covering it>]\n",
                agency = config.agency,
                cp = checkpoint
                    .as_ref()
                    .map_or("none".to_owned(), |c| c.size.to_string()),
            );
            write_new(&dir.join("BACKUP"), summary.as_bytes(), 0o600)?;
            sync_dir(&dir)?;
            Ok::<_, BackupError>((size, checkpoint.map(|c| c.size)))
        })
        .await
        .map_err(|e| BackupError::Io(e.to_string()))??;
        tracing::info!(out = %out.display(), log_size, state_bytes, "node backed up");
        Ok(BackupReport {
            out: out.to_owned(),
            log_size,
            checkpoint_size,
            state_bytes,
        })
    }
}

/// Why a restored log may not be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The node published a checkpoint beyond the backup's log: the entries
    /// in between are missing. Restore them from an export that covers the
    /// published checkpoint, or the node would sign a fork of its history.
    #[error("the node published a checkpoint of size {published} but the backup's log holds {backup} entries; give an export that covers it (--entries-from)")]
    Behind {
        /// Size of the published checkpoint.
        published: u64,
        /// Entries in the backup's log.
        backup: u64,
    },
    /// The backup's log does not hash to the published checkpoint's root:
    /// the backup is of another log or another history.
    #[error("the backup's log contradicts the published checkpoint at size {size}")]
    Contradicts {
        /// Size of the published checkpoint.
        size: u64,
    },
}

/// Checks a restored log against the latest checkpoint the node published:
/// `Ok` if the log holds that checkpoint's tree (the node may go on from
/// there and [`Log`] refuses to sign anything inconsistent with it once it
/// is the stored checkpoint).
pub fn check_restore(log: &Log, published: &Checkpoint) -> Result<(), RestoreError> {
    if published.size > log.size() {
        return Err(RestoreError::Behind {
            published: published.size,
            backup: log.size(),
        });
    }
    match log.root_at(published.size) {
        Ok(root) if root == published.root => Ok(()),
        _ => Err(RestoreError::Contradicts {
            size: published.size,
        }),
    }
}

/// Copies a backup (or any node directory) `from` into the new directory
/// `to` (mode 0700, which must not exist), keeping file modes and syncing
/// every file and directory; symbolic links and special files are refused.
pub fn copy_node_dir(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => BackupError::Exists(to.to_owned()),
            _ => io_err("create", to, e),
        })?;
    copy_tree(from, to)
}

/// Copies the regular files and directories under `from` into the
/// existing directory `to`, keeping file modes; symbolic links are refused.
fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    copy_tree_except(from, to, &[])
}

/// [`copy_tree`], leaving out the top-level entries named in `skip`.
fn copy_tree_except(from: &Path, to: &Path, skip: &[&str]) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt as _;
    let rd = std::fs::read_dir(from).map_err(|e| io_err("read", from, e))?;
    for e in rd {
        let e = e.map_err(|e| io_err("read", from, e))?;
        if skip
            .iter()
            .any(|n| e.file_name() == std::ffi::OsStr::new(n))
        {
            continue;
        }
        let src = e.path();
        let dst = to.join(e.file_name());
        let meta = std::fs::symlink_metadata(&src).map_err(|e| io_err("inspect", &src, e))?;
        if meta.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dst)
                .map_err(|e| io_err("create", &dst, e))?;
            copy_tree(&src, &dst)?;
        } else if meta.is_file() {
            let data = std::fs::read(&src).map_err(|e| io_err("read", &src, e))?;
            write_new(&dst, &data, meta.permissions().mode() & 0o777)?;
        } else {
            return Err(BackupError::Io(format!(
                "{} is not a regular file or directory; not backed up",
                src.display()
            )));
        }
    }
    sync_dir(to)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), BackupError> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_err("create", path, e))?;
    f.write_all(data).map_err(|e| io_err("write", path, e))?;
    f.sync_all().map_err(|e| io_err("sync", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))
}

fn io_err(op: &str, path: &Path, e: io::Error) -> BackupError {
    BackupError::Io(format!("cannot {op} {}: {e}", path.display()))
}
