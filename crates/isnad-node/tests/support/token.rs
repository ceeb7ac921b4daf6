//! Nodes whose every key is in a SoftHSM2 token (spec/federation.md §14),
//! for the token tests and the round-trip benchmark.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use isnad_envelope::{EncryptionKey, SigningKey};
use isnad_log::{Log, SignerKey};
use isnad_node::config::Config;
use isnad_node::store::Store;
use isnad_node::token_keys::{self, Pkcs11Config, Tokens};
use isnad_node::{Directory, Identity, NodeHandle};
use isnad_pkcs11::{softhsm, KeyKind, PinSource, Token, TokenConfig};
use isnad_trust::tls::{configs_with_key, spki_sha256, TlsIdentity};

use super::{free_udp_port, TestDirectory};

/// The user PIN of every test token.
pub const PIN: &str = "4711-node";

/// A SoftHSM2 token directory with its module and PIN file.
pub struct Fixture {
    pub module: PathBuf,
    pub pin_file: PathBuf,
}

/// Creates a SoftHSM2 token directory in a temporary directory with one
/// token per label (SoftHSM reads its configuration once per process: call
/// once). `None` (printed) when SoftHSM2 is missing and
/// `ISNAD_SKIP_PKCS11=1`; without that variable a missing SoftHSM2 panics
/// naming what is missing.
pub fn softhsm(labels: &[&str]) -> Option<Fixture> {
    let dir = tempfile::Builder::new()
        .prefix("isnad-node-softhsm")
        .tempdir()
        .ok()?
        .keep();
    let module = match softhsm::init_tokens(&dir, labels, PIN) {
        Ok(m) => m,
        Err(softhsm::Missing(what)) if std::env::var("ISNAD_SKIP_PKCS11").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (ISNAD_SKIP_PKCS11=1): {what}");
            return None;
        }
        Err(softhsm::Missing(what)) => panic!("{what}; ISNAD_SKIP_PKCS11=1 skips these tests"),
    };
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).ok()?;
    Some(Fixture { module, pin_file })
}

pub fn pkcs11(f: &Fixture) -> Pkcs11Config {
    Pkcs11Config {
        module: f.module.clone(),
        pin_file: Some(f.pin_file.clone()),
        pin_env: None,
        sessions: 4,
    }
}

/// Generates the five keys of a node in `token` (as `isnad keygen --pkcs11`
/// does) and checks each private half is sensitive and never extractable.
pub fn generate_keys(f: &Fixture, token: &str) -> Result<(), Box<dyn std::error::Error>> {
    let t = Token::open(&TokenConfig {
        module: f.module.clone(),
        token: token.to_owned(),
        pin: PinSource::File(f.pin_file.clone()),
        sessions: NonZeroUsize::new(2).ok_or("sessions")?,
    })?;
    for (kind, label) in [
        (KeyKind::Ed25519, "signing"),
        (KeyKind::P256Ecdh, "encryption"),
        (KeyKind::Es256, "tls"),
        (KeyKind::Ed25519, "log"),
        (KeyKind::Ed25519, "witness"),
    ] {
        let key = t.generate(kind, label)?;
        let flags = t.private_flags(&key)?;
        assert!(flags.sensitive && !flags.extractable && flags.never_extractable);
    }
    Ok(())
}

pub fn uri(token: &str, object: &str) -> String {
    format!("pkcs11:token={};object={object}", token.replace(' ', "%20"))
}

/// A node whose every key is in its token, listed in `dir`.
pub struct TokenNode {
    pub id: isnad_envelope::AgencyId,
    pub addr: SocketAddr,
    pub signing: SigningKey,
    pub encryption: EncryptionKey,
    pub cert: Vec<u8>,
    pub tls_key: Arc<dyn rustls::sign::SigningKey>,
    pub log: SignerKey,
    pub witness: SignerKey,
}

pub fn token_node(
    f: &Fixture,
    id: &str,
    token: &str,
    dir: &TestDirectory,
) -> Result<TokenNode, Box<dyn std::error::Error>> {
    generate_keys(f, token)?;
    let id = isnad_envelope::AgencyId::new(id)?;
    let mut tokens = Tokens::new(pkcs11(f));
    let signing = token_keys::signing_key(&mut tokens, &uri(token, "signing"))?;
    let encryption = token_keys::encryption_key(&mut tokens, &uri(token, "encryption"))?;
    let (tls_key, _) = token_keys::tls_key(&mut tokens, &uri(token, "tls"))?;
    // The certificate is made and self-signed in the token too.
    let (t, k) = tokens.key(&uri(token, "tls"), KeyKind::Es256)?;
    let cert = TlsIdentity::certificate_for_external_key(&id, k.public(), &|m| {
        t.sign_es256(&k, m)
            .map(|s| s.to_der())
            .map_err(|e| e.to_string())
    })?;
    let log = token_keys::note_key(
        &mut tokens,
        &uri(token, "log"),
        &isnad_log::origin_for(&id),
        isnad_log::note::TYPE_ED25519,
    )?;
    let witness = token_keys::note_key(
        &mut tokens,
        &uri(token, "witness"),
        &isnad_log::witness::witness_name_for(&id),
        isnad_log::note::TYPE_COSIGNATURE_V1,
    )?;
    assert!(signing.is_external() && encryption.is_external() && log.is_external());
    assert!(signing.pkcs8_pem().is_none() && encryption.pkcs8_pem().is_none());
    let node = TokenNode {
        id,
        addr: free_udp_port()?,
        signing,
        encryption,
        cert,
        tls_key,
        log,
        witness,
    };
    let mut t = dir.0.write().map_err(|_| "poisoned")?;
    t.agencies.insert(
        node.id.clone(),
        (
            node.addr,
            node.encryption.public_key().clone(),
            node.signing.verifying_key().clone(),
            node.cert.clone(),
        ),
    );
    t.log_keys.insert(
        node.id.clone(),
        (node.log.verifier(), node.witness.verifier()),
    );
    let mut ids = std::collections::BTreeMap::new();
    for (a, v) in &t.agencies {
        ids.insert(spki_sha256(&v.3)?, a.clone());
    }
    dir.1.replace(ids);
    Ok(node)
}

pub async fn start_token_node(
    n: TokenNode,
    dir: &TestDirectory,
    root: &Path,
    edit: impl FnOnce(&mut Config),
) -> Result<NodeHandle, Box<dyn std::error::Error>> {
    let mut config = Config::parse(&format!("agency = \"{}\"\nlisten = \"{}\"\n", n.id, n.addr))?;
    config.delivery.initial_backoff_ms = 50;
    config.delivery.max_backoff_secs = 1;
    config.disk.free_space_floor_bytes = 0;
    let home = root.join(n.id.as_str());
    std::fs::create_dir_all(&home)?;
    config.paths.state = home.clone();
    edit(&mut config);
    let (server, client) = configs_with_key(&n.cert, n.tls_key, &dir.1)?;
    let identity = Identity {
        signing_key: n.signing,
        encryption_keys: vec![n.encryption],
        tls_server: server,
        tls_client: client,
        witness_key: Some(n.witness),
    };
    let (log, _) = Log::open(&home.join("log"))?;
    let d: Arc<dyn Directory> = Arc::new(dir.clone());
    Ok(NodeHandle::start(
        config,
        identity,
        d,
        Arc::new(log),
        n.log,
        Store::open(&home.join("state.redb"))?,
    )
    .await?)
}
