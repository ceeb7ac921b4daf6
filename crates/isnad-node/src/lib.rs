//! The Isnad node (work in progress).
//!
//! A node is assembled here, not in the binary: [`node_dir::NodeDir`] loads a
//! node's directory and starts it with its local API, metrics and directory
//! watcher ([`node_dir::NodeDir::start`]); [`NodeHandle::start`] is the lower
//! level for callers that bring their own keys, directory and storage (tests).
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
pub mod node_dir;
mod relay;
mod reseal;
pub mod storage;
pub mod store;
pub use store::format as formats;
pub mod workflow;

#[cfg(test)]
mod format_tests;

pub use node::export::{ExportAt, ExportError, Exported};
pub use node::witness::{OwnCheckpoint, WitnessStatus, WitnessedLog};
pub use node::{Directory, Identity, NodeError, NodeHandle, Peer, PIN_RECHECK};
