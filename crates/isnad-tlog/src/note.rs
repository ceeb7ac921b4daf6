//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and
//! C2SP tlog-cosignature (<https://c2sp.org/tlog-cosignature>) Ed25519
//! cosignatures (signature type 0x04).
//!
//! Key strings follow the Go `golang.org/x/mod/sumdb/note` package:
//! verifier keys `<name>+<hex8 key id>+<base64(type ‖ public key)>`, signer
//! keys `PRIVATE+KEY+<name>+<hex8 key id>+<base64(type ‖ seed)>`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use zeroize::Zeroizing;

/// Signature type of Ed25519 note signatures.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of timestamped Ed25519 cosignatures (tlog-cosignature).
pub const TYPE_COSIGNATURE_V1: u8 = 0x04;
/// Most signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 1 << 20;

const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key, note or signature is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    // --- A key string or name is malformed (operator's configuration) ---
    /// A key name is empty, or contains a Unicode space, `+` or a control character.
    #[error("key name {0:?} is empty or contains a space, '+' or a control character")]
    KeyName(String),
    /// A key string does not have the `name+hex8+base64` shape, has an
    /// unsupported type byte, or a key id that does not match the key.
    #[error("malformed key string: {0}")]
    KeyFormat(&'static str),

    // --- The note is malformed ---
    /// The note is larger than [`MAX_NOTE_LEN`].
    #[error("note is larger than {MAX_NOTE_LEN} bytes")]
    TooLarge,
    /// Not valid UTF-8, or contains an ASCII control character other than newline.
    #[error("note is not UTF-8 text without control characters")]
    Encoding,
    /// No blank line separating text and signatures, empty text, a text or
    /// signature block not ending in newline, or a malformed signature line.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,

    // --- The signatures do not verify ---
    /// A known key signed the note twice.
    #[error("key {name} signed the note more than once")]
    DuplicateSignature {
        /// The key name.
        name: String,
    },
    /// A signature from a known key does not verify; the note is rejected.
    #[error("signature by {name} does not verify")]
    BadSignature {
        /// The key name.
        name: String,
    },
    /// No signature from a known key was found: the note was signed by
    /// other keys (a wrong key given to the verifier, or a forged note), or
    /// not at all. Both lists hold `name+keyid` (the key id in 8 hex digits,
    /// as in a verifier key), so the operator sees which key to ask for.
    #[error("{}", no_trusted_signature(signers, trusted))]
    NoTrustedSignature {
        /// The keys whose signature lines the note carries, `name+keyid`.
        signers: Vec<String>,
        /// The trusted keys it was checked against, `name+keyid`.
        trusted: Vec<String>,
    },

    // --- The environment failed ---
    /// Key generation or signing failed inside the crypto library.
    #[error("cryptographic operation failed")]
    Crypto,
    /// The device holding an [external](SignerKey::external) key failed or
    /// is absent (the detail names it). Transient: retry when it is back.
    #[error("signing key unavailable: {0}")]
    KeyUnavailable(String),
}

/// The message of [`NoteError::NoTrustedSignature`]: "signed by key X, you
/// trusted key Y".
fn no_trusted_signature(signers: &[String], trusted: &[String]) -> String {
    let list = |keys: &[String]| match keys {
        [] => "no key".to_owned(),
        [one] => format!("key {one}"),
        many => format!("keys {}", many.join(", ")),
    };
    if signers.is_empty() {
        return format!(
            "note is not signed by any trusted key: it carries no signature, you trusted {}",
            list(trusted)
        );
    }
    format!(
        "note is not signed by any trusted key: signed by {}, you trusted {}",
        list(signers),
        list(trusted)
    )
}

/// `name+keyid` of a key, as in a verifier key string.
fn key_label(name: &str, id: u32) -> String {
    format!("{name}+{id:08x}")
}

/// Checks a key name: non-empty, no Unicode white space, no `+`, no control characters.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::KeyName(name.to_owned()));
    }
    Ok(())
}

/// The key id: `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8; 32]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[key_type]);
    ctx.update(public_key);
    let d = ctx.finish();
    let b = d.as_ref();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A note signing key (Ed25519, type 0x01) or cosigning key (type 0x04).
pub struct SignerKey {
    name: String,
    key_type: u8,
    secret: Secret,
    public: [u8; 32],
    id: u32,
}

