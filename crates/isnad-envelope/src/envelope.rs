//! Seal (sign, then encrypt) and open (decrypt, verify, check) envelopes.

use ciborium::value::{Integer, Value};
use coset::{
    iana, CoseEncrypt, CoseSign1, CoseSign1Builder, HeaderBuilder, Label,
    TaggedCborSerializable as _,
};
use ring::aead;
use ring::rand::SecureRandom;

use crate::codec::{self, MalformedReason};
use crate::keys::{ALG_EDDSA, ALG_ES256};
use crate::message::{ErrorCode, Header, Message, PROTOCOL_VERSION};
use crate::{
    cbor, AgencyId, Digest, EncryptionCurve, EncryptionKey, EncryptionPublicKey, KeyId, Limits,
    MessageId, SigningKey, VerifyingKey,
};

/// The `content type` (label 3) in the COSE_Sign1 protected header.
pub const CONTENT_TYPE: &str = "application/vnd.isnad.message+cbor";
/// COSE algorithm A256GCM.
const ALG_A256GCM: i64 = 3;
/// Serialized protected header of the COSE_Encrypt layer: `{1: 3}`.
const BODY_PROTECTED: [u8; 3] = [0xa1, 0x01, 0x03];
/// Serialized protected header of the recipient layer: `{1: -25}`.
const RECIPIENT_PROTECTED: [u8; 4] = [0xa1, 0x01, 0x38, 0x18];

/// Errors when sealing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The message violates its schema or the lifetime rules; nothing was sent.
    #[error("message is not valid: {0}")]
    Invalid(MalformedReason),
    /// The sealed envelope would exceed the envelope size limit.
    #[error("sealed envelope would be {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Size the envelope would have.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The system random number generator or a cryptographic primitive failed.
    #[error("cryptographic operation failed (random number generator)")]
    Crypto,
    /// The signing key is [held in a device](crate::ExternalSigner) that
    /// failed or is absent (the detail names it); nothing was sent. Retry
    /// when the device is back.
    #[error("signing key unavailable: {0}")]
    KeyUnavailable(String),
}

/// Why an envelope was not accepted. [`OpenError::code`] gives the code to
/// send to the peer; [`Unauthentic`] hides which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    // --- the peer sent something unusable ---
    /// The envelope is larger than [`Limits::max_envelope_bytes`].
    #[error("envelope of {size} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not well-formed, or not the Isnad COSE structure, or a claim or the
    /// body violates the schema.
    #[error("malformed envelope: {0}")]
    Malformed(MalformedReason),
    /// Decryption or signature verification failed, or a key is unknown,
    /// not valid at the message's creation time, or revoked before the
    /// message was received. The detail is for local logs only; peers get
    /// the single code `unauthentic`.
    #[error("envelope could not be decrypted or authenticated")]
    Unauthentic(Unauthentic),
    /// The claims carry a protocol version this implementation does not
    /// speak (found after the signature verified with a trusted key).
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// The signed `v` claim.
        version: u64,
        /// The signed message id (answered to the peer, transport.md §3.2).
        id: MessageId,
    },
    // --- authentic, but not acceptable now or here ---
    /// Authentic, but addressed to another agency.
    #[error("message is addressed to {recipient}, not to this node")]
    Misaddressed {
        /// The agency named in the signed `to` claim.
        recipient: AgencyId,
        /// The signed message id.
        id: MessageId,
    },
    /// Authentic, but expired.
    #[error("message expired at {expires} (now {now})")]
    Expired {
        /// Signed expiry time.
        expires: u64,
        /// Local time used for the check.
        now: u64,
        /// The signed message id.
        id: MessageId,
    },
    /// Authentic, but created further in the future than the clock-skew allowance.
    #[error("message created at {created}, too far ahead of now ({now}); check clocks")]
    NotYetValid {
        /// Signed creation time.
        created: u64,
        /// Local time used for the check.
        now: u64,
        /// The signed message id.
        id: MessageId,
    },
    /// Authentic, but its id was seen before (a replay or a retry).
    #[error("message {id} from {sender} was already received")]
    Replayed {
        /// The message id.
        id: MessageId,
        /// The authenticated sender.
        sender: AgencyId,
    },
}

