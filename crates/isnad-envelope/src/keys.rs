//! Typed keys: signing keys (Ed25519, ES256), encryption keys for ECDH-ES
//! (P-256, X25519), their COSE_Key public forms, key ids and PKCS#8 PEM files.

use std::fmt;

use ciborium::value::{Integer, Value};
use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::cbor;
use crate::Limits;

/// COSE key type `OKP` (RFC 9053 §7.2).
const KTY_OKP: i64 = 1;
/// COSE key type `EC2` (RFC 9053 §7.1).
const KTY_EC2: i64 = 2;
/// COSE curve `P-256`.
const CRV_P256: i64 = 1;
/// COSE curve `X25519`.
const CRV_X25519: i64 = 4;
/// COSE curve `Ed25519`.
const CRV_ED25519: i64 = 6;
/// COSE algorithm `EdDSA`.
pub(crate) const ALG_EDDSA: i64 = -8;
/// COSE algorithm `ES256`.
pub(crate) const ALG_ES256: i64 = -7;
/// COSE algorithm `ECDH-ES + HKDF-256`.
pub(crate) const ALG_ECDH_ES_HKDF_256: i64 = -25;

/// A key identifier: the RFC 9679 COSE Key Thumbprint (SHA-256) of a public
/// key. Carried in the `kid` header parameter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// Wraps 32 bytes as a key id.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    pub(crate) fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}
impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Signature algorithms Isnad signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// EdDSA with Ed25519 (COSE alg -8).
    Ed25519,
    /// ECDSA with P-256 and SHA-256, fixed-width r‖s signature (COSE alg -7).
    Es256,
}

impl SignatureAlgorithm {
    /// The COSE algorithm identifier.
    pub const fn cose_alg(self) -> i64 {
        match self {
            Self::Ed25519 => ALG_EDDSA,
            Self::Es256 => ALG_ES256,
        }
    }
}

/// Key-agreement curves for ECDH-ES recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncryptionCurve {
    /// NIST P-256 (COSE EC2, crv 1). Required for interoperability.
    P256,
    /// X25519 (COSE OKP, crv 4).
    X25519,
}

/// Errors reading or writing keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    // --- bad input (a file or peer gave us something wrong) ---
    /// The PEM text is not a single `PRIVATE KEY` block with valid base64.
    #[error("not a PKCS#8 PEM file (expected one '-----BEGIN PRIVATE KEY-----' block)")]
    Pem,
    /// The PKCS#8 document is malformed or holds an algorithm not allowed
    /// for this use (e.g. an X25519 key where a signing key is expected).
    #[error("PKCS#8 key is malformed or of the wrong type for this use")]
    Pkcs8,
    /// The COSE_Key is malformed, has the wrong key type, curve or
    /// algorithm, an invalid point, or carries private key material.
    #[error("COSE_Key is malformed or not of a supported type: {0}")]
    CoseKey(&'static str),
    /// The COSE_Key carries a `kid` that is not its RFC 9679 thumbprint.
    #[error("COSE_Key kid does not match the key's thumbprint")]
    KidMismatch,
    // --- local failure ---
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Rng,
    /// The device holding an [external key](ExternalSigner) (a PKCS#11
    /// token) failed or is unavailable; the detail names the device and
    /// what to do. Transient: retry when the device is back.
    #[error("key holder unavailable: {0}")]
    Unavailable(String),
    /// An external key's public part is not a valid key of its algorithm.
    #[error("external key has an invalid public key")]
    ExternalPublic,
}

// ---------------------------------------------------------------------------
// Keys held elsewhere

