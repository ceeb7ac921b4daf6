//! A token handle: one PKCS#11 module, one token, a PIN, a session pool,
//! and the key operations Isnad needs, none of which extracts a private key.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::uri::{KeyUri, ObjectType};

/// Where the user PIN comes from. Never from configuration text: the
/// configuration names a file or a variable, and the PIN itself is read
/// once at [`Token::open`] and never logged or put in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (one trailing newline is ignored). Keep it
    /// readable by the node's user only.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

/// What [`Token::open`] needs.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token label (`token=` of the key URIs).
    pub token: String,
    /// Where the user PIN is.
    pub pin: PinSource,
    /// How many sessions the pool may open (a token has few; SoftHSM2 has
    /// no small limit, hardware often 8–64 per application).
    pub sessions: NonZeroUsize,
}

/// The algorithm and role of a token key. One key pair has one role: a
/// signing key cannot derive, an agreement key cannot sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// Ed25519 signing (CKM_EDDSA): message signatures, C2SP notes.
    Ed25519,
    /// ECDSA P-256 with SHA-256 (CKM_ECDSA, hash in software): ES256.
    Es256,
    /// ECDH on P-256 (CKM_ECDH1_DERIVE): the recipient side of ECDH-ES.
    P256Ecdh,
    /// ECDH on X25519 (CKM_ECDH1_DERIVE): a CKK_EC_MONTGOMERY key, or, on
    /// SoftHSM2 2.6, a CKK_EC_EDWARDS key with the X25519 curve OID.
    X25519,
}

/// A key in the token, found by [`Token::key`] or made by
/// [`Token::generate`]. It holds only the object handle and the public
/// part; the private key stays in the token.
#[derive(Debug, Clone)]
pub struct TokenKey {
    kind: KeyKind,
    label: String,
    handle: ObjectHandle,
    public: Vec<u8>,
}

impl TokenKey {
    /// The key's algorithm and role.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key's CKA_LABEL (`object=`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The public key, raw: 32 bytes for Ed25519 and X25519, the 65-byte
    /// uncompressed SEC1 point for P-256.
    pub fn public(&self) -> &[u8] {
        &self.public
    }
}

/// An ECDSA P-256 signature as the token returns it: `r || s`, 32 bytes
/// each, which is the COSE (RFC 9053 §2.1) and JOSE form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdsaSignature([u8; 64]);

impl EcdsaSignature {
    /// A signature from its `r || s` form.
    pub fn from_raw(raw: [u8; 64]) -> Self {
        Self(raw)
    }

    /// `r || s`, as COSE and JOSE carry it.
    pub fn raw(&self) -> &[u8; 64] {
        &self.0
    }

