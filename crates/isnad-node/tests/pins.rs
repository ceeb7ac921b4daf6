//! TLS pins follow the directory while connections are open
//! (spec/transport.md §1): a peer dropped from the directory is
//! disconnected, inbound and outbound, and its new handshakes are refused;
//! so is a peer whose directory's validity window ends.
//!
//! Support code (tests/support) stands in for the federation layer, except
//! in the expiry test, which uses the real trust store with signed
//! directories.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::*;
use isnad_log::{Log, SignerKey};
use isnad_node::config::Config;
use isnad_node::federation::Federation;
use isnad_node::store::{OutState, Store};
use isnad_node::{Directory, Identity, NodeHandle, PIN_RECHECK};
use isnad_trust::tls::{configs, spki_sha256, TlsIdentity};
use isnad_trust::{AgencyEntry, KeyEntry, Role, TrustStore};
use ring::rand::SystemRandom;
use support::*;

/// The QUIC application error code a node closes a connection with when
/// it refuses the peer.
const REFUSED: u64 = 0x49;

/// Removes `who` from `dir`: its table entry and its TLS pin.
fn unlist(dir: &TestDirectory, who: &Agency) -> TestResult {
    let mut t = dir.0.write().map_err(|_| "poisoned")?;
    t.agencies.remove(&who.id);
    let mut ids = BTreeMap::new();
    for (id, v) in &t.agencies {
        ids.insert(spki_sha256(&v.3)?, id.clone());
    }
    dir.1.replace(ids);
    Ok(())
}

/// Waits (bounded) for `conn` to be closed and checks that it was closed by
/// the node refusing the peer.
async fn closed_as_refused(conn: &quinn::Connection, within: Duration) -> TestResult {
    let reason = tokio::time::timeout(within, conn.closed())
        .await
        .map_err(|_| format!("the connection was still open after {within:?}"))?;
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code.into_inner() == REFUSED => {
            Ok(())
        }
        other => Err(format!("closed, but not as refused: {other:?}").into()),
    }
}

/// Whether a fresh connection with `who`'s credentials to `to` is refused.
async fn refused(who: &Agency, dir: &TestDirectory, to: &Agency) -> bool {
    match raw_connect(who, dir, to).await {
        Err(_) => true,
        // TLS 1.3: the client may finish before the server refuses it.
        Ok(conn) => raw_request(&conn, &[0, 0, 0, 0]).await.is_err(),
    }
}

/// B's directory drops A while A is connected: within two re-checks B
/// closes both A's node connection and a raw one, refuses new handshakes,
/// and A's next message is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dropped_from_the_directory_is_disconnected_and_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir_a, dir_b) = (TestDirectory::default(), TestDirectory::default());
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    for d in [&dir_a, &dir_b] {
        list(d, &a)?;
        list(d, &b)?;
    }
    let na = start(&a, &dir_a, tmp.path()).await?;
    let nb = start(&b, &dir_b, tmp.path()).await?;
    let id = na.submit(b.id.clone(), intel("before"), None).await?;
    wait_state(&na, &id, OutState::Delivered, 10).await?;
    let raw = raw_connect(&a, &dir_a, &b).await?;
    assert!(
        raw_request(&raw, &[0, 0, 0, 0]).await.is_ok(),
        "served while listed"
    );

    unlist(&dir_b, &a)?;
    closed_as_refused(&raw, 2 * PIN_RECHECK + Duration::from_secs(1)).await?;
    assert!(
        refused(&a, &dir_a, &b).await,
        "a new handshake of a dropped peer succeeded"
    );
    // A's node connection was closed too (counted), and its next message
    // is refused at the handshake.
    until("both connections closed", 3, || {
        Ok(nb.metrics().rejected_count("unlisted") >= 2)
    })
    .await?;
    let id2 = na.submit(b.id.clone(), intel("after"), None).await?;
    until("a failed attempt", 10, || {
        let rec = na.store().outbox(&id2)?.ok_or("no outbox record")?;
        Ok(rec.attempts >= 1 && rec.last_error.is_some())
    })
    .await?;
    assert_eq!(
        na.store().outbox(&id2)?.ok_or("record")?.state,
        OutState::Pending
    );
    assert!(nb.store().inbox_by_id(&id2)?.is_empty());
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// A's directory drops B while A's node holds a connection to B (a
/// stand-in server with B's credentials): A closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_closes_its_connection_to_a_peer_no_longer_listed() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    // B's side: a bare QUIC server with B's TLS configuration that accepts
    // the connection and never answers.
    let server_dir = TestDirectory::default();
    list(&server_dir, &a)?;
    list(&server_dir, &b)?;
    let (server_tls, _) = tls(&b, &server_dir)?;
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
        )),
        b.addr,
    )?;
    let na = start(&a, &dir, tmp.path()).await?;
    na.submit(b.id.clone(), intel("never answered"), None)
        .await?;
    let incoming = tokio::time::timeout(Duration::from_secs(10), server.accept())
        .await?
        .ok_or("endpoint closed")?;
    let conn = incoming.await?;

    unlist(&dir, &b)?;
    closed_as_refused(&conn, 2 * PIN_RECHECK + Duration::from_secs(1)).await?;
    assert!(na.metrics().rejected_count("unlisted") >= 1);
    na.shutdown().await;
    server.close(0u32.into(), b"done");
    Ok(())
}