impl OpenError {
    /// The error code to report to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::Malformed(_) => ErrorCode::Malformed,
            Self::Unauthentic(_) => ErrorCode::Unauthentic,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::Misaddressed { .. } => ErrorCode::Misaddressed,
            Self::Expired { .. } => ErrorCode::Expired,
            Self::NotYetValid { .. } => ErrorCode::NotYetValid,
            Self::Replayed { .. } => ErrorCode::Replayed,
        }
    }

    /// The message id, for the errors found after the signature verified
    /// with a trusted key (`unsupported-version`, `misaddressed`,
    /// `not-yet-valid`, `expired`, `replayed`): a server returns it in its
    /// error response (spec/transport.md §3.2). `None` for the others,
    /// whose claims were not authenticated.
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Self::UnsupportedVersion { id, .. }
            | Self::Misaddressed { id, .. }
            | Self::Expired { id, .. }
            | Self::NotYetValid { id, .. }
            | Self::Replayed { id, .. } => Some(*id),
            Self::TooLarge { .. } | Self::Malformed(_) | Self::Unauthentic(_) => None,
        }
    }
}

/// The opaque authentication failure. `Display` says nothing about which check
/// failed; [`Unauthentic::detail`] tells the local operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic(UnauthenticDetail);

impl Unauthentic {
    /// Which check failed: for local logs, never for the peer.
    pub fn detail(&self) -> UnauthenticDetail {
        self.0
    }
}

/// Which authentication check failed (local diagnostics only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnauthenticDetail {
    /// The recipient `kid` names none of this node's encryption keys.
    UnknownRecipientKey,
    /// The ephemeral key is invalid or on another curve than the recipient key.
    BadEphemeralKey,
    /// AES-GCM decryption failed (tampered ciphertext, wrong key, …).
    DecryptFailed,
    /// The signer `kid` is not a known key of any trusted agency.
    UnknownSenderKey,
    /// The header `alg` does not match the signer key's algorithm.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The `from` claim names another agency than the signer key's owner.
    SenderMismatch,
    /// The signer key was not valid (not yet, rotated out, or revoked) at the
    /// message's creation time.
    KeyNotValid,
    /// The signer key is revoked and the message was received after the
    /// revocation time plus the in-flight grace, whatever creation time it
    /// claims (a thief holding the key can backdate `iat`).
    KeyRevoked,
}

impl UnauthenticDetail {
    /// A stable lower-case name, e.g. `unknown-sender-key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UnknownRecipientKey => "unknown-recipient-key",
            Self::BadEphemeralKey => "bad-ephemeral-key",
            Self::DecryptFailed => "decrypt-failed",
            Self::UnknownSenderKey => "unknown-sender-key",
            Self::AlgorithmMismatch => "algorithm-mismatch",
            Self::BadSignature => "bad-signature",
            Self::SenderMismatch => "sender-mismatch",
            Self::KeyNotValid => "key-not-valid",
            Self::KeyRevoked => "key-revoked",
        }
    }
}

fn unauthentic(d: UnauthenticDetail) -> OpenError {
    OpenError::Unauthentic(Unauthentic(d))
}

fn malformed(r: impl Into<MalformedReason>) -> OpenError {
    OpenError::Malformed(r.into())
}

fn cose(what: &'static str) -> OpenError {
    OpenError::Malformed(MalformedReason::Cose(what))
}

/// A signer key as known to the opener, with its owner and validity.
#[derive(Debug, Clone)]
pub struct SenderKey {
    /// The agency that owns the key.
    pub agency: AgencyId,
    /// The public key.
    pub key: VerifyingKey,
    /// First creation time (inclusive) at which messages signed with the key
    /// are accepted; `None` for no lower bound.
    pub valid_from: Option<u64>,
    /// Creation time (exclusive) from which messages signed with the key are
    /// refused: the end of a rotation overlap or the revocation time.
    pub valid_until: Option<u64>,
    /// The revocation time, if the key is revoked. Besides ending the
    /// creation-time window (`valid_until`), it bounds the time of receipt:
    /// a message received at or after `revoked_at +`
    /// [`Limits::revocation_grace_secs`] is refused whatever creation time
    /// it claims (spec/protocol.md §5.2 step 9c).
    pub revoked_at: Option<u64>,
}

