//! Helpers shared by the integration tests that run the real binary.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};

mod nodes;
pub use nodes::{Federation, NodeProc};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_isnad");

/// Runs `isnad ARGS`.
pub fn isnad(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run isnad")
}

/// Runs `isnad ARGS`, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = isnad(args);
    assert!(
        o.status.success(),
        "isnad {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A free UDP port on loopback.
pub fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback.
pub fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
