//! Format versions of a node's files, and the migrations that bring the
//! state database of an earlier release up to this one
//! (spec/README.md, "Versions and migrations").
//!
//! | what | where the version is | this release |
//! |---|---|---|
//! | state database (redb) | `meta` table, key `schema_version`, u64 big-endian | [`STATE_FORMAT`] |
//! | audit-log directory | `<log>/version` ([`isnad_log::format`]) | [`isnad_log::format::LOG_FORMAT`] |
//! | configuration | `format = N` in `config.toml`, absent = 1 | [`CONFIG_FORMAT`] |
//!
//! The state database is brought up to date when it is opened
//! ([`crate::store::Store::open`]), before anything else reads or writes
//! it: each step takes version N to N + 1 in **one** redb write
//! transaction that also records N + 1, committed durably. A crash (or a
//! failed step) before the commit leaves version N and its data exactly as
//! they were, and the next start runs the step again; a crash between
//! steps resumes at the next one. A database of a newer release is refused
//! with [`FormatError::Newer`] and left untouched.
//!
//! Release 0.1.0 wrote no version: a database with tables but no
//! `schema_version` is version 1. A database without tables is new and is
//! stamped with [`STATE_FORMAT`] directly.

use redb::{Database, ReadTransaction, ReadableDatabase as _, TableError, WriteTransaction};

use super::{StoreError, META};

/// The state database format this release writes and reads.
///
/// 1: release 0.1.0 (no version recorded). 2: the version is recorded in
/// the `meta` table (step 1 → 2 records it; no table changed). 3: the
/// outbox records whose `sent` entry is not noted are indexed in
/// `outbox_unlogged` (start-up reads those and the pending ones, not the
/// whole outbox), records whose content is held are queued by kind and age
/// in `retention_queue`, and purged records are marked in `purged`.
pub const STATE_FORMAT: u64 = 3;

/// The configuration format this release reads and writes (`format` in
/// `config.toml`; absent = 1).
pub const CONFIG_FORMAT: u32 = 1;

/// The key of the format version in [`META`].
const VERSION_KEY: &str = "schema_version";

/// A file of this node was written in a format this release cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    // --- Written by a newer release (the operator runs the wrong binary) ---
    /// The file names a format newer than this release reads. Nothing was
    /// read or changed: run the release that wrote it, or a newer one.
    #[error("{what} is format {found}, written by a newer release; this release reads formats 1 to {supported}: run that release or a newer one")]
    Newer {
        /// Which file.
        what: &'static str,
        /// The format the file names.
        found: u64,
        /// The newest format this release reads.
        supported: u64,
    },

    // --- The file is damaged ---
    /// The recorded version is not a version at all (wrong length or 0).
    /// Nothing was changed; restore the file from a backup.
    #[error("{what}: the recorded format version is unreadable; restore it from a backup")]
    Unreadable {
        /// Which file.
        what: &'static str,
    },
}

/// A migration of the state database from version `from` to `from + 1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// The version it starts from.
    pub(crate) from: u64,
    /// What it does, for the log.
    pub(crate) what: &'static str,
    /// Rewrites tables inside the step's transaction; an error aborts the
    /// step (the transaction is dropped, nothing is written).
    pub(crate) run: fn(&WriteTransaction) -> Result<(), StoreError>,
}

/// Every step, in order: `STEPS[i]` takes version `i + 1` to `i + 2`.
pub(crate) const STEPS: &[Step] = &[
    Step {
        from: 1,
        what: "record the format version in the meta table",
        run: |_| Ok(()),
    },
    Step {
        from: 2,
        what: "index the unlogged outbox records and queue every record for retention",
        run: super::retention::index_unlogged,
    },
];

/// Brings the state database up to [`STATE_FORMAT`] (see the module docs);
/// returns the version it found (`None`: a new database).
pub(crate) fn upgrade_state(db: &Database) -> Result<Option<u64>, StoreError> {
    upgrade_with(db, STEPS, STATE_FORMAT)
}

/// [`upgrade_state`] with the steps and target given (tests).
pub(crate) fn upgrade_with(
    db: &Database,
    steps: &[Step],
    target: u64,
) -> Result<Option<u64>, StoreError> {
    let found = state_version(db)?;
    let Some(mut at) = found else {
        let txn = db.begin_write()?;
        set_version(&txn, target)?;
        txn.commit()?;
        return Ok(None);
    };
    if at > target {
        return Err(FormatError::Newer {
            what: "the state database",
            found: at,
            supported: target,
        }
        .into());
    }
    if at < target {
        tracing::info!(from = at, to = target, "migrating the state database");
    }
    while at < target {
        let step = steps
            .iter()
            .find(|s| s.from == at)
            .ok_or(FormatError::Unreadable {
                what: "the state database (no migration from its version)",
            })?;
        let txn = db.begin_write()?;
        (step.run)(&txn)?;
        set_version(&txn, at + 1)?;
        txn.commit()?;
        tracing::info!(
            from = at,
            to = at + 1,
            step = step.what,
            "state database migrated"
        );
        at += 1;
    }
    Ok(found)
}

/// The recorded version; 1 for a database of release 0.1.0 (tables, no
/// version); `None` for a new database (no tables).
pub(crate) fn state_version(db: &Database) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    let recorded = match txn.open_table(META) {
        Ok(t) => t.get(VERSION_KEY)?.map(|v| v.value().to_vec()),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match recorded {
        Some(bytes) => {
            let v = <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or(FormatError::Unreadable {
                    what: "the state database",
                })?;
            Ok(Some(v))
        }
        None if has_tables(&txn)? => Ok(Some(1)),
        None => Ok(None),
    }
}

fn has_tables(txn: &ReadTransaction) -> Result<bool, StoreError> {
    Ok(txn.list_tables()?.next().is_some() || txn.list_multimap_tables()?.next().is_some())
}