    /// The ASN.1 DER `Ecdsa-Sig-Value` (X.509, TLS).
    pub fn to_der(&self) -> Vec<u8> {
        let r = der_uint(&self.0[..32]);
        let s = der_uint(&self.0[32..]);
        let mut out = Vec::with_capacity(6 + r.len() + s.len());
        out.push(0x30);
        // At most 2 * (2 + 33) = 70 bytes: always the short length form.
        out.push(u8::try_from(r.len() + s.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&r);
        out.extend_from_slice(&s);
        out
    }
}

/// The ECDH shared secret: the one value read out of the token, to be fed
/// into HKDF. Zeroed on drop.
pub struct SharedSecret(Zeroizing<[u8; 32]>);

impl SharedSecret {
    /// The 32 secret bytes (the x-coordinate for P-256, the u-coordinate
    /// for X25519).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

/// Why a token operation failed. Grouped by who is at fault; every message
/// names the token so an operator knows which device to look at. No
/// variant carries the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    // --- Operator configuration ---
    /// The PKCS#11 module could not be loaded or initialised (wrong path,
    /// missing package, wrong architecture).
    #[error("PKCS#11 module {module} cannot be loaded: {detail}")]
    ModuleUnavailable {
        /// The configured module path.
        module: PathBuf,
        /// What the loader or C_Initialize said.
        detail: String,
    },
    /// No slot holds a token with this label (not plugged in, or a typo).
    #[error(
        "PKCS#11 token `{token}` is not present: check the label and that the device is connected"
    )]
    TokenAbsent {
        /// The configured token label.
        token: String,
    },
    /// The PIN file or variable could not be read (the PIN itself is not
    /// shown).
    #[error("PIN for PKCS#11 token `{token}` cannot be read from {source_name}: {detail}")]
    PinUnavailable {
        /// The token the PIN is for.
        token: String,
        /// The file path or variable name (never the PIN).
        source_name: String,
        /// Why it could not be read.
        detail: String,
    },
    /// The token refused the PIN. Isnad does not retry: each failure
    /// counts towards the token's lock-out.
    #[error("PKCS#11 token `{token}` refused the PIN: fix the PIN file or variable; not retried, to avoid locking the token")]
    WrongPin {
        /// The token label.
        token: String,
    },
    /// The user PIN is locked (too many wrong PINs): the security officer
    /// must unlock it.
    #[error("PKCS#11 token `{token}` has its user PIN locked: the security officer must reset it")]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// No key object with this label (and id) in the token.
    #[error("PKCS#11 token `{token}` holds no {class} key `{object}`")]
    KeyNotFound {
        /// The token label.
        token: String,
        /// The key label asked for.
        object: String,
        /// `private` or `public`.
        class: &'static str,
    },
    /// More than one key object matches: add `id=` to the URI.
    #[error(
        "PKCS#11 token `{token}` holds several {class} keys `{object}`: add `id=` to the key URI"
    )]
    KeyAmbiguous {
        /// The token label.
        token: String,
        /// The key label asked for.
        object: String,
        /// `private` or `public`.
        class: &'static str,
    },
    /// The key exists but is not of the kind the caller needs (e.g. a P-256
    /// key where an Ed25519 key is configured).
    #[error("PKCS#11 key `{object}` in token `{token}` is not a {expected:?} key")]
    WrongKeyKind {
        /// The token label.
        token: String,
        /// The key label.
        object: String,
        /// What the caller asked for.
        expected: KeyKind,
    },
    /// The URI names another token than this handle's, or a public key
    /// where a private key is needed.
    #[error("PKCS#11 key URI {uri} does not name a private key of token `{token}`")]
    UriMismatch {
        /// The URI as given.
        uri: String,
        /// This handle's token.
        token: String,
    },

    // --- Token capability ---
    /// The token does not offer the mechanism this key kind needs.
    #[error("PKCS#11 token `{token}` does not support {mechanism}")]
    MechanismUnsupported {
        /// The token label.
        token: String,
        /// The PKCS#11 mechanism name.
        mechanism: &'static str,
    },

    // --- Peer input ---
    /// The peer's public key for ECDH is not a valid point of the curve.
    #[error("the peer public key is not a valid point for key agreement")]
    InvalidPeerKey,

    // --- Token state and device (transient: the node degrades and retries later) ---
    /// The token has no session left (CKR_SESSION_COUNT) or the pool's
    /// limit is reached.
    #[error("PKCS#11 token `{token}` is out of sessions")]
    OutOfSessions {
        /// The token label.
        token: String,
    },
    /// The token forgot the login (removed and re-inserted, or logged out
    /// by another application).
    #[error("PKCS#11 token `{token}` is not logged in (was it removed and re-inserted?)")]
    NotLoggedIn {
        /// The token label.
        token: String,
    },
    /// The device failed, was removed, or returned something malformed.
    #[error("PKCS#11 token `{token}` failed during {operation}: {detail}")]
    Device {
        /// The token label.
        token: String,
        /// The PKCS#11 function or step that failed.
        operation: &'static str,
        /// The return value or what was malformed.
        detail: String,
    },
}

/// Held while a key pair is generated (see [`Token::generate`]).
static GENERATING: Mutex<()> = Mutex::new(());

/// An open token: the module context, the slot, a logged-in session pool.
///
/// PKCS#11 keeps login state per process and token, so every session of
/// the pool is logged in once the first one is. The module is initialised
/// once per process and never finalised (C_Finalize would close every
/// other handle's sessions too).
#[derive(Debug)]
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pool: Mutex<Pool>,
    freed: Condvar,
    max: usize,
}

#[derive(Debug)]
struct Pool {
    idle: Vec<Session>,
    open: usize,
}

/// A session borrowed from the pool; returned on drop.
struct Lease<'a> {
    token: &'a Token,
    session: Option<Session>,
}