/// A signing key whose private part lives outside this process's memory
/// (a PKCS#11 token): it signs on request and never hands the key out.
/// Wrap one with [`SigningKey::external`]. Calls may block for the
/// device's round trip; the caller keeps them off an async runtime's
/// worker threads (or lets the implementation do so).
pub trait ExternalSigner: Send + Sync {
    /// The algorithm the key signs with.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The raw public key: 32 bytes (Ed25519) or the 65-byte SEC1
    /// uncompressed point (P-256).
    fn public_key(&self) -> Vec<u8>;
    /// Signs `msg`: 64 bytes, Ed25519 or ES256 `r || s`. A device failure
    /// is [`KeyError::Unavailable`].
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// The recipient side of ECDH-ES with a private key held outside this
/// process (a PKCS#11 token): only the shared secret comes back. Wrap one
/// with [`EncryptionKey::external`].
pub trait ExternalAgreement: Send + Sync {
    /// The key's curve.
    fn curve(&self) -> EncryptionCurve;
    /// The raw public key (65-byte SEC1 point for P-256, 32 bytes for X25519).
    fn public_key(&self) -> Vec<u8>;
    /// ECDH with the peer's ephemeral public key (raw form, same curve):
    /// the 32-byte shared secret. An invalid point is
    /// [`KeyError::CoseKey`]; a device failure [`KeyError::Unavailable`].
    fn agree(&self, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

// ---------------------------------------------------------------------------
// Signing keys

/// A private signing key. Sign with [`SigningKey::sign`].
pub struct SigningKey {
    inner: SigningInner,
    /// Empty for an external key (it has no PKCS#8 form here).
    pkcs8: Zeroizing<Vec<u8>>,
    public: VerifyingKey,
}

enum SigningInner {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
    External(std::sync::Arc<dyn ExternalSigner>),
}

impl SigningKey {
    /// Generates a new signing key.
    pub fn generate(alg: SignatureAlgorithm, rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        let doc = match alg {
            SignatureAlgorithm::Ed25519 => {
                Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyError::Rng)?
            }
            SignatureAlgorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, rng)
                    .map_err(|_| KeyError::Rng)?
            }
        };
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Reads a PKCS#8 DER private key (Ed25519 or ECDSA P-256).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let (inner, public) = match pkcs8_algorithm(der)? {
            Pkcs8Alg::Ed25519 => {
                let k =
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::Pkcs8)?;
                let public = VerifyingKey {
                    alg: SignatureAlgorithm::Ed25519,
                    point: k.public_key().as_ref().to_vec(),
                };
                (SigningInner::Ed25519(k), public)
            }
            Pkcs8Alg::EcP256 => {
                let k = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|_| KeyError::Pkcs8)?;
                let public = VerifyingKey {
                    alg: SignatureAlgorithm::Es256,
                    point: k.public_key().as_ref().to_vec(),
                };
                (SigningInner::Es256(k), public)
            }
            Pkcs8Alg::X25519 => return Err(KeyError::Pkcs8),
        };
        Ok(Self {
            inner,
            pkcs8: ed25519_v1(der).unwrap_or_else(|| Zeroizing::new(der.to_vec())),
            public,
        })
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&pem_decode(pem)?)
    }

    /// A signing key held elsewhere (a PKCS#11 token). Its public part is
    /// checked here, once.
    pub fn external(signer: std::sync::Arc<dyn ExternalSigner>) -> Result<Self, KeyError> {
        let point = signer.public_key();
        let public = match signer.algorithm() {
            SignatureAlgorithm::Ed25519 => {
                VerifyingKey::ed25519_from_bytes(&point).map_err(|_| KeyError::ExternalPublic)?
            }
            SignatureAlgorithm::Es256 => VerifyingKey {
                alg: SignatureAlgorithm::Es256,
                point: p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| KeyError::ExternalPublic)?
                    .to_sec1_bytes()
                    .to_vec(),
            },
        };
        Ok(Self {
            inner: SigningInner::External(signer),
            pkcs8: Zeroizing::new(Vec::new()),
            public,
        })
    }

    /// Whether the private key is held elsewhere ([`SigningKey::external`]).
    pub fn is_external(&self) -> bool {
        matches!(self.inner, SigningInner::External(_))
    }

    /// The PKCS#8 PEM form, for writing to a file with mode 0600; `None`
    /// for an [external](SigningKey::external) key, which never leaves
    /// its device.
    pub fn pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        (!self.is_external()).then(|| pem_encode(&self.pkcs8))
    }

    /// The PKCS#8 PEM form of a key generated or read here. An
    /// [external](SigningKey::external) key has none: the result is empty
    /// (use [`SigningKey::pkcs8_pem`] where a key may be external).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.pkcs8_pem().unwrap_or_default()
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.public.alg
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key id (thumbprint of the public key).
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs `msg`. Ed25519 is deterministic; ES256 draws a nonce from `rng`.
    pub fn sign(&self, msg: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            SigningInner::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            SigningInner::Es256(k) => k
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Rng),
            SigningInner::External(k) => {
                let sig = k.sign(msg)?;
                // A device that signs with another key must not go unnoticed.
                if self.public.verify(msg, &sig) {
                    Ok(sig)
                } else {
                    Err(KeyError::Unavailable(
                        "the external key's signature does not verify with its public key".into(),
                    ))
                }
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg)
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// A public signature-verification key (Ed25519 or ES256).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    alg: SignatureAlgorithm,
    /// Ed25519: 32 bytes; P-256: SEC1 uncompressed point (65 bytes).
    point: Vec<u8>,
}

