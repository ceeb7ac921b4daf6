//! The witness side of C2SP tlog-witness (<https://c2sp.org/tlog-witness>),
//! sans-IO, and the fork evidence a witness keeps when a log shows it two
//! histories (normative: `spec/witness.md`).
//!
//! ```text
//!   log operator                         witness
//!   AddCheckpoint { old, proof, note } ──► add_checkpoint(key, log key, stored, req, now)
//!                                            ├─ Ok(Cosigned)  store state durably, answer line
//!                                            ├─ Err(Conflict{known})  retry with old = known
//!                                            └─ Err(Fork(evidence))   refuse, keep evidence
//! ```
//!
//! What it does: parses and formats add-checkpoint request bodies
//! ([`AddCheckpoint`]), decides one request against the witness's stored
//! latest checkpoint of that origin ([`add_checkpoint`]), and formats,
//! parses and independently checks fork evidence ([`ForkEvidence`]).
//! What it does not do: no storage and no clock. The caller looks up the
//! origin's log key, passes the stored state and `now`, and must store the
//! returned state durably *before* it hands out the cosignature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::{open_checkpoint, parse_decimal, Checkpoint, CheckpointError};
use crate::merkle::{self, Hash};
use crate::note::{self, NoteError, SignerKey, VerifierKey};

/// Most consistency proof lines in a request (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest signed checkpoint note accepted in a request or evidence file.
pub const MAX_CHECKPOINT_NOTE_LEN: usize = 16 * 1024;
/// Largest add-checkpoint request body.
pub const MAX_REQUEST_LEN: usize = MAX_CHECKPOINT_NOTE_LEN + 4096;
/// Largest fork evidence file.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// The first line of a fork evidence file.
pub const FORK_EVIDENCE_HEADER: &str = "isnad-fork-evidence/v1";

/// The witness cosigning key name of an agency's node: `<agency-id>/witness`.
pub fn witness_name_for(agency: &isnad_types::AgencyId) -> String {
    format!("{agency}/witness")
}

/// An add-checkpoint request: the size the log believes the witness last
/// cosigned, a consistency proof from that size, and the new signed
/// checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The `old` line: the size of the latest checkpoint the log believes
    /// the witness cosigned (0 if none).
    pub old_size: u64,
    /// RFC 9162 consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// A witness's stored latest cosigned checkpoint of one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// The parsed checkpoint body.
    pub checkpoint: Checkpoint,
    /// The signed note as the log sent it (the evidence if it later forks).
    pub note: String,
}

/// What the witness answers and keeps when it cosigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The new state to store durably (replacing the old one) before answering.
    pub state: Witnessed,
    /// The cosignature line (`— <witness name> <base64>\n`), the response body.
    pub cosignature: String,
}

/// Why a witness refuses an add-checkpoint request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    // --- The request is malformed (C2SP 400 Bad Request) ---
    /// The body is not an add-checkpoint request (see [`AddCheckpoint::parse`]).
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(&'static str),
    /// The checkpoint note or body is malformed.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    /// The old size is larger than the checkpoint's size.
    #[error("old size {old} is larger than the checkpoint size {size}")]
    OldSizeTooLarge {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },

    // --- The log is not one this witness serves (C2SP 404 / 403) ---
    /// The checkpoint's origin is not the log this witness was asked to witness.
    #[error("checkpoint origin {origin:?} is not a log this witness serves")]
    UnknownLog {
        /// The origin line of the checkpoint.
        origin: String,
    },
    /// No valid signature by the log's key (detail for the local log only;
    /// a peer is told just "unauthentic").
    #[error("checkpoint signature does not verify: {0}")]
    Unauthentic(String),

    // --- The log's view of the witness is stale (C2SP 409 Conflict) ---
    /// The old size is not the size this witness last cosigned; retry with it.
    #[error("the witness last cosigned size {known_size}, not the old size given")]
    Conflict {
        /// The size of the latest checkpoint this witness cosigned (0 if none).
        known_size: u64,
    },

    // --- The checkpoint is not consistent with what the witness saw (C2SP 422) ---
    /// The consistency proof does not verify (and does not prove a fork either).
    #[error("the consistency proof does not verify")]
    BadProof,
    /// The log signed a checkpoint that provably contradicts the one this
    /// witness cosigned: the evidence proves it (see [`ForkEvidence::verify`]).
    #[error("the log signed two inconsistent checkpoints (fork): {}", .0.summary())]
    Fork(Box<ForkEvidence>),

    // --- The witness itself failed ---
    /// Signing the cosignature failed inside the crypto library.
    #[error("cosigning failed")]
    Crypto,
}

