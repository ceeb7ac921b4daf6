//! The Isnad secure envelope: typed CBOR messages signed with COSE_Sign1 and
//! encrypted to one recipient with COSE_Encrypt (ECDH-ES + HKDF-256, A256GCM).
//!
//! ```text
//!   Message { header claims, typed body }
//!        │ deterministic CBOR claims map
//!        ▼
//!   COSE_Sign1 (tag 18)  alg EdDSA|ES256, kid = RFC 9679 thumbprint
//!        │ bytes of the tagged Sign1 are the plaintext
//!        ▼
//!   COSE_Encrypt (tag 96)  A256GCM, one recipient: ECDH-ES + HKDF-256 (P-256 or X25519)
//! ```
//!
//! What it does: key types and their file forms (PKCS#8 PEM private keys,
//! COSE_Key public keys), the message header and [`Body`], the CBOR codec of
//! bodies and claims, [`seal`], and [`Opener::open`] with every check of
//! spec/protocol.md in its documented order. The names it shares with the
//! other crates (agency and message ids, kinds, error codes, body types,
//! [`Limits`], [`cbor`]) live in isnad-types, which has no cryptographic
//! dependency; they are re-exported here under their old paths.
//!
//! What it does not do: no networking, no clock and no storage. Time is
//! passed in; the replay set and the sender-key lookup are traits
//! ([`ReplayGuard`], [`SenderKeys`]) that the node backs with its store and
//! the federation directories.
//!
//! ```
//! use isnad_envelope::*;
//! use ring::rand::SystemRandom;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rng = SystemRandom::new();
//! let (alice, bob) = (AgencyId::new("iq.moi.ahtd")?, AgencyId::new("fr.mj.bepi")?);
//! let alice_sig = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
//! let bob_enc = EncryptionKey::generate(EncryptionCurve::P256, &rng)?;
//!
//! let now = 1_790_000_000;
//! let msg = Message {
//!     header: Header {
//!         id: MessageId::random(&rng)?,
//!         sender: alice.clone(),
//!         recipient: bob.clone(),
//!         created: now,
//!         expires: now + 3600,
//!     },
//!     body: Body::Error(ErrorBody { code: ErrorCode::Unavailable, message_id: None, detail: None }),
//! };
//! let envelope = seal(&msg, &alice_sig, bob_enc.public_key(), &Limits::default(), &rng)?;
//!
//! let senders = vec![SenderKey {
//!     agency: alice,
//!     key: alice_sig.verifying_key().clone(),
//!     valid_from: None,
//!     valid_until: None,
//!     revoked_at: None,
//! }];
//! let keys = [bob_enc];
//! let opener = Opener { me: &bob, keys: &keys, limits: Limits::default() };
//! let mut seen = MemoryReplayGuard::default();
//! let opened = opener.open(&envelope, now + 5, &senders, &mut seen)?;
//! assert_eq!(opened.message, msg);
//! // The same envelope again is a replay.
//! assert!(matches!(
//!     opener.open(&envelope, now + 6, &senders, &mut seen),
//!     Err(OpenError::Replayed { .. })
//! ));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod envelope;
mod keys;
mod message;
mod relay;

#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod testing;

pub use codec::MalformedReason;
pub use envelope::{
    seal, seal_signed, verify_evidence, MemoryReplayGuard, OpenError, Opened, Opener, ReplayGuard,
    SealError, SenderKey, SenderKeys, Unauthentic, UnauthenticDetail, CONTENT_TYPE,
};
pub use isnad_types::cbor::{self, CborError};
pub use isnad_types::{AgencyId, AgencyIdError, Limits, MessageId, RandomError, MAX_AGENCY_ID_LEN};
pub use keys::{
    EncryptionCurve, EncryptionKey, EncryptionPublicKey, ExternalAgreement, ExternalSigner,
    KeyError, KeyId, SignatureAlgorithm, SigningKey, VerifyingKey,
};
pub use message::*;
pub use relay::{
    check_attachment_metas, endorse, verify_hop, OpaqueBytes, Relay, RelayError,
    ENDORSEMENT_CONTENT_TYPE, MAX_ROUTE_LEN,
};

/// Converts a JSON body (as in `isnad envelope seal --payload`) to a typed
/// body of `kind`. Keys beginning with `x-` become extensions.
pub fn body_from_json(kind: Kind, json: &str) -> Result<Body, MalformedReason> {
    codec::body_from_json(kind, json)
}

/// Converts a body to JSON (byte strings as lower-case hex, extensions included).
pub fn body_to_json(body: &Body) -> Result<String, MalformedReason> {
    codec::body_to_json(body)
}

/// The deterministic CBOR claims map of a message: the exact COSE_Sign1
/// payload [`seal`] signs (exposed for test vectors and interop checks).
pub fn claims_bytes(msg: &Message) -> Result<Vec<u8>, MalformedReason> {
    codec::encode_claims(msg)
}

/// The tagged COSE_Sign1 [`seal`] would encrypt (exposed for test vectors:
/// with Ed25519 it is deterministic).
pub fn signed_bytes(
    msg: &Message,
    signer: &SigningKey,
    rng: &dyn ring::rand::SecureRandom,
) -> Result<Vec<u8>, SealError> {
    envelope::sign(msg, signer, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring-backed constructors isnad-types gains with its `ring`
    /// feature: the UUIDv7 layout with random bits from the generator.
    #[test]
    fn time_ordered_ids_from_the_system_generator() -> Result<(), RandomError> {
        let rng = ring::rand::SystemRandom::new();
        let ms = 0x017F_22E2_79B0;
        let a = MessageId::time_ordered(ms, &rng)?;
        let b = &a.as_bytes()[..];
        assert_eq!(&b[..6], &[0x01, 0x7f, 0x22, 0xe2, 0x79, 0xb0]);
        assert_eq!(b[6] >> 4, 7, "version");
        assert_eq!(b[8] >> 6, 0b10, "variant");
        for _ in 0..64 {
            let (x, y) = (
                MessageId::time_ordered(ms, &rng)?,
                MessageId::time_ordered(ms + 1, &rng)?,
            );
            assert!(x < y);
            assert_ne!(x, MessageId::time_ordered(ms, &rng)?);
            assert_ne!(MessageId::random(&rng)?, MessageId::random(&rng)?);
        }
        Ok(())
    }
}