impl VerifyingKey {
    /// The algorithm of this key.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// Verifies `sig` over `msg`. Returns `false` on any failure.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            SignatureAlgorithm::Ed25519 => &signature::ED25519,
            SignatureAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        signature::UnparsedPublicKey::new(alg, &self.point)
            .verify(msg, sig)
            .is_ok()
    }

    /// The key id (RFC 9679 thumbprint).
    pub fn key_id(&self) -> KeyId {
        thumbprint(&self.required_params())
    }

    /// The raw public key: 32 bytes (Ed25519) or the 65-byte SEC1
    /// uncompressed point (P-256).
    pub fn as_bytes(&self) -> &[u8] {
        &self.point
    }

    /// An Ed25519 public key from its 32 raw bytes.
    pub fn ed25519_from_bytes(b: &[u8]) -> Result<Self, KeyError> {
        if b.len() != 32 {
            return Err(KeyError::CoseKey("Ed25519 public key must be 32 bytes"));
        }
        Ok(Self {
            alg: SignatureAlgorithm::Ed25519,
            point: b.to_vec(),
        })
    }

    fn required_params(&self) -> Vec<(i64, Value)> {
        match self.alg {
            SignatureAlgorithm::Ed25519 => vec![
                (1, int(KTY_OKP)),
                (-1, int(CRV_ED25519)),
                (-2, Value::Bytes(self.point.clone())),
            ],
            SignatureAlgorithm::Es256 => ec2_params(&self.point),
        }
    }

    /// Encodes as a COSE_Key (RFC 9052 §7) with `kty`, `kid`, `alg`, `crv`,
    /// `x` (and `y`), in deterministic encoding.
    pub fn to_cose_key(&self) -> Vec<u8> {
        let mut params = self.required_params();
        params.push((2, Value::Bytes(self.key_id().0.to_vec())));
        params.push((3, int(self.alg.cose_alg())));
        encode_params(params)
    }

    /// Decodes a COSE_Key holding an Ed25519 (OKP, crv 6) or ES256 (EC2,
    /// crv 1) public key. See [`decode_cose_key`] for the rules.
    pub fn from_cose_key(bytes: &[u8]) -> Result<Self, KeyError> {
        let k = decode_cose_key(bytes)?;
        let key = match (k.kty, k.crv) {
            (KTY_OKP, CRV_ED25519) => Self::ed25519_from_bytes(&k.x)?,
            (KTY_EC2, CRV_P256) => Self {
                alg: SignatureAlgorithm::Es256,
                point: p256_point(&k.x, k.y.as_deref())?,
            },
            _ => return Err(KeyError::CoseKey("not an Ed25519 or P-256 signing key")),
        };
        if let Some(alg) = k.alg {
            if alg != key.alg.cose_alg() {
                return Err(KeyError::CoseKey("alg does not match the key type"));
            }
        }
        check_kid(k.kid.as_deref(), key.key_id())?;
        Ok(key)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({:?}, {})", self.alg, self.key_id())
    }
}

// ---------------------------------------------------------------------------
// Encryption keys

/// A private key-agreement key: the recipient side of ECDH-ES.
pub struct EncryptionKey {
    inner: EncInner,
    /// Empty for an external key.
    pkcs8: Zeroizing<Vec<u8>>,
    public: EncryptionPublicKey,
}

enum EncInner {
    P256(p256::SecretKey),
    X25519(x25519_dalek::StaticSecret),
    External(std::sync::Arc<dyn ExternalAgreement>),
}

/// DER prefix of an RFC 8410 PKCS#8 v1 Ed25519 private key; 32 seed bytes follow.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of the RFC 5958 PKCS#8 v2 Ed25519 form ring generates; the
/// 32-byte seed follows, then the public key.
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The 48-byte RFC 8410 v1 form of an Ed25519 key given in the v2 form, so
/// key files open with OpenSSL and other tools (which refuse v2's extra
/// public-key field). `None` if `der` is not the v2 form.
fn ed25519_v1(der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if der.len() != 83 || der[..16] != ED25519_PKCS8_V2_PREFIX {
        return None;
    }
    let mut v1 = Zeroizing::new(ED25519_PKCS8_V1_PREFIX.to_vec());
    v1.extend_from_slice(&der[16..48]);
    Some(v1)
}

/// DER prefix of an RFC 8410 PKCS#8 v1 X25519 private key; 32 key bytes follow.
const X25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

