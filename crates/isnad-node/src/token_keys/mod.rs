//! Node keys held in a PKCS#11 token (spec/federation.md §14): the
//! `[keys]` and `[pkcs11]` configuration sections, and the adapters that
//! make a token key usable wherever the node uses a private key — the
//! message signing key ([`isnad_envelope::ExternalSigner`]), the encryption
//! key ([`isnad_envelope::ExternalAgreement`], only the ECDH shared secret
//! leaves the token), the audit-log and witness keys
//! ([`isnad_log::ExternalEd25519`]) and the TLS key (a rustls
//! [`SigningKey`](rustls::sign::SigningKey) for QUIC client and server
//! authentication). A directory root key is an [`isnad_envelope::SigningKey`]
//! too, made with [`signing_key`].
//!
//! ```text
//! config.toml [keys] signing = "pkcs11:token=Node;object=signing"
//!             [pkcs11] module, pin_file | pin_env, sessions
//!        │ Tokens::open (one login per token label, PIN read once)
//!        ▼
//!  TokenSigner / TokenAgreement / TokenTls ──► isnad_pkcs11::Token (session pool)
//! ```
//!
//! Every token call blocks for the device's round trip. On a worker thread
//! of a multi-threaded tokio runtime the call runs inside
//! [`tokio::task::block_in_place`], so the runtime moves its other tasks
//! away (rustls signs synchronously inside the QUIC driver); elsewhere it
//! runs directly. Roles left out of `[keys]` stay in their files: a node
//! can mix.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use isnad_envelope::{
    EncryptionCurve, EncryptionKey, ExternalAgreement, ExternalSigner, KeyError,
    SignatureAlgorithm, SigningKey,
};
use isnad_log::{ExternalEd25519, SignerKey};
use isnad_pkcs11::{KeyKind, KeyUri, PinSource, Token, TokenConfig, TokenError, TokenKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod tls;

/// `[keys]`: which private keys are in a token, as RFC 7512 URIs. A role
/// left out is read from its file in the keys directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The message signing key (Ed25519 or ES256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<String>,
    /// The encryption key (P-256 or X25519 ECDH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// The TLS key (ECDSA P-256); its certificate stays `tls.cert.der`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The audit-log note key (Ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The witness cosigning key (Ed25519).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
}

impl KeysConfig {
    /// Whether no role is in a token.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[pkcs11]`: the module and where the PIN is (never the PIN itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// A file holding the user PIN (mode 0600), relative to the config file
    /// unless absolute. Exactly one of `pin_file` and `pin_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// An environment variable holding the user PIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// Sessions the node may open per token (default 4).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    4
}

impl Pkcs11Config {
    /// The PIN source, or why the section is wrong.
    pub fn pin(&self) -> Result<PinSource, String> {
        match (&self.pin_file, &self.pin_env) {
            (Some(f), None) => Ok(PinSource::File(f.clone())),
            (None, Some(v)) => Ok(PinSource::Env(v.clone())),
            _ => Err("[pkcs11] needs exactly one of pin_file and pin_env".into()),
        }
    }
}

/// The tokens a node uses, opened once each (one login per token).
#[derive(Debug)]
pub struct Tokens {
    config: Pkcs11Config,
    open: HashMap<String, Arc<Token>>,
    health: Arc<KeyHealth>,
}

impl Tokens {
    /// No token open yet; [`Tokens::key`] opens each on first use.
    pub fn new(config: Pkcs11Config) -> Self {
        Self {
            config,
            open: HashMap::new(),
            health: Arc::new(KeyHealth::default()),
        }
    }

    /// The faults of the keys loaded through this handle, for the node's
    /// health ([`KeyHealth::probe`]).
    pub fn health(&self) -> Arc<KeyHealth> {
        Arc::clone(&self.health)
    }