fn set_version(txn: &WriteTransaction, v: u64) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(VERSION_KEY, v.to_be_bytes().as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests panic on failure by design.

    use isnad_log::disk::DiskFaults;

    use super::*;
    use crate::storage::FaultyBackend;
    use redb::TableDefinition;

    const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");

    /// A database as release 0.1.0 left it: tables, no version.
    fn v1_database(path: &std::path::Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap();
        txn.open_table(RECORDS)
            .unwrap()
            .insert("a", b"old".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    fn record(db: &Database) -> Vec<u8> {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(RECORDS).unwrap();
        t.get("a").unwrap().unwrap().value().to_vec()
    }

    /// Test steps: 1 → 2 records the version only, 2 → 3 rewrites a
    /// record; a step that fails after writing, to stand for a crash.
    const TEST_STEPS: &[Step] = &[
        Step {
            from: 1,
            what: "record the version",
            run: |_| Ok(()),
        },
        Step {
            from: 2,
            what: "rewrite the record",
            run: |txn| {
                txn.open_table(RECORDS)?.insert("a", b"new".as_slice())?;
                Ok(())
            },
        },
    ];
    const FAILING_SECOND: &[Step] = &[
        TEST_STEPS[0],
        Step {
            from: 2,
            what: "rewrite the record, then fail",
            run: |txn| {
                txn.open_table(RECORDS)?.insert("a", b"half".as_slice())?;
                Err(StoreError::Db("the step failed".into()))
            },
        },
    ];

    #[test]
    fn an_old_database_is_migrated_step_by_step_and_a_failed_step_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        v1_database(&path);
        let db = Database::open(&path).unwrap();
        assert_eq!(state_version(&db).unwrap(), Some(1));
        // The second step fails after writing: its transaction is dropped
        // uncommitted; the first step's commit stands.
        assert!(upgrade_with(&db, FAILING_SECOND, 3).is_err());
        drop(db);
        let db = Database::open(&path).unwrap();
        assert_eq!(state_version(&db).unwrap(), Some(2));
        assert_eq!(record(&db), b"old");
        // The next start resumes at version 2.
        assert_eq!(upgrade_with(&db, TEST_STEPS, 3).unwrap(), Some(2));
        assert_eq!(state_version(&db).unwrap(), Some(3));
        assert_eq!(record(&db), b"new");
        // Up to date: nothing more to do.
        assert_eq!(upgrade_with(&db, TEST_STEPS, 3).unwrap(), Some(3));
        // A newer database is refused by an older release, untouched.
        match upgrade_with(&db, TEST_STEPS, 2) {
            Err(StoreError::Format(FormatError::Newer {
                found: 3,
                supported: 2,
                ..
            })) => {}
            other => panic!("expected Newer, got {other:?}"),
        }
        assert_eq!(state_version(&db).unwrap(), Some(3));
    }

    /// Power loss at every sync of a migration: after the disk comes back
    /// (only what a completed sync covered), the database is at some
    /// version with exactly that version's data, and opening it again
    /// finishes the migration.
    #[test]
    fn power_loss_at_every_sync_of_a_migration_leaves_a_version_and_its_data() {
        let dir = tempfile::tempdir().unwrap();
        // `crash_after_syncs(n)`: power is cut right after the n-th sync
        // (n >= 1), so everything written after it is lost.
        let mut crash_at = 1;
        let mut left_at = std::collections::BTreeSet::new();
        loop {
            let path = dir.path().join(format!("state-{crash_at}.redb"));
            v1_database(&path);
            let faults = DiskFaults::new();
            faults.crash_after_syncs(crash_at);
            let opened = redb::Builder::new()
                .create_with_backend(FaultyBackend::open(&faults, &path).unwrap())
                .map_err(StoreError::from)
                .and_then(|db| upgrade_with(&db, TEST_STEPS, 3));
            let crashed = faults.crashed();
            faults.crash();
            faults.restore().unwrap();
            let db = Database::open(&path).unwrap();
            let v = state_version(&db).unwrap().unwrap();
            let want: &[u8] = if v >= 3 { b"new" } else { b"old" };
            assert_eq!(record(&db), want, "crash after sync {crash_at}: v{v}");
            if crashed {
                left_at.insert(v);
            }
            upgrade_with(&db, TEST_STEPS, 3).unwrap();
            assert_eq!(state_version(&db).unwrap(), Some(3));
            assert_eq!(record(&db), b"new");
            if !crashed {
                assert!(opened.is_ok(), "{opened:?}");
                break;
            }
            crash_at += 1;
            assert!(crash_at < 64, "the migration never finished");
        }
        eprintln!(
            "{} crash points, left at versions {left_at:?}",
            crash_at - 1
        );
        // Both steps' commits were crashed into.
        assert!(crash_at > 2, "only {} crash points", crash_at - 1);
        // Crashes left the database before the first step, between the
        // two, and after the second (7 crash points with redb 4).
        assert_eq!(left_at.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_new_database_is_stamped_and_the_store_records_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(crate::store::Store::open(&path).unwrap());
        let db = Database::open(&path).unwrap();
        assert_eq!(state_version(&db).unwrap(), Some(STATE_FORMAT));
        drop(db);
        // A store written by a newer release is refused at open.
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        set_version(&txn, STATE_FORMAT + 1).unwrap();
        txn.commit().unwrap();
        drop(db);
        match crate::store::Store::open(&path) {
            Err(StoreError::Format(FormatError::Newer { found, .. })) => {
                assert_eq!(found, STATE_FORMAT + 1);
            }
            Err(e) => panic!("expected Newer, got {e}"),
            Ok(_) => panic!("a newer database was opened"),
        }
    }
}
