//! Node keys in PKCS#11 tokens (spec/federation.md §14), against a real
//! SoftHSM2 token in a temporary directory: two nodes whose every private
//! key (message signing, encryption, TLS, audit log, witness) is a
//! non-extractable token object exchange messages and receipts over QUIC;
//! a node directory whose config names token keys opens from them, and a
//! wrong PIN is a start-up error naming the token.
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`): without it the tests FAIL
//! naming what is missing, unless `ISNAD_SKIP_PKCS11=1` (then the skip is
//! printed).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use isnad_envelope::{EncryptionKey, SigningKey};
use isnad_log::{Log, SignerKey};
use isnad_node::config::Config;
use isnad_node::node_dir::{NodeDir, NodeDirError};
use isnad_node::store::{OutState, Store};
use isnad_node::token_keys::{self, KeyHealth, KeyLoadError, Tokens};
use isnad_node::{Directory, Identity, NodeHandle};
use isnad_pkcs11::{KeyKind, TokenError};
use isnad_trust::tls::spki_sha256;
use support::token::*;
use support::*;

const TOKENS: [&str; 4] = ["node iq", "node fr", "node wrong pin", "root iq"];

/// SoftHSM reads its configuration once per process: one token directory
/// for every test of this binary.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| softhsm(&TOKENS)).as_ref()
}

/// Both nodes sign, decrypt, authenticate TLS (client and server) and sign
/// checkpoints with token keys only; messages both ways are delivered,
/// opened and acknowledged, the checkpoint verifies with the log key's
/// public half from the token and is cosigned by B's token witness key;
/// a directory listing A, signed by a root key in a third token,
/// verifies against that root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_every_key_in_a_token_exchange_messages() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let a = token_node(f, "iq.moi.ahtd", TOKENS[0], &dir)?;
    let b = token_node(f, "fr.mj.bepi", TOKENS[1], &dir)?;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    let a_log = a.log.verifier();
    let b_witness = b.witness.verifier();
    let signed = directory_signed_in_token(f, &[&a])?;
    // A certificate that does not hold the token's TLS key is refused at
    // start, not at the peer's pin check.
    assert!(isnad_trust::tls::configs_with_key(&b.cert, Arc::clone(&a.tls_key), &dir.1).is_err());
    let nb = start_token_node(b, &dir, tmp.path(), |_| {}).await?;
    let witnesses = vec![b_id.clone()];
    let na = start_token_node(a, &dir, tmp.path(), |cfg| {
        cfg.witness.witnesses = witnesses;
        cfg.witness.quorum = 1;
        cfg.checkpoint.interval_secs = 3600;
    })
    .await?;

    let id1 = na.submit(b_id.clone(), intel("to france"), None).await?;
    let id2 = nb.submit(a_id.clone(), intel("to iraq"), None).await?;
    wait_state(&na, &id1, OutState::Delivered, 15).await?;
    wait_state(&nb, &id2, OutState::Delivered, 15).await?;
    for (node, id, from, text) in [(&nb, id1, &a_id, "to france"), (&na, id2, &b_id, "to iraq")] {
        let inb = node.store().inbox_by_id(&id)?;
        assert_eq!(inb.len(), 1);
        let opened = node.read_inbox(&inb[0])?;
        assert_eq!(&opened.message.header.sender, from);
        assert!(
            matches!(&opened.message.body, isnad_envelope::Body::IntelShare(s) if s.content == text)
        );
    }
    let note = na.checkpoint_now().await?;
    let cp = isnad_log::open_checkpoint(note.as_bytes(), &a_log)?;
    assert!(cp.size > 0, "the checkpoint covers the exchange");
    // B cosigns A's checkpoint with its token witness key.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !na.witness_status()?.own.witnessed {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("not witnessed: {:?}", na.witness_status()?).into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let served = na.latest_checkpoint().ok_or("no checkpoint")?;
    isnad_log::note::verify_cosignature(served.as_bytes(), &b_witness)?;
    drop(signed);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// A directory listing `nodes`, signed by an Ed25519 root key generated in
/// its own token (as `isnad directory root-init --pkcs11` does), verified
/// against the root's public key; a flipped byte does not verify.
fn directory_signed_in_token(
    f: &Fixture,
    nodes: &[&TokenNode],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let root_uri = uri(TOKENS[3], "root-2026");
    token_keys::generate(&pkcs11(f), &root_uri, KeyKind::Ed25519)?;
    let root = token_keys::signing_key(&mut Tokens::new(pkcs11(f)), &root_uri)?;
    let key = |k: Vec<u8>| isnad_trust::KeyEntry {
        key: k,
        valid_from: 1_000,
        valid_until: None,
        revoked_at: None,
        revocation_reason: None,
    };
    let mut d = isnad_trust::Directory::new("iq");
    d.version = 1;
    d.valid_from = 1_000;
    d.valid_until = 4_000_000_000;
    for n in nodes {
        let mut names = std::collections::BTreeMap::new();
        names.insert("en".into(), n.id.to_string());
        d.agencies.push(isnad_trust::AgencyEntry {
            id: n.id.clone(),
            names,
            role: isnad_trust::Role::LawEnforcement,
            endpoints: vec![n.addr.to_string()],
            tls_spki_sha256: spki_sha256(&n.cert)?,
            signing_keys: vec![key(n.signing.verifying_key().to_cose_key())],
            encryption_keys: vec![key(n.encryption.public_key().to_cose_key())],
            log_key: Some(n.log.verifier().to_string()),
            witness_key: Some(n.witness.verifier().to_string()),
        });
    }
    d.policy.push(isnad_trust::Rule {
        id: "all".into(),
        from: isnad_trust::Selector::default(),
        to: isnad_trust::Selector::default(),
        kinds: Vec::new(),
        via_central_authority: false,
    });
    let signed = d.sign(&root, &ring::rand::SystemRandom::new())?;
    let back = isnad_trust::verify_signed(&signed, root.verifying_key())?;
    assert_eq!(back.agencies.len(), nodes.len());
    let mut bad = signed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(isnad_trust::verify_signed(&bad, root.verifying_key()).is_err());
    Ok(signed)
}

/// `NodeDir::open` takes the keys `[keys]` names from the token: a wrong
/// PIN is refused at once with an error naming the token (no retry), the
/// right PIN opens the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_dir_opens_token_keys_and_names_the_token_on_a_wrong_pin() -> TestResult {
    let Some(f) = fixture() else { return Ok(()) };
    let token = TOKENS[2];
    generate_keys(f, token)?;
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("iq.moi.ahtd");
    let mut config = Config::parse(&format!(
        "agency = \"iq.moi.ahtd\"\nlisten = \"{}\"\n",
        free_udp_port()?
    ))?;
    config.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.disk.free_space_floor_bytes = 0;
    NodeDir::init(&home, &config)?;
    let root = SigningKey::generate(
        isnad_envelope::SignatureAlgorithm::Ed25519,
        &ring::rand::SystemRandom::new(),
    )?;
    isnad_trust::TrustStore::new("iq", root.verifying_key().clone()).save(&home.join("trust"))?;
    let config_file = home.join("config.toml");
    let base = std::fs::read_to_string(&config_file)?;
    let wrong_pin = home.join("wrong.pin");
    std::fs::write(&wrong_pin, "0000\n")?;
    let with_keys = |pin: &Path| {
        format!(
            "{base}\n[keys]\nsigning = \"{}\"\nencryption = \"{}\"\nlog = \"{}\"\n\n[pkcs11]\nmodule = \"{}\"\npin_file = \"{}\"\n",
            uri(token, "signing"),
            uri(token, "encryption"),
            uri(token, "log"),
            f.module.display(),
            pin.display()
        )
    };
    std::fs::write(&config_file, with_keys(&wrong_pin))?;
    match NodeDir::open(&config_file) {
        Err(
            e @ NodeDirError::TokenKey {
                source: KeyLoadError::Token(TokenError::WrongPin { .. }),
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(text.contains(token), "{text}");
            assert!(!text.contains("0000"), "the PIN is never shown: {text}");
        }
        other => panic!("wrong PIN: {other:?}"),
    }
    std::fs::write(&config_file, with_keys(&f.pin_file))?;
    drop(NodeDir::open(&config_file)?);
    Ok(())
}

/// A message signing key whose device fails on demand, reporting to the
/// node's key health like a token key does: the fault is injected at the
/// node's key interface ([`isnad_envelope::ExternalSigner`] and
/// [`KeyHealth`]), as a removed token or one out of sessions would show.
struct Flaky {
    pair: ring::signature::Ed25519KeyPair,
    fail: Arc<AtomicBool>,
    health: Arc<KeyHealth>,
}

const FLAKY: &str = "key `signing` in token `injected`";

impl isnad_envelope::ExternalSigner for Flaky {
    fn algorithm(&self) -> isnad_envelope::SignatureAlgorithm {
        isnad_envelope::SignatureAlgorithm::Ed25519
    }
    fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        self.pair.public_key().as_ref().to_vec()
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, isnad_envelope::KeyError> {
        if self.fail.load(Ordering::SeqCst) {
            let fail = Arc::clone(&self.fail);
            self.health.failed(
                FLAKY,
                "PKCS#11 token `injected` is out of sessions".into(),
                Arc::new(move || {
                    if fail.load(Ordering::SeqCst) {
                        Err("still out of sessions".into())
                    } else {
                        Ok(())
                    }
                }),
            );
            return Err(isnad_envelope::KeyError::Unavailable(
                "PKCS#11 token `injected` is out of sessions".into(),
            ));
        }
        self.health.ok(FLAKY);
        Ok(self.pair.sign(msg).as_ref().to_vec())
    }
}

/// While the signing key's device fails: the submission that hits the
/// fault is refused naming the key, the node turns `degraded`
/// (`key-unavailable`, in health and metrics) and refuses new work with
/// that reason, a message queued before stays queued; when the device
/// answers again the node is `ok` by itself (the probe re-tries the key)
/// and the queued and new messages are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_device_degrades_the_node_and_it_recovers() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "keygen")?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "key")?;
    let fail = Arc::new(AtomicBool::new(false));
    let health = Arc::new(KeyHealth::default());
    let signing = SigningKey::external(Arc::new(Flaky {
        pair,
        fail: Arc::clone(&fail),
        health: Arc::clone(&health),
    }))?;
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .agencies
        .get_mut(&a.id)
        .ok_or("listed")?
        .2 = signing.verifying_key().clone();
    let mut config = Config::parse(&format!("agency = \"{}\"\nlisten = \"{}\"\n", a.id, a.addr))?;
    config.delivery.initial_backoff_ms = 50;
    config.delivery.max_backoff_secs = 1;
    config.disk.free_space_floor_bytes = 0;
    let home = tmp.path().join(a.id.as_str());
    std::fs::create_dir_all(&home)?;
    config.paths.state = home.clone();
    let (server, client) = tls(&a, &dir)?;
    let identity = Identity {
        signing_key: signing,
        encryption_keys: vec![EncryptionKey::from_pkcs8_pem(&a.enc_pem)?],
        tls_server: server,
        tls_client: client,
        witness_key: Some(SignerKey::parse(&a.witness_key)?),
    };
    let (log, _) = Log::open(&home.join("log"))?;
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    let na = NodeHandle::start(
        config,
        identity,
        d,
        Arc::new(log),
        SignerKey::parse(&a.log_key)?,
        Store::open(&home.join("state.redb"))?,
    )
    .await?;
    na.set_key_probe(health.key_probe());

    // B is down: a message sealed while the key works waits in the outbox.
    let queued = na.submit(b.id.clone(), intel("queued"), None).await?;
    fail.store(true, Ordering::SeqCst);
    let hit = na.submit(b.id.clone(), intel("hit"), None).await;
    let text = format!(
        "{:?}",
        hit.err().ok_or("sealing with a failed key succeeded")?
    );
    assert!(
        text.contains("KeyUnavailable") && text.contains("injected"),
        "{text}"
    );
    let condition = na.condition();
    assert!(
        condition
            .reasons
            .iter()
            .any(|r| r.code() == "key-unavailable"),
        "{condition:?}"
    );
    let metrics = na.metrics().render(0);
    assert!(
        metrics.contains("isnad_degraded_reason{reason=\"key-unavailable\"} 1"),
        "{metrics}"
    );
    let refused = na.submit(b.id.clone(), intel("refused"), None).await;
    let text = refused
        .err()
        .ok_or("new work accepted while degraded")?
        .to_string();
    assert!(
        text.contains("key-unavailable") && text.contains(FLAKY),
        "{text}"
    );
    let rec = na.store().outbox(&queued)?.ok_or("queued message lost")?;
    assert_ne!(rec.state, OutState::Failed);

    // The device answers again: the probe clears the fault by itself.
    fail.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !na.condition().is_ok() {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("still degraded: {:?}", na.condition()).into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let nb = start(&b, &dir, tmp.path()).await?;
    let again = na.submit(b.id.clone(), intel("again"), None).await?;
    wait_state(&na, &queued, OutState::Delivered, 15).await?;
    wait_state(&na, &again, OutState::Delivered, 15).await?;
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
