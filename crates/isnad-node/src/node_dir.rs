//! One owner per node: the lock every command that opens a node's state
//! takes before it reads, creates or repairs anything.
//!
//! A node's files (keys, state database, audit log, trust store) may sit in
//! separate directories (`[paths]` in the config); the lock lives in the
//! state directory, as `node.lock` (an `flock` held on an open descriptor,
//! released by the kernel when the owner exits or dies; see
//! [`isnad_log::lock`]). `isnad node run`, `isnad init` and `isnad keygen`
//! into a node's key directory take it; the audit log additionally locks
//! its own directory, so an offline `isnad audit export` of a running
//! node's log is refused as well. Order: node lock, then log lock.
//!
//! Directories a node creates are private (0700), like its key files.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use isnad_log::lock::{DirLock, LockError};

/// The node lock file inside the state directory.
pub const NODE_LOCK_FILE: &str = "node.lock";

/// Exclusive ownership of a node's state, held while it lives.
#[derive(Debug)]
pub struct NodeLock {
    _lock: DirLock,
}

impl NodeLock {
    /// Creates the state directory if needed (mode 0700) and takes the
    /// node lock in it. Refused with [`LockError::Held`], naming the
    /// owner's pid, while another process (or another `NodeLock` in this
    /// one) holds it.
    pub fn acquire(state_dir: &Path) -> Result<Self, LockError> {
        create_private_dir(state_dir).map_err(|source| LockError::Io {
            op: "create the directory of",
            path: state_dir.join(NODE_LOCK_FILE),
            source,
        })?;
        Ok(Self {
            _lock: DirLock::acquire(state_dir, NODE_LOCK_FILE)?,
        })
    }
}

/// Creates `dir` and its missing parents with mode 0700 (an existing
/// directory keeps its mode).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;

    #[test]
    fn one_lock_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        let first = NodeLock::acquire(&state).unwrap();
        assert!(matches!(
            NodeLock::acquire(&state),
            Err(LockError::Held { pid: Some(p), .. }) if p == std::process::id()
        ));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(first);
        NodeLock::acquire(&state).unwrap();
    }
}
