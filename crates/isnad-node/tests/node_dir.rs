//! A node assembled from its directory ([`NodeDir`]), as `isnad init` and
//! `isnad node run` do it: the directory watcher is one of the node's tasks,
//! so shutdown returns only once it has ended, and the node lock keeps a
//! second owner out while the node runs.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use isnad_envelope::{SignatureAlgorithm, SigningKey};
use isnad_node::config::Config;
use isnad_node::node_dir::{NodeDir, NodeDirError};
use ring::rand::SystemRandom;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_directory_watcher() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("iq.moi.ahtd");
    let text = format!(
        "agency = \"iq.moi.ahtd\"\nlisten = \"{}\"\n",
        free_udp_port()?
    );
    let mut config = Config::parse(&text)?;
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.disk.free_space_floor_bytes = 0;
    NodeDir::init(&home, &config)?;
    assert!(matches!(
        NodeDir::init(&home, &config),
        Err(NodeDirError::Exists { .. })
    ));
    let root = SigningKey::generate(SignatureAlgorithm::Ed25519, &SystemRandom::new())?;
    isnad_trust::TrustStore::new("iq", root.verifying_key().clone()).save(&home.join("trust"))?;

    let config_file = home.join("config.toml");
    let running = NodeDir::open(&config_file)?.start().await?;
    assert!(matches!(
        NodeDir::open(&config_file),
        Err(NodeDirError::Owned { .. })
    ));
    // The trust store is held by this handle, the node (as its directory)
    // and the watcher while it runs.
    assert_eq!(
        Arc::strong_count(&running.federation),
        3,
        "this handle, the node and the watcher"
    );
    running.shutdown().await;
    // The watcher has ended, and dropped its clone, when shutdown returns.
    assert_eq!(
        Arc::strong_count(&running.federation),
        2,
        "the directory watcher still runs after shutdown returned"
    );
    drop(running);
    // The lock went with the running node: the directory opens again.
    drop(NodeDir::open(&config_file)?);
    Ok(())
}
