//! Isnad attachments: files of any size sent with a message, encrypted
//! end to end chunk by chunk, checkable chunk by chunk by relays that hold
//! no key (spec/attachments.md).
//!
//! ```text
//!   plaintext ──split into chunk-size pieces──▶ p0 p1 … pn-1 (last: 0 < len ≤ cs, or the empty file)
//!        │ AES-256-GCM, fresh key per attachment, STREAM nonces
//!        │ nonce(i) = prefix(7) ‖ i (u32 BE) ‖ last (0x00/0x01)
//!        ▼
//!   ciphertext chunks c0 c1 … cn-1 (each + 16-byte tag), stored and sent as is
//!        │ leaf = SHA-256(0x02 ‖ ci), node = SHA-256(0x03 ‖ l ‖ r)  (RFC 9162 shape)
//!        ▼
//!   ciphertext root ──▶ relay-visible metadata {chunk-size, ciphertext-size, ciphertext-root}
//!   descriptor {name, media-type, size, SHA-256 digest, key, nonce-prefix, chunk-size,
//!               ciphertext-root, ciphertext-size}  ──▶ inside the signed, encrypted message body
//! ```
//!
//! What it does: [`seal`] and [`open`] stream a file through
//! [`std::io::Read`]/[`std::io::Write`] in memory of one or two chunks;
//! [`ChunkSealer`] and [`ChunkOpener`] do the same one chunk at a time for
//! a caller that moves the bytes itself; [`ChunkVerifier`] checks a single
//! chunk against the relay-visible metadata with its [`InclusionProof`]
//! (no key), so a damaged chunk is named by index and re-requested before
//! anything is decrypted; [`ChunkTree`] answers with those proofs. The
//! descriptor and the metadata have a strict deterministic CBOR codec.
//!
//! What it does not do: no networking, no files of its own, no clock, no
//! storage of which chunks arrived (the node does that); randomness is
//! passed in.
//!
//! ```
//! use isnad_attach::*;
//! use ring::rand::SystemRandom;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let report = vec![7u8; 300_000];
//! let mut ciphertext = Vec::new();
//! let sealed = seal(&report[..], &mut ciphertext, ChunkSize::DEFAULT, &SystemRandom::new())?;
//! let descriptor = sealed.describe(FileName::new("report.pdf")?, MediaType::new("application/pdf")?);
//!
//! // A relay sees only the metadata and checks a chunk with its proof.
//! let meta = descriptor.meta();
//! let tree = verify_ciphertext(&meta, &ciphertext[..], true)?.ok_or("no tree")?;
//! let chunk1 = &ciphertext[262_160..];
//! ChunkVerifier::new(&meta).verify(1, chunk1, &tree.proof(1).ok_or("no proof")?)?;
//!
//! // The recipient decodes the descriptor from the signed body and decrypts.
//! let descriptor = AttachmentDescriptor::decode(&descriptor.encode())?;
//! let mut plaintext = Vec::new();
//! open(&descriptor, &ciphertext[..], &mut plaintext)?;
//! assert_eq!(plaintext, report);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod descriptor;
mod error;
mod stream;
mod tree;

#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod testing;

pub use descriptor::{
    AttachmentDescriptor, AttachmentMeta, FileName, MediaType, MAX_DESCRIPTOR_LEN,
    MAX_MEDIA_TYPE_LEN, MAX_META_LEN, MAX_NAME_LEN,
};
pub use error::{DecodeError, OpenError, SealError};
pub use stream::{
    open, seal, seal_with, verify_ciphertext, AttachmentKey, ChunkOpener, ChunkSealer, ChunkSize,
    ChunkVerifier, ContentDigest, Layout, NoncePrefix, Sealed, KEY_LEN, MAX_CHUNKS,
    NONCE_PREFIX_LEN, TAG_LEN,
};
pub use tree::{
    leaf_hash, node_hash, ChunkTree, InclusionProof, RootBuilder, TreeHash, LEAF_PREFIX,
    MAX_PROOF_HASHES, NODE_PREFIX,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
