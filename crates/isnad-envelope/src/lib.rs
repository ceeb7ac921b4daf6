//! Isnad secure envelope (work in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ids;
pub use ids::{AgencyId, AgencyIdError, MessageId, MAX_AGENCY_ID_LEN};
