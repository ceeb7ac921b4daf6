//! A verified log held in memory: the input of the cross-log audit
//! ([`crate::crosscheck`]) and the auditor's report ([`crate::report`]).
//! `isnad_log::read_verified_export` builds one from an export on disk.

use isnad_types::AgencyId;

use crate::checkpoint::Checkpoint;
use crate::entry::Entry;

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
    /// `isnad_log::read_verified_export`, which also verifies the export.
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
