//! The shared vocabulary of Isnad: the names every crate uses and none of
//! them owns.
//!
//! ```text
//!                 isnad-types   ids, kinds, error codes, bodies, limits, bounded CBOR
//!                     │ (attachment descriptors: isnad-attach)
//!        ┌─────────────┬──────────┴──┬──────────────┐
//!   isnad-wire     isnad-mla     isnad-log     isnad-envelope (keys, COSE, seal/open)
//!                                                 └─ isnad-trust, isnad-node, isnad
//! ```
//!
//! What belongs here: agency ids ([`AgencyId`]) and message ids
//! ([`MessageId`]), message kinds ([`Kind`]) and error codes ([`ErrorCode`])
//! with their wire names, the typed message bodies ([`body`]), the bounds on
//! peer input ([`Limits`]) and the bounded CBOR scan and deterministic
//! encoding ([`cbor`]) that every decoder runs first. A crate that only needs
//! to name an agency, a message or a refusal depends on this crate alone.
//!
//! What does not: keys, signatures, encryption, anything that seals or
//! opens an envelope (isnad-envelope), and any I/O. Its one cryptographic
//! dependency comes through isnad-attach (ring only, no curve crate): the
//! bodies list attachment descriptors, whose codec and checks live there
//! (spec/attachments.md §6), so a body decodes only to consistent
//! attachments. Its optional `ring` feature (turned on by isnad-envelope)
//! adds [`MessageId::random`], [`MessageId::time_ordered`]
//! and [`Digest::sha256`], thin wrappers over constructors that take the
//! random bytes or the digest as input.
//!
//! ```
//! use isnad_types::{AgencyId, ErrorCode, Kind, MessageId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let agency = AgencyId::new("iq.moi.ahtd")?;
//! assert_eq!(agency.country(), "iq");
//! let code: ErrorCode = "not-yet-valid".parse()?;
//! assert!(code.is_temporary());
//! assert_eq!(Kind::parse("mla-request"), Some(Kind::MlaRequest));
//! let id = MessageId::time_ordered_from(1_790_000_000_000, [7; 10]);
//! assert_eq!(MessageId::from_hex(&id.to_hex()), Some(id));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
pub mod bstr;
pub mod cbor;
mod ids;
mod limits;
mod names;

pub use body::*;
pub use bstr::Digest;
pub use cbor::CborError;
pub use ids::{AgencyId, AgencyIdError, MessageId, RandomError, MAX_AGENCY_ID_LEN};
pub use limits::Limits;
pub use names::{ErrorCode, Kind, UnknownErrorCode, PROTOCOL_VERSION};
