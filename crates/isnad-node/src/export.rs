//! Exporting the audit log of a running node (spec/api.yaml,
//! `POST /v1/audit/export`).
//!
//! The node owns its log directory (one writer, a lock file), so an export
//! while it runs must be written by the node itself: it writes the C2SP
//! tlog-tiles layout into a directory on its own machine that the operator
//! names, which must be absolute and either not exist yet (its parent must)
//! or be an empty directory. Nothing is ever overwritten.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use isnad_log::{open_checkpoint, SignedCheckpoint};
use serde::Serialize;

use crate::node::{NodeError, NodeHandle};

/// Which checkpoint an export is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExportAt {
    /// Sign a checkpoint of the current tree now (and submit it to the
    /// witnesses, as every checkpoint is) and export that tree.
    #[default]
    New,
    /// Export the tree at the node's latest signed checkpoint, with the
    /// witnesses' verified cosignatures collected for it so far.
    Latest,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Exported {
    /// The directory written.
    pub out: PathBuf,
    /// Tree size of the exported checkpoint.
    pub size: u64,
    /// Hash tiles written.
    pub tiles: u64,
    /// Entry bundles written.
    pub bundles: u64,
    /// Witness cosignature lines on the exported checkpoint.
    pub cosignatures: usize,
    /// The exported checkpoint note, as written to `<out>/checkpoint`.
    pub checkpoint: String,
}

/// Why an export was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    // --- The operator asked for something the node will not do ---
    /// The target directory is not an absolute path.
    #[error("export directory {0} must be an absolute path on the node's machine")]
    NotAbsolute(PathBuf),
    /// The target exists and is not an empty directory; the node never
    /// overwrites. Name a new directory or empty this one.
    #[error("export directory {0} exists and is not an empty directory; name a new one")]
    NotEmpty(PathBuf),
    /// `latest` was asked for but the node has signed no checkpoint since it
    /// started; ask for a new one.
    #[error("no checkpoint signed since the node started; export at a new checkpoint")]
    NoCheckpoint,

    // --- The node's machine failed ---
    /// Creating or reading the target directory failed (e.g. its parent
    /// does not exist or is not writable by the node).
    #[error("cannot {op} export directory {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Signing the checkpoint or writing the export failed; files written so
    /// far stay in the target directory, which is incomplete.
    #[error("audit log export failed: {0}")]
    Log(String),
    /// The node failed otherwise.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl NodeHandle {
    /// Writes a C2SP tlog-tiles export of the audit log to `out` (see the
    /// module documentation for the rules on `out`), at the checkpoint
    /// `at` selects, its note followed by any verified witness
    /// cosignature lines the node holds for it. The file work runs on the
    /// blocking thread pool.
    pub async fn export_audit(&self, out: &Path, at: ExportAt) -> Result<Exported, ExportError> {
        if !out.is_absolute() {
            return Err(ExportError::NotAbsolute(out.to_owned()));
        }
        let note = match at {
            ExportAt::New => {
                let note = self.checkpoint_now().await?;
                self.with_cosignatures(note)
            }
            ExportAt::Latest => self.latest_checkpoint().ok_or(ExportError::NoCheckpoint)?,
        };
        let checkpoint = open_checkpoint(note.as_bytes(), &self.log_verifier())
            .map_err(|e| ExportError::Log(format!("own checkpoint does not open: {e}")))?;
        let cosignatures = cosignature_lines(&note);
        let signed = SignedCheckpoint { checkpoint, note };
        let log = Arc::clone(self.log());
        let dir = out.to_owned();
        let (summary, signed) = tokio::task::spawn_blocking(move || {
            prepare(&dir)?;
            let s = log
                .export_at(&dir, &signed)
                .map_err(|e| ExportError::Log(e.to_string()))?;
            Ok::<_, ExportError>((s, signed))
        })
        .await
        .map_err(|e| ExportError::Log(e.to_string()))??;
        tracing::info!(out = %out.display(), size = summary.size, cosignatures, "audit log exported");
        Ok(Exported {
            out: out.to_owned(),
            size: summary.size,
            tiles: summary.tiles,
            bundles: summary.bundles,
            cosignatures,
            checkpoint: signed.note,
        })
    }
}

/// Creates `dir`, or accepts it if it is an existing empty directory.
fn prepare(dir: &Path) -> Result<(), ExportError> {
    let io = |op| {
        move |source| ExportError::Io {
            op,
            path: dir.to_owned(),
            source,
        }
    };
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !dir.is_dir() {
                return Err(ExportError::NotEmpty(dir.to_owned()));
            }
            match std::fs::read_dir(dir).map_err(io("read"))?.next() {
                None => Ok(()),
                Some(_) => Err(ExportError::NotEmpty(dir.to_owned())),
            }
        }
        Err(e) => Err(io("create")(e)),
    }
}

/// Signature lines after the first (the log's own) in a signed note.
fn cosignature_lines(note: &str) -> usize {
    note.split_once("\n\n")
        .map(|(_, sigs)| sigs.lines().filter(|l| l.starts_with("— ")).count())
        .unwrap_or(0)
        .saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_after_the_log_signature() {
        let body = "o/audit\n1\nAAAA\n\n";
        assert_eq!(cosignature_lines(&format!("{body}— o/audit abc\n")), 0);
        assert_eq!(
            cosignature_lines(&format!("{body}— o/audit abc\n— w1 def\n— w2 ghi\n")),
            2
        );
        assert_eq!(cosignature_lines("no blank line"), 0);
    }

    #[test]
    fn target_must_be_new_or_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let new = tmp.path().join("new");
        prepare(&new).expect("a new directory is created");
        assert!(new.is_dir());
        prepare(&new).expect("an empty directory is accepted");
        std::fs::write(new.join("x"), b"x").expect("write");
        assert!(matches!(prepare(&new), Err(ExportError::NotEmpty(_))));
        assert!(matches!(
            prepare(&new.join("x")),
            Err(ExportError::NotEmpty(_))
        ));
        assert!(matches!(
            prepare(&tmp.path().join("missing/child")),
            Err(ExportError::Io { op: "create", .. })
        ));
    }
}
