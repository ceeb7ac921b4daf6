//! The hash tree over ciphertext chunks (spec/attachments.md §5).
//!
//! The tree shape and the inclusion proofs are those of RFC 9162 §2.1
//! (`MTH`, `PATH`, and the verification algorithm of §2.1.3.2); only the
//! two domain-separation bytes differ from the audit log's, so no hash of
//! an attachment tree is ever a valid hash of an audit-log tree or the
//! other way round:
//!
//! ```text
//!   leaf  = SHA-256(0x02 || ciphertext chunk)       (audit log: 0x00)
//!   node  = SHA-256(0x03 || left || right)          (audit log: 0x01)
//! ```
//!
//! A tree always has at least one leaf (an empty attachment has one chunk:
//! its 16-byte tag), so there is no empty-tree hash.

use std::fmt;

use ring::digest::{Context, SHA256};

use crate::error::DecodeError;

/// First byte hashed for a leaf (a ciphertext chunk).
pub const LEAF_PREFIX: u8 = 0x02;
/// First byte hashed for an interior node.
pub const NODE_PREFIX: u8 = 0x03;
/// Most hashes in an inclusion proof: a tree has at most 2^32 leaves.
pub const MAX_PROOF_HASHES: usize = 32;

/// A SHA-256 hash in the chunk tree: a leaf, an interior node or the root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeHash([u8; 32]);

impl TreeHash {
    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::hex(&self.0)
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({})", self.to_hex())
    }
}

/// The leaf hash of one ciphertext chunk (tag included).
pub fn leaf_hash(chunk: &[u8]) -> TreeHash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(chunk);
    finish(ctx)
}

/// The hash of an interior node.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(&left.0);
    ctx.update(&right.0);
    finish(ctx)
}

/// Computes the root from leaf hashes pushed in order, in O(log n) memory
/// (the roots of the perfect subtrees seen so far).
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Roots of perfect subtrees, largest (leftmost) first.
    stack: Vec<TreeHash>,
    size: u64,
}

impl RootBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: TreeHash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            // A perfect subtree of the same height sits on the stack: merge.
            let Some(left) = self.stack.pop() else { break };
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 root of the leaves pushed so far; `None` before the
    /// first leaf.
    pub fn root(&self) -> Option<TreeHash> {
        let mut it = self.stack.iter().rev();
        let mut acc = *it.next()?;
        for left in it {
            acc = node_hash(left, &acc);
        }
        Some(acc)
    }
}

/// Every node of a chunk tree, for a sender or a relay that answers
/// requests for single chunks with their inclusion proofs. Holds about
/// 64 bytes per chunk (all leaf hashes and the perfect subtrees above
/// them): 2.5 MiB for a 10 GiB attachment in 256 KiB chunks.
#[derive(Debug, Clone)]
pub struct ChunkTree {
    /// `levels[h][j]`: root of the perfect subtree of 2^h leaves starting
    /// at leaf `j * 2^h`.
    levels: Vec<Vec<TreeHash>>,
}

impl ChunkTree {
    /// Builds the tree from all leaf hashes, in chunk order; `None` if
    /// there are none (every attachment has at least one chunk).
    pub fn from_leaves(leaves: Vec<TreeHash>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(last) = levels.last() {
            if last.len() < 2 {
                break;
            }
            let up: Vec<TreeHash> = last
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Some(Self { levels })
    }

    /// Number of leaves (chunks).
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root.
    pub fn root(&self) -> TreeHash {
        self.subtree(0, self.levels[0].len())
    }

    /// The inclusion proof of chunk `index` (RFC 9162 `PATH`); `None` if
    /// `index` is not a chunk of this tree.
    pub fn proof(&self, index: u64) -> Option<InclusionProof> {
        let n = self.levels[0].len();
        let m = usize::try_from(index).ok().filter(|m| *m < n)?;
        let mut hashes = Vec::new();
        self.path(m, 0, n, &mut hashes);
        Some(InclusionProof { hashes })
    }

    /// `PATH(m, D[lo..hi])`, appended leaf-side first.
    fn path(&self, m: usize, lo: usize, hi: usize, out: &mut Vec<TreeHash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, lo, lo + k, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.path(m - k, lo + k, hi, out);
            out.push(self.subtree(lo, lo + k));
        }
    }