impl SenderKey {
    /// Whether this key authenticates a message claiming creation at
    /// `created` and received at `received` (`None` when re-reading a
    /// message accepted earlier): spec/protocol.md §5.2 steps 9b and 9c.
    ///
    /// 9b: `valid_from ≤ created < valid_until` (bounds that are set), else
    /// [`UnauthenticDetail::KeyNotValid`]. 9c: if the key is revoked,
    /// `received < revoked_at + limits.revocation_grace_secs`, else
    /// [`UnauthenticDetail::KeyRevoked`]: the signer chooses `created`, so a
    /// thief holding the key could otherwise backdate messages past the
    /// revocation for as long as their lifetime allows.
    pub fn authenticates(
        &self,
        created: u64,
        received: Option<u64>,
        limits: &Limits,
    ) -> Result<(), UnauthenticDetail> {
        if self.valid_from.is_some_and(|t| created < t)
            || self.valid_until.is_some_and(|t| created >= t)
        {
            return Err(UnauthenticDetail::KeyNotValid);
        }
        if let (Some(now), Some(revoked)) = (received, self.revoked_at) {
            if now >= revoked.saturating_add(limits.revocation_grace_secs) {
                return Err(UnauthenticDetail::KeyRevoked);
            }
        }
        Ok(())
    }
}

/// Where the opener looks up signer keys (the federation directories, in a node).
pub trait SenderKeys {
    /// The key with this id, if any trusted agency has it.
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey>;
}

impl SenderKeys for [SenderKey] {
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
        self.iter().find(|k| k.key.key_id() == *kid).cloned()
    }
}

impl SenderKeys for Vec<SenderKey> {
    fn sender_key(&self, kid: &KeyId) -> Option<SenderKey> {
        self.as_slice().sender_key(kid)
    }
}

/// The seen-message-id set used for replay protection.
pub trait ReplayGuard {
    /// Records `id` from `sender` (kept at least until `expires`) and returns
    /// `true` if it had not been seen before, `false` if it had.
    fn first_sight(&mut self, sender: &AgencyId, id: &MessageId, expires: u64) -> bool;
}

/// An in-memory [`ReplayGuard`] that forgets ids once they have expired.
#[derive(Debug, Default)]
pub struct MemoryReplayGuard {
    seen: std::collections::HashMap<(AgencyId, MessageId), u64>,
}

impl MemoryReplayGuard {
    /// Forgets ids whose message expired before `now`: an expired message is
    /// refused by the expiry check anyway.
    pub fn prune(&mut self, now: u64) {
        self.seen.retain(|_, exp| *exp > now);
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn first_sight(&mut self, sender: &AgencyId, id: &MessageId, expires: u64) -> bool {
        self.seen.insert((sender.clone(), *id), expires).is_none()
    }
}

/// What the recipient needs to open envelopes.
#[derive(Debug)]
pub struct Opener<'a> {
    /// This node's agency id; messages addressed elsewhere are refused.
    pub me: &'a AgencyId,
    /// This node's encryption keys (more than one during a rotation overlap).
    pub keys: &'a [EncryptionKey],
    /// Size, nesting, skew and lifetime limits.
    pub limits: Limits,
}

/// An envelope that passed every check.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The verified message.
    pub message: Message,
    /// Key id of the signer.
    pub signer: KeyId,
    /// SHA-256 of the envelope bytes as received (what a receipt acknowledges).
    pub envelope_digest: Digest,
    /// The inner COSE_Sign1 bytes as received: keep them to prove later
    /// what the sender signed.
    pub signed: Vec<u8>,
}

