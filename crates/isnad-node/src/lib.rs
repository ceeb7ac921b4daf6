//! The Isnad node (work in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod store;