    /// `MTH(D[lo..hi])` from the stored perfect subtrees.
    fn subtree(&self, lo: usize, hi: usize) -> TreeHash {
        let n = hi - lo;
        if n.is_power_of_two() {
            let h = n.trailing_zeros() as usize;
            if lo.is_multiple_of(n) {
                if let Some(node) = self.levels.get(h).and_then(|l| l.get(lo >> h)) {
                    return *node;
                }
            }
        }
        let k = split(n);
        node_hash(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// An RFC 9162 inclusion proof of one chunk: the sibling hashes from the
/// leaf up to the root. On the wire it is the concatenation of the hashes
/// (32 bytes each, at most [`MAX_PROOF_HASHES`]), with no header: its
/// length follows from the chunk index and the number of chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    hashes: Vec<TreeHash>,
}

impl InclusionProof {
    /// Parses the wire form: a multiple of 32 bytes, at most
    /// [`MAX_PROOF_HASHES`] hashes. Whether the length fits a given chunk
    /// is checked when the proof is verified.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if !bytes.len().is_multiple_of(32) || bytes.len() / 32 > MAX_PROOF_HASHES {
            return Err(DecodeError::ProofLength { len: bytes.len() });
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                TreeHash(h)
            })
            .collect();
        Ok(Self { hashes })
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.0).collect()
    }

    /// The sibling hashes, leaf side first.
    pub fn hashes(&self) -> &[TreeHash] {
        &self.hashes
    }

    /// Whether `leaf` is leaf `index` of the tree of `size` leaves with
    /// this `root` (RFC 9162 §2.1.3.2; a proof of the wrong length fails).
    pub fn verifies(&self, index: u64, size: u64, leaf: &TreeHash, root: &TreeHash) -> bool {
        if index >= size {
            return false;
        }
        let (mut fnode, mut snode) = (index, size - 1);
        let mut r = *leaf;
        for p in &self.hashes {
            if snode == 0 {
                return false;
            }
            if fnode & 1 == 1 || fnode == snode {
                r = node_hash(p, &r);
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        snode == 0 && r == *root
    }
}

fn finish(ctx: Context) -> TreeHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    TreeHash(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `MTH` straight from RFC 9162 §2.1.1, for comparison.
    fn mth(leaves: &[TreeHash]) -> TreeHash {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = split(leaves.len());
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    #[test]
    fn builder_tree_and_proofs_agree_with_the_rfc_definition_for_every_size_to_70() {
        for n in 1..=70u8 {
            let leaves: Vec<TreeHash> = (0..n).map(|i| leaf_hash(&[i])).collect();
            let mut b = RootBuilder::new();
            for l in &leaves {
                b.push(*l);
            }
            let want = mth(&leaves);
            assert_eq!(b.root(), Some(want), "builder, n={n}");
            let tree = ChunkTree::from_leaves(leaves.clone()).unwrap();
            assert_eq!(tree.root(), want, "tree, n={n}");
            for (i, leaf) in leaves.iter().enumerate() {
                let p = tree.proof(i as u64).unwrap();
                let p = InclusionProof::decode(&p.encode()).unwrap();
                assert!(p.verifies(i as u64, n.into(), leaf, &want), "n={n} i={i}");
                // The same proof names no other position or tree size.
                let other = (i as u64 + 1) % u64::from(n);
                if n > 1 {
                    assert!(!p.verifies(other, n.into(), leaf, &want), "n={n} i={i}");
                }
                // (A proof may also fit a larger tree with the same left
                // part; the root then differs, and the size is declared.)
                assert!(!p.verifies(i as u64, n.into(), &leaf_hash(b"x"), &want));
            }
            assert!(tree.proof(n.into()).is_none());
        }
    }

    #[test]
    fn leaf_and_node_hashes_are_not_the_audit_logs() {
        // The audit log's leaf hash of the same bytes (RFC 9162: 0x00 prefix).
        let log_leaf = ring::digest::digest(&SHA256, &[0x00, 0xab]);
        assert_ne!(leaf_hash(&[0xab]).as_bytes()[..], log_leaf.as_ref()[..]);
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut v = vec![0x01];
        v.extend_from_slice(a.as_bytes());
        v.extend_from_slice(b.as_bytes());
        let log_node = ring::digest::digest(&SHA256, &v);
        assert_ne!(node_hash(&a, &b).as_bytes()[..], log_node.as_ref()[..]);
    }

    #[test]
    fn proof_decoding_bounds_the_length() {
        assert!(InclusionProof::decode(&[0; 31]).is_err());
        assert!(InclusionProof::decode(&[0; 33 * 32]).is_err());
        assert_eq!(InclusionProof::decode(&[]).unwrap().hashes().len(), 0);
        assert_eq!(InclusionProof::decode(&[0; 64]).unwrap().hashes().len(), 2);
    }
}