impl Opener<'_> {
    /// Decrypts, verifies and checks an envelope received at `now` (seconds
    /// since the Unix epoch), in the order of spec/protocol.md §5.2, and
    /// records its id in `replay` only if every check passed.
    pub fn open(
        &self,
        envelope: &[u8],
        now: u64,
        senders: &dyn SenderKeys,
        replay: &mut dyn ReplayGuard,
    ) -> Result<Opened, OpenError> {
        let opened = self.open_inner(envelope, senders, Some(now))?;
        let h = &opened.message.header;
        if !replay.first_sight(&h.sender, &h.id, h.expires) {
            return Err(OpenError::Replayed {
                id: h.id,
                sender: h.sender.clone(),
            });
        }
        Ok(opened)
    }

    /// Opens an envelope this node already accepted and stored, to read it
    /// again: all cryptographic and addressing checks run, but not the time
    /// checks nor the replay check (both were done on arrival).
    pub fn reopen_accepted(
        &self,
        envelope: &[u8],
        senders: &dyn SenderKeys,
    ) -> Result<Opened, OpenError> {
        self.open_inner(envelope, senders, None)
    }

    fn open_inner(
        &self,
        envelope: &[u8],
        senders: &dyn SenderKeys,
        now: Option<u64>,
    ) -> Result<Opened, OpenError> {
        let limits = &self.limits;
        // 1. size, 2. well-formed.
        if envelope.len() > limits.max_envelope_bytes {
            return Err(OpenError::TooLarge {
                size: envelope.len(),
                max: limits.max_envelope_bytes,
            });
        }
        cbor::scan(envelope, limits).map_err(malformed)?;
        // 3. COSE_Encrypt structure.
        let enc = CoseEncrypt::from_tagged_slice(envelope)
            .map_err(|_| cose("not a tagged COSE_Encrypt"))?;
        let body_protected = enc.protected.original_data.as_deref().unwrap_or_default();
        if body_protected != BODY_PROTECTED {
            return Err(cose(
                "COSE_Encrypt protected header must be exactly {1: 3} (A256GCM)",
            ));
        }
        if !enc.unprotected.crit.is_empty() || enc.unprotected.alg.is_some() {
            return Err(cose(
                "unexpected parameters in COSE_Encrypt unprotected header",
            ));
        }
        let iv: [u8; 12] = enc
            .unprotected
            .iv
            .as_slice()
            .try_into()
            .map_err(|_| cose("IV must be 12 bytes"))?;
        let ciphertext = enc
            .ciphertext
            .as_deref()
            .ok_or(cose("detached ciphertext is not supported"))?;
        let [recipient] = enc.recipients.as_slice() else {
            return Err(cose("exactly one recipient is required"));
        };
        if recipient.protected.original_data.as_deref() != Some(&RECIPIENT_PROTECTED[..]) {
            return Err(cose("recipient protected header must be exactly {1: -25}"));
        }
        if !recipient.recipients.is_empty() {
            return Err(cose("nested recipients are not supported"));
        }
        if !matches!(recipient.ciphertext.as_deref(), None | Some([])) {
            return Err(cose(
                "recipient ciphertext must be empty for ECDH-ES direct",
            ));
        }
        let ru = &recipient.unprotected;
        let kid = KeyId::from_slice(&ru.key_id).ok_or(cose("recipient kid must be 32 bytes"))?;
        let mut eph_value = None;
        for (label, value) in &ru.rest {
            match label {
                Label::Int(-1) if eph_value.is_none() => eph_value = Some(value),
                _ => return Err(cose("unexpected parameter in recipient header")),
            }
        }
        let eph_value = eph_value.ok_or(cose("ephemeral key (-1) missing"))?;
        // 4. find our key, agree, derive, decrypt.
        let key = self
            .keys
            .iter()
            .find(|k| k.key_id() == kid)
            .ok_or(unauthentic(UnauthenticDetail::UnknownRecipientKey))?;
        let eph = crate::keys::parts_from_value(eph_value)
            .and_then(|p| EncryptionPublicKey::from_parts(&p))
            .map_err(|_| unauthentic(UnauthenticDetail::BadEphemeralKey))?;
        if eph.curve() != key.public_key().curve() {
            return Err(unauthentic(UnauthenticDetail::BadEphemeralKey));
        }
        let z = key
            .agree(eph.as_bytes())
            .ok_or(unauthentic(UnauthenticDetail::BadEphemeralKey))?;
        let cek =
            derive_cek(z.as_ref()).map_err(|_| unauthentic(UnauthenticDetail::DecryptFailed))?;
        let aad = enc_structure();
        let mut buf = ciphertext.to_vec();
        let plaintext = cek
            .open_in_place(
                aead::Nonce::assume_unique_for_key(iv),
                aead::Aad::from(&aad),
                &mut buf,
            )
            .map_err(|_| unauthentic(UnauthenticDetail::DecryptFailed))?;
        let signed = plaintext.to_vec();
        self.verify_signed(signed, Digest::sha256(envelope), senders, now)
    }

    /// Verifies a message that is signed but not encrypted (a bare tagged
    /// COSE_Sign1, as receipts travel): the same checks as [`Opener::open`]
    /// from step 5 on, except the replay check — a receipt is idempotent and
    /// the caller matches it to the message it acknowledges.
    pub fn open_signed(
        &self,
        signed: &[u8],
        now: u64,
        senders: &dyn SenderKeys,
    ) -> Result<Opened, OpenError> {
        if signed.len() > self.limits.max_envelope_bytes {
            return Err(OpenError::TooLarge {
                size: signed.len(),
                max: self.limits.max_envelope_bytes,
            });
        }
        self.verify_signed(signed.to_vec(), Digest::sha256(signed), senders, Some(now))
    }

    fn verify_signed(
        &self,
        signed: Vec<u8>,
        envelope_digest: Digest,
        senders: &dyn SenderKeys,
        now: Option<u64>,
    ) -> Result<Opened, OpenError> {
        verify_signed_as(
            Some(self.me),
            &self.limits,
            signed,
            envelope_digest,
            senders,
            now,
        )
    }
}

