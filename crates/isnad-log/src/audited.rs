//! A verified export read back into memory: the input of the cross-log
//! audit ([`crate::crosscheck`]) and the auditor's report ([`crate::report`]).

use std::path::Path;

use isnad_types::AgencyId;

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;
use crate::merkle::{self, Tree};
use crate::note::{self, VerifierKey};
use crate::tiles::{self, TILE_WIDTH};
use crate::verify::{self, AuditError, Problem, Report};

/// One log as the auditor sees it after verification: the checkpoint whose
/// signature verified, the exported checkpoint note as it was found (with
/// any witness cosignature lines), and every entry of the tree, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditedLog {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The checkpoint note exactly as exported.
    pub note: String,
    /// Entries `0 .. checkpoint.size`, in log order.
    pub entries: Vec<Entry>,
}

/// Why [`AuditedLog::new`] refuses its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditedLogError {
    // --- The caller passed inconsistent data ---
    /// The number of entries is not the checkpoint size.
    #[error("{entries} entries given for a checkpoint of size {size}")]
    SizeMismatch {
        /// Entries given.
        entries: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// An entry's `seq` is not its position.
    #[error("entry at position {index} carries seq {seq}")]
    Sequence {
        /// Position.
        index: u64,
        /// The entry's seq.
        seq: u64,
    },
}

impl AuditedLog {
    /// Wraps a checkpoint and its entries, checking that there is one entry
    /// per tree position with `seq` equal to its index. Callers normally use
    /// [`read_verified_export`], which also verifies the export.
    pub fn new(
        checkpoint: Checkpoint,
        note: String,
        entries: Vec<Entry>,
    ) -> Result<Self, AuditedLogError> {
        if entries.len() as u64 != checkpoint.size {
            return Err(AuditedLogError::SizeMismatch {
                entries: entries.len() as u64,
                size: checkpoint.size,
            });
        }
        if let Some((i, e)) = entries.iter().enumerate().find(|(i, e)| e.seq != *i as u64) {
            return Err(AuditedLogError::Sequence {
                index: i as u64,
                seq: e.seq,
            });
        }
        Ok(Self {
            checkpoint,
            note,
            entries,
        })
    }

    /// The agency whose log this is, from the origin `<agency-id>/audit`
    /// (spec/audit-log.md §5.2); `None` if the origin does not follow that
    /// convention.
    pub fn agency(&self) -> Option<AgencyId> {
        self.checkpoint
            .origin
            .strip_suffix("/audit")
            .and_then(|a| AgencyId::new(a).ok())
    }

    /// Latest entry time (Unix ms): the export was taken at or after it.
    pub fn horizon_ms(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.time_ms).max()
    }

    /// Signature lines on the exported checkpoint other than the log key's
    /// own: witness cosignatures, not verified here (no witness keys are
    /// given). Each is the key name and, for a 76-byte C2SP cosignature
    /// (key id, 8-byte timestamp, Ed25519 signature), its timestamp.
    pub fn cosignature_lines(&self) -> Vec<(String, Option<u64>)> {
        signature_lines(&self.note)
            .into_iter()
            .filter(|(name, _)| *name != self.checkpoint.origin)
            .map(|(name, raw)| {
                let ts = (raw.len() == 4 + 8 + 64).then(|| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&raw[4..12]);
                    u64::from_be_bytes(b)
                });
                (name, ts)
            })
            .collect()
    }
}

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

/// The (key name, decoded signature) of every well-formed signature line of
/// a signed note, unverified. Malformed lines are skipped: the note's log
/// signature was verified before this is called.
fn signature_lines(note: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let Some(split) = note.rfind("\n\n") else {
        return Vec::new();
    };
    note[split + 2..]
        .lines()
        .filter_map(|line| {
            let (name, b64) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            (raw.len() >= 5).then(|| (name.to_owned(), raw))
        })
        .collect()
}