impl EncryptionKey {
    /// Generates a new encryption key on `curve`.
    pub fn generate(curve: EncryptionCurve, rng: &dyn SecureRandom) -> Result<Self, KeyError> {
        match curve {
            EncryptionCurve::P256 => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, rng)
                        .map_err(|_| KeyError::Rng)?;
                Self::from_pkcs8_der(doc.as_ref())
            }
            EncryptionCurve::X25519 => {
                let mut der = Zeroizing::new(X25519_PKCS8_PREFIX.to_vec());
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill(seed.as_mut()).map_err(|_| KeyError::Rng)?;
                der.extend_from_slice(seed.as_ref());
                Self::from_pkcs8_der(&der)
            }
        }
    }

    /// Reads a PKCS#8 DER private key: EC P-256 (RFC 5915 inside RFC 5208)
    /// or X25519 (RFC 8410, the 48-byte v1 form).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let (inner, public) = match pkcs8_algorithm(der)? {
            Pkcs8Alg::EcP256 => {
                let sk = p256::SecretKey::from_der(der).map_err(|_| KeyError::Pkcs8)?;
                let point = sk.public_key().to_sec1_bytes().to_vec();
                (
                    EncInner::P256(sk),
                    EncryptionPublicKey {
                        curve: EncryptionCurve::P256,
                        point,
                    },
                )
            }
            Pkcs8Alg::X25519 => {
                if der.len() != 48 || der[..16] != X25519_PKCS8_PREFIX {
                    return Err(KeyError::Pkcs8);
                }
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&der[16..]);
                let sk = x25519_dalek::StaticSecret::from(seed);
                seed.iter_mut().for_each(|b| *b = 0);
                let point = x25519_dalek::PublicKey::from(&sk).as_bytes().to_vec();
                (
                    EncInner::X25519(sk),
                    EncryptionPublicKey {
                        curve: EncryptionCurve::X25519,
                        point,
                    },
                )
            }
            Pkcs8Alg::Ed25519 => return Err(KeyError::Pkcs8),
        };
        Ok(Self {
            inner,
            pkcs8: Zeroizing::new(der.to_vec()),
            public,
        })
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&pem_decode(pem)?)
    }

    /// An encryption key held elsewhere (a PKCS#11 token). Its public
    /// part is checked here, once.
    pub fn external(agreement: std::sync::Arc<dyn ExternalAgreement>) -> Result<Self, KeyError> {
        let point = agreement.public_key();
        let curve = agreement.curve();
        let valid = match curve {
            EncryptionCurve::P256 => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
            EncryptionCurve::X25519 => point.len() == 32,
        };
        if !valid {
            return Err(KeyError::ExternalPublic);
        }
        Ok(Self {
            inner: EncInner::External(agreement),
            pkcs8: Zeroizing::new(Vec::new()),
            public: EncryptionPublicKey { curve, point },
        })
    }

    /// Whether the private key is held elsewhere ([`EncryptionKey::external`]).
    pub fn is_external(&self) -> bool {
        matches!(self.inner, EncInner::External(_))
    }

    /// The PKCS#8 PEM form, for writing to a file with mode 0600; `None`
    /// for an [external](EncryptionKey::external) key.
    pub fn pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        (!self.is_external()).then(|| pem_encode(&self.pkcs8))
    }

    /// The PKCS#8 PEM form of a key generated or read here; empty for an
    /// [external](EncryptionKey::external) key (use
    /// [`EncryptionKey::pkcs8_pem`] where a key may be external).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.pkcs8_pem().unwrap_or_default()
    }

    /// The public half.
    pub fn public_key(&self) -> &EncryptionPublicKey {
        &self.public
    }

    /// The key id (thumbprint of the public key).
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Static-ephemeral ECDH with the sender's ephemeral public key (same
    /// curve, raw form). `None` if the point is invalid or, for X25519, the
    /// result is not contributory (low-order point), or an external key's
    /// device failed (logged as a warning).
    pub(crate) fn agree(&self, ephemeral: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        match &self.inner {
            EncInner::External(k) => {
                if self.public.curve == EncryptionCurve::X25519 && !x25519_contributory(ephemeral) {
                    return None;
                }
                k.agree(ephemeral).ok()
            }
            EncInner::P256(sk) => {
                let pk = p256::PublicKey::from_sec1_bytes(ephemeral).ok()?;
                let shared = sk.diffie_hellman(&pk);
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(shared.raw_secret_bytes().as_slice());
                Some(out)
            }
            EncInner::X25519(sk) => {
                let b: [u8; 32] = ephemeral.try_into().ok()?;
                let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(b));
                if !shared.was_contributory() {
                    return None;
                }
                Some(Zeroizing::new(*shared.as_bytes()))
            }
        }
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("curve", &self.public.curve)
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// Whether X25519 with `point` can give a contributory result: refuses the
/// small-order points (RFC 7748 §6.1; the all-zero output check done by
/// x25519-dalek for file keys), so a token's derive never sees them.
fn x25519_contributory(point: &[u8]) -> bool {
    let Ok(b) = <[u8; 32]>::try_from(point) else {
        return false;
    };
    // Multiply by the cofactor's worth: a small-order point times any
    // clamped scalar is zero; checking with one fixed scalar suffices.
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(b))
        .was_contributory()
}

