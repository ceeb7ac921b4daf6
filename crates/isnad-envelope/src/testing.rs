//! Building blocks for test-vector generators and interop tests: they make
//! envelopes that [`crate::seal`] would refuse to make. Not a stable API.

use ring::rand::SecureRandom;

use crate::{EncryptionPublicKey, SealError, SigningKey};

/// Signs arbitrary claims bytes into a tagged COSE_Sign1 exactly as `seal`
/// does for valid claims.
pub fn sign_raw_claims(
    claims: &[u8],
    signer: &SigningKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    crate::envelope::sign_payload(claims.to_vec(), signer, rng)
}

/// Encrypts arbitrary plaintext into a tagged COSE_Encrypt exactly as `seal`
/// does for a signed message.
pub fn encrypt_raw(
    plaintext: &[u8],
    recipient_key: &EncryptionPublicKey,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, SealError> {
    crate::envelope::encrypt(plaintext, recipient_key, rng)
}

/// Re-encodes a CBOR value deterministically (for mutating vectors).
pub fn deterministic(value: &ciborium::value::Value) -> Vec<u8> {
    crate::cbor::to_deterministic_vec(value)
}