/// The real trust store: A's country directory ends its validity window
/// three seconds from now. A's open connection to B is closed within two
/// re-checks of the end, and a new one is refused, though no directory
/// was imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_end_with_the_directory_window() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let rng = SystemRandom::new();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let root_fr = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let root_iq = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
    let mut store = TrustStore::new("fr", root_fr.verifying_key().clone());
    store.add_partner("iq", root_iq.verifying_key().clone())?;
    let ends = now + 3;
    let dir_iq = directory("iq", &a, now, ends)?;
    let dir_fr = directory("fr", &b, now, now + 86400)?;
    store.accept(&dir_iq.sign(&root_iq, &rng)?, now)?;
    store.accept(&dir_fr.sign(&root_fr, &rng)?, now)?;
    let trust = tmp.path().join("trust");
    std::fs::create_dir_all(&trust)?;
    let fed = Arc::new(Federation::from_store(store, &trust));
    let nb = start_federated(&b, Arc::clone(&fed), tmp.path()).await?;

    // A's own view (its client verifier) lists B throughout.
    let dir_a = TestDirectory::default();
    list(&dir_a, &a)?;
    list(&dir_a, &b)?;
    let raw = raw_connect(&a, &dir_a, &b).await?;
    assert!(
        raw_request(&raw, &[0, 0, 0, 0]).await.is_ok(),
        "served while current"
    );

    let left = Duration::from_secs(ends.saturating_sub(now));
    closed_as_refused(&raw, left + 2 * PIN_RECHECK + Duration::from_secs(1)).await?;
    let closed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(
        closed_at >= ends,
        "closed at {closed_at}, before the window ended at {ends}"
    );
    assert!(
        refused(&a, &dir_a, &b).await,
        "a new handshake after the window succeeded"
    );
    nb.shutdown().await;
    Ok(())
}

/// A one-agency directory of `country` valid from `from` until `until`.
fn directory(
    country: &str,
    who: &Agency,
    from: u64,
    until: u64,
) -> Result<isnad_trust::Directory, Box<dyn std::error::Error>> {
    let key = |key: Vec<u8>| KeyEntry {
        key,
        valid_from: from - 60,
        valid_until: None,
        revoked_at: None,
        revocation_reason: None,
    };
    let mut d = isnad_trust::Directory::new(country);
    d.version = 1;
    d.issued_at = from;
    d.valid_from = from - 60;
    d.valid_until = until;
    d.agencies.push(AgencyEntry {
        id: who.id.clone(),
        names: BTreeMap::from([("en".to_owned(), format!("Agency {}", who.id))]),
        role: Role::LawEnforcement,
        endpoints: vec![who.addr.to_string()],
        tls_spki_sha256: spki_sha256(&who.cert)?,
        signing_keys: vec![key(SigningKey::from_pkcs8_pem(&who.sign_pem)?
            .verifying_key()
            .to_cose_key())],
        encryption_keys: vec![key(EncryptionKey::from_pkcs8_pem(&who.enc_pem)?
            .public_key()
            .to_cose_key())],
        log_key: None,
        witness_key: None,
    });
    Ok(d)
}

/// Starts `who`'s node on the real federation layer, its TLS verifiers
/// pinning the federation's peer set.
async fn start_federated(
    who: &Agency,
    fed: Arc<Federation>,
    root: &std::path::Path,
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    let mut config = Config::parse(&format!(
        "agency = \"{}\"\nlisten = \"{}\"\n",
        who.id, who.addr
    ))?;
    let home = root.join(who.id.as_str());
    std::fs::create_dir_all(&home)?;
    config.paths.state = home.clone();
    let identity = TlsIdentity {
        cert_der: who.cert.clone(),
        key_der: who.tls_key.clone(),
    };
    let (server, client) = configs(&identity, fed.peers())?;
    let identity = Identity {
        signing_key: SigningKey::from_pkcs8_pem(&who.sign_pem)?,
        encryption_keys: vec![EncryptionKey::from_pkcs8_pem(&who.enc_pem)?],
        tls_server: server,
        tls_client: client,
        witness_key: None,
    };
    let (log, _) = Log::open(&home.join("log"))?;
    let store = Store::open(&home.join("state.redb"))?;
    let d: Arc<dyn Directory> = fed;
    Ok(NodeHandle::start(
        config,
        identity,
        d,
        Arc::new(log),
        SignerKey::parse(&who.log_key)?,
        store,
    )
    .await?)
}
