//! The state database's storage seam for tests: a redb [`StorageBackend`]
//! over a file under an [`isnad_log::disk::DiskFaults`] controller, so that
//! the same controller that fails or crashes the audit log's files can fail
//! (`ENOSPC`, `EIO`) or crash the database (power loss keeps only what a
//! completed sync covered). Production opens the database with redb's own
//! file backend ([`crate::store::Store::open`]).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use isnad_log::disk::DiskFaults;
//! use isnad_node::storage::FaultyBackend;
//! use isnad_node::store::Store;
//!
//! let faults = DiskFaults::new();
//! let f = faults.clone();
//! let store = Store::open_with_backend(move || FaultyBackend::open(&f, "state.redb".as_ref()))?;
//! # Ok(()) }
//! ```

use std::io;
use std::path::Path;

use isnad_log::disk::{DiskFaults, DurableFile, FaultyFile};
use redb::StorageBackend;

/// A redb backend on a file under a fault controller (no file locking:
/// one process, one database).
#[derive(Debug)]
pub struct FaultyBackend(FaultyFile);

impl FaultyBackend {
    /// Opens (or creates) `path` under `faults`.
    pub fn open(faults: &DiskFaults, path: &Path) -> io::Result<Self> {
        faults.open(path).map(Self)
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}