    /// The token of `uri` (opened and logged in on first use: a wrong PIN
    /// is [`TokenError::WrongPin`] naming the token, at once, not retried)
    /// and the key it names, checked to be of `kind`.
    pub fn key(
        &mut self,
        uri: &str,
        kind: KeyKind,
    ) -> Result<(Arc<Token>, TokenKey), KeyLoadError> {
        let parsed = KeyUri::parse(uri).map_err(|e| KeyLoadError::Uri {
            uri: uri.to_owned(),
            detail: e.to_string(),
        })?;
        let label = parsed.token().to_owned();
        let token = match self.open.get(&label) {
            Some(t) => Arc::clone(t),
            None => {
                let pin = self.config.pin().map_err(KeyLoadError::Config)?;
                let sessions = NonZeroUsize::new(self.config.sessions).ok_or_else(|| {
                    KeyLoadError::Config("[pkcs11] sessions must be positive".into())
                })?;
                let t = Arc::new(Token::open(&TokenConfig {
                    module: self.config.module.clone(),
                    token: label.clone(),
                    pin,
                    sessions,
                })?);
                self.open.insert(label, Arc::clone(&t));
                t
            }
        };
        let key = token.key(&parsed, kind)?;
        Ok((token, key))
    }
}

/// Generates a key pair of `kind` in the token `uri` names, labelled with
/// the URI's `object` (as `isnad keygen --pkcs11` and `isnad directory
/// root-init --pkcs11` do): the private half is a sensitive,
/// non-extractable token object; only its public part comes back. Refused
/// if the token already holds a key of that label.
pub fn generate(config: &Pkcs11Config, uri: &str, kind: KeyKind) -> Result<TokenKey, KeyLoadError> {
    let mut tokens = Tokens::new(config.clone());
    let parsed = KeyUri::parse(uri).map_err(|e| KeyLoadError::Uri {
        uri: uri.to_owned(),
        detail: e.to_string(),
    })?;
    match tokens.key(uri, kind) {
        Err(KeyLoadError::Token(TokenError::KeyNotFound { .. })) => {}
        Err(e) => return Err(e),
        Ok(_) => {
            return Err(KeyLoadError::Config(format!(
                "token `{}` already holds a key `{}`: keys are never overwritten (choose another object=)",
                parsed.token(),
                parsed.object()
            )))
        }
    }
    let token = tokens
        .open
        .get(parsed.token())
        .ok_or_else(|| KeyLoadError::Config("token not open".into()))?;
    Ok(token.generate(kind, parsed.object())?)
}

/// Makes the five keys of a node in the token `base` names (`isnad init
/// --pkcs11`): objects `<object>-sign` (Ed25519), `-enc` (P-256 ECDH),
/// `-tls` (ES256), `-log` and `-witness` (Ed25519), each refused if the
/// label is taken. Returns the `[keys]` section naming them.
pub fn generate_node_keys(config: &Pkcs11Config, base: &str) -> Result<KeysConfig, KeyLoadError> {
    let parsed = KeyUri::parse(base).map_err(|e| KeyLoadError::Uri {
        uri: base.to_owned(),
        detail: e.to_string(),
    })?;
    let uri = |suffix: &str| {
        format!(
            "pkcs11:token={};object={}",
            pct(parsed.token()),
            pct(&format!("{}-{suffix}", parsed.object()))
        )
    };
    let keys = KeysConfig {
        signing: Some(uri("sign")),
        encryption: Some(uri("enc")),
        tls: Some(uri("tls")),
        log: Some(uri("log")),
        witness: Some(uri("witness")),
    };
    for (u, kind) in [
        (&keys.signing, KeyKind::Ed25519),
        (&keys.encryption, KeyKind::P256Ecdh),
        (&keys.tls, KeyKind::Es256),
        (&keys.log, KeyKind::Ed25519),
        (&keys.witness, KeyKind::Ed25519),
    ] {
        if let Some(u) = u {
            generate(config, u, kind)?;
        }
    }
    Ok(keys)
}

