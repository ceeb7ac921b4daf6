//! C2SP tlog-checkpoint bodies (<https://c2sp.org/tlog-checkpoint>) and
//! C2SP tlog-proof files (<https://c2sp.org/tlog-proof>).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use isnad_types::AgencyId;

use crate::merkle::{self, Hash, ProofError};
use crate::note::{self, NoteError, VerifierKey};

/// Most extension lines accepted in a checkpoint.
pub const MAX_EXTENSION_LINES: usize = 16;

/// The first line of a tlog-proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The checkpoint origin (and log key name) of an agency's audit log:
/// `<agency-id>/audit`, e.g. `iq.moi.ahtd/audit`.
pub fn origin_for(agency: &AgencyId) -> String {
    format!("{agency}/audit")
}

/// A tree head: origin, size and root hash, plus optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (equal to its key name).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash at `size`.
    pub root: Hash,
    /// Extension lines, each non-empty, without newlines.
    pub extensions: Vec<String>,
}

/// Why a checkpoint or proof file is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    // --- Malformed text ---
    /// The body does not have the required lines, or a line is malformed.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The proof file does not have the tlog-proof layout.
    #[error("malformed tlog-proof: {0}")]
    MalformedProof(&'static str),
    /// A hash line is not base64 of 32 bytes.
    #[error("bad hash: {0}")]
    Hash(#[from] ProofError),

    // --- Signature or identity problems ---
    /// The signed note did not verify under the log key.
    #[error("checkpoint signature: {0}")]
    Note(#[from] NoteError),
    /// The origin line is not the log key's name.
    #[error("checkpoint origin {found:?} is not the log key name {expected:?}")]
    Origin {
        /// The key name.
        expected: String,
        /// The origin line.
        found: String,
    },
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        note::check_key_name(origin)?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The note text: `origin\nsize\nbase64(root)\n` then extension lines.
    pub fn to_body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a note text as a checkpoint body.
    ///
    /// Rules: at least three lines, all non-empty and newline-terminated;
    /// origin non-empty; size in ASCII decimal without leading zeros (except
    /// `0`) fitting 64 bits; root standard padded base64 of exactly 32 bytes;
    /// at most [`MAX_EXTENSION_LINES`] extension lines.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("body must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or("");
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin line"));
        }
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing size line"))?;
        let size = parse_decimal(size).ok_or(CheckpointError::Malformed("bad size line"))?;
        let root = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root line"))?;
        let root = Hash::from_base64(root)?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(CheckpointError::Malformed("empty extension line"));
            }
            if extensions.len() == MAX_EXTENSION_LINES {
                return Err(CheckpointError::Malformed("too many extension lines"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint with the log key; the origin must be the key name.
    pub fn sign(&self, key: &note::SignerKey) -> Result<String, CheckpointError> {
        if self.origin != key.name() {
            return Err(CheckpointError::Origin {
                expected: key.name().to_owned(),
                found: self.origin.clone(),
            });
        }
        Ok(key.sign_note(&self.to_body())?)
    }
}

/// Opens a signed checkpoint: verifies the note under `log_key` (other
/// signatures, such as cosignatures from unknown witnesses, are ignored),
/// parses the body and checks that the origin is the key name.
pub fn open_checkpoint(note: &[u8], log_key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
    let v = note::open(note, std::slice::from_ref(log_key))?;
    let cp = Checkpoint::parse_body(&v.text)?;
    if cp.origin != log_key.name() {
        return Err(CheckpointError::Origin {
            expected: log_key.name().to_owned(),
            found: cp.origin,
        });
    }
    Ok(cp)
}

/// A C2SP tlog-proof: an entry index, its inclusion proof and the signed
/// checkpoint it is proven against, with optional unauthenticated extra data
/// (Isnad puts the entry bytes there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data (not authenticated by itself).
    pub extra: Option<Vec<u8>>,
    /// Zero-based entry index.
    pub index: u64,
    /// Inclusion proof, leaf sibling first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// Formats the proof:
    /// `c2sp.org/tlog-proof@v1\n[extra <b64>\n]index <N>\n<b64 hash>\n…\n\n<checkpoint>`.
    pub fn to_text(&self) -> String {
        let mut s = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a proof file. At most 64 hash lines; the checkpoint is not
    /// verified here (see [`TlogProof::verify`]).
    pub fn parse(text: &[u8]) -> Result<Self, CheckpointError> {
        if text.len() > note::MAX_NOTE_LEN + 8192 {
            return Err(CheckpointError::MalformedProof("proof file is too large"));
        }
        let text =
            std::str::from_utf8(text).map_err(|_| CheckpointError::MalformedProof("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(CheckpointError::MalformedProof(
                "no blank line before the checkpoint",
            ))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(CheckpointError::MalformedProof(
                "first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = lines
            .next()
            .ok_or(CheckpointError::MalformedProof("missing index"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(e)
                    .map_err(|_| CheckpointError::MalformedProof("extra is not base64"))?,
            );
            line = lines
                .next()
                .ok_or(CheckpointError::MalformedProof("missing index"))?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or(CheckpointError::MalformedProof("bad index line"))?;
        let mut hashes = Vec::new();
        for l in lines {
            if hashes.len() == 64 {
                return Err(CheckpointError::MalformedProof("more than 64 proof hashes"));
            }
            hashes.push(Hash::from_base64(l)?);
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Verifies the proof for `entry` (the entry bytes): the checkpoint's
    /// signature under `log_key`, then the inclusion of
    /// `leaf_hash(entry)` at `index` in the checkpoint's tree.
    pub fn verify(
        &self,
        entry: &[u8],
        log_key: &VerifierKey,
    ) -> Result<Checkpoint, CheckpointError> {
        self.verify_leaf_hash(&merkle::leaf_hash(entry), log_key)
    }

    /// As [`TlogProof::verify`], for an auditor who holds only the entry's
    /// leaf hash (`SHA-256(0x00 ‖ entry)`, RFC 9162 §2.1.1), not its bytes.
    pub fn verify_leaf_hash(
        &self,
        leaf: &Hash,
        log_key: &VerifierKey,
    ) -> Result<Checkpoint, CheckpointError> {
        let cp = open_checkpoint(self.checkpoint.as_bytes(), log_key)?;
        merkle::verify_inclusion(self.index, cp.size, leaf, &self.hashes, &cp.root)?;
        Ok(cp)
    }
}

/// ASCII decimal without sign or leading zeros (except "0"), fitting u64.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;
    use crate::note::SignerKey;

    #[test]
    fn body_round_trip_and_rules() {
        let root = merkle::leaf_hash(b"x");
        let mut cp = Checkpoint::new("iq.moi.ahtd/audit", 42, root).unwrap();
        cp.extensions.push("ext line".into());
        assert_eq!(Checkpoint::parse_body(&cp.to_body()).unwrap(), cp);
        let r = root.to_base64();
        for bad in [
            format!("o\n042\n{r}\n"),
            format!("o\n-1\n{r}\n"),
            format!("o\n1\n{r}"),
            format!("\n1\n{r}\n"),
            format!("o\n1\n{r}\n\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n18446744073709551616\n{r}\n"),
            "o\n1\n".to_owned(),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_checkpoint_and_proof_file() {
        let k = SignerKey::from_seed("iq.moi.ahtd/audit", note::TYPE_ED25519, [7; 32]).unwrap();
        let leaves: Vec<_> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
        let tree = merkle::Tree::from_leaves(leaves.iter().copied());
        let cp = Checkpoint::new(k.name(), 5, tree.root()).unwrap();
        let signed = cp.sign(&k).unwrap();
        assert_eq!(
            open_checkpoint(signed.as_bytes(), &k.verifier()).unwrap(),
            cp
        );
        let proof = TlogProof {
            extra: Some(vec![3]),
            index: 3,
            hashes: tree.inclusion_proof(3, 5).unwrap(),
            checkpoint: signed.clone(),
        };
        let parsed = TlogProof::parse(proof.to_text().as_bytes()).unwrap();
        assert_eq!(parsed, proof);
        parsed.verify(&[3], &k.verifier()).unwrap();
        assert!(parsed.verify(&[4], &k.verifier()).is_err());
        let other = SignerKey::from_seed("iq.moi.ahtd/audit", note::TYPE_ED25519, [8; 32]).unwrap();
        assert!(parsed.verify(&[3], &other.verifier()).is_err());
        let wrong_origin = Checkpoint::new("fr.mj.bepi/audit", 5, tree.root()).unwrap();
        assert!(wrong_origin.sign(&k).is_err());
    }
}
