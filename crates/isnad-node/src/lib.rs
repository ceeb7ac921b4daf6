//! The Isnad node: QUIC transport, durable outbox and inbox, reliable
//! delivery with signed receipts, and the audit trail of both.
//!
//! A node is assembled here, not in the binary: [`node_dir::NodeDir`] loads a
//! node's directory and starts it with its local API, metrics and directory
//! watcher ([`node_dir::NodeDir::start`]); [`NodeHandle::start`] is the lower
//! level for callers that bring their own keys, directory and storage (tests).
//!
//! The decisions of the message path live in [`node_core`] (sans-IO: time,
//! random bytes and records in, entries and records out) and the audit
//! entries in [`exchange`]; `node.rs` and `relay.rs` are the async driver
//! that reads the state, calls them, and carries out what they return in
//! the order spec/transport.md requires.
//!
//! One message, submit to settle (direct delivery):
//!
//! ```text
//! sender                                         recipient
//! NodeHandle::submit_keyed
//!   workflow::check_outgoing, seal
//!   Store::insert_submission       (durable; the client gets the id)
//!   Inner::log_submitted           exchange::sent → log
//! delivery_loop / spawn_delivery
//!   Inner::deliver_out
//!     outbound::expired ─ yes ─▶ outbound::expire
//!     Inner::attempt → exchange(Op::Deliver) ──▶ serve_stream → read_request
//!                                                Inner::deliver_in
//!                                                  Opener::open (inbox = replay set)
//!                                                  Directory::allows
//!                                                Inner::accept_end_to_end
//!                                                  workflow::check_incoming
//!                                                  inbound::accept
//!                                                  Inner::acknowledge  received, receipt-sent → log
//!                                                    (inbound::Acceptance::indexes, make_receipt)
//!                                                  Store::insert_inbox_checked (durable)
//!                                                  inbound::after_inbox (withdraw if not stored)
//!     outbound::classify  ◀── Response::Receipt ──
//!       (outbound::check_receipt)
//!     outbound::settle    receipt-received / delivery-failed → log, or retry (Backoff)
//!     Inner::finish       Store::modify_outbox (lazy); waiters woken
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
mod audit;
pub mod backup;
mod cases;
pub mod config;
pub mod exchange;
pub mod federation;
pub mod health;
pub mod idempotency;
pub mod metrics;
mod node;
pub mod node_core;
pub mod node_dir;
mod relay;
mod reseal;
pub mod storage;
pub mod store;
pub mod token_keys;
pub use store::format as formats;
pub mod workflow;

#[cfg(test)]
mod format_tests;

pub use node::export::{ExportAt, ExportError, Exported};
pub use node::witness::{OwnCheckpoint, WitnessStatus, WitnessedLog};
pub use node::{Directory, Identity, NodeError, NodeHandle, Peer, PIN_RECHECK};