/// Where the private key of a [`SignerKey`] is.
enum Secret {
    /// In memory, from a seed (a key file).
    Seed {
        seed: Zeroizing<[u8; 32]>,
        pair: Ed25519KeyPair,
    },
    /// In a device (a PKCS#11 token).
    External(std::sync::Arc<dyn ExternalEd25519>),
}

/// An Ed25519 private key held outside this process (a PKCS#11 token): it
/// signs on request and never hands the key out. Wrap one with
/// [`SignerKey::external`]. Calls may block for the device's round trip.
pub trait ExternalEd25519: Send + Sync {
    /// The 32-byte public key.
    fn public_key(&self) -> [u8; 32];
    /// The 64-byte Ed25519 signature of `msg`, or why the device could not
    /// sign (naming it).
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], String>;
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}+{:08x}, ..)", self.name, self.id)
    }
}

impl SignerKey {
    /// A fresh Ed25519 note-signing key (type 0x01) named `name`.
    pub fn generate(name: &str, rng: &dyn ring::rand::SecureRandom) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| NoteError::Crypto)?;
        Self::from_seed(name, TYPE_ED25519, seed)
    }

    /// A fresh cosigning key (type 0x04) for a witness named `name`.
    pub fn generate_cosigner(
        name: &str,
        rng: &dyn ring::rand::SecureRandom,
    ) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed).map_err(|_| NoteError::Crypto)?;
        Self::from_seed(name, TYPE_COSIGNATURE_V1, seed)
    }

    /// A key from its 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, key_type: u8, seed: [u8; 32]) -> Result<Self, NoteError> {
        let seed = Zeroizing::new(seed);
        let pair = Ed25519KeyPair::from_seed_unchecked(&*seed).map_err(|_| NoteError::Crypto)?;
        let mut pk = [0u8; 32];
        pk.copy_from_slice(pair.public_key().as_ref());
        Self::with_secret(name, key_type, Secret::Seed { seed, pair }, pk)
    }

    /// A key of `key_type` (0x01 note key, 0x04 cosigning key) named
    /// `name` whose private part is held in a device.
    pub fn external(
        name: &str,
        key_type: u8,
        signer: std::sync::Arc<dyn ExternalEd25519>,
    ) -> Result<Self, NoteError> {
        let pk = signer.public_key();
        Self::with_secret(name, key_type, Secret::External(signer), pk)
    }

    fn with_secret(
        name: &str,
        key_type: u8,
        secret: Secret,
        public: [u8; 32],
    ) -> Result<Self, NoteError> {
        check_key_name(name)?;
        if key_type != TYPE_ED25519 && key_type != TYPE_COSIGNATURE_V1 {
            return Err(NoteError::KeyFormat("unsupported key type"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_type,
            secret,
            public,
            id: key_id(name, key_type, &public),
        })
    }

    /// Whether the private key is held in a device ([`SignerKey::external`]).
    pub fn is_external(&self) -> bool {
        matches!(self.secret, Secret::External(_))
    }

    /// Signs `msg` with the key, wherever it is.
    fn raw_sign(&self, msg: &[u8]) -> Result<[u8; 64], NoteError> {
        match &self.secret {
            Secret::Seed { pair, .. } => {
                let mut out = [0u8; 64];
                out.copy_from_slice(pair.sign(msg).as_ref());
                Ok(out)
            }
            Secret::External(k) => {
                let sig = k.sign(msg).map_err(NoteError::KeyUnavailable)?;
                // A device that signs with another key must not go unnoticed.
                signature::UnparsedPublicKey::new(&signature::ED25519, &self.public)
                    .verify(msg, &sig)
                    .map_err(|_| {
                        NoteError::KeyUnavailable(
                            "the device's signature does not verify with its public key".into(),
                        )
                    })?;
                Ok(sig)
            }
        }
    }

    /// Parses `PRIVATE+KEY+<name>+<hex8 id>+<base64(type ‖ seed)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .trim_end_matches('\n')
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::KeyFormat(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let (name, id, key) = split_key(rest)?;
        if key.len() != 33 {
            return Err(NoteError::KeyFormat(
                "signer key must be a type byte and a 32-byte seed",
            ));
        }
        let key = Zeroizing::new(key);
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&key[1..]);
        let k = Self::from_seed(name, key[0], *seed)?;
        if k.id != id {
            return Err(NoteError::KeyFormat("key id does not match the key"));
        }
        Ok(k)
    }

    /// The secret key string `PRIVATE+KEY+…`. Store it with mode 0600.
    /// Empty for an [external](SignerKey::external) key, which has none.
    pub fn to_secret_string(&self) -> String {
        let Secret::Seed { seed, .. } = &self.secret else {
            return String::new();
        };
        let mut k = Vec::with_capacity(33);
        k.push(self.key_type);
        k.extend_from_slice(&seed[..]);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(k)
        )
    }

    /// The key name (for a log key: the checkpoint origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_type: self.key_type,
            public: self.public,
            id: self.id,
        }
    }

    /// Signs `text` (which must be a valid note text) and returns the note:
    /// text, blank line, one signature line. Only type-0x01 keys sign notes.
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        if self.key_type != TYPE_ED25519 {
            return Err(NoteError::KeyFormat("a cosigning key cannot sign a note"));
        }
        check_text(text)?;
        let sig = self.raw_sign(text.as_bytes())?;
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(sig.as_ref());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(raw)
        ))
    }

    /// Cosigns a checkpoint note body (tlog-cosignature v1, type 0x04) at
    /// Unix time `timestamp` (seconds) and returns the signature line,
    /// ready to append to the note. Only type-0x04 keys cosign.
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<String, NoteError> {
        if self.key_type != TYPE_COSIGNATURE_V1 {
            return Err(NoteError::KeyFormat("only a type 0x04 key can cosign"));
        }
        if timestamp > i64::MAX as u64 {
            return Err(NoteError::KeyFormat("cosignature timestamp exceeds 2^63-1"));
        }
        check_text(checkpoint_text)?;
        let msg = cosigned_message(checkpoint_text, timestamp);
        let sig = self.raw_sign(msg.as_bytes())?;
        let mut raw = Vec::with_capacity(76);
        raw.extend_from_slice(&self.id.to_be_bytes());
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(sig.as_ref());
        Ok(format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw)))
    }
}

