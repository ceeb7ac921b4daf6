//! Idempotent submissions (`Idempotency-Key` on `POST /v1/messages`,
//! spec/api.yaml): a client that lost the connection after the node stored
//! its message cannot know the id; retrying with the same key returns the
//! original answer instead of sending the message twice.
//!
//! - **Atomic with the message.** The key is written in the same write
//!   transaction as the outbox record ([`NodeHandle::submit_keyed`],
//!   [`crate::store::Store::insert_submission`]): after a
//!   crash either both exist or neither, so a retry after any failure is
//!   safe. A refused submission (policy, validation) stores nothing and a
//!   retry is judged again.
//! - **Same key, same request** (the SHA-256 of the request's canonical
//!   JSON: object keys sorted, no insignificant white space): the stored
//!   message id; **a different request**: refused, the key stays bound to
//!   the first one. **The same key while a request with it is in progress**:
//!   refused at once ([`InProgress`]), so two racing retries cannot both
//!   submit.
//! - **Bounded retention.** A key is remembered for [`RETENTION_MS`] (24 h)
//!   from its submission; older keys count as unknown. Expired keys are
//!   purged lazily, a few per keyed submission, through a time index, so
//!   the tables hold about one day's keys.
//! - **Versioned records**: CBOR `{v: 1, request, message, at_ms}`; another
//!   `v` is reported as a damaged store, never misread.
//!
//! [`NodeHandle::submit_keyed`]: crate::NodeHandle::submit_keyed

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub use crate::store::idempotency::{
    held, lookup, BadKey, Claim, Prior, MAX_KEY_LEN, RETENTION_MS,
};

/// Keys of requests being submitted right now; see [`InProgress::enter`].
#[derive(Debug, Default, Clone)]
pub struct InProgress(Arc<Mutex<HashSet<String>>>);

impl InProgress {
    /// Marks `key` as in progress until the guard is dropped; `None` if a
    /// request with it is in progress already.
    pub fn enter(&self, key: &str) -> Option<InProgressGuard> {
        let mut set = self.0.lock().ok()?;
        set.insert(key.to_owned()).then(|| InProgressGuard {
            set: Arc::clone(&self.0),
            key: key.to_owned(),
        })
    }
}

/// Releases a key marked by [`InProgress::enter`] when dropped.
#[derive(Debug)]
pub struct InProgressGuard {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for InProgressGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.key);
        }
    }
}