impl Token {
    /// Loads the module, finds the token by label, reads the PIN and logs
    /// in once. A wrong PIN is [`TokenError::WrongPin`], returned at once:
    /// no retry, so a misconfigured node cannot lock the token.
    pub fn open(config: &TokenConfig) -> Result<Token, TokenError> {
        let ctx = module(&config.module)?;
        let label = config.token.clone();
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| map_err(&label, "C_GetSlotList", e))?;
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| map_err(&label, "C_GetTokenInfo", e))?;
            if info.label().trim_end() == label {
                if info.user_pin_locked() {
                    return Err(TokenError::PinLocked { token: label });
                }
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| TokenError::TokenAbsent {
            token: label.clone(),
        })?;
        let pin = read_pin(&label, &config.pin)?;
        let token = Token {
            ctx,
            slot,
            label,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: config.sessions.get(),
        };
        let session = token.open_session()?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(map_err(&token.label, "C_Login", e)),
        }
        let mut pool = token.lock();
        pool.open = 1;
        pool.idle.push(session);
        drop(pool);
        Ok(token)
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Finds the private key a URI names, checks it is of `kind`, and
    /// reads its public part from the matching public key object.
    pub fn key(&self, uri: &KeyUri, kind: KeyKind) -> Result<TokenKey, TokenError> {
        if uri.token() != self.label || uri.object_type() == Some(ObjectType::Public) {
            return Err(TokenError::UriMismatch {
                uri: uri.to_string(),
                token: self.label.clone(),
            });
        }
        let s = self.lease()?;
        let handle = self.find(&s, ObjectClass::PRIVATE_KEY, uri.object(), uri.id())?;
        let pub_handle = self.find(&s, ObjectClass::PUBLIC_KEY, uri.object(), uri.id())?;
        let attrs = s
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::Sign,
                    AttributeType::Derive,
                ],
            )
            .map_err(|e| map_err(&self.label, "C_GetAttributeValue", e))?;
        let mut key_type = None;
        let mut params = Vec::new();
        let (mut sign, mut derive) = (false, false);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::EcParams(p) => params = p,
                Attribute::Sign(b) => sign = b,
                Attribute::Derive(b) => derive = b,
                _ => {}
            }
        }
        if !key_type.is_some_and(|t| is_kind(kind, t, &params, sign, derive)) {
            return Err(TokenError::WrongKeyKind {
                token: self.label.clone(),
                object: uri.object().to_owned(),
                expected: kind,
            });
        }
        let public = self.public_point(&s, pub_handle, kind)?;
        Ok(TokenKey {
            kind,
            label: uri.object().to_owned(),
            handle,
            public,
        })
    }

    /// Generates a key pair of `kind` inside the token under `label`: the
    /// private half is a token object with CKA_SENSITIVE true and
    /// CKA_EXTRACTABLE false, usable only for its one role. Returns the key
    /// with its public part.
    pub fn generate(&self, kind: KeyKind, label: &str) -> Result<TokenKey, TokenError> {
        let s = self.lease()?;
        let (mechanism, params): (Mechanism<'_>, &[u8]) = match kind {
            KeyKind::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, OID_ED25519),
            KeyKind::Es256 | KeyKind::P256Ecdh => (Mechanism::EccKeyPairGen, OID_P256),
            KeyKind::X25519 => {
                if self.supports(MechanismType::ECC_MONTGOMERY_KEY_PAIR_GEN)? {
                    (Mechanism::EccMontgomeryKeyPairGen, OID_X25519)
                } else {
                    (Mechanism::EccEdwardsKeyPairGen, OID_X25519)
                }
            }
        };
        let signs = matches!(kind, KeyKind::Ed25519 | KeyKind::Es256);
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::EcParams(params.to_vec()),
            Attribute::Verify(signs),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Sign(signs),
            Attribute::Derive(!signs),
        ];
        let (pub_handle, handle) = {
            // One key generation at a time in this process: SoftHSM2's
            // file-based object store fails concurrent C_GenerateKeyPair
            // calls now and then with CKR_GENERAL_ERROR (softhsm/SoftHSMv2
            // issue 573). Keys are made at a ceremony, not per message, so
            // serializing costs nothing that matters.
            let _one_at_a_time = GENERATING.lock().unwrap_or_else(|p| p.into_inner());
            s.generate_key_pair(&mechanism, &public_template, &private_template)
                .map_err(|e| map_err(&self.label, "C_GenerateKeyPair", e))?
        };
        let public = self.public_point(&s, pub_handle, kind)?;
        Ok(TokenKey {
            kind,
            label: label.to_owned(),
            handle,
            public,
        })
    }

    /// Signs `message` with an Ed25519 token key (CKM_EDDSA, pure Ed25519):
    /// the 64-byte signature of RFC 8032.
    pub fn sign_ed25519(&self, key: &TokenKey, message: &[u8]) -> Result<[u8; 64], TokenError> {
        self.expect(key, KeyKind::Ed25519)?;
        let s = self.lease()?;
        let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        let sig = s
            .sign(&mech, key.handle, message)
            .map_err(|e| map_err(&self.label, "C_Sign(CKM_EDDSA)", e))?;
        sig.try_into()
            .map_err(|v: Vec<u8>| self.malformed("C_Sign(CKM_EDDSA)", v.len()))
    }

    /// Signs `message` with ES256: SHA-256 in software, then CKM_ECDSA on
    /// the digest in the token.
    pub fn sign_es256(&self, key: &TokenKey, message: &[u8]) -> Result<EcdsaSignature, TokenError> {
        self.expect(key, KeyKind::Es256)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let s = self.lease()?;
        let sig = s
            .sign(&Mechanism::Ecdsa, key.handle, digest.as_ref())
            .map_err(|e| map_err(&self.label, "C_Sign(CKM_ECDSA)", e))?;
        let raw: [u8; 64] = sig
            .try_into()
            .map_err(|v: Vec<u8>| self.malformed("C_Sign(CKM_ECDSA)", v.len()))?;
        Ok(EcdsaSignature(raw))
    }

    /// The recipient side of ECDH-ES: CKM_ECDH1_DERIVE between the token's
    /// private key and the sender's ephemeral public key (P-256: SEC1
    /// point, compressed or not; X25519: 32 bytes). The derived secret is
    /// created as a session object, read once, and destroyed.
    pub fn derive(&self, key: &TokenKey, peer: &[u8]) -> Result<SharedSecret, TokenError> {
        let point: Vec<u8> = match key.kind {
            KeyKind::P256Ecdh => {
                let pk = p256::PublicKey::from_sec1_bytes(peer)
                    .map_err(|_| TokenError::InvalidPeerKey)?;
                pk.to_sec1_bytes().to_vec()
            }
            KeyKind::X25519 => {
                if peer.len() != 32 {
                    return Err(TokenError::InvalidPeerKey);
                }
                peer.to_vec()
            }
            _ => return Err(self.wrong_kind(key, KeyKind::P256Ecdh)),
        };
        let s = self.lease()?;
        let mech = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &point));
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen(32.into()),
        ];
        let secret = s
            .derive_key(&mech, key.handle, &template)
            .map_err(|e| map_err(&self.label, "C_DeriveKey(CKM_ECDH1_DERIVE)", e))?;
        let value = s.get_attributes(secret, &[AttributeType::Value]);
        // Destroy the session object whatever happened; a failure here only
        // leaves it until the session closes.
        let _ = s.destroy_object(secret);
        let value = value.map_err(|e| map_err(&self.label, "C_GetAttributeValue(CKA_VALUE)", e))?;
        let mut out = Zeroizing::new([0u8; 32]);
        match value.into_iter().next() {
            Some(Attribute::Value(v)) if v.len() == 32 => {
                let v = Zeroizing::new(v);
                out.copy_from_slice(&v);
            }
            Some(Attribute::Value(v)) => {
                return Err(self.malformed("C_DeriveKey", Zeroizing::new(v).len()))
            }
            _ => return Err(self.malformed("C_DeriveKey", 0)),
        }
        // An all-zero X25519 result means a low-order peer point.
        if out.iter().all(|&b| b == 0) {
            return Err(TokenError::InvalidPeerKey);
        }
        Ok(SharedSecret(out))
    }

    /// Whether the token lists `mechanism`.
    pub fn supports(&self, mechanism: MechanismType) -> Result<bool, TokenError> {
        let list = self
            .ctx
            .get_mechanism_list(self.slot)
            .map_err(|e| map_err(&self.label, "C_GetMechanismList", e))?;
        Ok(list.contains(&mechanism))
    }

    /// Reads boolean attributes of a key's private object (for audits and
    /// tests: CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE ...).
    pub fn private_flags(&self, key: &TokenKey) -> Result<PrivateFlags, TokenError> {
        let s = self.lease()?;
        let attrs = s
            .get_attributes(
                key.handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                ],
            )
            .map_err(|e| map_err(&self.label, "C_GetAttributeValue", e))?;
        let mut flags = PrivateFlags::default();
        for a in attrs {
            match a {
                Attribute::Sensitive(b) => flags.sensitive = b,
                Attribute::Extractable(b) => flags.extractable = b,
                Attribute::NeverExtractable(b) => flags.never_extractable = b,
                Attribute::AlwaysSensitive(b) => flags.always_sensitive = b,
                _ => {}
            }
        }
        Ok(flags)
    }

    fn expect(&self, key: &TokenKey, kind: KeyKind) -> Result<(), TokenError> {
        if key.kind == kind {
            Ok(())
        } else {
            Err(self.wrong_kind(key, kind))
        }
    }

    fn wrong_kind(&self, key: &TokenKey, kind: KeyKind) -> TokenError {
        TokenError::WrongKeyKind {
            token: self.label.clone(),
            object: key.label.clone(),
            expected: kind,
        }
    }

    fn malformed(&self, operation: &'static str, len: usize) -> TokenError {
        TokenError::Device {
            token: self.label.clone(),
            operation,
            detail: format!("unexpected output length {len}"),
        }
    }

    fn find(
        &self,
        s: &Session,
        class: ObjectClass,
        label: &str,
        id: Option<&[u8]>,
    ) -> Result<ObjectHandle, TokenError> {
        let mut template = vec![
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        if let Some(id) = id {
            template.push(Attribute::Id(id.to_vec()));
        }
        let found = s
            .find_objects(&template)
            .map_err(|e| map_err(&self.label, "C_FindObjects", e))?;
        let class_name = if class == ObjectClass::PRIVATE_KEY {
            "private"
        } else {
            "public"
        };
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(TokenError::KeyNotFound {
                token: self.label.clone(),
                object: label.to_owned(),
                class: class_name,
            }),
            _ => Err(TokenError::KeyAmbiguous {
                token: self.label.clone(),
                object: label.to_owned(),
                class: class_name,
            }),
        }
    }

    fn public_point(
        &self,
        s: &Session,
        handle: ObjectHandle,
        kind: KeyKind,
    ) -> Result<Vec<u8>, TokenError> {
        let attrs = s
            .get_attributes(handle, &[AttributeType::EcPoint])
            .map_err(|e| map_err(&self.label, "C_GetAttributeValue(CKA_EC_POINT)", e))?;
        let point = match attrs.into_iter().next() {
            Some(Attribute::EcPoint(p)) => p,
            _ => return Err(self.malformed("C_GetAttributeValue(CKA_EC_POINT)", 0)),
        };
        let want = if matches!(kind, KeyKind::Es256 | KeyKind::P256Ecdh) {
            65
        } else {
            32
        };
        // CKA_EC_POINT is a DER OCTET STRING; some tokens give the raw point.
        let raw = if point.len() == want + 2 && point[0] == 0x04 && usize::from(point[1]) == want {
            point[2..].to_vec()
        } else if point.len() == want {
            point
        } else {
            return Err(self.malformed("C_GetAttributeValue(CKA_EC_POINT)", point.len()));
        };
        if want == 65 && p256::PublicKey::from_sec1_bytes(&raw).is_err() {
            return Err(self.malformed("C_GetAttributeValue(CKA_EC_POINT)", raw.len()));
        }
        Ok(raw)
    }

    fn open_session(&self) -> Result<Session, TokenError> {
        self.ctx
            .open_rw_session(self.slot)
            .map_err(|e| map_err(&self.label, "C_OpenSession", e))
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Borrows a session: an idle one, a new one while under the pool
    /// size, else waits for one to be returned.
    fn lease(&self) -> Result<Lease<'_>, TokenError> {
        let mut pool = self.lock();
        loop {
            if let Some(session) = pool.idle.pop() {
                return Ok(Lease {
                    token: self,
                    session: Some(session),
                });
            }
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                return match self.open_session() {
                    Ok(session) => Ok(Lease {
                        token: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        Err(e)
                    }
                };
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// CKA_SENSITIVE and CKA_EXTRACTABLE and their "always/never" history of a
/// private key object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivateFlags {
    /// CKA_SENSITIVE: the value cannot be read out in plaintext.
    pub sensitive: bool,
    /// CKA_EXTRACTABLE: the value can be wrapped out.
    pub extractable: bool,
    /// CKA_NEVER_EXTRACTABLE: it never was extractable.
    pub never_extractable: bool,
    /// CKA_ALWAYS_SENSITIVE: it always was sensitive.
    pub always_sensitive: bool,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Present from creation until drop.
        self.session
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease without session"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.token.lock().idle.push(session);
            self.token.freed.notify_one();
        }
    }
}