/// A recipient's public key-agreement key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncryptionPublicKey {
    curve: EncryptionCurve,
    /// P-256: SEC1 uncompressed (65 bytes); X25519: 32 bytes.
    point: Vec<u8>,
}

impl EncryptionPublicKey {
    /// The curve.
    pub fn curve(&self) -> EncryptionCurve {
        self.curve
    }

    /// The raw public key (65-byte SEC1 uncompressed point, or 32 bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.point
    }

    /// The key id (RFC 9679 thumbprint).
    pub fn key_id(&self) -> KeyId {
        thumbprint(&self.required_params())
    }

    fn required_params(&self) -> Vec<(i64, Value)> {
        match self.curve {
            EncryptionCurve::P256 => ec2_params(&self.point),
            EncryptionCurve::X25519 => vec![
                (1, int(KTY_OKP)),
                (-1, int(CRV_X25519)),
                (-2, Value::Bytes(self.point.clone())),
            ],
        }
    }

    /// Encodes as a COSE_Key with `kty`, `kid`, `alg` (-25,
    /// ECDH-ES + HKDF-256), `crv`, `x` (and `y`).
    pub fn to_cose_key(&self) -> Vec<u8> {
        let mut params = self.required_params();
        params.push((2, Value::Bytes(self.key_id().0.to_vec())));
        params.push((3, int(ALG_ECDH_ES_HKDF_256)));
        encode_params(params)
    }

    /// Decodes a COSE_Key holding a P-256 (EC2, crv 1) or X25519 (OKP,
    /// crv 4) public key.
    pub fn from_cose_key(bytes: &[u8]) -> Result<Self, KeyError> {
        let k = decode_cose_key(bytes)?;
        let key = Self::from_parts(&k)?;
        if let Some(alg) = k.alg {
            if alg != ALG_ECDH_ES_HKDF_256 {
                return Err(KeyError::CoseKey("alg must be -25 (ECDH-ES + HKDF-256)"));
            }
        }
        check_kid(k.kid.as_deref(), key.key_id())?;
        Ok(key)
    }

    /// The ephemeral key in a recipient header: same rules, but `alg` and
    /// `kid` are not expected.
    pub(crate) fn from_parts(k: &CoseKeyParts) -> Result<Self, KeyError> {
        match (k.kty, k.crv) {
            (KTY_EC2, CRV_P256) => Ok(Self {
                curve: EncryptionCurve::P256,
                point: p256_point(&k.x, k.y.as_deref())?,
            }),
            (KTY_OKP, CRV_X25519) => {
                if k.x.len() != 32 {
                    return Err(KeyError::CoseKey("X25519 key must be 32 bytes"));
                }
                if !x25519_canonical(&k.x) {
                    return Err(KeyError::CoseKey(
                        "X25519 key is not canonical (u-coordinate not below 2^255 - 19)",
                    ));
                }
                Ok(Self {
                    curve: EncryptionCurve::X25519,
                    point: k.x.clone(),
                })
            }
            _ => Err(KeyError::CoseKey("not a P-256 or X25519 key-agreement key")),
        }
    }

    /// The COSE_Key map (as a CBOR value) for an ephemeral key in a
    /// recipient header: only `kty`, `crv`, `x` (and `y`).
    pub(crate) fn ephemeral_value(curve: EncryptionCurve, point: &[u8]) -> Value {
        let params = match curve {
            EncryptionCurve::P256 => ec2_params(point),
            EncryptionCurve::X25519 => vec![
                (1, int(KTY_OKP)),
                (-1, int(CRV_X25519)),
                (-2, Value::Bytes(point.to_vec())),
            ],
        };
        Value::Map(params.into_iter().map(|(k, v)| (int(k), v)).collect())
    }
}

impl fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptionPublicKey({:?}, {})",
            self.curve,
            self.key_id()
        )
    }
}

