//! The Isnad verifiable audit log: an append-only, crash-safe log of what a
//! node sent, received, acknowledged and changed, hashed into an RFC 9162
//! Merkle tree, with C2SP signed checkpoints, tlog-tiles export and an
//! offline verifier.
//!
//! ```text
//!   Entry (deterministic CBOR, no plaintext)
//!     │ Log::append ─ group commit: one fdatasync for many appenders
//!     ▼
//!   <dir>/entries ── RFC 9162 tree (leaf 0x00, node 0x01, SHA-256)
//!     │ Log::sign_checkpoint ─ C2SP checkpoint as a signed note (Ed25519)
//!     ▼
//!   Log::export ──► checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]
//!                              │
//!   auditor: verify_export ◄───┘   prove_from_export ─► tlog-proof
//! ```
//!
//! What it does: the entry schema and its strict codec ([`Entry`]), Merkle
//! hashing and proofs ([`Tree`], [`verify_inclusion`],
//! [`verify_consistency`]), signed notes, checkpoints and witness
//! cosignatures ([`note`], [`Checkpoint`]), the durable file-backed [`Log`],
//! the tiles export and the auditor's checks ([`verify_export`]), the
//! cross-log audit of two verified exports ([`read_verified_export`],
//! [`cross_check`], `spec/cross-check.md`), the auditor's self-contained
//! HTML report ([`report`]), and the witness side of C2SP tlog-witness with
//! fork evidence ([`witness`]).
//!
//! What it does not do: no networking, no clock and no randomness of its
//! own (time is a field the caller fills, keys and salts take an RNG). The
//! witness decision stores nothing itself: the caller keeps the state. One
//! [`Log`] owns a log directory at a time (an `flock` on [`LOCK_FILE`],
//! released by the kernel when the owner dies; see [`lock`]). Normative description: `spec/audit-log.md`,
//! `spec/witness.md`.
//!
//! ```
//! use isnad_log::{Entry, EventType, Log, note::SignerKey, verify_export};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let rng = ring::rand::SystemRandom::new();
//! let key = SignerKey::generate("iq.moi.ahtd/audit", &rng)?;
//!
//! let (log, _report) = Log::open(&dir.path().join("log"))?;
//! let mut entry = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000);
//! entry.reason = Some("directory serial 42".into());
//! let index = log.append(entry)?; // durable when this returns
//! assert_eq!(index, 0);
//!
//! let out = dir.path().join("export");
//! log.export(&out, &key)?;
//! let report = verify_export(&out, &key.verifier(), None, &mut |_, _| {})?;
//! assert!(report.is_ok());
//! assert_eq!(report.checkpoint.size, 1);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audited;
pub mod checkpoint;
pub mod crosscheck;
pub mod disk;
pub mod entry;
pub mod format;
pub mod lock;
mod log;
pub mod merkle;
pub mod note;
pub mod quorum;
pub mod report;
pub mod tiles;
mod verify;
pub mod witness;

#[doc(hidden)]
pub mod testing;

#[doc(hidden)]
pub mod fuzzing;

pub use audited::{read_verified_export, AuditedLog, AuditedLogError};
pub use checkpoint::{open_checkpoint, origin_for, Checkpoint, CheckpointError, TlogProof};
pub use crosscheck::{cross_check, CrossCheck, CrossCheckError, Finding, FindingClass};
pub use entry::{Commitment, CommitmentSalt, Entry, EntryError, EventType, MAX_ENTRY_LEN};
pub use log::{ExportSummary, Log, LogError, OpenReport, SignedCheckpoint, LOCK_FILE};
pub use merkle::{
    consistency_roots, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion,
    Hash, ProofError, Tree,
};
pub use note::{NoteError, SignerKey, VerifierKey};
pub use verify::{prove_from_export, verify_export, AuditError, Problem, Report, MAX_PROBLEMS};
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
