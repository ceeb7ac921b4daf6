//! The node's condition: `ok`, or `degraded` with reasons (spec/transport.md
//! §9). This is the one health model of the node: a new fault that should
//! stop new work adds a [`Reason`] here rather than its own flag.
//!
//! | reason | set when | cleared when |
//! |---|---|---|
//! | `log-poisoned` | an audit-log write or sync failed | [`isnad_log::Log::reopen`] succeeded (tried with backoff) |
//! | `database-write-failing` | a state-database commit failed | [`crate::store::Store::reopen`] succeeded (tried with backoff) |
//! | `disk-below-floor` | free space of the state or log directory is below `[disk] free_space_floor_bytes` | space is back above it |
//! | `key-unavailable` | a private key's device (a PKCS#11 token) failed an operation | the key works again (re-tried when the condition is looked at, at most once a second) |
//!
//! While degraded the node accepts no new work: local submissions are
//! answered `unavailable` (HTTP 503) with the reason, incoming messages with
//! the wire error `unavailable` (the sender retries later). What was
//! accepted goes on: deliveries continue while only the disk is low, and
//! pause while the log or the database fails (their bookkeeping could not
//! be written) until it is back. Each change of condition is logged once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// Why the node is degraded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// An audit-log write or sync failed; the log refuses appends until it
    /// is reopened in place.
    LogPoisoned,
    /// A state-database commit failed; the database is closed until it is
    /// reopened.
    DatabaseFailing(String),
    /// Free space under a directory the node writes is below the floor.
    DiskBelowFloor {
        /// The directory.
        path: PathBuf,
        /// Bytes available to the node.
        free: u64,
        /// The configured floor.
        floor: u64,
    },
    /// A private key held in a device (a PKCS#11 token) cannot be used:
    /// which key, which device, what failed.
    KeyUnavailable(String),
}

/// Says which key's device fails now, if any ([`crate::token_keys::KeyHealth`]).
pub type KeyProbe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl Reason {
    /// The reason's stable name (API, metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::LogPoisoned => "log-poisoned",
            Reason::DatabaseFailing(_) => "database-write-failing",
            Reason::DiskBelowFloor { .. } => "disk-below-floor",
            Reason::KeyUnavailable(_) => "key-unavailable",
        }
    }

    /// Every reason's name, for metrics.
    pub const CODES: [&'static str; 4] = crate::metrics::DEGRADED_REASONS;

    /// Whether the node's storage fails (deliveries pause), as opposed to
    /// running low.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, Reason::LogPoisoned | Reason::DatabaseFailing(_))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::LogPoisoned => f.write_str(
                "log-poisoned: an audit-log write or sync failed; retrying until the disk takes writes",
            ),
            Reason::DatabaseFailing(e) => write!(
                f,
                "database-write-failing: {e}; retrying until the disk takes writes"
            ),
            Reason::DiskBelowFloor { path, free, floor } => write!(
                f,
                "disk-below-floor: {free} bytes free under {} (floor {floor}); free space",
                path.display()
            ),
            Reason::KeyUnavailable(e) => write!(
                f,
                "key-unavailable: {e}; new work waits until the key's device answers"
            ),
        }
    }
}

/// The node's condition: no reasons means `ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Condition {
    /// Why the node is degraded; empty when it is ok.
    pub reasons: Vec<Reason>,
}

impl Condition {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.reasons.is_empty()
    }

    /// `ok` or `degraded`.
    pub fn status(&self) -> &'static str {
        if self.is_ok() {
            "ok"
        } else {
            "degraded"
        }
    }

    /// Whether the log or the database fails (deliveries pause).
    pub fn storage_fails(&self) -> bool {
        self.reasons.iter().any(Reason::is_storage_failure)
    }

    /// `Err` with the reasons, as one line, when new work must be refused.
    pub fn accepting(&self) -> Result<(), String> {
        if self.is_ok() {
            return Ok(());
        }
        let why: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        Err(format!("node degraded: {}", why.join("; ")))
    }
}

/// Returns the bytes available under a directory.
pub type FreeSpaceProbe = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

