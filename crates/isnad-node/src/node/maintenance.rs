//! The node's upkeep: recovery after a crash or a storage fault, the
//! health loop that brings failed storage back, and the checkpoint loop.

use std::sync::Arc;
use std::time::Duration;

use crate::workflow::{self};

use super::inner::Inner;
use super::types::NodeError;
use super::witness;
use crate::reseal;

/// Watches the node's condition (spec/transport.md §9): logs its changes,
/// and while the log or the database fails tries to bring them back, with
/// backoff; once both are back, logs what could not be logged meanwhile
/// (as after a crash) and wakes the delivery loop.
pub(super) async fn health_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let (initial, max) = reopen_backoff(
        inner.config.delivery.initial_backoff_ms,
        inner.config.delivery.max_backoff_secs,
    );
    let mut wait = initial;
    loop {
        let sleep = if inner.condition().storage_fails() {
            let i = Arc::clone(&inner);
            inner.health.set_catching_up(true);
            let back = tokio::task::spawn_blocking(move || i.reopen_storage())
                .await
                .unwrap_or(false);
            if back {
                if let Err(e) = inner.recover().await {
                    tracing::debug!(error = %e, "logging what was missed failed");
                }
                inner.health.set_catching_up(false);
                inner.condition();
                inner.wake.notify_one();
                wait = initial;
            } else {
                inner.health.set_catching_up(false);
                wait = wait.saturating_mul(2).min(max);
            }
            wait
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Signs a checkpoint every `checkpoint.interval_secs` when the log grew.
pub(super) async fn checkpoint_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let every = Duration::from_secs(inner.config.checkpoint.interval_secs.max(1));
    let mut signed_size = None;
    loop {
        let size = inner.audit.size();
        // Growth by witnesses' cosignature records alone does not call for a
        // new checkpoint (that would need witnessing, and so on forever).
        if signed_size != Some(size)
            && !signed_size.is_some_and(|from| witness::only_cosignatures(&inner.audit, from, size))
        {
            match inner.checkpoint().await {
                Ok(_) => signed_size = Some(size),
                Err(e) => tracing::error!(error = %e, "cannot sign a checkpoint"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Longest wait between two attempts to bring a failed log or database
/// back (the attempts back off from `delivery.initial_backoff_ms`).
pub(super) const MAX_REOPEN_WAIT: Duration = Duration::from_secs(10);

/// The first and the longest wait between attempts to reopen failing
/// storage: the delivery backoff's, both at most [`MAX_REOPEN_WAIT`]
/// whatever the configured delivery backoff is (an initial backoff above it
/// used to make `clamp` panic and end the health task).
pub(super) fn reopen_backoff(initial_ms: u64, max_secs: u64) -> (Duration, Duration) {
    let initial = Duration::from_millis(initial_ms.max(1)).min(MAX_REOPEN_WAIT);
    let max = Duration::from_secs(max_secs)
        .min(MAX_REOPEN_WAIT)
        .max(initial);
    (initial, max)
}

impl Inner {
    /// Tries to bring a failed log and database back (blocking: reopens,
    /// syncs). True when neither fails any more.
    pub(super) fn reopen_storage(&self) -> bool {
        let log = self.audit.reopen();
        if let Err(e) = &log {
            tracing::debug!(error = %e, "audit log not reopened yet");
        }
        let db = self.store.reopen();
        if let Err(e) = &db {
            tracing::debug!(error = %e, "state database not reopened yet");
        }
        log.is_ok() && db.is_ok()
    }

    pub(super) async fn checkpoint(self: &Arc<Self>) -> Result<String, NodeError> {
        let log = Arc::clone(&self.audit);
        let key = Arc::clone(&self.log_key);
        let signed = tokio::task::spawn_blocking(move || log.sign_checkpoint(&key))
            .await
            .map_err(|e| NodeError::Audit(e.to_string()))?
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        if let Ok(mut c) = self.latest_checkpoint.lock() {
            *c = Some(signed.note.clone());
        }
        witness::after_checkpoint(self, &signed);
        Ok(signed.note)
    }

    /// After a crash: every outbox message whose `sent` entry is missing
    /// gets it now, and so does every request or share event whose
    /// `status-changed` entry is missing (spec/transport.md §7). At start,
    /// queued messages sealed with a revoked key of this node are re-sealed
    /// first (their new `sent` entries are then missing, crate::reseal).
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), NodeError> {
        for rec in self.store.unsettled_outbox()? {
            let rec = if !self.is_in_flight(rec.id.as_bytes())
                && reseal::reseal_if_revoked(&self.sealer(), &self.store, &rec).await?
            {
                match self.store.outbox(&rec.id)? {
                    Some(now) => now,
                    None => continue,
                }
            } else {
                rec
            };
            // A message in flight belongs to the task submitting or
            // delivering it, which logs its `sent` entry itself (recovery
            // also runs after a storage fault, while submissions go on).
            if rec.sent_index.is_none() && !self.is_in_flight(rec.id.as_bytes()) {
                tracing::warn!(id = %rec.id, "logging a sent entry missed before a crash");
                self.log_submitted(&rec, &workflow::Plan::default()).await?;
            }
        }
        let changes = workflow::unlogged_changes(&self.store, &self.config.agency)?;
        let missed = changes.entries().len();
        if missed > 0 {
            tracing::warn!(
                count = missed,
                "logging status changes missed before a crash"
            );
            self.log_plan(&changes).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_backoff_is_bounded_for_any_delivery_backoff() {
        let s = Duration::from_secs;
        assert_eq!(reopen_backoff(50, 1), (Duration::from_millis(50), s(1)));
        assert_eq!(
            reopen_backoff(500, 300),
            (Duration::from_millis(500), MAX_REOPEN_WAIT)
        );
        // An initial delivery backoff above the bound (valid config) used
        // to panic here.
        assert_eq!(
            reopen_backoff(15_000, 1),
            (MAX_REOPEN_WAIT, MAX_REOPEN_WAIT)
        );
        assert_eq!(
            reopen_backoff(0, 0),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
    }
}