/// Verifies a signed-only message kept as evidence (a receipt an auditor
/// reads long after it expired, spec/attachments.md §6.4): the signature
/// over the bytes as given, the signer's key and agency, the key's validity
/// when the message was created, the claims and the body — every check of
/// [`Opener::open_signed`] except the time checks and the addressee, which
/// the caller compares with what it expects (`message.header.recipient`).
pub fn verify_evidence(
    signed: &[u8],
    senders: &dyn SenderKeys,
    limits: &Limits,
) -> Result<Opened, OpenError> {
    if signed.len() > limits.max_envelope_bytes {
        return Err(OpenError::TooLarge {
            size: signed.len(),
            max: limits.max_envelope_bytes,
        });
    }
    verify_signed_as(
        None,
        limits,
        signed.to_vec(),
        Digest::sha256(signed),
        senders,
        None,
    )
}

/// Steps 5–12 of spec/protocol.md §5.2 for the COSE_Sign1 `signed`; the
/// addressee is checked when `me` is given, the time when `now` is.
fn verify_signed_as(
    me: Option<&AgencyId>,
    limits: &Limits,
    signed: Vec<u8>,
    envelope_digest: Digest,
    senders: &dyn SenderKeys,
    now: Option<u64>,
) -> Result<Opened, OpenError> {
    // 5. the COSE_Sign1 inside.
    let (sign1, alg, signer) = parse_sign1(&signed, CONTENT_TYPE, limits).map_err(malformed)?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or(cose("detached payload is not supported"))?;
    // 6. signer key, 7. signature over the bytes as received.
    let sender_key = senders
        .sender_key(&signer)
        .ok_or(unauthentic(UnauthenticDetail::UnknownSenderKey))?;
    if sender_key.key.algorithm().cose_alg() != alg {
        return Err(unauthentic(UnauthenticDetail::AlgorithmMismatch));
    }
    sign1
        .verify_signature(&[], |sig, data| {
            if sender_key.key.verify(data, sig) {
                Ok(())
            } else {
                Err(())
            }
        })
        .map_err(|()| unauthentic(UnauthenticDetail::BadSignature))?;
    // 8. claims.
    let claims = codec::decode_claims(payload, limits).map_err(malformed)?;
    if claims.version != PROTOCOL_VERSION {
        return Err(OpenError::UnsupportedVersion {
            version: claims.version,
            id: claims.header.id,
        });
    }
    let h = claims.header;
    // 9. the signer owns the sender id, its key was valid at creation
    // and, if revoked, the message arrived before the revocation and its
    // grace (`now` is the time of receipt; re-reading skips that).
    if sender_key.agency != h.sender {
        return Err(unauthentic(UnauthenticDetail::SenderMismatch));
    }
    sender_key
        .authenticates(h.created, now, limits)
        .map_err(unauthentic)?;
    // 10. addressed to me.
    if me.is_some_and(|me| &h.recipient != me) {
        return Err(OpenError::Misaddressed {
            recipient: h.recipient,
            id: h.id,
        });
    }
    // 11. lifetime and time.
    if !lifetime_ok(&h, limits) {
        return Err(malformed(MalformedReason::Lifetime(
            limits.max_lifetime_secs,
        )));
    }
    if let Some(now) = now {
        if h.created > now.saturating_add(limits.max_clock_skew_secs) {
            return Err(OpenError::NotYetValid {
                created: h.created,
                now,
                id: h.id,
            });
        }
        if now >= h.expires {
            return Err(OpenError::Expired {
                expires: h.expires,
                now,
                id: h.id,
            });
        }
    }
    // 12. body.
    let kind = claims
        .kind
        .ok_or_else(|| malformed(MalformedReason::UnknownKind(claims.kind_name)))?;
    let body = codec::decode_body(kind, claims.body).map_err(malformed)?;
    Ok(Opened {
        message: Message { header: h, body },
        signer,
        envelope_digest,
        signed,
    })
}