// DER OIDs for CKA_EC_PARAMS.
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
// PKCS#11 3.0 also allows the curve name as a PrintableString.
const NAME_ED25519: &[u8] = b"\x13\x0cedwards25519";
const NAME_X25519: &[u8] = b"\x13\x0acurve25519";

/// Whether a private key object (type, curve, CKA_SIGN, CKA_DERIVE) can
/// serve as `kind`.
fn is_kind(kind: KeyKind, key_type: KeyType, params: &[u8], sign: bool, derive: bool) -> bool {
    match kind {
        KeyKind::Es256 => key_type == KeyType::EC && params == OID_P256 && sign,
        KeyKind::P256Ecdh => key_type == KeyType::EC && params == OID_P256 && derive,
        KeyKind::Ed25519 => {
            key_type == KeyType::EC_EDWARDS
                && (params == OID_ED25519 || params == NAME_ED25519)
                && sign
        }
        KeyKind::X25519 => {
            (key_type == KeyType::EC_EDWARDS || key_type == KeyType::EC_MONTGOMERY)
                && (params == OID_X25519 || params == NAME_X25519)
                && derive
        }
    }
}

/// One context per module path per process (C_Initialize is process-wide).
fn module(path: &Path) -> Result<Pkcs11, TokenError> {
    static MODULES: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let modules = MODULES.get_or_init(|| Mutex::new(Vec::new()));
    let mut modules = modules.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(ctx.clone());
    }
    let unavailable = |detail: String| TokenError::ModuleUnavailable {
        module: path.to_owned(),
        detail,
    };
    let ctx = Pkcs11::new(path).map_err(|e| unavailable(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(unavailable(e.to_string())),
    }
    modules.push((path.to_owned(), ctx.clone()));
    Ok(ctx)
}