/// RFC 3986 percent-encoding of a URI attribute value (unreserved kept).
pub fn pct(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The public halves of the token keys `config` names, as `isnad init`
/// writes them into the keys directory: the signing and encryption
/// COSE_Keys, a TLS certificate self-signed in the token, and the log and
/// witness verifier keys. `None` for a role kept in a file.
pub(crate) struct TokenPublics {
    pub(crate) signing: Option<SigningKey>,
    pub(crate) encryption: Option<EncryptionKey>,
    pub(crate) tls_cert: Option<Vec<u8>>,
    pub(crate) log: Option<SignerKey>,
    pub(crate) witness: Option<SignerKey>,
}

impl TokenPublics {
    /// Loads the token keys `keys` names for `agency` (none if `[keys]` is
    /// empty), from the tokens of `pkcs11`.
    pub(crate) fn load(
        keys: &KeysConfig,
        pkcs11: Option<&Pkcs11Config>,
        agency: &isnad_envelope::AgencyId,
    ) -> Result<Self, KeyLoadError> {
        let mut tokens = match pkcs11 {
            Some(p) => Tokens::new(p.clone()),
            None if keys.is_empty() => {
                return Ok(Self {
                    signing: None,
                    encryption: None,
                    tls_cert: None,
                    log: None,
                    witness: None,
                })
            }
            None => return Err(KeyLoadError::Config("[keys] needs [pkcs11]".into())),
        };
        let signing = keys
            .signing
            .as_ref()
            .map(|u| signing_key(&mut tokens, u))
            .transpose()?;
        let encryption = keys
            .encryption
            .as_ref()
            .map(|u| encryption_key(&mut tokens, u))
            .transpose()?;
        let tls_cert = match &keys.tls {
            Some(u) => {
                let (t, k) = tokens.key(u, KeyKind::Es256)?;
                let sign = |m: &[u8]| {
                    blocking(|| t.sign_es256(&k, m))
                        .map(|s| s.to_der())
                        .map_err(|e| e.to_string())
                };
                Some(
                    isnad_trust::tls::TlsIdentity::certificate_for_external_key(
                        agency,
                        k.public(),
                        &sign,
                    )
                    .map_err(|e| KeyLoadError::Public(e.to_string()))?,
                )
            }
            None => None,
        };
        let log = keys
            .log
            .as_ref()
            .map(|u| {
                note_key(
                    &mut tokens,
                    u,
                    &isnad_log::origin_for(agency),
                    isnad_log::note::TYPE_ED25519,
                )
            })
            .transpose()?;
        let witness = keys
            .witness
            .as_ref()
            .map(|u| {
                note_key(
                    &mut tokens,
                    u,
                    &isnad_log::witness::witness_name_for(agency),
                    isnad_log::note::TYPE_COSIGNATURE_V1,
                )
            })
            .transpose()?;
        Ok(Self {
            signing,
            encryption,
            tls_cert,
            log,
            witness,
        })
    }
}

/// Why a token key could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLoadError {
    // --- Operator configuration ---
    /// A key URI is not an RFC 7512 PKCS#11 URI Isnad accepts.
    #[error("key URI {uri} is invalid: {detail}")]
    Uri {
        /// The URI as configured.
        uri: String,
        /// What is wrong.
        detail: String,
    },
    /// The `[pkcs11]` section is missing or inconsistent.
    #[error("{0}")]
    Config(String),
    /// The token refused, is absent, or lacks the key (the message names
    /// the token and what to do).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token's public key is not a valid key of its algorithm.
    #[error("the public key in the token is invalid: {0}")]
    Public(String),
}

/// The message signing key (or a directory root key) named by `uri`:
/// Ed25519 if the token key is one, else ES256.
pub fn signing_key(tokens: &mut Tokens, uri: &str) -> Result<SigningKey, KeyLoadError> {
    let (token, key) = match tokens.key(uri, KeyKind::Ed25519) {
        Ok(k) => k,
        Err(KeyLoadError::Token(TokenError::WrongKeyKind { .. })) => {
            tokens.key(uri, KeyKind::Es256)?
        }
        Err(e) => return Err(e),
    };
    SigningKey::external(Arc::new(TokenSigner::watched(token, key, tokens.health())))
        .map_err(|e| KeyLoadError::Public(e.to_string()))
}

/// The encryption key named by `uri`: P-256 ECDH, else X25519.
pub fn encryption_key(tokens: &mut Tokens, uri: &str) -> Result<EncryptionKey, KeyLoadError> {
    let (token, key) = match tokens.key(uri, KeyKind::P256Ecdh) {
        Ok(k) => k,
        Err(KeyLoadError::Token(TokenError::WrongKeyKind { .. })) => {
            tokens.key(uri, KeyKind::X25519)?
        }
        Err(e) => return Err(e),
    };
    EncryptionKey::external(Arc::new(TokenAgreement {
        token,
        key,
        health: tokens.health(),
    }))
    .map_err(|e| KeyLoadError::Public(e.to_string()))
}