/// Parses a tagged COSE_Sign1 whose protected header is exactly
/// `{1: alg, 3: content_type, 4: kid}` with an empty unprotected header;
/// returns it with its algorithm and signer key id.
pub(crate) fn parse_sign1(
    signed: &[u8],
    content_type: &str,
    limits: &Limits,
) -> Result<(CoseSign1, i64, KeyId), MalformedReason> {
    let cose = MalformedReason::Cose;
    cbor::scan(signed, limits)?;
    let sign1 = CoseSign1::from_tagged_slice(signed)
        .map_err(|_| cose("plaintext is not a tagged COSE_Sign1"))?;
    let ph = &sign1.protected.header;
    if !ph.crit.is_empty() || !ph.rest.is_empty() || !sign1.unprotected.is_empty() {
        return Err(cose("unexpected COSE_Sign1 header parameters"));
    }
    if ph.content_type != Some(coset::ContentType::Text(content_type.to_owned())) {
        return Err(cose("COSE_Sign1 content type is not the one expected here"));
    }
    let alg = match &ph.alg {
        Some(coset::RegisteredLabelWithPrivate::Assigned(a)) => *a as i64,
        _ => return Err(cose("COSE_Sign1 alg missing or not registered")),
    };
    if alg != ALG_EDDSA && alg != ALG_ES256 {
        return Err(cose("COSE_Sign1 alg must be EdDSA (-8) or ES256 (-7)"));
    }
    let signer = KeyId::from_slice(&ph.key_id).ok_or(cose("COSE_Sign1 kid must be 32 bytes"))?;
    Ok((sign1, alg, signer))
}

/// Signs `msg` with `signer` and encrypts it to `recipient_key`.
///
/// The caller chooses the message id, times and recipient; `rng` supplies the
/// ephemeral key, the IV and (for ES256) the signature nonce.
pub fn seal(
    msg: &Message,
    signer: &SigningKey,
    recipient_key: &EncryptionPublicKey,
    limits: &Limits,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    let signed = sign_checked(msg, signer, limits, rng)?;
    within_size(encrypt(&signed, recipient_key, rng)?, limits)
}

/// Signs `msg` without encrypting it: a tagged COSE_Sign1, as receipts
/// travel (spec/protocol.md §4.4). Open with [`Opener::open_signed`].
pub fn seal_signed(
    msg: &Message,
    signer: &SigningKey,
    limits: &Limits,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    within_size(sign_checked(msg, signer, limits, rng)?, limits)
}

/// Whether `exp` is after `iat` and within the lifetime limit: checked when
/// sealing and when opening.
fn lifetime_ok(h: &Header, limits: &Limits) -> bool {
    h.expires > h.created && h.expires - h.created <= limits.max_lifetime_secs
}

/// Checks the lifetime, then signs.
fn sign_checked(
    msg: &Message,
    signer: &SigningKey,
    limits: &Limits,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    if !lifetime_ok(&msg.header, limits) {
        return Err(SealError::Invalid(MalformedReason::Lifetime(
            limits.max_lifetime_secs,
        )));
    }
    sign(msg, signer, rng)
}

/// Refuses output larger than the envelope limit.
fn within_size(bytes: Vec<u8>, limits: &Limits) -> Result<Vec<u8>, SealError> {
    if bytes.len() > limits.max_envelope_bytes {
        return Err(SealError::TooLarge {
            size: bytes.len(),
            max: limits.max_envelope_bytes,
        });
    }
    Ok(bytes)
}

/// Builds the tagged COSE_Sign1 over the message claims.
pub(crate) fn sign(
    msg: &Message,
    signer: &SigningKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    let payload = codec::encode_claims(msg).map_err(SealError::Invalid)?;
    sign_payload(payload, signer, rng)
}

/// Signs claims bytes into a tagged COSE_Sign1.
pub(crate) fn sign_payload(
    payload: Vec<u8>,
    signer: &SigningKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    sign_payload_as(payload, CONTENT_TYPE, signer, rng)
}

