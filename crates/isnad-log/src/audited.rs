//! Reads a verified export back into memory as an [`AuditedLog`], the input
//! of the cross-log audit and the auditor's report.

use std::path::Path;

use crate::audited_log::AuditedLog;
use crate::entry::Entry;
use crate::merkle::{self, Tree};
use crate::note::{self, VerifierKey};
use crate::tiles::{self, TILE_WIDTH};
use crate::verify::{self, AuditError, Problem, Report};

/// Verifies the export in `dir` under `log_key` (exactly the checks of
/// [`crate::verify_export`]) and, if it verifies, reads every entry back.
/// Returns the verification report, and the log only when the report is
/// clean.
pub fn read_verified_export(
    dir: &Path,
    log_key: &VerifierKey,
) -> Result<(Report, Option<AuditedLog>), AuditError> {
    let report = verify::verify_export(dir, log_key, None, &mut |_, _| {})?;
    if !report.is_ok() {
        return Ok((report, None));
    }
    let cp_path = dir.join(tiles::CHECKPOINT_PATH);
    let note_bytes =
        verify::read_bounded(&cp_path, note::MAX_NOTE_LEN as u64).map_err(|source| {
            AuditError::CheckpointFile {
                path: cp_path.clone(),
                source,
            }
        })?;
    let note = String::from_utf8(note_bytes).map_err(|_| AuditError::Checkpoint {
        path: cp_path,
        source: crate::CheckpointError::Malformed("not UTF-8"),
    })?;
    let size = report.checkpoint.size;
    let mut entries = Vec::with_capacity(size.min(1 << 20) as usize);
    let mut tree = Tree::new();
    for n in 0..size.div_ceil(TILE_WIDTH) {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let path = tiles::entries_path(n, width);
        let data = verify::read_bounded(&dir.join(&path), verify::bundle_limit(width))
            .map_err(|_| AuditError::Export(Problem::MissingFile { path: path.clone() }))?;
        let items = tiles::split_bundle(&data, width as usize).map_err(|error| {
            AuditError::Export(Problem::Bundle {
                path: path.clone(),
                error,
            })
        })?;
        for (j, bytes) in items.into_iter().enumerate() {
            tree.push(merkle::leaf_hash(bytes));
            let entry = Entry::decode(bytes).map_err(|error| {
                AuditError::Export(Problem::Entry {
                    index: n * TILE_WIDTH + j as u64,
                    path: path.clone(),
                    error,
                })
            })?;
            entries.push(entry);
        }
    }
    // The files were verified a moment ago; a change in between is caught
    // by recomputing the root from exactly the bytes decoded here.
    let computed = tree.root();
    if computed != report.checkpoint.root {
        return Err(AuditError::Export(Problem::RootMismatch {
            computed,
            checkpoint: report.checkpoint.root,
        }));
    }
    let log = AuditedLog::new(report.checkpoint.clone(), note, entries).map_err(|_| {
        AuditError::Export(Problem::RootMismatch {
            computed,
            checkpoint: report.checkpoint.root,
        })
    })?;
    Ok((report, Some(log)))
}