/// An audit-log note key (`key_type` 0x01) or witness cosigning key (0x04)
/// named `name`, held in the token at `uri` (Ed25519).
pub fn note_key(
    tokens: &mut Tokens,
    uri: &str,
    name: &str,
    key_type: u8,
) -> Result<SignerKey, KeyLoadError> {
    let (token, key) = tokens.key(uri, KeyKind::Ed25519)?;
    SignerKey::external(
        name,
        key_type,
        Arc::new(TokenSigner::watched(token, key, tokens.health())),
    )
    .map_err(|e| KeyLoadError::Public(e.to_string()))
}

/// The TLS key named by `uri` (ECDSA P-256), for
/// [`isnad_trust::tls::configs_with_key`], and its public SEC1 point.
pub fn tls_key(
    tokens: &mut Tokens,
    uri: &str,
) -> Result<(Arc<dyn rustls::sign::SigningKey>, Vec<u8>), KeyLoadError> {
    let (token, key) = tokens.key(uri, KeyKind::Es256)?;
    let public = key.public().to_vec();
    let signer = TokenSigner::watched(token, key, tokens.health());
    Ok((Arc::new(tls::TokenTls(Arc::new(signer))), public))
}

/// Runs a blocking token call: inside `block_in_place` on a worker of a
/// multi-threaded tokio runtime, directly elsewhere (a current-thread
/// runtime cannot hand its tasks away; tests and CLI commands use one).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A signing key in a token: Ed25519 (messages, notes, cosignatures,
/// directories) or ES256 (messages, TLS).
#[derive(Debug)]
pub struct TokenSigner {
    token: Arc<Token>,
    key: TokenKey,
    health: Arc<KeyHealth>,
}

impl TokenSigner {
    /// A signer for `key` of `token` whose faults go to `health`.
    pub fn watched(token: Arc<Token>, key: TokenKey, health: Arc<KeyHealth>) -> Self {
        Self { token, key, health }
    }

    /// Signs in the token; reports the outcome to the key health.
    fn raw(&self, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
        let signed = blocking(|| sign_with(&self.token, &self.key, msg));
        let name = key_name(&self.token, &self.key);
        match &signed {
            Ok(_) => self.health.ok(&name),
            Err(e) => {
                tracing::warn!(error = %e, "PKCS#11 signing failed");
                let (token, key) = (Arc::clone(&self.token), self.key.clone());
                self.health.failed(
                    &name,
                    e.to_string(),
                    Arc::new(move || {
                        blocking(|| sign_with(&token, &key, b"isnad key health"))
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }),
                );
            }
        }
        signed
    }

    fn es256_der(&self, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
        let raw = self.raw(msg)?;
        let sig: [u8; 64] = raw.try_into().map_err(|_| TokenError::Device {
            token: self.token.label().to_owned(),
            operation: "C_Sign(CKM_ECDSA)",
            detail: "not a 64-byte signature".into(),
        })?;
        Ok(isnad_pkcs11::EcdsaSignature::from_raw(sig).to_der())
    }
}

/// `token/label`, how [`KeyHealth`] names a token key.
fn key_name(token: &Token, key: &TokenKey) -> String {
    format!("key `{}` in token `{}`", key.label(), token.label())
}

/// One signature by a token key: Ed25519 (64 bytes) or ES256 (`r || s`).
fn sign_with(token: &Token, key: &TokenKey, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
    match key.kind() {
        KeyKind::Es256 => token.sign_es256(key, msg).map(|s| s.raw().to_vec()),
        _ => token.sign_ed25519(key, msg).map(|s| s.to_vec()),
    }
}

/// A check of a failed key: `Ok` once it works again.
pub type Retest = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The faults of a node's device-held keys, which its health reports as
/// `key-unavailable` (spec/transport.md §9): an operation that fails marks
/// its key, the next one that succeeds clears it, and while one is marked
/// [`KeyHealth::probe`] re-tries it (at most once a second), so a token
/// that comes back clears the fault even when the node, degraded, starts
/// no work that would use the key.
#[derive(Default)]
pub struct KeyHealth {
    faults: std::sync::Mutex<std::collections::BTreeMap<String, Fault>>,
}