/// Signs `payload` into a tagged COSE_Sign1 whose protected header is
/// exactly `{1: alg, 3: content_type, 4: kid}`.
pub(crate) fn sign_payload_as(
    payload: Vec<u8>,
    content_type: &str,
    signer: &SigningKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    let alg = match signer.algorithm() {
        crate::SignatureAlgorithm::Ed25519 => iana::Algorithm::EdDSA,
        crate::SignatureAlgorithm::Es256 => iana::Algorithm::ES256,
    };
    let protected = HeaderBuilder::new()
        .algorithm(alg)
        .content_type(content_type.to_owned())
        .key_id(signer.key_id().as_bytes().to_vec())
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .try_create_signature(&[], |tbs| signer.sign(tbs, rng))
        .map_err(|e| match e {
            crate::KeyError::Unavailable(detail) => SealError::KeyUnavailable(detail),
            _ => SealError::Crypto,
        })?
        .build();
    sign1.to_tagged_vec().map_err(|_| SealError::Crypto)
}

/// Encrypts `plaintext` into a tagged COSE_Encrypt for `recipient_key`.
pub(crate) fn encrypt(
    plaintext: &[u8],
    recipient_key: &EncryptionPublicKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    let ring_alg = match recipient_key.curve() {
        EncryptionCurve::P256 => &ring::agreement::ECDH_P256,
        EncryptionCurve::X25519 => &ring::agreement::X25519,
    };
    let eph = ring::agreement::EphemeralPrivateKey::generate(ring_alg, rng)
        .map_err(|_| SealError::Crypto)?;
    let eph_pub = eph.compute_public_key().map_err(|_| SealError::Crypto)?;
    let peer = ring::agreement::UnparsedPublicKey::new(ring_alg, recipient_key.as_bytes());
    let cek = ring::agreement::agree_ephemeral(eph, &peer, derive_cek)
        .map_err(|_| SealError::Crypto)?
        .map_err(|_| SealError::Crypto)?;
    let mut iv = [0u8; 12];
    rng.fill(&mut iv).map_err(|_| SealError::Crypto)?;
    let aad = enc_structure();
    let mut ct = plaintext.to_vec();
    cek.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(iv),
        aead::Aad::from(&aad),
        &mut ct,
    )
    .map_err(|_| SealError::Crypto)?;
    let int = |i: i64| Value::Integer(Integer::from(i));
    let recipient = Value::Array(vec![
        Value::Bytes(RECIPIENT_PROTECTED.to_vec()),
        Value::Map(vec![
            (
                int(4),
                Value::Bytes(recipient_key.key_id().as_bytes().to_vec()),
            ),
            (
                int(-1),
                EncryptionPublicKey::ephemeral_value(recipient_key.curve(), eph_pub.as_ref()),
            ),
        ]),
        Value::Bytes(Vec::new()),
    ]);
    let encrypt = Value::Tag(
        96,
        Box::new(Value::Array(vec![
            Value::Bytes(BODY_PROTECTED.to_vec()),
            Value::Map(vec![(int(5), Value::Bytes(iv.to_vec()))]),
            Value::Bytes(ct),
            Value::Array(vec![recipient]),
        ])),
    );
    Ok(cbor::to_deterministic_vec(&encrypt))
}

/// The AAD: `Enc_structure = ["Encrypt", h'a10103', h'']`.
fn enc_structure() -> Vec<u8> {
    cbor::to_deterministic_vec(&Value::Array(vec![
        Value::Text("Encrypt".into()),
        Value::Bytes(BODY_PROTECTED.to_vec()),
        Value::Bytes(Vec::new()),
    ]))
}

/// The RFC 9053 §5.2 COSE_KDF_Context for A256GCM with the recipient's
/// protected header: `[3, [null, null, null], [null, null, null], [256, h'a1013818']]`.
pub(crate) fn kdf_context() -> Vec<u8> {
    let nil3 = || Value::Array(vec![Value::Null, Value::Null, Value::Null]);
    cbor::to_deterministic_vec(&Value::Array(vec![
        Value::Integer(Integer::from(ALG_A256GCM)),
        nil3(),
        nil3(),
        Value::Array(vec![
            Value::Integer(Integer::from(256)),
            Value::Bytes(RECIPIENT_PROTECTED.to_vec()),
        ]),
    ]))
}

/// CEK = HKDF-SHA-256(salt = none, IKM = Z, info = COSE_KDF_Context, L = 32).
fn derive_cek(z: &[u8]) -> Result<aead::LessSafeKey, ring::error::Unspecified> {
    let info = kdf_context();
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(z);
    let info_parts = [info.as_slice()];
    let okm = prk.expand(&info_parts, &aead::AES_256_GCM)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}
