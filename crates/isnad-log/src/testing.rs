//! Building blocks for tests of the cross-log audit (`isnad_tlog::testing`)
//! and [`ExportPair`], which writes one side of a [`Pair`] as a real log
//! and exports it. Not a stable API.

use std::path::Path;

pub use isnad_tlog::testing::*;

use crate::crosscheck::Side;
use crate::log::{ExportSummary, Log, LogError};
use crate::note::SignerKey;

/// Writes a [`Pair`]'s logs to disk.
pub trait ExportPair {
    /// Writes the log of `side` to a new log directory `log_dir` and exports
    /// it to `out`, signed by `key`.
    fn export(
        &self,
        side: Side,
        log_dir: &Path,
        key: &SignerKey,
        out: &Path,
    ) -> Result<ExportSummary, LogError>;
}

impl ExportPair for Pair {
    fn export(
        &self,
        side: Side,
        log_dir: &Path,
        key: &SignerKey,
        out: &Path,
    ) -> Result<ExportSummary, LogError> {
        let entries = match side {
            Side::A => &self.a_entries,
            Side::B => &self.b_entries,
        };
        let (log, _) = Log::open(log_dir)?;
        if !entries.is_empty() {
            log.append_batch(entries.clone())?;
        }
        log.export(out, key)
    }
}