/// Whether 32 bytes are the canonical encoding of an X25519 u-coordinate:
/// little-endian and below p = 2^255 - 19. X25519 (RFC 7748 §5) masks the
/// top bit and reduces modulo p, so every other encoding names the same
/// point as a canonical one; accepting them would let anyone change an
/// envelope's ephemeral key bytes without changing its meaning.
fn x25519_canonical(u: &[u8]) -> bool {
    // p little-endian: ed ff … ff 7f. Compare from the most significant byte.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for (a, b) in u.iter().rev().zip(p.iter().rev()) {
        if a != b {
            return a < b;
        }
    }
    false // u == p
}

// ---------------------------------------------------------------------------
// COSE_Key helpers

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

fn ec2_params(point: &[u8]) -> Vec<(i64, Value)> {
    // point is SEC1 uncompressed: 0x04 ‖ x ‖ y, validated on construction.
    let (x, y) = point.get(1..).map(|r| r.split_at(32)).unwrap_or((&[], &[]));
    vec![
        (1, int(KTY_EC2)),
        (-1, int(CRV_P256)),
        (-2, Value::Bytes(x.to_vec())),
        (-3, Value::Bytes(y.to_vec())),
    ]
}

fn encode_params(params: Vec<(i64, Value)>) -> Vec<u8> {
    let map = Value::Map(params.into_iter().map(|(k, v)| (int(k), v)).collect());
    cbor::to_deterministic_vec(&map)
}

fn thumbprint(required: &[(i64, Value)]) -> KeyId {
    let bytes = encode_params(required.to_vec());
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    KeyId(out)
}

fn check_kid(kid: Option<&[u8]>, expected: KeyId) -> Result<(), KeyError> {
    match kid {
        Some(k) if k != expected.as_bytes() => Err(KeyError::KidMismatch),
        _ => Ok(()),
    }
}

fn p256_point(x: &[u8], y: Option<&[u8]>) -> Result<Vec<u8>, KeyError> {
    let y = y.ok_or(KeyError::CoseKey(
        "EC2 key needs y (compressed points are not accepted)",
    ))?;
    if x.len() != 32 || y.len() != 32 {
        return Err(KeyError::CoseKey("P-256 coordinates must be 32 bytes"));
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&point)
        .map_err(|_| KeyError::CoseKey("P-256 point is not on the curve"))?;
    Ok(point)
}

/// The parameters of a COSE_Key that Isnad reads.
#[derive(Debug)]
pub(crate) struct CoseKeyParts {
    pub(crate) kty: i64,
    pub(crate) kid: Option<Vec<u8>>,
    pub(crate) alg: Option<i64>,
    pub(crate) crv: i64,
    pub(crate) x: Vec<u8>,
    pub(crate) y: Option<Vec<u8>>,
}

/// Decodes a COSE_Key map. Rules (spec/protocol.md §3.3): a CBOR map with
/// integer labels and no duplicates; `kty` (1), `crv` (-1) and `x` (-2) are
/// required, `y` (-3) for EC2 must be a 32-byte bstr (point compression is not
/// accepted); `kid` (2) if present must equal the RFC 9679 thumbprint; `alg`
/// (3) if present must fit the key; a private key `d` (-4) is refused; other
/// labels are ignored.
fn decode_cose_key(bytes: &[u8]) -> Result<CoseKeyParts, KeyError> {
    cbor::scan(bytes, &Limits::default()).map_err(|_| KeyError::CoseKey("not well-formed CBOR"))?;
    let value: Value =
        ciborium::de::from_reader(bytes).map_err(|_| KeyError::CoseKey("not well-formed CBOR"))?;
    parts_from_value(&value)
}

pub(crate) fn parts_from_value(value: &Value) -> Result<CoseKeyParts, KeyError> {
    let Value::Map(entries) = value else {
        return Err(KeyError::CoseKey("not a CBOR map"));
    };
    let mut seen = std::collections::BTreeSet::new();
    let (mut kty, mut kid, mut alg, mut crv, mut x, mut y) = (None, None, None, None, None, None);
    for (k, v) in entries {
        let label = k
            .as_integer()
            .and_then(|i| i64::try_from(i).ok())
            .ok_or(KeyError::CoseKey("labels must be integers"))?;
        if !seen.insert(label) {
            return Err(KeyError::CoseKey("duplicate label"));
        }
        let as_int = |v: &Value| v.as_integer().and_then(|i| i64::try_from(i).ok());
        match label {
            1 => kty = Some(as_int(v).ok_or(KeyError::CoseKey("kty must be an integer"))?),
            2 => {
                kid = Some(
                    v.as_bytes()
                        .cloned()
                        .ok_or(KeyError::CoseKey("kid must be bstr"))?,
                )
            }
            3 => alg = Some(as_int(v).ok_or(KeyError::CoseKey("alg must be an integer"))?),
            -1 => crv = Some(as_int(v).ok_or(KeyError::CoseKey("crv must be an integer"))?),
            -2 => {
                x = Some(
                    v.as_bytes()
                        .cloned()
                        .ok_or(KeyError::CoseKey("x must be bstr"))?,
                )
            }
            -3 => {
                y = Some(
                    v.as_bytes()
                        .cloned()
                        .ok_or(KeyError::CoseKey("y must be bstr"))?,
                )
            }
            -4 => {
                return Err(KeyError::CoseKey(
                    "private key material (d) in a public key",
                ))
            }
            _ => {}
        }
    }
    Ok(CoseKeyParts {
        kty: kty.ok_or(KeyError::CoseKey("kty missing"))?,
        kid,
        alg,
        crv: crv.ok_or(KeyError::CoseKey("crv missing"))?,
        x: x.ok_or(KeyError::CoseKey("x missing"))?,
        y,
    })
}

