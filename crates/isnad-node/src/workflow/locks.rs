//! Locks that serialize the check and the commit of messages changing the
//! same case record (the driver's part: the check itself is pure).

use super::{Plan, WorkflowError};

/// Locks that serialize the check and the write of messages changing the
/// same request or share record (striped by a hash of the record's key).
/// Without them, messages about one record checked at the same time (a burst
/// of corrections, several copies of one share) all but one fail
/// [`Plan::apply`] and are answered `unavailable`, and the sender's growing
/// backoff stalls them.
pub(crate) struct RecordLocks(Vec<tokio::sync::Mutex<()>>);

/// How many stripes [`RecordLocks`] has.
const LOCK_STRIPES: usize = 64;

/// How many times a check is repeated when the record it changes is not the
/// one locked (the state changed in between) before giving up with
/// [`WorkflowError::Conflict`].
const LOCK_TRIES: usize = 3;

impl RecordLocks {
    pub(crate) fn new() -> Self {
        Self(
            (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }

    async fn lock(&self, plan: &Plan) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash as _, Hasher as _};
        let key = plan.record()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let stripe = self.0.get((h.finish() % LOCK_STRIPES as u64) as usize)?;
        Some(stripe.lock().await)
    }

    /// Runs `check`, locks the record its plan changes, and runs `check`
    /// again under the lock: the returned plan cannot conflict with another
    /// locked writer as long as the guard is held (until the plan is
    /// applied).
    pub(crate) async fn checked<T>(
        &self,
        check: impl Fn() -> Result<(Plan, T), WorkflowError>,
    ) -> Result<(Plan, T, Option<tokio::sync::MutexGuard<'_, ()>>), WorkflowError> {
        let (mut plan, _) = check()?;
        for _ in 0..LOCK_TRIES {
            let guard = self.lock(&plan).await;
            let (again, t) = check()?;
            if again.record() == plan.record() {
                return Ok((again, t, guard));
            }
            plan = again;
        }
        Err(WorkflowError::Conflict)
    }
}
