//! RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs.
//!
//! Leaf hash `SHA-256(0x00 ‖ entry)`, node hash `SHA-256(0x01 ‖ left ‖ right)`,
//! root of the empty tree `SHA-256("")`. Proof generation follows the
//! recursive `PATH` and `SUBPROOF` definitions of §2.1.3.1 and §2.1.4.1;
//! verification follows the iterative algorithms of §2.1.3.2 and §2.1.4.2.
//!
//! Rules beyond the RFC (normative in `spec/audit-log.md` §3):
//! * an index `>= size` is an error, for generation and verification;
//! * a consistency proof between equal sizes, or from size 0, is empty; it is
//!   valid iff the two roots are equal (equal sizes) or the first root is the
//!   empty-tree root (size 0); a non-empty proof in these cases is rejected;
//! * a first size larger than the second is an error.

use std::fmt;

use ring::digest;

/// A SHA-256 hash: a tree node, a leaf hash or a root.
///
/// Every hash read from outside (proof lines, tiles, checkpoints) passes
/// through [`Hash::from_slice`], which checks that it is exactly 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl Hash {
    /// Length of a hash in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Checks that `bytes` is exactly 32 bytes long and wraps it.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ProofError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ProofError::HashLength { len: bytes.len() })?;
        Ok(Self(arr))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex (64 characters).
    pub fn to_hex(&self) -> String {
        crate::hex_encode(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, ProofError> {
        let bytes = crate::hex_decode(s).ok_or(ProofError::HashLength { len: s.len() / 2 })?;
        Self::from_slice(&bytes)
    }

    /// Standard base64 with padding (RFC 4648 §4), as in checkpoints and proofs.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard padded base64 that must decode to exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, ProofError> {
        use base64::Engine as _;
        // 32 bytes are 44 base64 characters; refuse anything longer before decoding.
        if s.len() != 44 {
            return Err(ProofError::HashLength {
                len: s.len() * 3 / 4,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| ProofError::HashEncoding)?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a proof could not be generated or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    // --- The caller asked for something that does not exist ---
    /// The leaf index is not below the tree size.
    #[error("index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree size of a consistency proof exceeds the second, or a
    /// size exceeds the tree that is available.
    #[error("tree size {first} is larger than tree size {second}")]
    SizeOrder {
        /// The smaller size that should have been.
        first: u64,
        /// The larger size that should have been.
        second: u64,
    },

    // --- The proof material is malformed ---
    /// A hash is not 32 bytes long.
    #[error("a hash is {len} bytes long; SHA-256 hashes are 32 bytes")]
    HashLength {
        /// The length found.
        len: usize,
    },
    /// A hash is not valid standard padded base64 or hex.
    #[error("a hash is not valid base64")]
    HashEncoding,
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,

    // --- The proof does not prove the claim ---
    /// The recomputed root differs from the expected root.
    #[error("the proof does not lead to the expected root")]
    Mismatch,
}

/// The leaf hash of an entry: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    to_hash(ctx.finish())
}

/// An interior node hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    to_hash(digest::digest(&digest::SHA256, &buf))
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    to_hash(digest::digest(&digest::SHA256, b""))
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
///
/// `proof` is ordered from the leaf's sibling up to the root's child.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between tree sizes `first <= second`
/// (RFC 9162 §2.1.4.2, with the size-0 and equal-size rules of the module docs).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        let ok = if first == second {
            first_root == second_root
        } else {
            *first_root == empty_root()
        };
        return if ok {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let (fr, sr) = consistency_roots(first, second, first_root, proof)?;
    if fr != *first_root || sr != *second_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// The two roots a consistency proof between `0 < first < second` leads
/// to: RFC 9162 §2.1.4.2 up to, but not including, the final comparison.
///
/// When `first` is an exact power of two the proof does not carry the first
/// root and `first_root` is used as the subtree it starts from (so the first
/// returned root is `first_root`); otherwise `first_root` is ignored and both
/// roots come from the proof alone. A proof whose second root equals a
/// signed root but whose first root differs from a signed root of size
/// `first` shows that the log signed two histories that do not extend each
/// other (fork evidence, `spec/witness.md` §5).
pub fn consistency_roots(
    first: u64,
    second: u64,
    first_root: &Hash,
    proof: &[Hash],
) -> Result<(Hash, Hash), ProofError> {
    if first == 0 || first >= second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // Step 2: if `first` is an exact power of two, prepend first_root.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok((fr, sr))
}

/// An in-memory Merkle tree that keeps every complete subtree hash.
///
/// `levels[l][i]` is the hash of the complete subtree of `2^l` leaves
/// starting at leaf `i·2^l`. Appending is amortised O(1) (worst case
/// O(log n)); the root, inclusion and consistency proofs for *any* size up
/// to the current one are O(log n) hash operations. Memory is about 64
/// bytes per leaf.
#[derive(Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree").field("size", &self.size()).finish()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a tree from leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash and returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let index = self.levels[0].len() as u64;
        self.levels[0].push(leaf);
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
        index
    }

    /// Drops every leaf at index `size` and above.
    pub fn truncate(&mut self, size: u64) {
        for (level, hashes) in self.levels.iter_mut().enumerate() {
            hashes.truncate(usize::try_from(size >> level).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// The hash of the complete subtree at `level` with index `index`
    /// (leaves `index·2^level .. (index+1)·2^level`), if it is complete.
    pub fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let l = self.levels.get(usize::try_from(level).ok()?)?;
        l.get(usize::try_from(index).ok()?).copied()
    }

    /// Number of complete subtrees at `level`.
    pub fn level_len(&self, level: u32) -> u64 {
        usize::try_from(level)
            .ok()
            .and_then(|l| self.levels.get(l))
            .map_or(0, |l| l.len() as u64)
    }

    /// The root of the current tree.
    pub fn root(&self) -> Hash {
        self.subtree(0, self.size())
    }

    /// The root of the tree as it was at `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOrder {
                first: size,
                second: self.size(),
            });
        }
        Ok(self.subtree(0, size))
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves
    /// (RFC 9162 §2.1.3.1 `PATH(m, D[n])`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOrder {
                first: size,
                second: self.size(),
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out);
        Ok(out)
    }

    /// Consistency proof from size `first` to size `second`
    /// (RFC 9162 §2.1.4.1 `PROOF(m, D[n])`; empty for `first` 0 or `first == second`).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        if first > second {
            return Err(ProofError::SizeOrder { first, second });
        }
        if second > self.size() {
            return Err(ProofError::SizeOrder {
                first: second,
                second: self.size(),
            });
        }
        let mut out = Vec::new();
        if first > 0 && first < second {
            self.subproof(first, 0, second, true, &mut out);
        }
        Ok(out)
    }

    /// `MTH(D[lo:hi])` where `lo` is a multiple of the largest power of two
    /// not exceeding `hi - lo` (always true in the RFC's recursions).
    fn subtree(&self, lo: u64, hi: u64) -> Hash {
        let n = hi - lo;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros();
            if let Some(h) = self.node(level, lo >> level) {
                return h;
            }
        }
        let k = split(n);
        node_hash(&self.subtree(lo, lo + k), &self.subtree(lo + k, hi))
    }

    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) {
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

    fn subproof(&self, m: u64, lo: u64, hi: u64, b: bool, out: &mut Vec<Hash>) {
        let n = hi - lo;
        if m == n {
            if !b {
                out.push(self.subtree(lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, lo, lo + k, b, out);
            out.push(self.subtree(lo + k, hi));
        } else {
            self.subproof(m - k, lo + k, hi, false, out);
            out.push(self.subtree(lo, lo + k));
        }
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Hash(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;

    // Naive reference: the RFC's recursive definitions over the leaf list.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = split(d.len() as u64) as usize;
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        if m == d.len() {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(d.len() as u64) as usize;
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    fn flip(h: &Hash) -> Hash {
        let mut b = *h.as_bytes();
        b[7] ^= 0x10;
        Hash::from_bytes(b)
    }

    #[test]
    fn roots_and_inclusion_proofs_match_the_naive_reference_for_sizes_1_to_64() {
        let all = leaves(64);
        let tree = Tree::from_leaves(all.iter().copied());
        for n in 1..=64u64 {
            let d = &all[..n as usize];
            let root = mth(d);
            assert_eq!(tree.root_at(n).unwrap(), root, "root {n}");
            for m in 0..n {
                let proof = tree.inclusion_proof(m, n).unwrap();
                assert_eq!(proof, naive_path(m as usize, d), "path {m}/{n}");
                verify_inclusion(m, n, &d[m as usize], &proof, &root).unwrap();
                // Wrong leaf, wrong index, wrong size, tampered, short, long.
                let other = d[((m + 1) % n) as usize];
                if n > 1 {
                    assert!(verify_inclusion(m, n, &other, &proof, &root).is_err());
                    assert!(
                        verify_inclusion((m + 1) % n, n, &d[m as usize], &proof, &root).is_err()
                    );
                    let mut bad = proof.clone();
                    bad[0] = flip(&bad[0]);
                    assert!(verify_inclusion(m, n, &d[m as usize], &bad, &root).is_err());
                    let short = &proof[..proof.len() - 1];
                    assert!(verify_inclusion(m, n, &d[m as usize], short, &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(m, n, &d[m as usize], &long, &root).is_err());
                assert_eq!(
                    verify_inclusion(n, n, &d[m as usize], &proof, &root),
                    Err(ProofError::IndexOutOfRange { index: n, size: n })
                );
            }
            assert!(tree.inclusion_proof(n, n).is_err());
        }
    }

    #[test]
    fn consistency_proofs_match_the_naive_reference_for_every_pair_up_to_64() {
        let all = leaves(64);
        let tree = Tree::from_leaves(all.iter().copied());
        for n in 0..=64u64 {
            let rn = mth(&all[..n as usize]);
            for m in 0..=n {
                let rm = mth(&all[..m as usize]);
                let proof = tree.consistency_proof(m, n).unwrap();
                let expect = if m == 0 || m == n {
                    vec![]
                } else {
                    naive_subproof(m as usize, &all[..n as usize], true)
                };
                assert_eq!(proof, expect, "proof {m}->{n}");
                verify_consistency(m, n, &rm, &rn, &proof).unwrap();
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    let last = bad.len() - 1;
                    bad[last] = flip(&bad[last]);
                    assert!(
                        verify_consistency(m, n, &rm, &rn, &bad).is_err(),
                        "{m}->{n}"
                    );
                    assert!(verify_consistency(m, n, &rm, &rn, &proof[1..]).is_err());
                    let mut long = proof.clone();
                    long.push(rn);
                    assert!(verify_consistency(m, n, &rm, &rn, &long).is_err());
                    assert!(verify_consistency(m, n, &flip(&rm), &rn, &proof).is_err());
                    assert!(verify_consistency(m, n, &rm, &flip(&rn), &proof).is_err());
                }
                if m > 0 && m < n {
                    assert!(verify_consistency(m, n, &rm, &rn, &[]).is_err());
                }
            }
        }
    }

    #[test]
    fn degenerate_consistency_rules() {
        let all = leaves(8);
        let t = Tree::from_leaves(all.iter().copied());
        let r4 = t.root_at(4).unwrap();
        let r5 = t.root_at(5).unwrap();
        assert!(verify_consistency(4, 4, &r4, &r4, &[]).is_ok());
        assert!(verify_consistency(4, 4, &r4, &r5, &[]).is_err());
        assert!(verify_consistency(4, 4, &r4, &r4, &[r4]).is_err());
        assert!(verify_consistency(0, 8, &empty_root(), &t.root(), &[]).is_ok());
        assert!(verify_consistency(0, 8, &r4, &t.root(), &[]).is_err());
        assert!(verify_consistency(0, 8, &empty_root(), &t.root(), &[r4]).is_err());
        assert_eq!(
            verify_consistency(5, 4, &r5, &r4, &[]),
            Err(ProofError::SizeOrder {
                first: 5,
                second: 4
            })
        );
        assert!(t.consistency_proof(5, 9).is_err());
    }

    #[test]
    fn truncate_then_regrow_matches_fresh_tree() {
        let all = leaves(40);
        for cut in 0..40u64 {
            let mut t = Tree::from_leaves(all.iter().copied());
            t.truncate(cut);
            assert_eq!(t.size(), cut);
            assert_eq!(t.root(), mth(&all[..cut as usize]));
            for l in &all[cut as usize..] {
                t.push(*l);
            }
            assert_eq!(t.root(), mth(&all));
        }
    }

    #[test]
    fn hash_parsing_checks_length() {
        assert_eq!(
            Hash::from_slice(&[0; 31]),
            Err(ProofError::HashLength { len: 31 })
        );
        assert!(Hash::from_slice(&[0; 33]).is_err());
        assert!(Hash::from_base64("AAAA").is_err());
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()).unwrap(), h);
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
    }
}