// ---------------------------------------------------------------------------
// PKCS#8 and PEM

enum Pkcs8Alg {
    Ed25519,
    X25519,
    EcP256,
}

const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
const OID_EC_PUBLIC_KEY_P256: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
];

/// Reads the AlgorithmIdentifier of a PKCS#8 PrivateKeyInfo.
fn pkcs8_algorithm(der: &[u8]) -> Result<Pkcs8Alg, KeyError> {
    // SEQUENCE { INTEGER version, SEQUENCE { OID [, params] }, ... }
    let (tag, body, _) = der_tlv(der).ok_or(KeyError::Pkcs8)?;
    if tag != 0x30 {
        return Err(KeyError::Pkcs8);
    }
    let (tag, _, rest) = der_tlv(body).ok_or(KeyError::Pkcs8)?;
    if tag != 0x02 {
        return Err(KeyError::Pkcs8);
    }
    let (tag, alg_id, _) = der_tlv(rest).ok_or(KeyError::Pkcs8)?;
    if tag != 0x30 {
        return Err(KeyError::Pkcs8);
    }
    match alg_id {
        a if a == OID_ED25519 => Ok(Pkcs8Alg::Ed25519),
        a if a == OID_X25519 => Ok(Pkcs8Alg::X25519),
        a if a == OID_EC_PUBLIC_KEY_P256 => Ok(Pkcs8Alg::EcP256),
        _ => Err(KeyError::Pkcs8),
    }
}

/// One DER TLV: (tag, contents, rest). Definite lengths up to 4 bytes.
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(hdr..end)?, b.get(end..)?))
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn pem_encode(der: &[u8]) -> Zeroizing<String> {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    Zeroizing::new(out)
}

