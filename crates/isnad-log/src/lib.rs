//! The Isnad verifiable audit log: an append-only, crash-safe log of what a
//! node sent, received, acknowledged and changed, hashed into an RFC 9162
//! Merkle tree, with C2SP signed checkpoints, tlog-tiles export and an
//! offline verifier.
//!
//! ```text
//!   Entry (deterministic CBOR, no plaintext)
//!     │ Log::append ─ group commit: one fdatasync for many appenders
//!     ▼
//!   <dir>/entries (the tail) ──► <dir>/tile/… full tiles and bundles, written once
//!     │   RFC 9162 tree (leaf 0x00, node 0x01, SHA-256) read through isnad_tlog::TiledTree
//!     │ Log::sign_checkpoint ─ C2SP checkpoint as a signed note (Ed25519)
//!     ▼
//!   Log::export ──► checkpoint, tile/<L>/<N>[.p/<W>], tile/entries/<N>[.p/<W>]
//!                              │
//!   auditor: verify_export ◄───┘   prove_from_export ─► tlog-proof
//! ```
//!
//! What it does: the durable file-backed [`Log`] whose storage is C2SP
//! tlog-tiles on disk, the tiles export and the auditor's checks of an
//! export ([`verify_export`]), reading a verified export back for the
//! cross-log audit ([`read_verified_export`]), and the storage seam and its
//! fault layer ([`disk`]).
//!
//! The pure parts live in `isnad-tlog` and are re-exported here unchanged
//! (modules and items), so callers use one crate: the entry schema and its
//! codec ([`Entry`]), Merkle hashing and proofs ([`Tree`],
//! [`verify_inclusion`], [`verify_consistency`]), signed notes, checkpoints
//! and witness cosignatures ([`note`], [`Checkpoint`]), tile naming
//! ([`tiles`]), the witness protocol ([`witness`]), the cross-log audit
//! ([`cross_check`], `spec/cross-check.md`) and the auditor's HTML report
//! ([`report`]). The split is by job: this crate does file I/O, that one
//! does none (see its docs for why).
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
pub mod disk;
pub mod format;
pub mod lock;
mod log;
pub mod quorum;
mod tilestore;
mod verify;

#[doc(hidden)]
pub mod testing;

#[doc(hidden)]
pub mod fuzzing;

pub(crate) use isnad_tlog::audited as audited_log;
pub use isnad_tlog::{
    add_checkpoint, attachments, checkpoint, consistency_roots, cross_check, crosscheck, custody,
    empty_root, entry, leaf_hash, merkle, node_hash, note, open_checkpoint, origin_for, report,
    tiled, tiles, verify_consistency, verify_inclusion, witness, AddCheckpoint, AuditedLog,
    AuditedLogError, Checkpoint, CheckpointError, Commitment, CommitmentSalt, Cosigned, CrossCheck,
    CrossCheckError, Entry, EntryError, EventType, ExternalEd25519, Finding, FindingClass,
    ForkError, ForkEvidence, ForkProof, Hash, LoggedAttachment, NoteError, ProofError, SignerKey,
    TileError, TileReader, TiledTree, TlogProof, Tree, VerifierKey, WitnessError, Witnessed,
    MAX_ENTRY_LEN,
};

pub use audited::read_verified_export;
pub use log::serve::{has_bundle, has_tile};
pub use log::{ExportSummary, Log, LogError, OpenReport, SignedCheckpoint, LOCK_FILE};
pub use verify::{
    prove_from_export, verify_export, verify_tiles, AuditError, Problem, Report, MAX_PROBLEMS,
};
