//! Offline check of a checkpoint's witness cosignatures against a quorum
//! (normative: `spec/witness.md` §9).
//!
//! An auditor trusts a set of witness verifier keys (type 0x04,
//! C2SP tlog-cosignature) and a quorum `k`. A checkpoint note passes when it
//! is signed by the log's key and carries valid cosignatures by at least `k`
//! distinct keys of the set. A cosignature line that names a trusted
//! witness key but does not verify fails the check even if the quorum is
//! met without it: the note was altered, and a verifier must not ignore a
//! forged line of a key it trusts (C2SP signed-note). Lines by keys outside
//! the set are ignored, as signed-note requires.
//!
//! Sans-IO: the caller reads the note; this module only decides.

use crate::checkpoint::{open_checkpoint, Checkpoint};
use crate::note::{self, NoteError, VerifierKey};

/// A trusted witness key's valid cosignature on the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness key name.
    pub name: String,
    /// The witness key id.
    pub key_id: u32,
    /// The cosignature's timestamp (Unix seconds).
    pub timestamp: u64,
}

/// A checkpoint whose log signature and witness quorum were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumCheck {
    /// The checkpoint, signed by the log key.
    pub checkpoint: Checkpoint,
    /// The trusted witnesses that cosigned it, in the order the keys were given.
    pub cosigned_by: Vec<Cosignature>,
    /// The quorum that was required (never 0: 0 means every distinct key listed).
    pub quorum: usize,
    /// How many witness keys were trusted.
    pub listed: usize,
}

/// Why a checkpoint fails the witness quorum check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    // --- The auditor's inputs ---
    /// A trusted witness key is not a cosigner (type 0x04) key.
    #[error("witness key {name} is not a cosignature (type 0x04) key")]
    NotCosignerKey {
        /// The key name.
        name: String,
    },
    /// The quorum is larger than the number of trusted witness keys.
    #[error("quorum {quorum} is larger than the {listed} witness keys given")]
    QuorumTooLarge {
        /// The quorum asked for.
        quorum: usize,
        /// The number of witness keys.
        listed: usize,
    },

    // --- The checkpoint note ---
    /// The note is not a checkpoint signed by the log's key.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A cosignature line of a trusted witness key does not verify (or the
    /// note is malformed around it): the note was altered.
    #[error("cosignature of trusted witness {name} does not verify: {reason}")]
    BadCosignature {
        /// The witness key name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// Fewer valid cosignatures by trusted witnesses than the quorum.
    #[error(
        "cosigned by {have} of {listed} trusted witnesses, quorum {quorum}{}",
        if missing.is_empty() { String::new() } else { format!(" (no cosignature by {})", missing.join(", ")) }
    )]
    ShortOfQuorum {
        /// Valid cosignatures by trusted witnesses.
        have: usize,
        /// The quorum.
        quorum: usize,
        /// The number of trusted witness keys.
        listed: usize,
        /// Names of the trusted witnesses without a cosignature.
        missing: Vec<String>,
    },
}