/// Tracks the condition and logs its changes (one per node).
pub(crate) struct Health {
    floor: u64,
    dirs: Vec<PathBuf>,
    probe: Mutex<FreeSpaceProbe>,
    keys: Mutex<Option<KeyProbe>>,
    last: Mutex<Condition>,
    /// Bookkeeping failures in a row and the time before which no new
    /// delivery starts.
    hold: Mutex<(u32, Option<Instant>)>,
    /// Storage is back and the node is logging what it missed: no
    /// delivery starts yet (one `sent` entry per message, not two).
    catching_up: AtomicBool,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("floor", &self.floor)
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl Health {
    /// Watches the free space under `dirs` against `floor` bytes.
    pub(crate) fn new(floor: u64, dirs: Vec<PathBuf>) -> Self {
        Self {
            floor,
            dirs,
            probe: Mutex::new(Arc::new(free_space)),
            keys: Mutex::new(None),
            last: Mutex::new(Condition::default()),
            hold: Mutex::new((0, None)),
            catching_up: AtomicBool::new(false),
        }
    }

    /// Sets how the node learns that a key's device fails.
    pub(crate) fn set_key_probe(&self, probe: KeyProbe) {
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// Replaces how free space is measured (tests).
    pub(crate) fn set_probe(&self, probe: FreeSpaceProbe) {
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = probe;
    }

    /// The bytes free under `dir`, measured as the floor check measures
    /// them (the probe tests replace).
    pub(crate) fn free_space_at(&self, dir: &Path) -> std::io::Result<u64> {
        let probe = Arc::clone(&self.probe.lock().unwrap_or_else(|p| p.into_inner()));
        probe(dir)
    }

    /// The condition now, given the log's and the database's state; logs
    /// and exports it when it changed since the last look.
    pub(crate) fn condition(
        &self,
        log_poisoned: bool,
        db_fault: Option<String>,
        metrics: &Metrics,
    ) -> Condition {
        let mut c = Condition::default();
        if log_poisoned {
            c.reasons.push(Reason::LogPoisoned);
        }
        if let Some(e) = db_fault {
            c.reasons.push(Reason::DatabaseFailing(e));
        }
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(e) = keys.and_then(|probe| probe()) {
            c.reasons.push(Reason::KeyUnavailable(e));
        }
        if self.floor > 0 {
            let probe = Arc::clone(&self.probe.lock().unwrap_or_else(|p| p.into_inner()));
            for dir in &self.dirs {
                match probe(dir) {
                    Ok(free) if free < self.floor => {
                        c.reasons.push(Reason::DiskBelowFloor {
                            path: dir.clone(),
                            free,
                            floor: self.floor,
                        });
                        break;
                    }
                    Ok(_) => {}
                    // Cannot tell: do not refuse work on a guess.
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot measure free space")
                    }
                }
            }
        }
        self.observe(&c, metrics);
        c
    }

    /// Logs (once) and exports a change of condition. Free-space figures
    /// changing within `disk-below-floor` are not a change.
    fn observe(&self, c: &Condition, metrics: &Metrics) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let codes = |c: &Condition| c.reasons.iter().map(Reason::code).collect::<Vec<_>>();
        if codes(&last) == codes(c) {
            return;
        }
        if c.is_ok() {
            tracing::info!(was = ?codes(&last), "node condition ok again; accepting new work");
        } else {
            let why: Vec<String> = c.reasons.iter().map(ToString::to_string).collect();
            tracing::error!(reasons = ?why, "node degraded; refusing new work until it recovers");
        }
        metrics.set_degraded(&codes(c));
        *last = c.clone();
    }

    /// A delivery's bookkeeping failed: no new delivery starts for a
    /// while, doubling from `initial` up to `max` with each failure in a
    /// row. Returns whether this is the first failure of a row (log it).
    pub(crate) fn bookkeeping_failed(&self, initial: Duration, max: Duration) -> bool {
        let mut h = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let wait = initial
            .saturating_mul(1u32 << h.0.min(20))
            .min(max)
            .max(Duration::from_millis(1));
        h.0 = h.0.saturating_add(1);
        h.1 = Some(Instant::now() + wait);
        h.0 == 1
    }

    /// A delivery's bookkeeping succeeded: the row of failures ends.
    pub(crate) fn bookkeeping_ok(&self) {
        let mut h = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        if h.0 > 0 {
            *h = (0, None);
        }
    }

    /// Marks the time between storage coming back and the missed entries
    /// being logged, during which no delivery starts.
    pub(crate) fn set_catching_up(&self, on: bool) {
        self.catching_up.store(on, Ordering::SeqCst);
    }

    /// How long new deliveries must still wait: after bookkeeping failures,
    /// or (a short while at a time) while the node catches up.
    pub(crate) fn held_for(&self) -> Option<Duration> {
        if self.catching_up.load(Ordering::SeqCst) {
            return Some(Duration::from_millis(100));
        }
        let h = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        h.1.and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// Bytes available to unprivileged writers under `dir` (`statvfs`).
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_floor_degrades_and_recovers() {
        let m = Metrics::default();
        let h = Health::new(100, vec![PathBuf::from("/x")]);
        h.set_probe(Arc::new(|_| Ok(50)));
        let c = h.condition(false, None, &m);
        assert_eq!(c.status(), "degraded");
        assert!(c.accepting().is_err_and(|e| e.contains("disk-below-floor")));
        assert!(!c.storage_fails());
        h.set_probe(Arc::new(|_| Ok(150)));
        assert!(h.condition(false, None, &m).is_ok());
        let c = h.condition(true, Some("disk full".into()), &m);
        assert!(c.storage_fails());
        assert_eq!(
            c.reasons.iter().map(Reason::code).collect::<Vec<_>>(),
            ["log-poisoned", "database-write-failing"]
        );
    }

    #[test]
    fn bookkeeping_failures_back_off_and_reset() {
        let h = Health::new(0, Vec::new());
        let (i, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert!(h.bookkeeping_failed(i, max));
        assert!(!h.bookkeeping_failed(i, max));
        assert!(h.held_for().is_some_and(|d| d > Duration::from_millis(100)));
        h.bookkeeping_ok();
        assert!(h.held_for().is_none());
    }
}
