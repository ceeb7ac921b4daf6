//! The Isnad node: QUIC transport, durable outbox and inbox, reliable
//! delivery with signed receipts, and the audit trail of both.
//!
//! A node is assembled here, not in the binary: [`node_dir::NodeDir`] loads a
//! node's directory and starts it with its local API, metrics and directory
//! watcher ([`node_dir::NodeDir::start`]); [`NodeHandle::start`] is the lower
//! level for callers that bring their own keys, directory and storage (tests).
//!
//! The decisions of the message path live in [`node_core`] (sans-IO: time,
//! random bytes and records in, entries and records out) and every audit
//! entry is built in [`exchange`]; the `node` module tree and `relay.rs` are
//! the async driver that reads the state, calls them, and carries out what
//! they return in the order spec/transport.md requires. The driver is one
//! module per path, each depending only on the modules below it (a unit
//! test, `structure_tests`, fails on a module over 600 lines, on two
//! modules importing each other, and on an audit entry built outside
//! [`exchange`]):
//!
//! ```text
//! node (NodeHandle: start, submit, shutdown)
//!   ├─ inbound      accept_loop, serve_connection, serve_stream, read_request,
//!   │               deliver_in, open_checked, accept_end_to_end, refuse_workflow
//!   ├─ outbound     delivery_loop, spawn_delivery, deliver_out, attempt,
//!   │               exchange, request_on, finish, check_end_to_end
//!   ├─ maintenance  recover, health_loop, checkpoint_loop, reopen_storage
//!   ├─ connections  bind_endpoint, connection (cache), pin_loop, close_when_unlisted
//!   ├─ witness      the witness role; cosignatures of this node's checkpoints
//!   ├─ logging      log_submitted, acknowledge, make_receipt, answer_after_inbox,
//!   │               log_rejected, log_plan, workflow_receipt
//!   ├─ inner        Inner: the shared services (state only)
//!   └─ types        Directory, Peer, Identity, NodeError, now
//! relay            relay hops (still methods of Inner, see below)
//! reseal, sealing   re-sealing and sealing own messages and hops, through a
//!                   narrow handle (sealing::Sealer), not Inner
//! node_core, exchange, workflow, store, admission, health, metrics (below the driver)
//! ```
//!
//! One message, submit to settle (direct delivery), in the order the
//! functions run; the arrows only point down the page:
//!
//! ```text
//! sender                                         recipient
//! POST /v1/messages (api::submit)
//! node::NodeHandle::submit_keyed
//!   workflow::check_outgoing, seal
//!   Store::insert_submission       (durable; the client gets the id)
//!   logging: Inner::log_submitted  exchange::sent → log
//! outbound::delivery_loop → Inner::spawn_delivery
//!   outbound: Inner::deliver_out
//!     node_core::outbound::expired ─ yes ─▶ node_core::outbound::expire
//!     Inner::attempt → Inner::exchange → Inner::request_on (Op::Deliver)
//!                                  ──QUIC──▶ inbound::accept_loop → serve_connection
//!                                            inbound::serve_stream → read_request
//!                                            inbound: Inner::deliver_in
//!                                              Inner::open_checked (inbox = replay set)
//!                                              Directory::allows
//!                                            inbound: Inner::accept_end_to_end
//!                                              workflow::check_incoming
//!                                              node_core::inbound::accept
//!                                              logging: Inner::acknowledge
//!                                                received, receipt-sent → peer's log
//!                                                (Acceptance::indexes, make_receipt)
//!                                              Store::insert_inbox_checked (durable)
//!                                              logging: Inner::answer_after_inbox
//!                                                (node_core::inbound::after_inbox:
//!                                                 withdraw if not stored)
//!     node_core::outbound::classify ◀── Response::Receipt ──
//!       (node_core::outbound::check_receipt)
//!     node_core::outbound::settle  receipt-received / delivery-failed → log,
//!                                  or retry (Backoff)
//!     outbound: Inner::finish      Store::modify_outbox (lazy); waiters woken
//! ```
//!
//! A relayed message takes the same path; at a relay `Inner::deliver_in`
//! hands a `relay` body to `relay.rs` (`Inner::deliver_relay` → forward),
//! and at the final recipient `relay.rs` calls `Inner::accept_end_to_end`
//! and sends the end-to-end receipt back (`Inner::send_end_to_end_receipt`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admission;
pub mod api;
pub(crate) mod attach_store;
pub(crate) mod attach_transfer;
mod audit;
pub mod backup;
mod cases;
pub mod config;
pub mod console;
pub mod exchange;
mod export;
pub mod federation;
pub mod health;
pub mod idempotency;
pub mod log_http;
pub mod metrics;
mod node;
pub mod node_core;
pub mod node_dir;
mod relay;
mod reseal;
pub mod retention;
mod sealing;
pub mod storage;
pub mod store;
pub mod token_keys;
pub use store::format as formats;
mod witnessing;
pub mod workflow;

#[cfg(test)]
mod attach_store_tests;
#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod structure_tests;

pub use attach_store::{AttachmentsConfig, StageError, Staged};
pub use attach_transfer::{PushError, PushReport, MAX_AGAIN};
pub use export::{ExportAt, ExportError, Exported};
pub use node::{Directory, Identity, NodeError, NodeHandle, Peer, PIN_RECHECK};
pub use witnessing::{OwnCheckpoint, WitnessStatus, WitnessedLog};
