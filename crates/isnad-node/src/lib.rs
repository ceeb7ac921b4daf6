//! The Isnad node (work in progress).
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
pub mod storage;
pub mod store;
pub mod workflow;

pub use node::export::{ExportAt, ExportError, Exported};
pub use node::witness::{OwnCheckpoint, WitnessStatus, WitnessedLog};
pub use node::{Directory, Identity, NodeError, NodeHandle, Peer, PIN_RECHECK};
