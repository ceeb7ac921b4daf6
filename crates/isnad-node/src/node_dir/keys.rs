//! The node's private keys at start-up: each from its PKCS#11 token when
//! `[keys]` names one (crate::token_keys), else from its file in the keys
//! directory (spec/federation.md §14).

use std::sync::Arc;

use isnad_envelope::{EncryptionKey, SigningKey};
use isnad_log::SignerKey;

use crate::token_keys::{
    encryption_key, note_key, signing_key, tls_key, KeyHealth, KeyLoadError, Tokens,
};

use super::files;
use super::NodeDirError;

/// The node's keys as [`crate::node_dir::NodeDir::open`] needs them, each
/// from its token if `[keys]` names one, else from its file in `keys`.
pub(crate) struct NodeKeys {
    pub(crate) signing: SigningKey,
    pub(crate) encryption: EncryptionKey,
    pub(crate) tls_cert: Vec<u8>,
    pub(crate) tls_key: Arc<dyn rustls::sign::SigningKey>,
    pub(crate) log: SignerKey,
    pub(crate) witness: Option<SignerKey>,
    /// The faults of the token keys, if any key is in a token.
    pub(crate) health: Option<Arc<KeyHealth>>,
}

impl NodeKeys {
    /// Loads every key; a token is opened once, on the first key it holds.
    pub(crate) fn load(config: &crate::config::Config) -> Result<Self, NodeDirError> {
        let keys = &config.paths.keys;
        let cfg = &config.keys;
        let mut tokens = match (&config.pkcs11, cfg.is_empty()) {
            (Some(p), _) => Some(Tokens::new(p.clone())),
            (None, true) => None,
            (None, false) => return Err(NodeDirError::TokenKey {
                role: "[keys]",
                source: KeyLoadError::Config(
                    "[keys] names token keys but [pkcs11] (module, pin_file or pin_env) is missing"
                        .into(),
                ),
            }),
        };
        let tok =
            |role: &'static str| move |e: KeyLoadError| NodeDirError::TokenKey { role, source: e };
        let signing = match &cfg.signing {
            Some(uri) => signing_key(need(&mut tokens)?, uri).map_err(tok("signing"))?,
            None => files::read_signing_key(&keys.join("sign.key.pem"))?,
        };
        let encryption = match &cfg.encryption {
            Some(uri) => encryption_key(need(&mut tokens)?, uri).map_err(tok("encryption"))?,
            None => files::read_encryption_key(&keys.join("enc.key.pem"))?,
        };
        let tls_cert = files::read_key_file(keys, "tls.cert.der")?;
        let tls_key = match &cfg.tls {
            Some(uri) => tls_key(need(&mut tokens)?, uri).map_err(tok("tls"))?.0,
            None => {
                let der = files::read_key_file(keys, "tls.key.der")?;
                rustls::crypto::ring::default_provider()
                    .key_provider
                    .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(der.into()))
                    .map_err(|e| NodeDirError::Tls {
                        key: keys.join("tls.key.der"),
                        cert: keys.join("tls.cert.der"),
                        source: isnad_trust::TrustError::Tls(e.to_string()),
                    })?
            }
        };
        let log = match &cfg.log {
            Some(uri) => note_key(
                need(&mut tokens)?,
                uri,
                &isnad_log::origin_for(&config.agency),
                isnad_log::note::TYPE_ED25519,
            )
            .map_err(tok("log"))?,
            None => files::read_log_key(keys)?,
        };
        let witness = match &cfg.witness {
            Some(uri) => Some(
                note_key(
                    need(&mut tokens)?,
                    uri,
                    &isnad_log::witness::witness_name_for(&config.agency),
                    isnad_log::note::TYPE_COSIGNATURE_V1,
                )
                .map_err(tok("witness"))?,
            ),
            None => files::read_witness_key(keys)?,
        };
        Ok(Self {
            signing,
            encryption,
            tls_cert,
            tls_key,
            log,
            witness,
            health: tokens.as_ref().map(Tokens::health),
        })
    }
}

/// The open tokens, which exist whenever `[keys]` names a token key.
fn need(tokens: &mut Option<Tokens>) -> Result<&mut Tokens, NodeDirError> {
    tokens.as_mut().ok_or_else(|| NodeDirError::TokenKey {
        role: "[keys]",
        source: KeyLoadError::Config("[pkcs11] is missing".into()),
    })
}