fn pem_decode(pem: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use base64::Engine as _;
    let pem = pem.trim();
    let inner = pem
        .strip_prefix(PEM_BEGIN)
        .and_then(|s| s.strip_suffix(PEM_END))
        .ok_or(KeyError::Pem)?;
    let b64: Zeroizing<String> =
        Zeroizing::new(inner.chars().filter(|c| !c.is_whitespace()).collect());
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Pem)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_canonical_x25519_encodings_are_keys() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut below = p;
        below[0] = 0xec;
        let mut top_bit = [0u8; 32];
        top_bit[0] = 9;
        top_bit[31] = 0x80;
        assert!(x25519_canonical(&[0; 32]));
        assert!(x25519_canonical(&below));
        assert!(!x25519_canonical(&p));
        assert!(!x25519_canonical(&[0xff; 32]));
        assert!(!x25519_canonical(&top_bit));
        let okp = |x: [u8; 32]| CoseKeyParts {
            kty: KTY_OKP,
            crv: CRV_X25519,
            x: x.to_vec(),
            kid: None,
            alg: None,
            y: None,
        };
        assert!(EncryptionPublicKey::from_parts(&okp(below)).is_ok());
        assert!(EncryptionPublicKey::from_parts(&okp(top_bit)).is_err());
    }

    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn signing_keys_round_trip_pem_and_cose() -> Result<(), KeyError> {
        let rng = SystemRandom::new();
        for alg in [SignatureAlgorithm::Ed25519, SignatureAlgorithm::Es256] {
            let k = SigningKey::generate(alg, &rng)?;
            let again = SigningKey::from_pkcs8_pem(&k.to_pkcs8_pem())?;
            assert_eq!(again.verifying_key(), k.verifying_key());
            let pubkey = VerifyingKey::from_cose_key(&k.verifying_key().to_cose_key())?;
            assert_eq!(&pubkey, k.verifying_key());
            let sig = k.sign(b"hello", &rng)?;
            assert!(pubkey.verify(b"hello", &sig));
            assert!(!pubkey.verify(b"hellp", &sig));
        }
        Ok(())
    }

    #[test]
    fn encryption_keys_round_trip_and_agree() -> Result<(), KeyError> {
        let rng = SystemRandom::new();
        for curve in [EncryptionCurve::P256, EncryptionCurve::X25519] {
            let k = EncryptionKey::generate(curve, &rng)?;
            let again = EncryptionKey::from_pkcs8_pem(&k.to_pkcs8_pem())?;
            assert_eq!(again.public_key(), k.public_key());
            let pubkey = EncryptionPublicKey::from_cose_key(&k.public_key().to_cose_key())?;
            assert_eq!(&pubkey, k.public_key());
            // Agreement from both ends matches ring's ephemeral ECDH.
            let ring_alg = match curve {
                EncryptionCurve::P256 => &ring::agreement::ECDH_P256,
                EncryptionCurve::X25519 => &ring::agreement::X25519,
            };
            let eph = ring::agreement::EphemeralPrivateKey::generate(ring_alg, &rng)
                .map_err(|_| KeyError::Rng)?;
            let eph_pub = eph.compute_public_key().map_err(|_| KeyError::Rng)?;
            let ours = k.agree(eph_pub.as_ref()).ok_or(KeyError::Rng)?;
            let theirs = ring::agreement::agree_ephemeral(
                eph,
                &ring::agreement::UnparsedPublicKey::new(ring_alg, pubkey.as_bytes()),
                |s| s.to_vec(),
            )
            .map_err(|_| KeyError::Rng)?;
            assert_eq!(ours.as_slice(), theirs.as_slice());
        }
        Ok(())
    }

    #[test]
    fn ed25519_keys_are_written_in_the_v1_form() -> Result<(), KeyError> {
        let k = SigningKey::generate(SignatureAlgorithm::Ed25519, &SystemRandom::new())?;
        let der = pem_decode(&k.to_pkcs8_pem())?;
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
        let again = SigningKey::from_pkcs8_der(&der)?;
        assert_eq!(again.verifying_key(), k.verifying_key());
        Ok(())
    }

    #[test]
    fn wrong_key_types_are_refused() -> Result<(), KeyError> {
        let rng = SystemRandom::new();
        let x = EncryptionKey::generate(EncryptionCurve::X25519, &rng)?;
        assert_eq!(
            SigningKey::from_pkcs8_pem(&x.to_pkcs8_pem()).err(),
            Some(KeyError::Pkcs8)
        );
        let e = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
        assert_eq!(
            EncryptionKey::from_pkcs8_pem(&e.to_pkcs8_pem()).err(),
            Some(KeyError::Pkcs8)
        );
        assert!(VerifyingKey::from_cose_key(&x.public_key().to_cose_key()).is_err());
        assert!(EncryptionPublicKey::from_cose_key(&e.verifying_key().to_cose_key()).is_err());
        assert_eq!(
            SigningKey::from_pkcs8_pem("garbage").err(),
            Some(KeyError::Pem)
        );
        Ok(())
    }

    #[test]
    fn kid_must_match_thumbprint() -> Result<(), KeyError> {
        let rng = SystemRandom::new();
        let k = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
        let mut cose = k.verifying_key().to_cose_key();
        // The kid bstr is the only 32-byte run after the label 0x02 0x58 0x20.
        let pos = cose
            .windows(3)
            .position(|w| w == [0x02, 0x58, 0x20])
            .ok_or(KeyError::Rng)?;
        cose[pos + 3] ^= 1;
        assert_eq!(
            VerifyingKey::from_cose_key(&cose).err(),
            Some(KeyError::KidMismatch)
        );
        Ok(())
    }

    /// RFC 9679 §6 example: thumbprint of the RFC 9052 C.7.1 P-256 key.
    #[test]
    fn rfc9679_thumbprint_example() -> Result<(), Box<dyn std::error::Error>> {
        let x = hex::decode("65eda5a12577c2bae829437fe338701a10aaa375e1bb5b5de108de439c08551d")?;
        let y = hex::decode("1e52ed75701163f7f9e40ddf9f341b3dc9ba860af7e0ca7ca7e9eecd0084d19c")?;
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let key = EncryptionPublicKey {
            curve: EncryptionCurve::P256,
            point,
        };
        assert_eq!(
            key.key_id().to_hex(),
            "496bd8afadf307e5b08c64b0421bf9dc01528a344a43bda88fadd1669da253ec"
        );
        Ok(())
    }
}
