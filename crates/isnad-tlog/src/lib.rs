//! The pure parts of the Isnad audit log: the entry schema and its strict
//! codec ([`Entry`]), RFC 9162 Merkle hashing and proofs ([`Tree`],
//! [`verify_inclusion`], [`verify_consistency`]), C2SP signed notes,
//! checkpoints and witness cosignatures ([`note`], [`Checkpoint`]), the
//! C2SP tlog-tiles layout and the tree read through tiles ([`tiles`],
//! [`TileReader`], [`TiledTree`]), the witness side of C2SP tlog-witness with
//! fork evidence ([`witness`]), the cross-log audit of two verified logs
//! ([`cross_check`], `spec/cross-check.md`) and the auditor's HTML report
//! ([`report`]).
//!
//! ```text
//!   Entry ─encode─► leaf_hash ─► Tree / TiledTree ─► root, proofs
//!                                    │ reads hashes through
//!                                    ▼
//!                               TileReader ◄── isnad-log: tiles on disk
//!                                              (later: object storage, a database)
//! ```
//!
//! What it does not do: no file or network I/O, no clock and no randomness
//! of its own (time is a field the caller fills, keys and salts take an
//! RNG). Storage sits behind [`TileReader`]: the crate asks for a tile by
//! its coordinates and checks what it gets. The durable file-backed log,
//! its export and the export verifier live in `isnad-log`, which re-exports
//! this crate, so callers keep writing `isnad_log::Entry`.
//!
//! Why two crates: the math and the formats are what other implementations
//! and auditors check against the spec, and what a second storage backend
//! (object storage for tiles, a database for a replicated node) reuses
//! unchanged; keeping them free of I/O keeps them testable with vectors and
//! fuzzing alone. Normative description: `spec/audit-log.md`,
//! `spec/witness.md`.
//!
//! ```
//! use isnad_tlog::{leaf_hash, verify_inclusion, Entry, EventType, Tree};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tree = Tree::new();
//! let mut leaf = None;
//! for t in 0..5 {
//!     let bytes = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000 + t).encode()?;
//!     leaf = Some(leaf_hash(&bytes));
//!     tree.push(leaf_hash(&bytes));
//! }
//! let proof = tree.inclusion_proof(4, 5)?;
//! verify_inclusion(4, 5, &leaf.ok_or("no leaf")?, &proof, &tree.root())?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attachments;
pub mod audited;
pub mod checkpoint;
pub mod crosscheck;
pub mod custody;
pub mod entry;
pub mod merkle;
pub mod note;
pub mod report;
pub mod tiled;
pub mod tiles;
pub mod witness;

#[doc(hidden)]
pub mod testing;

#[doc(hidden)]
pub mod fuzzing;

pub use attachments::{AttachmentsDetailError, LoggedAttachment};
pub use audited::{AuditedLog, AuditedLogError};
pub use checkpoint::{open_checkpoint, origin_for, Checkpoint, CheckpointError, TlogProof};
pub use crosscheck::{cross_check, CrossCheck, CrossCheckError, Finding, FindingClass};
pub use entry::{Commitment, CommitmentSalt, Entry, EntryError, EventType, MAX_ENTRY_LEN};
pub use merkle::{
    consistency_roots, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion,
    Hash, ProofError, Tree,
};
pub use note::{ExternalEd25519, NoteError, SignerKey, VerifierKey};
pub use tiled::{TileError, TileReader, TiledTree};
pub use witness::{
    add_checkpoint, AddCheckpoint, Cosigned, ForkError, ForkEvidence, ForkProof, WitnessError,
    Witnessed,
};

/// Lower-case hex.
pub(crate) fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses lower- or upper-case hex of even length.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            let hi = (c[0] as char).to_digit(16)?;
            let lo = (c[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}