/// Checks that `note` is a checkpoint signed by `log_key` and cosigned by
/// at least `quorum` distinct keys of `witnesses` (`quorum` 0 = every
/// distinct one), with no trusted witness's line failing to verify.
pub fn check_witness_quorum(
    note: &[u8],
    log_key: &VerifierKey,
    witnesses: &[VerifierKey],
    quorum: usize,
) -> Result<QuorumCheck, QuorumError> {
    let listed = witnesses.len();
    // 0 means every distinct key (witness.md §9: the same key twice counts once).
    let quorum = if quorum == 0 {
        let mut keys: Vec<(&str, u32)> = witnesses.iter().map(|w| (w.name(), w.key_id())).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    } else {
        quorum
    };
    if quorum > listed {
        return Err(QuorumError::QuorumTooLarge { quorum, listed });
    }
    if let Some(w) = witnesses
        .iter()
        .find(|w| w.key_type() != note::TYPE_COSIGNATURE_V1)
    {
        return Err(QuorumError::NotCosignerKey {
            name: w.name().to_owned(),
        });
    }
    let checkpoint =
        open_checkpoint(note, log_key).map_err(|e| QuorumError::Checkpoint(e.to_string()))?;
    let mut cosigned_by = Vec::new();
    // Keys (name and key id) without a line; two keys of one name are two keys.
    let mut missing: Vec<(String, u32)> = Vec::new();
    for w in witnesses {
        // The same key listed twice counts once.
        if cosigned_by
            .iter()
            .any(|c: &Cosignature| c.name == w.name() && c.key_id == w.key_id())
            || missing
                .iter()
                .any(|(n, id)| n == w.name() && *id == w.key_id())
        {
            continue;
        }
        match note::verify_cosignature(note, w) {
            Ok(timestamp) => cosigned_by.push(Cosignature {
                name: w.name().to_owned(),
                key_id: w.key_id(),
                timestamp,
            }),
            Err(NoteError::NoTrustedSignature { .. }) => {
                missing.push((w.name().to_owned(), w.key_id()));
            }
            Err(e) => {
                return Err(QuorumError::BadCosignature {
                    name: w.name().to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }
    let distinct = cosigned_by.len() + missing.len();
    if quorum > distinct {
        return Err(QuorumError::QuorumTooLarge {
            quorum,
            listed: distinct,
        });
    }
    if cosigned_by.len() < quorum {
        return Err(QuorumError::ShortOfQuorum {
            have: cosigned_by.len(),
            quorum,
            listed: distinct,
            missing: missing.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(QuorumCheck {
        checkpoint,
        cosigned_by,
        quorum,
        listed: distinct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Hash;
    use crate::note::SignerKey;

    fn key(name: &str, seed: u8, cosigner: bool) -> SignerKey {
        let ty = if cosigner {
            note::TYPE_COSIGNATURE_V1
        } else {
            note::TYPE_ED25519
        };
        SignerKey::from_seed(name, ty, [seed; 32]).expect("key")
    }

    struct Fixture {
        log: SignerKey,
        w: Vec<SignerKey>,
        note: String,
    }

    /// A checkpoint signed by the log and cosigned by witnesses `cosigners`.
    fn fixture(cosigners: &[usize]) -> Fixture {
        let log = key("iq.moj.ca/audit", 1, false);
        let w: Vec<SignerKey> = (0..3)
            .map(|i| key(&format!("w{i}.example/witness"), 10 + i as u8, true))
            .collect();
        let cp = Checkpoint::new("iq.moj.ca/audit", 42, Hash::from_bytes([7; 32])).expect("cp");
        let mut note = cp.sign(&log).expect("sign");
        let text = cp.to_body();
        for &i in cosigners {
            let line = w[i]
                .cosign(&text, 1_700_000_000 + i as u64)
                .expect("cosign");
            note.push_str(&line);
        }
        Fixture { log, w, note }
    }

    fn verifiers(f: &Fixture) -> Vec<VerifierKey> {
        f.w.iter().map(SignerKey::verifier).collect()
    }

    #[test]
    fn quorum_met_and_all_listed_by_default() {
        let f = fixture(&[0, 2]);
        let ok = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &verifiers(&f), 2)
            .expect("quorum 2 of 3");
        assert_eq!(ok.checkpoint.size, 42);
        let names: Vec<_> = ok.cosigned_by.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["w0.example/witness", "w2.example/witness"]);
        assert_eq!(ok.cosigned_by[1].timestamp, 1_700_000_002);
        // Quorum 0 means every listed key: w1 did not cosign.
        let err = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &verifiers(&f), 0)
            .expect_err("all 3 required");
        assert_eq!(
            err,
            QuorumError::ShortOfQuorum {
                have: 2,
                quorum: 3,
                listed: 3,
                missing: vec!["w1.example/witness".into()],
            }
        );
    }

    #[test]
    fn a_corrupted_cosignature_fails_even_when_the_quorum_holds_without_it() {
        let f = fixture(&[0, 1, 2]);
        // Flip one base64 character of w1's cosignature line.
        let mut lines: Vec<String> = f.note.split('\n').map(str::to_owned).collect();
        let i = lines
            .iter()
            .position(|l| l.contains("w1.example/witness"))
            .expect("w1 line");
        let mut chars: Vec<char> = lines[i].chars().collect();
        let at = chars.len() - 10;
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        lines[i] = chars.into_iter().collect();
        let bad = lines.join("\n");
        let err = check_witness_quorum(bad.as_bytes(), &f.log.verifier(), &verifiers(&f), 1)
            .expect_err("corrupted line of a trusted key");
        assert!(
            matches!(&err, QuorumError::BadCosignature { name, .. } if name == "w1.example/witness"),
            "{err:?}"
        );
    }

    #[test]
    fn cosignatures_by_keys_outside_the_set_do_not_count() {
        let f = fixture(&[0, 1]);
        let only_w2 = vec![f.w[2].verifier()];
        let err = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &only_w2, 1)
            .expect_err("w2 did not cosign");
        assert!(
            matches!(err, QuorumError::ShortOfQuorum { have: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn the_same_key_listed_twice_counts_once() {
        let f = fixture(&[0]);
        let twice = vec![f.w[0].verifier(), f.w[0].verifier()];
        let err = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &twice, 2)
            .expect_err("one distinct witness");
        assert_eq!(
            err,
            QuorumError::QuorumTooLarge {
                quorum: 2,
                listed: 1
            }
        );
    }

    #[test]
    fn a_second_key_of_a_witness_name_is_its_own_key() {
        // w1's earlier key (same name, other key id) made no line; its
        // current key cosigned. Listing both must count the current key.
        let f = fixture(&[1]);
        let old = key("w1.example/witness", 99, true).verifier();
        let both = vec![old.clone(), f.w[1].verifier()];
        let ok = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &both, 1)
            .expect("the current key cosigned");
        assert_eq!(ok.cosigned_by.len(), 1);
        assert_eq!(ok.listed, 2);
        // And its line is checked: a corrupted one fails the note.
        let mut lines: Vec<String> = f.note.split('\n').map(str::to_owned).collect();
        let i = lines
            .iter()
            .rposition(|l| l.contains("w1.example/witness"))
            .expect("w1 line");
        let mut chars: Vec<char> = lines[i].chars().collect();
        let at = chars.len() - 10;
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        lines[i] = chars.into_iter().collect();
        let bad = lines.join("\n");
        assert!(matches!(
            check_witness_quorum(bad.as_bytes(), &f.log.verifier(), &both, 1),
            Err(QuorumError::BadCosignature { .. })
        ));
        // Quorum 0 means every distinct key: one listed twice counts once.
        let twice = vec![f.w[1].verifier(), f.w[1].verifier()];
        let ok = check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &twice, 0)
            .expect("all (one) distinct keys cosigned");
        assert_eq!(ok.quorum, 1);
    }

    #[test]
    fn inputs_and_log_signature_are_checked() {
        let f = fixture(&[0, 1, 2]);
        let v = verifiers(&f);
        assert_eq!(
            check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &v, 4),
            Err(QuorumError::QuorumTooLarge {
                quorum: 4,
                listed: 3
            })
        );
        let not_cosigner = vec![f.log.verifier()];
        assert!(matches!(
            check_witness_quorum(f.note.as_bytes(), &f.log.verifier(), &not_cosigner, 1),
            Err(QuorumError::NotCosignerKey { .. })
        ));
        let other_log = key("iq.moj.ca/audit", 2, false).verifier();
        assert!(matches!(
            check_witness_quorum(f.note.as_bytes(), &other_log, &v, 1),
            Err(QuorumError::Checkpoint(_))
        ));
    }
}
