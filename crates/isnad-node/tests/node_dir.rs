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

/// A state database written by a newer release is refused before the audit
/// log is opened, so the log is left exactly as it was: no version marker
/// written, no tail cut.
#[test]
fn a_newer_state_database_is_refused_before_the_log_is_touched() -> TestResult {
    use redb::TableDefinition;
    const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("iq.moi.ahtd");
    let text = format!(
        "agency = \"iq.moi.ahtd\"\nlisten = \"{}\"\n",
        free_udp_port()?
    );
    let mut config = Config::parse(&text)?;
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    NodeDir::init(&home, &config)?;
    let root = SigningKey::generate(SignatureAlgorithm::Ed25519, &SystemRandom::new())?;
    isnad_trust::TrustStore::new("iq", root.verifying_key().clone()).save(&home.join("trust"))?;
    let config_file = home.join("config.toml");
    drop(NodeDir::open(&config_file)?);

    let loaded = Config::load(&config_file)?;
    let db = redb::Database::open(loaded.paths.state.join("state.redb"))?;
    let txn = db.begin_write()?;
    txn.open_table(META)?
        .insert("schema_version", 9u64.to_be_bytes().as_slice())?;
    txn.commit()?;
    drop(db);
    // A log the next open would change: its version marker is missing, so
    // opening it writes one.
    let marker = loaded.paths.log.join("version");
    std::fs::remove_file(&marker)?;

    match NodeDir::open(&config_file) {
        Err(NodeDirError::State { source, .. }) => {
            let text = source.to_string();
            assert!(text.contains("newer release"), "{text}");
        }
        Err(other) => panic!("expected a refused state database, got {other}"),
        Ok(_) => panic!("a database of a newer release was opened"),
    }
    assert!(
        !marker.exists(),
        "the log was opened (and its version marker written) before the state database was refused"
    );
    Ok(())
}
