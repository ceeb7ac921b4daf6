//! Exclusive ownership of a directory by one open file description.
//!
//! A [`DirLock`] is an advisory `flock(2)` lock held on an open descriptor
//! of a lock file inside the directory. The kernel releases it when the
//! descriptor is closed, including when the owning process dies (`kill -9`,
//! power loss): there is no stale lock to detect and no takeover to get
//! wrong. The lock file itself is never removed (removing it would let a
//! second process lock a new file of the same name while the first still
//! holds the old one). While locked it holds the owner's process id, for
//! error messages only: the id is never used to decide anything.
//!
//! Two `DirLock`s on the same directory conflict even inside one process
//! (each `acquire` opens its own descriptor), so one process cannot open a
//! log or a node twice either.
//!
//! Failure behaviour: a lock held elsewhere is [`LockError::Held`], naming
//! the owner's pid when it could be read; nothing in the directory is read,
//! written or repaired before the lock is taken (callers take it first).

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`LockError::Held`] waits for a new owner to write its pid
/// (it takes the lock first and writes the pid just after).
const PID_WAIT: Duration = Duration::from_millis(200);

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    // --- Another owner exists (the operator decides) ---
    /// Another process, or another open in this process, owns the
    /// directory. Stop that process or use its API instead.
    #[error("{} is in use by {}; stop it or use its API", .dir.display(), owner(*.pid))]
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The owner's process id as it wrote it in the lock file, when it
        /// could be read.
        pid: Option<u32>,
    },

    // --- The disk or operating system failed ---
    /// Creating, opening, locking or writing the lock file failed.
    #[error("cannot {op} lock file {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn owner(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

/// An exclusive lock on a directory, released when dropped (or when the
/// process dies).
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    /// Holding the descriptor holds the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock file `name` inside `dir` (created with mode 0600 if
    /// missing; `dir` must exist) and writes this process's id into it.
    ///
    /// Never blocks: if another descriptor holds the lock, returns
    /// [`LockError::Held`] with the pid the owner wrote.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, LockError> {
        let path = dir.join(name);
        let io = |op| {
            let path = path.clone();
            move |source| LockError::Io { op, path, source }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    pid: read_pid(&mut file),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
        }
        file.set_len(0).map_err(io("write"))?;
        file.seek(SeekFrom::Start(0)).map_err(io("write"))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io("write"))?;
        Ok(Self {
            dir: dir.to_owned(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The pid the owner wrote, waiting briefly for an owner that has just
/// taken the lock and not yet written it.
fn read_pid(file: &mut File) -> Option<u32> {
    let start = Instant::now();
    loop {
        let mut text = String::new();
        let pid = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text))
            .ok()
            .and_then(|_| text.trim().parse::<u32>().ok());
        if pid.is_some() || start.elapsed() >= PID_WAIT {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_owners_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "lock").unwrap();
        let err = DirLock::acquire(dir.path(), "lock").unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&std::process::id().to_string()));
        // The refused attempt left the owner's lock file alone.
        assert_eq!(
            std::fs::read_to_string(dir.path().join("lock"))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        drop(first);
        // Released by closing the descriptor; the file stays.
        assert!(dir.path().join("lock").exists());
        let again = DirLock::acquire(dir.path(), "lock").unwrap();
        assert_eq!(again.dir(), dir.path());
    }

    #[test]
    fn a_leftover_lock_file_without_a_holder_is_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        // What a crashed owner (or an older version) leaves behind.
        std::fs::write(dir.path().join("lock"), "1").unwrap();
        DirLock::acquire(dir.path(), "lock").unwrap();
    }

    #[test]
    fn lock_file_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let _l = DirLock::acquire(dir.path(), "lock").unwrap();
        let mode = std::fs::metadata(dir.path().join("lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