/// A trusted public key: Ed25519 note key (type 0x01) or cosigner key (type 0x04).
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_type: u8,
    public: [u8; 32],
    id: u32,
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut k = Vec::with_capacity(33);
        k.push(self.key_type);
        k.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(k))
    }
}

impl VerifierKey {
    /// Parses `<name>+<hex8 id>+<base64(type ‖ 32-byte public key)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, key) = split_key(s.trim_end_matches('\n'))?;
        check_key_name(name)?;
        if key.len() != 33 {
            return Err(NoteError::KeyFormat(
                "verifier key must be a type byte and 32 bytes",
            ));
        }
        let key_type = key[0];
        if key_type != TYPE_ED25519 && key_type != TYPE_COSIGNATURE_V1 {
            return Err(NoteError::KeyFormat(
                "unsupported key type (want 0x01 or 0x04)",
            ));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        if key_id(name, key_type, &public) != id {
            return Err(NoteError::KeyFormat("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_type,
            public,
            id,
        })
    }

    /// A cosigner verifier key from a raw Ed25519 public key.
    pub fn cosigner(name: &str, public: [u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let id = key_id(name, TYPE_COSIGNATURE_V1, &public);
        Ok(Self {
            name: name.to_owned(),
            key_type: TYPE_COSIGNATURE_V1,
            public,
            id,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The signature type byte (0x01 or 0x04).
    pub fn key_type(&self) -> u8 {
        self.key_type
    }

    /// Verifies a raw signature (after the 4-byte key id) over note `text`.
    /// For cosigner keys returns the cosignature timestamp.
    fn verify(&self, text: &str, sig: &[u8]) -> Option<Option<u64>> {
        let pk = signature::UnparsedPublicKey::new(&signature::ED25519, &self.public);
        match self.key_type {
            TYPE_ED25519 => pk.verify(text.as_bytes(), sig).ok().map(|()| None),
            _ => {
                if sig.len() != 72 {
                    return None;
                }
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&sig[..8]);
                let ts = u64::from_be_bytes(ts);
                if ts > i64::MAX as u64 {
                    return None;
                }
                let msg = cosigned_message(text, ts);
                pk.verify(msg.as_bytes(), &sig[8..]).ok().map(|()| Some(ts))
            }
        }
    }
}

/// A signature that verified under a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// Signature type (0x01 note signature, 0x04 cosignature).
    pub key_type: u8,
    /// For cosignatures, the timestamp (Unix seconds).
    pub timestamp: Option<u64>,
}

/// A note whose signatures were checked by [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The note text (including its final newline).
    pub text: String,
    /// Signatures by trusted keys, all verified.
    pub signatures: Vec<VerifiedSignature>,
    /// Number of signature lines from unknown keys (ignored).
    pub unknown_signatures: usize,
}

/// Parses a signed note and verifies it against the trusted `known` keys.
///
/// Rules (C2SP signed-note plus the Go reference implementation):
/// the note is at most [`MAX_NOTE_LEN`] bytes of UTF-8 with no control
/// characters but newline; the text is everything up to and including the
/// newline before the *last* blank line, and is non-empty; the signature
/// block is one or more lines `— <name> <base64(id ‖ sig)>\n` with a valid key
/// name and at least 5 decoded bytes; at most [`MAX_SIGNATURES`] lines.
/// Lines whose (name, id) match no known key are ignored. A known key's
/// signature must verify, else the whole note is rejected; a known key
/// signing twice is rejected; at least one known signature is required.
pub fn open(note: &[u8], known: &[VerifierKey]) -> Result<VerifiedNote, NoteError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLarge);
    }
    let s = std::str::from_utf8(note).map_err(|_| NoteError::Encoding)?;
    if s.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Encoding);
    }
    let split = s
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end with a newline",
        ));
    }
    let mut out = VerifiedNote {
        text: text.to_owned(),
        signatures: Vec::new(),
        unknown_signatures: 0,
    };
    let mut count = 0usize;
    let mut unknown = Vec::new();
    for line in sigs[..sigs.len() - 1].split('\n') {
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash and a space",
        ))?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
            "signature line needs a name and a signature",
        ))?;
        check_key_name(name).map_err(|_| NoteError::Malformed("invalid key name in signature"))?;
        if b64.is_empty() || b64.len() > MAX_NOTE_LEN {
            return Err(NoteError::Malformed("empty signature"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature is shorter than 5 bytes"));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let Some(key) = known.iter().find(|k| k.name == name && k.id == id) else {
            out.unknown_signatures += 1;
            unknown.push(key_label(name, id));
            continue;
        };
        if out
            .signatures
            .iter()
            .any(|v| v.name == name && v.key_id == id)
        {
            return Err(NoteError::DuplicateSignature {
                name: name.to_owned(),
            });
        }
        let ts = key
            .verify(text, &raw[4..])
            .ok_or_else(|| NoteError::BadSignature {
                name: name.to_owned(),
            })?;
        out.signatures.push(VerifiedSignature {
            name: name.to_owned(),
            key_id: id,
            key_type: key.key_type,
            timestamp: ts,
        });
    }
    if text.is_empty() || text == "\n" {
        return Err(NoteError::Malformed("empty note text"));
    }
    if out.signatures.is_empty() {
        return Err(NoteError::NoTrustedSignature {
            signers: unknown,
            trusted: known.iter().map(|k| key_label(&k.name, k.id)).collect(),
        });
    }
    Ok(out)
}