struct Fault {
    error: String,
    retest: Retest,
    tried: std::time::Instant,
}

impl std::fmt::Debug for KeyHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHealth").finish_non_exhaustive()
    }
}

impl KeyHealth {
    /// `key` failed with `error`; `retest` checks whether it works again.
    pub fn failed(&self, key: &str, error: String, retest: Retest) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.insert(
            key.to_owned(),
            Fault {
                error,
                retest,
                tried: std::time::Instant::now(),
            },
        );
    }

    /// `key` worked.
    pub fn ok(&self, key: &str) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if faults.remove(key).is_some() {
            tracing::info!(key, "key works again");
        }
    }

    /// The first failing key and its error, after re-trying those last
    /// tried more than a second ago; `None` when every key works.
    pub fn probe(&self) -> Option<String> {
        let due: Vec<(String, Retest)> = {
            let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
            faults
                .iter()
                .filter(|(_, f)| f.tried.elapsed() >= std::time::Duration::from_secs(1))
                .map(|(k, f)| (k.clone(), Arc::clone(&f.retest)))
                .collect()
        };
        for (key, retest) in due {
            match retest() {
                Ok(()) => self.ok(&key),
                Err(error) => {
                    let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(f) = faults.get_mut(&key) {
                        f.error = error;
                        f.tried = std::time::Instant::now();
                    }
                }
            }
        }
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults
            .iter()
            .next()
            .map(|(k, f)| format!("{k}: {}", f.error))
    }

    /// [`KeyHealth::probe`] as the node's key probe
    /// ([`crate::NodeHandle::set_key_probe`]).
    pub fn key_probe(self: &Arc<Self>) -> crate::health::KeyProbe {
        let me = Arc::clone(self);
        Arc::new(move || me.probe())
    }
}

impl ExternalSigner for TokenSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self.key.kind() {
            KeyKind::Es256 => SignatureAlgorithm::Es256,
            _ => SignatureAlgorithm::Ed25519,
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.key.public().to_vec()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.raw(msg)
            .map_err(|e| KeyError::Unavailable(e.to_string()))
    }
}

impl ExternalEd25519 for TokenSigner {
    fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(b) = <[u8; 32]>::try_from(self.key.public()) {
            out = b;
        }
        out
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String> {
        let raw = self.raw(msg).map_err(|e| e.to_string())?;
        raw.try_into()
            .map_err(|_| "the token's Ed25519 signature is not 64 bytes".to_owned())
    }
}

/// An encryption key in a token: the recipient side of ECDH-ES.
#[derive(Debug)]
pub struct TokenAgreement {
    token: Arc<Token>,
    key: TokenKey,
    health: Arc<KeyHealth>,
}

impl ExternalAgreement for TokenAgreement {
    fn curve(&self) -> EncryptionCurve {
        match self.key.kind() {
            KeyKind::X25519 => EncryptionCurve::X25519,
            _ => EncryptionCurve::P256,
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.key.public().to_vec()
    }

    fn agree(&self, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let name = key_name(&self.token, &self.key);
        match blocking(|| self.token.derive(&self.key, peer)) {
            Ok(s) => {
                self.health.ok(&name);
                Ok(Zeroizing::new(*s.bytes()))
            }
            Err(TokenError::InvalidPeerKey) => {
                Err(KeyError::CoseKey("invalid ephemeral public key"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "PKCS#11 key agreement failed");
                let (token, key) = (Arc::clone(&self.token), self.key.clone());
                self.health.failed(
                    &name,
                    e.to_string(),
                    Arc::new(move || {
                        // The key's own public point is a valid peer point.
                        blocking(|| token.derive(&key, key.public()))
                            .map(drop)
                            .map_err(|e| e.to_string())
                    }),
                );
                Err(KeyError::Unavailable(e.to_string()))
            }
        }
    }
}

/// Resolves a relative `pin_file` against the config file's directory.
pub(crate) fn resolve(config: &mut Option<Pkcs11Config>, base: &Path) {
    if let Some(f) = config.as_mut().and_then(|c| c.pin_file.as_mut()) {
        if f.is_relative() {
            *f = base.join(&*f);
        }
    }
}