/// Two signed checkpoints of one log and the consistency proof the log
/// offered between them: evidence that the log forked its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    /// The checkpoint note the witness had cosigned.
    pub witnessed: String,
    /// The checkpoint note the log offered later.
    pub offered: String,
    /// The consistency proof the log offered with it, from the smaller size
    /// to the larger (empty for two checkpoints of the same size).
    pub proof: Vec<Hash>,
}

/// What a fork evidence file proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkProof {
    /// Two signed checkpoints of one size with different roots.
    SameSize {
        /// The common size.
        size: u64,
        /// Root of the witnessed checkpoint.
        witnessed_root: Hash,
        /// Root of the offered checkpoint.
        offered_root: Hash,
    },
    /// The proof leads to the larger checkpoint's root but from a root of
    /// the smaller size that differs from the signed one.
    Diverged {
        /// The smaller size.
        size: u64,
        /// The signed root at `size`.
        signed_root: Hash,
        /// The root at `size` that the larger tree contains.
        implied_root: Hash,
        /// The larger size.
        later_size: u64,
    },
}

/// Why a fork evidence file does not prove a fork.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForkError {
    // --- The file is unreadable ---
    /// Not a fork evidence file of this version.
    #[error("malformed fork evidence: {0}")]
    Malformed(&'static str),
    /// A checkpoint in it is malformed or not signed by the given log key.
    #[error("a checkpoint in the evidence does not verify under the log key: {0}")]
    Checkpoint(#[from] CheckpointError),

    // --- Readable and signed, but no fork is shown ---
    /// The two checkpoints are consistent (the proof verifies, or they are equal).
    #[error("the two checkpoints are consistent: no fork")]
    Consistent,
    /// The proof neither verifies nor leads to the larger root: the log sent
    /// a bad proof, which alone does not prove a fork.
    #[error("the proof does not verify and does not demonstrate a fork")]
    Unproven,
}

impl AddCheckpoint {
    /// The request body: `old <N>\n`, one base64 hash per line, a blank
    /// line, then the checkpoint note.
    pub fn to_text(&self) -> String {
        let mut s = format!("old {}\n", self.old_size);
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a request body strictly: at most [`MAX_REQUEST_LEN`] bytes of
    /// UTF-8; first line `old ` and a canonical decimal; then at most
    /// [`MAX_PROOF_LINES`] lines of padded base64 of 32 bytes; a blank line;
    /// then a non-empty note of at most [`MAX_CHECKPOINT_NOTE_LEN`] bytes
    /// (checked later by [`add_checkpoint`]). `old 0` with proof lines is
    /// malformed.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        if body.len() > MAX_REQUEST_LEN {
            return Err(WitnessError::Malformed("request is too large"));
        }
        let text = std::str::from_utf8(body).map_err(|_| WitnessError::Malformed("not UTF-8"))?;
        let (head, checkpoint) = text.split_once("\n\n").ok_or(WitnessError::Malformed(
            "no blank line before the checkpoint",
        ))?;
        let mut lines = head.split('\n');
        let old_size = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(parse_decimal)
            .ok_or(WitnessError::Malformed(
                "first line must be \"old \" and a decimal size",
            ))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(WitnessError::Malformed("more than 63 proof lines"));
            }
            proof.push(
                Hash::from_base64(l).map_err(|_| {
                    WitnessError::Malformed("a proof line is not base64 of 32 bytes")
                })?,
            );
        }
        if old_size == 0 && !proof.is_empty() {
            return Err(WitnessError::Malformed(
                "old size 0 with a consistency proof",
            ));
        }
        if checkpoint.is_empty() {
            return Err(WitnessError::Malformed("empty checkpoint"));
        }
        if checkpoint.len() > MAX_CHECKPOINT_NOTE_LEN {
            return Err(WitnessError::Malformed("checkpoint note is too large"));
        }
        Ok(Self {
            old_size,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

impl Witnessed {
    /// Reads back a state this witness stored itself (the note's signatures
    /// are not checked again: the log key may have rotated since).
    pub fn from_stored_note(note: &str) -> Result<Self, CheckpointError> {
        let text = note::text_unverified(note.as_bytes())?;
        Ok(Self {
            checkpoint: Checkpoint::parse_body(text)?,
            note: note.to_owned(),
        })
    }
}

/// Decides one add-checkpoint request, in the order of C2SP tlog-witness:
///
/// 1. the checkpoint's origin must be `log_key`'s name ([`WitnessError::UnknownLog`]);
/// 2. the note must carry a valid signature by `log_key` ([`WitnessError::Unauthentic`]);
/// 3. `old_size` must not exceed the checkpoint's size ([`WitnessError::OldSizeTooLarge`]);
/// 4. `old_size` must equal the stored size, 0 if none ([`WitnessError::Conflict`]);
/// 5. equal sizes need an empty proof and the stored root; a new size needs
///    a proof from the stored checkpoint; a size-0 checkpoint needs the
///    empty-tree root ([`WitnessError::BadProof`], [`WitnessError::Fork`]).
///
/// On success the caller stores [`Cosigned::state`] durably and only then
/// answers with [`Cosigned::cosignature`], timestamped `now` (Unix seconds).
pub fn add_checkpoint(
    witness: &SignerKey,
    log_key: &VerifierKey,
    stored: Option<&Witnessed>,
    req: &AddCheckpoint,
    now: u64,
) -> Result<Cosigned, WitnessError> {
    let text = note::text_unverified(req.checkpoint.as_bytes())
        .map_err(|e| WitnessError::Checkpoint(e.to_string()))?;
    let body = Checkpoint::parse_body(text).map_err(|e| WitnessError::Checkpoint(e.to_string()))?;
    if body.origin != log_key.name() {
        return Err(WitnessError::UnknownLog {
            origin: body.origin,
        });
    }
    let cp = open_checkpoint(req.checkpoint.as_bytes(), log_key).map_err(|e| match e {
        CheckpointError::Note(
            n @ (NoteError::BadSignature { .. }
            | NoteError::NoTrustedSignature { .. }
            | NoteError::DuplicateSignature { .. }),
        ) => WitnessError::Unauthentic(n.to_string()),
        other => WitnessError::Checkpoint(other.to_string()),
    })?;
    if req.old_size > cp.size {
        return Err(WitnessError::OldSizeTooLarge {
            old: req.old_size,
            size: cp.size,
        });
    }
    let known_size = stored.map_or(0, |s| s.checkpoint.size);
    if req.old_size != known_size {
        return Err(WitnessError::Conflict { known_size });
    }
    let fork = |proof: Vec<Hash>| {
        WitnessError::Fork(Box::new(ForkEvidence {
            witnessed: stored.map(|s| s.note.clone()).unwrap_or_default(),
            offered: req.checkpoint.clone(),
            proof,
        }))
    };
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(WitnessError::BadProof);
    }
    match stored {
        Some(s) if s.checkpoint.size == cp.size => {
            if !req.proof.is_empty() {
                return Err(WitnessError::Malformed(
                    "a proof between equal sizes must be empty",
                ));
            }
            if s.checkpoint.root != cp.root {
                return Err(fork(Vec::new()));
            }
        }
        Some(s) if s.checkpoint.size > 0 => {
            let (m, n) = (s.checkpoint.size, cp.size);
            if merkle::verify_consistency(m, n, &s.checkpoint.root, &cp.root, &req.proof).is_err() {
                return Err(
                    match merkle::consistency_roots(m, n, &s.checkpoint.root, &req.proof) {
                        Ok((fr, sr)) if sr == cp.root && fr != s.checkpoint.root => {
                            fork(req.proof.clone())
                        }
                        _ => WitnessError::BadProof,
                    },
                );
            }
        }
        // Nothing (or only the empty tree) stored: the first checkpoint is
        // accepted as is; the parser refused a proof with old size 0.
        _ => {}
    }
    let cosignature = witness
        .cosign(text, now)
        .map_err(|_| WitnessError::Crypto)?;
    Ok(Cosigned {
        state: Witnessed {
            checkpoint: cp,
            note: req.checkpoint.clone(),
        },
        cosignature,
    })
}

impl ForkEvidence {
    /// The file text:
    /// `isnad-fork-evidence/v1\nwitnessed <b64>\noffered <b64>\n` then one
    /// base64 proof hash per line.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{FORK_EVIDENCE_HEADER}\nwitnessed {}\noffered {}\n",
            B64.encode(self.witnessed.as_bytes()),
            B64.encode(self.offered.as_bytes())
        );
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s
    }

    /// Parses a fork evidence file strictly (layout of [`ForkEvidence::to_text`],
    /// at most [`MAX_EVIDENCE_LEN`] bytes, notes of at most
    /// [`MAX_CHECKPOINT_NOTE_LEN`] bytes of UTF-8, at most [`MAX_PROOF_LINES`]
    /// proof lines). Signatures are checked by [`ForkEvidence::verify`].
    pub fn parse(data: &[u8]) -> Result<Self, ForkError> {
        if data.len() > MAX_EVIDENCE_LEN {
            return Err(ForkError::Malformed("file is too large"));
        }
        let text = std::str::from_utf8(data).map_err(|_| ForkError::Malformed("not UTF-8"))?;
        let body = text
            .strip_suffix('\n')
            .ok_or(ForkError::Malformed("file must end with a newline"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(FORK_EVIDENCE_HEADER) {
            return Err(ForkError::Malformed(
                "first line must be isnad-fork-evidence/v1",
            ));
        }
        let mut note_line = |prefix: &str| -> Result<String, ForkError> {
            let b64 = lines
                .next()
                .and_then(|l| l.strip_prefix(prefix))
                .ok_or(ForkError::Malformed("missing witnessed or offered line"))?;
            if b64.len() > MAX_CHECKPOINT_NOTE_LEN * 4 / 3 + 4 {
                return Err(ForkError::Malformed("checkpoint note is too large"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| ForkError::Malformed("a note is not base64"))?;
            String::from_utf8(raw).map_err(|_| ForkError::Malformed("a note is not UTF-8"))
        };
        let witnessed = note_line("witnessed ")?;
        let offered = note_line("offered ")?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(ForkError::Malformed("more than 63 proof lines"));
            }
            proof.push(
                Hash::from_base64(l)
                    .map_err(|_| ForkError::Malformed("a proof line is not base64 of 32 bytes"))?,
            );
        }
        Ok(Self {
            witnessed,
            offered,
            proof,
        })
    }

    /// Checks the evidence independently: both notes verify under `log_key`
    /// (same origin), and either they have one size and two roots, or the
    /// proof leads from a root of the smaller size other than the signed one
    /// to the larger checkpoint's signed root.
    pub fn verify(&self, log_key: &VerifierKey) -> Result<ForkProof, ForkError> {
        let w = open_checkpoint(self.witnessed.as_bytes(), log_key)?;
        let o = open_checkpoint(self.offered.as_bytes(), log_key)?;
        if w.size == o.size {
            if !self.proof.is_empty() {
                return Err(ForkError::Malformed(
                    "checkpoints of one size come without a proof",
                ));
            }
            if w.root == o.root {
                return Err(ForkError::Consistent);
            }
            return Ok(ForkProof::SameSize {
                size: w.size,
                witnessed_root: w.root,
                offered_root: o.root,
            });
        }
        let (small, large) = if w.size < o.size { (&w, &o) } else { (&o, &w) };
        if small.size == 0 {
            // Every tree extends the empty tree; only a wrong empty root could differ.
            return if small.root == merkle::empty_root() {
                Err(ForkError::Consistent)
            } else {
                Err(ForkError::Unproven)
            };
        }
        if merkle::verify_consistency(
            small.size,
            large.size,
            &small.root,
            &large.root,
            &self.proof,
        )
        .is_ok()
        {
            return Err(ForkError::Consistent);
        }
        match merkle::consistency_roots(small.size, large.size, &small.root, &self.proof) {
            Ok((fr, sr)) if sr == large.root && fr != small.root => Ok(ForkProof::Diverged {
                size: small.size,
                signed_root: small.root,
                implied_root: fr,
                later_size: large.size,
            }),
            _ => Err(ForkError::Unproven),
        }
    }

    /// A one-line description for logs: the origin and the two sizes.
    pub fn summary(&self) -> String {
        let head = |n: &str| {
            note::text_unverified(n.as_bytes())
                .ok()
                .and_then(|t| Checkpoint::parse_body(t).ok())
                .map_or_else(
                    || "?".to_owned(),
                    |c| format!("{} size {}", c.origin, c.size),
                )
        };
        format!(
            "witnessed {}, offered {}",
            head(&self.witnessed),
            head(&self.offered)
        )
    }
}

impl ForkProof {
    /// A one-line description for operators.
    pub fn describe(&self) -> String {
        match self {
            Self::SameSize {
                size,
                witnessed_root,
                offered_root,
            } => format!(
                "two checkpoints of size {size} with different roots ({} and {})",
                witnessed_root.to_base64(),
                offered_root.to_base64()
            ),
            Self::Diverged {
                size,
                signed_root,
                implied_root,
                later_size,
            } => format!(
                "the checkpoint of size {later_size} contains root {} at size {size}, but the log signed {} for size {size}",
                implied_root.to_base64(),
                signed_root.to_base64()
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;
    use crate::note::{TYPE_COSIGNATURE_V1, TYPE_ED25519};

    const ORIGIN: &str = "iq.moi.ahtd/audit";

    fn keys() -> (SignerKey, SignerKey) {
        (
            SignerKey::from_seed(ORIGIN, TYPE_ED25519, [1; 32]).unwrap(),
            SignerKey::from_seed("fr.mj.bepi/witness", TYPE_COSIGNATURE_V1, [2; 32]).unwrap(),
        )
    }

    fn tree(prefix: u8, n: u64) -> merkle::Tree {
        merkle::Tree::from_leaves((0..n).map(|i| merkle::leaf_hash(&[prefix, i as u8])))
    }

    fn signed(log: &SignerKey, t: &merkle::Tree, size: u64) -> String {
        Checkpoint::new(ORIGIN, size, t.root_at(size).unwrap())
            .unwrap()
            .sign(log)
            .unwrap()
    }

    fn req(old: u64, proof: Vec<Hash>, checkpoint: String) -> AddCheckpoint {
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint,
        }
    }

    /// A witness that has cosigned size 5 of tree `a`.
    fn witnessed_at_5() -> (SignerKey, SignerKey, merkle::Tree, Witnessed) {
        let (log, w) = keys();
        let a = tree(0, 20);
        let c = add_checkpoint(
            &w,
            &log.verifier(),
            None,
            &req(0, vec![], signed(&log, &a, 5)),
            7,
        )
        .unwrap();
        (log, w, a, c.state)
    }

    #[test]
    fn first_checkpoint_then_growth_are_cosigned() {
        let (log, w, a, s5) = witnessed_at_5();
        assert_eq!(s5.checkpoint.size, 5);
        let proof = a.consistency_proof(5, 9).unwrap();
        let note = signed(&log, &a, 9);
        let c = add_checkpoint(
            &w,
            &log.verifier(),
            Some(&s5),
            &req(5, proof, note.clone()),
            1000,
        )
        .unwrap();
        assert_eq!(c.state.checkpoint.size, 9);
        let cosigned = format!("{note}{}", c.cosignature);
        assert_eq!(
            note::verify_cosignature(cosigned.as_bytes(), &w.verifier()),
            Ok(1000)
        );
        // Re-submitting the same checkpoint is cosigned again, state unchanged.
        let again = add_checkpoint(
            &w,
            &log.verifier(),
            Some(&c.state),
            &req(9, vec![], note),
            1001,
        )
        .unwrap();
        assert_eq!(again.state, c.state);
    }

    #[test]
    fn wrong_old_size_is_a_conflict_with_the_known_size() {
        let (log, w, a, s5) = witnessed_at_5();
        let r = req(4, a.consistency_proof(4, 9).unwrap(), signed(&log, &a, 9));
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1),
            Err(WitnessError::Conflict { known_size: 5 })
        );
        let r = req(3, a.consistency_proof(3, 9).unwrap(), signed(&log, &a, 9));
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), None, &r, 1),
            Err(WitnessError::Conflict { known_size: 0 })
        );
    }

    #[test]
    fn a_bad_proof_is_refused_without_evidence() {
        let (log, w, a, s5) = witnessed_at_5();
        let mut proof = a.consistency_proof(5, 9).unwrap();
        proof[0] = merkle::leaf_hash(b"junk");
        let r = req(5, proof, signed(&log, &a, 9));
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1),
            Err(WitnessError::BadProof)
        );
    }

    #[test]
    fn a_rewritten_history_is_a_proven_fork() {
        let (log, w, _a, s5) = witnessed_at_5();
        let b = tree(1, 20); // another history under the same log key
        let r = req(5, b.consistency_proof(5, 9).unwrap(), signed(&log, &b, 9));
        let Err(WitnessError::Fork(ev)) = add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1)
        else {
            panic!("expected a fork");
        };
        let parsed = ForkEvidence::parse(ev.to_text().as_bytes()).unwrap();
        assert_eq!(parsed, *ev);
        assert!(matches!(
            parsed.verify(&log.verifier()),
            Ok(ForkProof::Diverged {
                size: 5,
                later_size: 9,
                ..
            })
        ));
        // Under another key the evidence proves nothing.
        let other = SignerKey::from_seed(ORIGIN, TYPE_ED25519, [9; 32]).unwrap();
        assert!(matches!(
            parsed.verify(&other.verifier()),
            Err(ForkError::Checkpoint(_))
        ));
    }

    #[test]
    fn same_size_different_root_is_a_proven_fork() {
        let (log, w, _a, s5) = witnessed_at_5();
        let b = tree(1, 5);
        let r = req(5, vec![], signed(&log, &b, 5));
        let Err(WitnessError::Fork(ev)) = add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1)
        else {
            panic!("expected a fork");
        };
        assert!(matches!(
            ev.verify(&log.verifier()),
            Ok(ForkProof::SameSize { size: 5, .. })
        ));
    }

    #[test]
    fn rollback_is_never_cosigned() {
        let (log, w, a, s5) = witnessed_at_5();
        // The log claims the witness saw 3 and offers size 3: conflict.
        let r = req(3, vec![], signed(&log, &a, 3));
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1),
            Err(WitnessError::Conflict { known_size: 5 })
        );
        // With the known size, an older checkpoint is a bad request.
        let r = req(5, vec![], signed(&log, &a, 3));
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1),
            Err(WitnessError::OldSizeTooLarge { old: 5, size: 3 })
        );
    }

    #[test]
    fn wrong_key_or_origin_is_refused() {
        let (log, w, a, s5) = witnessed_at_5();
        let impostor = SignerKey::from_seed(ORIGIN, TYPE_ED25519, [3; 32]).unwrap();
        let r = req(
            5,
            a.consistency_proof(5, 9).unwrap(),
            signed(&impostor, &a, 9),
        );
        assert!(matches!(
            add_checkpoint(&w, &log.verifier(), Some(&s5), &r, 1),
            Err(WitnessError::Unauthentic(_))
        ));
        let other = SignerKey::from_seed("fr.mj.bepi/audit", TYPE_ED25519, [4; 32]).unwrap();
        let note = Checkpoint::new("fr.mj.bepi/audit", 1, a.root_at(1).unwrap())
            .unwrap()
            .sign(&other)
            .unwrap();
        assert_eq!(
            add_checkpoint(&w, &log.verifier(), None, &req(0, vec![], note), 1),
            Err(WitnessError::UnknownLog {
                origin: "fr.mj.bepi/audit".into()
            })
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let (log, _w, a, _) = witnessed_at_5();
        let note = signed(&log, &a, 9);
        let h = a.root().to_base64();
        for bad in [
            format!("old 05\n\n{note}"),
            format!("old -1\n\n{note}"),
            format!("old 0\n{h}\n\n{note}"),
            format!("old 5\nnot-base64\n\n{note}"),
            format!("old 5\n{h}\n{note}"),
            "old 5\n\n".to_owned(),
            format!("old 5\n{}\n{note}", format!("{h}\n").repeat(64)),
            format!("Old 5\n\n{note}"),
        ] {
            assert!(
                matches!(
                    AddCheckpoint::parse(bad.as_bytes()),
                    Err(WitnessError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        let good = req(5, a.consistency_proof(5, 9).unwrap(), note);
        assert_eq!(
            AddCheckpoint::parse(good.to_text().as_bytes()).unwrap(),
            good
        );
        // A checkpoint body that is not a checkpoint.
        let w = keys().1;
        let junk = log.sign_note("hello\n").unwrap();
        assert!(matches!(
            add_checkpoint(&w, &log.verifier(), None, &req(0, vec![], junk), 1),
            Err(WitnessError::Checkpoint(_))
        ));
    }

    #[test]
    fn evidence_of_consistent_checkpoints_proves_nothing() {
        let (log, _w, a, _) = witnessed_at_5();
        let ev = ForkEvidence {
            witnessed: signed(&log, &a, 5),
            offered: signed(&log, &a, 9),
            proof: a.consistency_proof(5, 9).unwrap(),
        };
        assert_eq!(ev.verify(&log.verifier()), Err(ForkError::Consistent));
        let bad = ForkEvidence {
            proof: vec![merkle::leaf_hash(b"x")],
            ..ev.clone()
        };
        assert_eq!(bad.verify(&log.verifier()), Err(ForkError::Unproven));
        for junk in [
            "",
            "isnad-fork-evidence/v1\n",
            "isnad-fork-evidence/v2\nwitnessed AA==\noffered AA==\n",
        ] {
            assert!(ForkEvidence::parse(junk.as_bytes()).is_err());
        }
    }
}