fn read_pin(token: &str, source: &PinSource) -> Result<AuthPin, TokenError> {
    let (source_name, text) = match source {
        PinSource::File(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| e.to_string()),
        ),
        PinSource::Env(var) => (
            format!("environment variable {var}"),
            std::env::var(var).map_err(|e| e.to_string()),
        ),
    };
    let text = Zeroizing::new(text.map_err(|detail| TokenError::PinUnavailable {
        token: token.to_owned(),
        source_name: source_name.clone(),
        detail,
    })?);
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(TokenError::PinUnavailable {
            token: token.to_owned(),
            source_name,
            detail: "empty".to_owned(),
        });
    }
    Ok(AuthPin::new(pin.to_owned()))
}

fn map_err(token: &str, operation: &'static str, e: CkError) -> TokenError {
    let token = token.to_owned();
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
                TokenError::WrongPin { token }
            }
            RvError::PinLocked => TokenError::PinLocked { token },
            RvError::SessionCount => TokenError::OutOfSessions { token },
            RvError::UserNotLoggedIn => TokenError::NotLoggedIn { token },
            RvError::TokenNotPresent | RvError::TokenNotRecognized => {
                TokenError::TokenAbsent { token }
            }
            RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::KeyTypeInconsistent
            | RvError::CurveNotSupported
            | RvError::DomainParamsInvalid => TokenError::MechanismUnsupported {
                token,
                mechanism: operation,
            },
            other => TokenError::Device {
                token,
                operation,
                detail: format!("{other:?}"),
            },
        },
        other => TokenError::Device {
            token,
            operation,
            detail: other.to_string(),
        },
    }
}

/// DER INTEGER of an unsigned big-endian value.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    let v = &bytes[start..];
    let pad = v.first().is_some_and(|&b| b & 0x80 != 0);
    let mut out = Vec::with_capacity(v.len() + 3);
    out.push(0x02);
    out.push(u8::try_from(v.len() + usize::from(pad)).unwrap_or(u8::MAX));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_signature_strips_leading_zeros_and_pads_high_bits() {
        let mut raw = [0u8; 64];
        raw[31] = 0x01; // r = 1: leading zeros stripped
        raw[32] = 0x80; // s has its high bit set: a zero byte is prepended
        let der = EcdsaSignature(raw).to_der();
        let mut want = vec![0x30, 3 + 35, 0x02, 0x01, 0x01, 0x02, 33, 0x00, 0x80];
        want.extend_from_slice(&[0u8; 31]);
        assert_eq!(der, want);
        // r = 0 is the one-byte INTEGER 0.
        assert_eq!(der_uint(&[0u8; 32]), vec![0x02, 0x01, 0x00]);
    }
}