/// Verifies that `note` carries a valid cosignature by `cosigner` (a type
/// 0x04 key) and returns its timestamp. Other signatures are ignored.
pub fn verify_cosignature(note: &[u8], cosigner: &VerifierKey) -> Result<u64, NoteError> {
    if cosigner.key_type != TYPE_COSIGNATURE_V1 {
        return Err(NoteError::KeyFormat("not a cosigner (type 0x04) key"));
    }
    let v = open(note, std::slice::from_ref(cosigner))?;
    v.signatures
        .first()
        .and_then(|s| s.timestamp)
        .ok_or(NoteError::Malformed("cosignature without a timestamp"))
}

/// The text of a note *without verifying any signature*: for reading back
/// a node's own stored checkpoint, never for trusting a received note.
pub fn text_unverified(note: &[u8]) -> Result<&str, NoteError> {
    let s = std::str::from_utf8(note).map_err(|_| NoteError::Encoding)?;
    let split = s
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    Ok(&s[..split + 1])
}

fn cosigned_message(text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') || text == "\n" {
        return Err(NoteError::Malformed(
            "note text must be non-empty and end with a newline",
        ));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Encoding);
    }
    Ok(())
}

fn split_key(s: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::KeyFormat("expected name+keyid+key"));
    };
    check_key_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::KeyFormat("key id must be 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::KeyFormat("bad key id"))?;
    if key.len() > 64 {
        return Err(NoteError::KeyFormat("key is too long"));
    }
    let key = B64
        .decode(key)
        .map_err(|_| NoteError::KeyFormat("key is not base64"))?;
    Ok((name, id, key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;

    // From the Go reference implementation's examples
    // (golang.org/x/mod/sumdb/note, example_test.go).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_reference_note_verifies_and_signing_reproduces_it() {
        let v = VerifierKey::parse(GO_VKEY).unwrap();
        let note = format!("{GO_TEXT}\n{GO_SIG}");
        let n = open(note.as_bytes(), std::slice::from_ref(&v)).unwrap();
        assert_eq!(n.text, GO_TEXT);
        assert_eq!(n.signatures[0].key_id, 0xc74f20a3);
        let s = SignerKey::parse(GO_SKEY).unwrap();
        assert_eq!(s.verifier(), v);
        assert_eq!(s.verifier().to_string(), GO_VKEY);
        assert_eq!(s.to_secret_string().as_str(), GO_SKEY);
        assert_eq!(s.sign_note(GO_TEXT).unwrap(), note);
    }

    #[test]
    fn cosignature_round_trip() {
        let rng = ring::rand::SystemRandom::new();
        let log = SignerKey::generate("example.com/log", &rng).unwrap();
        let w = SignerKey::generate_cosigner("witness.example/w1", &rng).unwrap();
        let body = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut note = log.sign_note(body).unwrap();
        note.push_str(&w.cosign(body, 1_679_315_147).unwrap());
        assert_eq!(
            verify_cosignature(note.as_bytes(), &w.verifier()).unwrap(),
            1_679_315_147
        );
        let both = open(note.as_bytes(), &[log.verifier(), w.verifier()]).unwrap();
        assert_eq!(both.signatures.len(), 2);
        // The log key alone ignores the cosignature.
        let only = open(note.as_bytes(), &[log.verifier()]).unwrap();
        assert_eq!(only.unknown_signatures, 1);
        // A cosignature over another body does not verify.
        let other = body.replace("\n5\n", "\n6\n");
        let forged = format!("{}\n{}", other, w.cosign(body, 1).unwrap());
        assert_eq!(
            verify_cosignature(forged.as_bytes(), &w.verifier()),
            Err(NoteError::BadSignature {
                name: "witness.example/w1".into()
            })
        );
        assert!(w.sign_note(body).is_err());
        assert!(log.cosign(body, 1).is_err());
    }

    #[test]
    fn note_rules() {
        let v = VerifierKey::parse(GO_VKEY).unwrap();
        let k = std::slice::from_ref(&v);
        let good = format!("{GO_TEXT}\n{GO_SIG}");
        let dup = format!("{GO_TEXT}\n{GO_SIG}{GO_SIG}");
        assert!(matches!(
            open(dup.as_bytes(), k),
            Err(NoteError::DuplicateSignature { .. })
        ));
        let tampered = good.replace("answer", "Answer");
        assert!(matches!(
            open(tampered.as_bytes(), k),
            Err(NoteError::BadSignature { .. })
        ));
        assert_eq!(
            open(good.as_bytes(), &[]),
            Err(NoteError::NoTrustedSignature {
                signers: vec![key_label(v.name(), v.key_id())],
                trusted: vec![],
            })
        );
        // A wrong key says which key signed and which one was trusted, so it
        // reads differently from a tampered note (BadSignature above).
        let other = SignerKey::from_seed(v.name(), TYPE_ED25519, [9; 32]).unwrap();
        let msg = open(good.as_bytes(), &[other.verifier()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "note is not signed by any trusted key: signed by key {}, you trusted key {}",
                key_label(v.name(), v.key_id()),
                key_label(other.name(), other.key_id())
            )
        );
        let no_nl = good.trim_end();
        assert!(matches!(
            open(no_nl.as_bytes(), k),
            Err(NoteError::Malformed(_))
        ));
        let ctrl = good.replace("answer", "ans\twer");
        assert_eq!(open(ctrl.as_bytes(), k), Err(NoteError::Encoding));
        let hyphen = good.replace('\u{2014}', "-");
        assert!(matches!(
            open(hyphen.as_bytes(), k),
            Err(NoteError::Malformed(_))
        ));
        let unknown = "\u{2014} Other AAAAAAA=\n".repeat(MAX_SIGNATURES);
        let many = format!("{GO_TEXT}\n{GO_SIG}{unknown}");
        assert_eq!(open(many.as_bytes(), k), Err(NoteError::TooManySignatures));
        assert!(VerifierKey::parse(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        assert!(check_key_name("a b").is_err());
        assert!(check_key_name("a+b").is_err());
        assert!(check_key_name("").is_err());
    }
}
