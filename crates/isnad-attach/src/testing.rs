//! Fixed attachments for test vectors and tests in other crates (not a
//! stable API): the key and nonce prefix are SHA-256 of a label, never
//! random, so the same call gives the same bytes everywhere.

use ring::digest::{digest, SHA256};

use crate::{
    seal_with, AttachmentDescriptor, AttachmentKey, ChunkSealer, ChunkSize, FileName, MediaType,
    NoncePrefix, NONCE_PREFIX_LEN,
};

/// Seals `plaintext` in chunks of `chunk_size` under the key
/// `SHA-256("key:" ‖ label)` and the prefix `SHA-256("prefix:" ‖ label)[..7]`;
/// returns the descriptor (named `name`, of type `media_type`) and the
/// ciphertext.
pub fn fixed(
    label: &str,
    plaintext: &[u8],
    chunk_size: u32,
    name: &str,
    media_type: &str,
) -> Result<(AttachmentDescriptor, Vec<u8>), Box<dyn std::error::Error>> {
    let key = AttachmentKey::less_safe_from_bytes(sha(&format!("key:{label}")));
    let mut prefix = [0u8; NONCE_PREFIX_LEN];
    prefix.copy_from_slice(&sha(&format!("prefix:{label}"))[..NONCE_PREFIX_LEN]);
    let mut sealer = ChunkSealer::less_safe_with(
        key,
        NoncePrefix::from_bytes(prefix),
        ChunkSize::new(chunk_size)?,
    );
    let mut ciphertext = Vec::new();
    seal_with(&mut sealer, &mut &plaintext[..], &mut ciphertext)?;
    let sealed = sealer.finish()?;
    Ok((
        sealed.describe(FileName::new(name)?, MediaType::new(media_type)?),
        ciphertext,
    ))
}

fn sha(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, s.as_bytes()).as_ref());
    out
}
