//! The rules that make Isnad more than a pipe: the MLA request lifecycle
//! (who may move a request from which state to which) and the handling of
//! shared intelligence (who may pass it on, permissions, retraction,
//! correction). spec/protocol.md §13 is the normative text.
//!
//! ```text
//!  mla-request ─► submitted ─receipt─► delivered ─► registered ─► under-review ⇄ supplement-requested
//!       under-review ─► accepted | conditions-proposed ─► … ─► in-execution ─► results-transmitted ─► closed
//!       (postponed, refused with grounds, withdrawn by the requesting side)
//! ```
//!
//! What it does: pure checks and state records, `now` passed in: the
//! transition table ([`TRANSITIONS`]), [`RequestRecord`] with
//! [`RequestRecord::check_local`] / [`RequestRecord::check_peer`] /
//! [`RequestRecord::apply`] and deadlines ([`RequestRecord::overdue`]);
//! [`needs_permission`], [`ShareRecord`] and the share checks.
//!
//! What it does not do: no storage, no clock, no network, no sealing. The
//! node keeps the records in its database and calls these checks before it
//! seals a message and before it accepts one.
//!
//! ```
//! use isnad_types::MlaState;
//! use isnad_mla::{check_rule, LifecycleError, Side};
//!
//! // Only the requested side accepts a request.
//! assert!(check_rule(MlaState::UnderReview, MlaState::Accepted, Side::Requested).is_ok());
//! assert!(matches!(
//!     check_rule(MlaState::UnderReview, MlaState::Accepted, Side::Requesting),
//!     Err(LifecycleError::WrongSide { .. })
//! ));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod date;
mod intel;
mod lifecycle;

pub use intel::{
    check_receive_share, check_send_share, needs_permission, IntelError, Permission, ShareEvent,
    ShareEventKind, ShareRecord,
};
pub use lifecycle::{
    check_rule, check_status_body, is_final, rule, state_name, By, LifecycleError, RequestRecord,
    Side, StatusEvent, Transition, TRANSITIONS,
};

/// Largest stored record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// Most events one request or share record holds. A message that would add
/// one more is refused for good ([`LifecycleError::RecordFull`],
/// [`IntelError::ShareFull`]), so a record stays well below
/// [`MAX_RECORD_BYTES`] (an event takes a few hundred bytes at most).
pub const MAX_RECORD_EVENTS: usize = 4096;

/// A stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a record of this version: the state file is
    /// damaged or was written by an incompatible version. Restore it from a
    /// backup; the audit log keeps the history.
    #[error("stored workflow record is unreadable: {0}")]
    Unreadable(String),
}

fn to_cbor<T: serde::Serialize>(t: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serializing plain data into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(t, &mut out);
    out
}

fn from_cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::Unreadable(format!(
            "{} bytes, more than {MAX_RECORD_BYTES}",
            bytes.len()
        )));
    }
    let mut rest = bytes;
    let t = ciborium::de::from_reader_with_recursion_limit(&mut rest, 64)
        .map_err(|e: ciborium::de::Error<std::io::Error>| RecordError::Unreadable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RecordError::Unreadable(format!(
            "{} bytes after the record",
            rest.len()
        )));
    }
    Ok(t)
}

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point for the fuzz target in `fuzz/` (not a stable API).

    /// Decodes `data` as each stored record type.
    pub fn records(data: &[u8]) {
        let _ = crate::RequestRecord::from_cbor(data);
        let _ = crate::ShareRecord::from_cbor(data);
    }
}
