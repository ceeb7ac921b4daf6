//! The format version of a log directory (`spec/audit-log.md` §6.6).
//!
//! ```text
//! <dir>/version      the directory's format version: ASCII decimal, then "\n"
//! ```
//!
//! [`Log::open`](crate::Log::open) checks it first, under the directory's
//! lock and before it reads or repairs anything else:
//!
//! - no `version` file: the directory was made before versions existed
//!   (release 0.1.0, whose `entries` file is format 1 — its magic
//!   `ISNADLG1` says so) or is new; either way the marker is written for
//!   the format found (1, or [`LOG_FORMAT`] for a new directory);
//! - a version this release reads: opened as is;
//! - format 1 (one `entries` file holding every entry, magic `ISNADLG1`):
//!   the open moves it into tiles (format 2: entry bundles and hash tiles
//!   under `tile/`, the `entries` file keeping only the tail, magic
//!   `ISNADLG2`; `spec/audit-log.md` §6) and names format 2 in the marker
//!   only after the tiles and the new tail are durable
//!   ([`mark_current`]); a crash before that leaves format 1 named, and the
//!   next open finds the `entries` file by its magic and migrates again;
//! - a later older version: brought up to [`LOG_FORMAT`] one step at a time
//!   (none exist yet);
//! - a newer version: [`LogError::UnsupportedFormat`], nothing read or changed.
//!
//! Crash safety: the marker is replaced atomically (a temporary file,
//! `fsync`, `rename`, `fsync` of the directory), and a step writes its new
//! files durably before it names its version in the marker, so a crash at
//! any point leaves the old version named and the next open runs the step
//! again. Steps are therefore written to be run again over their own
//! partial output.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::log::{LogError, ENTRIES_FILE};

/// The format version of a log directory this release writes: 2, tiles.
pub const LOG_FORMAT: u64 = 2;

/// Name of the version marker inside the log directory.
pub const VERSION_FILE: &str = "version";

/// Checks the format version of the log directory `dir` (whose lock the
/// caller holds), migrates an older one, and returns the version it is now.
pub(crate) fn check(dir: &Path) -> Result<u64, LogError> {
    let path = dir.join(VERSION_FILE);
    let found = match fs::read(&path) {
        Ok(bytes) => parse(&bytes).ok_or_else(|| LogError::NotALog { path: path.clone() })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let legacy = dir.join(ENTRIES_FILE).exists();
            let v = if legacy { 1 } else { LOG_FORMAT };
            write_marker(dir, v)?;
            v
        }
        Err(error) => {
            return Err(LogError::Io {
                op: "read",
                path,
                error,
            })
        }
    };
    if found > LOG_FORMAT {
        return Err(LogError::UnsupportedFormat {
            dir: dir.to_owned(),
            found,
            supported: LOG_FORMAT,
        });
    }
    // Format 1 is brought to 2 by the open itself (module docs); a later
    // format adds its migration steps here, one per version.
    Ok(found)
}

/// Names [`LOG_FORMAT`] in the marker once the open has brought a
/// directory of format `found` up to it (its files are durable by then).
pub(crate) fn mark_current(dir: &Path, found: u64) -> Result<(), LogError> {
    if found < LOG_FORMAT {
        write_marker(dir, LOG_FORMAT)?;
    }
    Ok(())
}

/// `1\n`, `2\n`, …: decimal without sign or leading zeros, one newline.
fn parse(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.strip_suffix(b"\n")?;
    let text = std::str::from_utf8(digits).ok()?;
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&v| v >= 1)
}

/// Replaces the marker with `version`, durably and atomically.
fn write_marker(dir: &Path, version: u64) -> Result<(), LogError> {
    let tmp = dir.join("version.tmp");
    let path = dir.join(VERSION_FILE);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |error| LogError::Io { op, path, error }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(format!("{version}\n").as_bytes())
        .map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use super::*;
    use crate::{Entry, EventType, Log};

    fn entry() -> Entry {
        let mut e = Entry::new(EventType::Sent, 1_790_000_000_000);
        e.message_id = Some(crate::testing::message_id(1));
        e.sender = Some(isnad_types::AgencyId::new("iq.moi.ahtd").unwrap());
        e.recipient = Some(isnad_types::AgencyId::new("fr.mj.bepi").unwrap());
        e.envelope_sha256 = Some(crate::testing::digest(1));
        e
    }

    #[test]
    fn marker_is_written_for_new_and_old_directories_and_a_newer_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A new directory gets the current format.
        let new = tmp.path().join("new");
        drop(Log::open(&new).unwrap());
        assert_eq!(fs::read(new.join(VERSION_FILE)).unwrap(), b"2\n");
        // A directory without a marker but with an entries file is taken as
        // format 1 and named format 2 once open (tiles.rs in tests/ checks
        // the move of a real format-1 file into tiles).
        let old = tmp.path().join("old");
        {
            let (log, _) = Log::open(&old).unwrap();
            log.append(entry()).unwrap();
        }
        fs::remove_file(old.join(VERSION_FILE)).unwrap();
        let (log, report) = Log::open(&old).unwrap();
        assert_eq!(report.size, 1);
        drop(log);
        assert_eq!(fs::read(old.join(VERSION_FILE)).unwrap(), b"2\n");
        // A newer format is refused, and nothing is changed.
        fs::write(old.join(VERSION_FILE), b"3\n").unwrap();
        let entries = fs::read(old.join(ENTRIES_FILE)).unwrap();
        match Log::open(&old) {
            Err(LogError::UnsupportedFormat {
                found: 3,
                supported: 2,
                ..
            }) => {}
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
        assert_eq!(fs::read(old.join(ENTRIES_FILE)).unwrap(), entries);
        assert_eq!(fs::read(old.join(VERSION_FILE)).unwrap(), b"3\n");
        // A damaged marker is not guessed at.
        for bad in [&b"01\n"[..], b"1", b"", b"one\n", b"0\n", b"1\n\n"] {
            fs::write(old.join(VERSION_FILE), bad).unwrap();
            assert!(
                matches!(Log::open(&old), Err(LogError::NotALog { .. })),
                "{bad:?}"
            );
        }
    }
}
