//! A Merkle tree whose history lives in full tiles in storage and whose
//! right edge lives in memory: roots and proofs at any size, reading hashes
//! through a [`TileReader`] and checking every tile it reads.
//!
//! Storage holds, for every tile level `L` (tree level `8L`), the full tiles
//! of 256 hashes (C2SP tlog-tiles). Memory holds what no full tile holds
//! yet: the leaves after the last full level-0 tile, and at each level
//! above, the hashes of the current, incomplete tile. That is at most
//! 255 hashes per level plus the leaves not yet tiled, whatever the size.
//!
//! A tile read from storage is checked before use: its root (its 256 hashes
//! hashed up 8 levels) must be the hash one tile level up, which is either
//! in memory or in a tile checked the same way. A damaged or replaced tile
//! is therefore found when it is read ([`TileError::Mismatch`]), never used.
//! Checked tiles are kept in a bounded cache with all their inner levels,
//! so a proof costs a few tile reads at most and none when they are cached.
//!
//! The shape is that of Go sumdb's `tlog.HashReader` and Tessera's storage
//! drivers: the math asks for a tile by its coordinates; where tiles live
//! (files, object storage, a database) is the reader's business.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::merkle::{node_hash, Hash, ProofError};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};

/// Full tiles kept in the cache (each 511 hashes, about 16 KiB).
pub const TILE_CACHE: usize = 256;

/// Reads full hash tiles from storage.
pub trait TileReader {
    /// The storage's error; a tile that does not check becomes one through
    /// `From<TileError>`.
    type Error: From<TileError>;
    /// The bytes of the full hash tile at tile `level`, `index` (256 hashes
    /// of 32 bytes when intact).
    fn read_tile(&self, level: u32, index: u64) -> Result<Vec<u8>, Self::Error>;
}

/// Why a tile or a request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    // --- Storage holds something that is not the log ---
    /// A full tile does not have 256 hashes.
    #[error("hash tile {level}/{index} is {len} bytes long, not 8192")]
    Length {
        /// Tile level.
        level: u32,
        /// Tile index.
        index: u64,
        /// Bytes found.
        len: usize,
    },
    /// A full tile's hashes do not hash to the hash above it.
    #[error("hash tile {level}/{index} does not match the tree above it")]
    Mismatch {
        /// Tile level.
        level: u32,
        /// Tile index.
        index: u64,
    },

    // --- The caller asked for something outside the tree ---
    /// A size or index beyond the tree.
    #[error("{0}")]
    Proof(#[from] ProofError),
}

/// The tree: full tiles in storage, the right edge in memory.
#[derive(Clone, Default)]
pub struct TiledTree {
    /// Leaves.
    size: u64,
    /// Leaves covered by full level-0 tiles in storage (a multiple of 256).
    tiled: u64,
    /// `rows[0]`: the leaves `tiled..size`. `rows[L]`, `L >= 1`: the hashes
    /// at tree level `8L` from the first one not in a full tile in storage
    /// up to `tiled >> 8L`.
    rows: Vec<Vec<Hash>>,
    cache: Cache,
}

impl std::fmt::Debug for TiledTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiledTree")
            .field("size", &self.size)
            .field("tiled", &self.tiled)
            .finish()
    }
}

/// A full tile to store: tile level, index and its 256 hashes.
pub type FullTile = (u32, u64, Vec<Hash>);

/// The full tiles that storing the leaves up to a size adds, computed
/// from a [`TiledTree::snapshot`] away from the tree (so a caller holding
/// the tree under a lock hashes outside it): store [`PreparedTiles::tiles`],
/// then [`TiledTree::commit_prepared`].
#[derive(Debug, Clone)]
pub struct PreparedTiles {
    /// The tiles to store, level 0 first.
    pub tiles: Vec<FullTile>,
    /// The tree's `tiled` when the snapshot was taken.
    from: u64,
    /// Leaves covered once these tiles are stored.
    tiled: u64,
    /// The snapshot's rows after moving the tiles out.
    rows: Vec<Vec<Hash>>,
}

impl TiledTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            rows: vec![Vec::new()],
            ..Self::default()
        }
    }

    /// The tree of `tiled` leaves (a multiple of 256) whose full tiles are
    /// in storage, given the partial tiles at levels 1, 2, … of that size
    /// (`partial[L - 1]` holds `(tiled >> 8L) % 256` hashes).
    pub fn from_edge(tiled: u64, partial: Vec<Vec<Hash>>) -> Result<Self, ProofError> {
        if !tiled.is_multiple_of(TILE_WIDTH) {
            return Err(ProofError::IndexOutOfRange {
                index: tiled,
                size: tiled,
            });
        }
        let mut rows = vec![Vec::new()];
        rows.extend(partial);
        let mut t = Self {
            size: tiled,
            tiled,
            rows,
            cache: Cache::default(),
        };
        t.trim_rows();
        let levels = t.rows.len().max(8);
        for l in 1..levels {
            let want = (tiled >> (TILE_HEIGHT * l as u32).min(63)) % TILE_WIDTH;
            let got = t.rows.get(l).map_or(0, Vec::len) as u64;
            if got != want {
                return Err(ProofError::IndexOutOfRange {
                    index: got,
                    size: want,
                });
            }
        }
        Ok(t)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Leaves covered by full tiles in storage.
    pub fn tiled(&self) -> u64 {
        self.tiled
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.rows[0].push(leaf);
        self.size += 1;
    }

    /// Drops the leaves from `size` on; leaves in stored tiles stay.
    pub fn truncate(&mut self, size: u64) {
        let size = size.max(self.tiled);
        if size < self.size {
            self.rows[0].truncate((size - self.tiled) as usize);
            self.size = size;
        }
    }

    /// The full tiles that storing everything up to `upto` leaves adds
    /// (level 0 first), without changing the tree: store them, then call
    /// [`TiledTree::commit_tiles`] with the same `upto`.
    pub fn pending_tiles(&self, upto: u64) -> Vec<FullTile> {
        let mut sim = self.clone();
        sim.cache = Cache::default();
        sim.advance(upto)
    }

    /// Records that the tiles [`TiledTree::pending_tiles`] returned for
    /// `upto` are in storage; their hashes leave memory.
    pub fn commit_tiles(&mut self, upto: u64) {
        self.advance(upto);
    }

    /// A copy of the tree's right edge up to `upto` leaves, without the
    /// tile cache: at most 255 hashes per level and the leaves not yet in
    /// tiles, copied, nothing hashed. [`TiledTree::prepare`] it.
    pub fn snapshot(&self, upto: u64) -> TiledTree {
        let upto = upto.clamp(self.tiled, self.size);
        let mut rows = Vec::with_capacity(self.rows.len());
        rows.push(self.rows[0][..(upto - self.tiled) as usize].to_vec());
        rows.extend(self.rows[1..].iter().cloned());
        TiledTree {
            size: upto,
            tiled: self.tiled,
            rows,
            cache: Cache::default(),
        }
    }

    /// The full tiles a [`TiledTree::snapshot`] completes, with what
    /// committing them needs (the hashing happens here, once).
    pub fn prepare(mut self) -> PreparedTiles {
        let from = self.tiled;
        let tiles = self.advance(self.size);
        PreparedTiles {
            tiles,
            from,
            tiled: self.tiled,
            rows: self.rows,
        }
    }

    /// Records that prepared tiles are in storage, without hashing again:
    /// the tree's leaves before their end leave memory and the rows above
    /// become the prepared ones (only storing tiles changes those). If
    /// tiles were committed since the snapshot, or the tree was cut below
    /// them, it advances the tree as [`TiledTree::commit_tiles`] does.
    pub fn commit_prepared(&mut self, prepared: PreparedTiles) {
        if prepared.from != self.tiled || prepared.tiled > self.size {
            self.advance(prepared.tiled);
            return;
        }
        self.rows[0].drain(..(prepared.tiled - self.tiled) as usize);
        self.rows.truncate(1);
        self.rows.extend(prepared.rows.into_iter().skip(1));
        self.tiled = prepared.tiled;
    }

    /// The partial tiles at levels 1, 2, … of the tree at [`Self::tiled`]
    /// leaves: `(level, index, hashes)` for each non-empty one. With the
    /// full tiles they make the tree at that size (see
    /// [`TiledTree::from_edge`]).
    pub fn edge(&self) -> Vec<(u32, u64, Vec<Hash>)> {
        (1..self.rows.len())
            .filter(|&l| !self.rows[l].is_empty())
            .map(|l| {
                let level = l as u32;
                let n = self.tiled >> (TILE_HEIGHT * level);
                (level, n / TILE_WIDTH, self.rows[l].clone())
            })
            .collect()
    }

    /// The hash of the complete subtree at tree `level`, `index`.
    pub fn node<R: TileReader>(
        &mut self,
        reader: &R,
        level: u32,
        index: u64,
    ) -> Result<Hash, R::Error> {
        let lo = index.checked_shl(level).unwrap_or(u64::MAX);
        let hi = (index + 1).checked_shl(level).unwrap_or(u64::MAX);
        if level >= 64 || hi > self.size || lo >= hi {
            return Err(TileError::Proof(ProofError::IndexOutOfRange {
                index,
                size: self.size >> level.min(63),
            })
            .into());
        }
        if hi <= self.tiled {
            let l = level / TILE_HEIGHT;
            let r = level % TILE_HEIGHT;
            let first = index << r;
            let start = self.row_start(l);
            if first < start {
                let tile = self.tile(reader, l, first / TILE_WIDTH)?;
                return Ok(tile.at(r, index % (TILE_WIDTH >> r)));
            }
            if l > 0 {
                let row = &self.rows[l as usize];
                let from = (first - start) as usize;
                return Ok(hash_up(&row[from..from + (1usize << r)]));
            }
        }
        if lo >= self.tiled {
            let from = (lo - self.tiled) as usize;
            return Ok(hash_up(&self.rows[0][from..from + (1usize << level)]));
        }
        let left = self.node(reader, level - 1, 2 * index)?;
        let right = self.node(reader, level - 1, 2 * index + 1)?;
        Ok(node_hash(&left, &right))
    }

    /// The root of the tree at `size` leaves.
    pub fn root_at<R: TileReader>(&mut self, reader: &R, size: u64) -> Result<Hash, R::Error> {
        self.check_size(size)?;
        self.subtree(reader, 0, size)
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves
    /// (RFC 9162 §2.1.3.1).
    pub fn inclusion_proof<R: TileReader>(
        &mut self,
        reader: &R,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, R::Error> {
        self.check_size(size)?;
        if index >= size {
            return Err(TileError::Proof(ProofError::IndexOutOfRange { index, size }).into());
        }
        let mut out = Vec::new();
        self.path(reader, index, 0, size, &mut out)?;
        Ok(out)
    }

    /// Consistency proof from `first` to `second` leaves (RFC 9162
    /// §2.1.4.1; empty for `first` 0 or `first == second`).
    pub fn consistency_proof<R: TileReader>(
        &mut self,
        reader: &R,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, R::Error> {
        if first > second {
            return Err(TileError::Proof(ProofError::SizeOrder { first, second }).into());
        }
        self.check_size(second)?;
        let mut out = Vec::new();
        if first > 0 && first < second {
            self.subproof(reader, first, 0, second, true, &mut out)?;
        }
        Ok(out)
    }

    /// The 256 leaf hashes of full level-0 tile `index` in storage,
    /// checked.
    pub fn leaf_tile<R: TileReader>(
        &mut self,
        reader: &R,
        index: u64,
    ) -> Result<Vec<Hash>, R::Error> {
        if (index + 1) * TILE_WIDTH > self.tiled {
            return Err(TileError::Proof(ProofError::IndexOutOfRange {
                index,
                size: self.tiled / TILE_WIDTH,
            })
            .into());
        }
        Ok(self.tile(reader, 0, index)?.levels[0].clone())
    }

    fn check_size(&self, size: u64) -> Result<(), TileError> {
        if size > self.size {
            return Err(ProofError::SizeOrder {
                first: size,
                second: self.size,
            }
            .into());
        }
        Ok(())
    }

    /// Index (at tree level `8l`) of the first hash not in a full tile in
    /// storage.
    fn row_start(&self, l: u32) -> u64 {
        let shift = TILE_HEIGHT * (l + 1);
        if shift >= 64 {
            return 0;
        }
        (self.tiled >> shift) * TILE_WIDTH
    }

    fn trim_rows(&mut self) {
        while self.rows.len() > 1 && self.rows.last().is_some_and(Vec::is_empty) {
            self.rows.pop();
        }
    }

    /// Moves every complete tile up to `upto` leaves out of memory and
    /// returns them.
    fn advance(&mut self, upto: u64) -> Vec<FullTile> {
        let mut out = Vec::new();
        let upto = upto.min(self.size);
        while self.tiled + TILE_WIDTH <= upto {
            let leaves: Vec<Hash> = self.rows[0].drain(..TILE_WIDTH as usize).collect();
            let index = self.tiled / TILE_WIDTH;
            self.tiled += TILE_WIDTH;
            let mut carry = hash_up(&leaves);
            out.push((0, index, leaves));
            let mut l = 1usize;
            loop {
                if self.rows.len() <= l {
                    self.rows.push(Vec::new());
                }
                self.rows[l].push(carry);
                if self.rows[l].len() as u64 == TILE_WIDTH {
                    let hashes = std::mem::take(&mut self.rows[l]);
                    carry = hash_up(&hashes);
                    let n = self.tiled >> (TILE_HEIGHT * l as u32);
                    out.push((l as u32, n / TILE_WIDTH - 1, hashes));
                    l += 1;
                } else {
                    break;
                }
            }
        }
        out
    }

    /// The checked full tile at tile level `l`, `index`.
    fn tile<R: TileReader>(
        &mut self,
        reader: &R,
        l: u32,
        index: u64,
    ) -> Result<Arc<Tile>, R::Error> {
        if let Some(t) = self.cache.get(l, index) {
            return Ok(t);
        }
        let bytes = reader.read_tile(l, index)?;
        if bytes.len() != 32 * TILE_WIDTH as usize {
            return Err(TileError::Length {
                level: l,
                index,
                len: bytes.len(),
            }
            .into());
        }
        let hashes: Vec<Hash> = bytes
            .chunks_exact(32)
            .map(|c| Hash::from_slice(c).map_err(TileError::Proof))
            .collect::<Result<_, _>>()?;
        let tile = Tile::new(hashes);
        // The hash above: tree level 8(l + 1), index `index`.
        let above = self.node(reader, TILE_HEIGHT * (l + 1), index)?;
        if tile.root() != above {
            return Err(TileError::Mismatch { level: l, index }.into());
        }
        let tile = Arc::new(tile);
        self.cache.put(l, index, Arc::clone(&tile));
        Ok(tile)
    }

    fn subtree<R: TileReader>(&mut self, reader: &R, lo: u64, hi: u64) -> Result<Hash, R::Error> {
        let n = hi - lo;
        if n == 0 {
            return Ok(crate::merkle::empty_root());
        }
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros();
            return self.node(reader, level, lo >> level);
        }
        let k = split(n);
        let left = self.subtree(reader, lo, lo + k)?;
        let right = self.subtree(reader, lo + k, hi)?;
        Ok(node_hash(&left, &right))
    }

    fn path<R: TileReader>(
        &mut self,
        reader: &R,
        m: u64,
        lo: u64,
        hi: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), R::Error> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(reader, m, lo, lo + k, out)?;
            out.push(self.subtree(reader, lo + k, hi)?);
        } else {
            self.path(reader, m - k, lo + k, hi, out)?;
            out.push(self.subtree(reader, lo, lo + k)?);
        }
        Ok(())
    }

    fn subproof<R: TileReader>(
        &mut self,
        reader: &R,
        m: u64,
        lo: u64,
        hi: u64,
        b: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), R::Error> {
        let n = hi - lo;
        if m == n {
            if !b {
                out.push(self.subtree(reader, lo, hi)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(reader, m, lo, lo + k, b, out)?;
            out.push(self.subtree(reader, lo + k, hi)?);
        } else {
            self.subproof(reader, m - k, lo + k, hi, false, out)?;
            out.push(self.subtree(reader, lo, lo + k)?);
        }
        Ok(())
    }
}

/// A checked full tile with its inner levels: `levels[r]` holds the
/// `256 >> r` hashes `r` levels above the tile's base.
#[derive(Debug)]
struct Tile {
    levels: Vec<Vec<Hash>>,
}

impl Tile {
    fn new(hashes: Vec<Hash>) -> Self {
        let mut levels = vec![hashes];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    fn root(&self) -> Hash {
        self.levels[TILE_HEIGHT as usize][0]
    }

    fn at(&self, r: u32, i: u64) -> Hash {
        self.levels[r as usize][i as usize]
    }
}

/// A bounded cache of checked tiles, oldest out first.
#[derive(Clone, Default)]
struct Cache {
    map: HashMap<(u32, u64), Arc<Tile>>,
    order: VecDeque<(u32, u64)>,
}

impl Cache {
    fn get(&self, l: u32, index: u64) -> Option<Arc<Tile>> {
        self.map.get(&(l, index)).cloned()
    }

    fn put(&mut self, l: u32, index: u64, tile: Arc<Tile>) {
        if self.map.insert((l, index), tile).is_none() {
            self.order.push_back((l, index));
        }
        while self.order.len() > TILE_CACHE {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// The root of a power-of-two run of hashes.
fn hash_up(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level[0]
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::merkle::{leaf_hash, Tree};

    /// Tiles in a map; reads counted.
    #[derive(Default)]
    struct Mem {
        tiles: HashMap<(u32, u64), Vec<u8>>,
        reads: RefCell<u64>,
    }

    impl TileReader for Mem {
        type Error = TileError;
        fn read_tile(&self, level: u32, index: u64) -> Result<Vec<u8>, TileError> {
            *self.reads.borrow_mut() += 1;
            Ok(self.tiles.get(&(level, index)).cloned().unwrap_or_default())
        }
    }

    fn store(mem: &mut Mem, tiles: Vec<FullTile>) {
        for (l, i, h) in tiles {
            let bytes = h.iter().flat_map(|h| h.as_bytes().to_vec()).collect();
            mem.tiles.insert((l, i), bytes);
        }
    }

    /// Roots and proofs from tiles plus the right edge equal those of the
    /// in-memory tree at every size tried, before and after reopening from
    /// the edge alone.
    #[test]
    fn tiled_tree_matches_the_in_memory_tree() {
        let n = 256 * 256 + 256 * 3 + 77;
        let mut full = Tree::new();
        let mut t = TiledTree::new();
        let mut mem = Mem::default();
        for i in 0..n as u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            full.push(leaf);
            t.push(leaf);
            if i % 1000 == 999 {
                let upto = t.size();
                let tiles = t.pending_tiles(upto);
                store(&mut mem, tiles);
                t.commit_tiles(upto);
            }
        }
        let tiles = t.pending_tiles(n);
        store(&mut mem, tiles);
        t.commit_tiles(n);
        assert_eq!(t.tiled(), n / 256 * 256);
        let partial: Vec<Vec<Hash>> = t.edge().into_iter().map(|(_, _, h)| h).collect();
        let mut again = TiledTree::from_edge(t.tiled(), partial).unwrap();
        for i in t.tiled()..n {
            again.push(leaf_hash(&(i as u32).to_be_bytes()));
        }
        for tree in [&mut t, &mut again] {
            for size in [1, 255, 256, 257, 65_535, 65_536, 65_537, 66_000, n] {
                assert_eq!(
                    tree.root_at(&mem, size).unwrap(),
                    full.root_at(size).unwrap()
                );
                for index in [0, size / 2, size - 1] {
                    assert_eq!(
                        tree.inclusion_proof(&mem, index, size).unwrap(),
                        full.inclusion_proof(index, size).unwrap()
                    );
                }
                assert_eq!(
                    tree.consistency_proof(&mem, size / 3, size).unwrap(),
                    full.consistency_proof(size / 3, size).unwrap()
                );
            }
        }
    }

    /// Tiles prepared from a snapshot while leaves keep arriving, then
    /// committed without hashing again, leave the tree exactly as
    /// `commit_tiles` does: same tiles stored, same `tiled`, same roots and
    /// proofs, and the edge rebuilds the same tree.
    #[test]
    fn prepared_tiles_commit_like_commit_tiles() {
        let n = 256 * 256 + 256 * 5 + 3;
        let (mut a, mut b) = (TiledTree::new(), TiledTree::new());
        let (mut mem_a, mut mem_b) = (Mem::default(), Mem::default());
        let mut full = Tree::new();
        for i in 0..n as u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            full.push(leaf);
            a.push(leaf);
            b.push(leaf);
            if i % 700 == 699 {
                let upto = a.size() - 100;
                store(&mut mem_a, a.pending_tiles(upto));
                a.commit_tiles(upto);
                let prepared = b.snapshot(upto).prepare();
                // Leaves arrive between the snapshot and the commit.
                for j in 0..3u32 {
                    b.push(leaf_hash(&(j + 1_000_000_000).to_be_bytes()));
                }
                b.truncate(b.size() - 3);
                store(&mut mem_b, prepared.tiles.clone());
                b.commit_prepared(prepared);
                assert_eq!(a.tiled(), b.tiled());
            }
        }
        assert_eq!(mem_a.tiles, mem_b.tiles);
        assert_eq!(a.edge(), b.edge());
        for size in [1, 256, 65_536, 65_537, n] {
            assert_eq!(
                b.root_at(&mem_b, size).unwrap(),
                full.root_at(size).unwrap()
            );
            assert_eq!(
                b.inclusion_proof(&mem_b, size / 2, size).unwrap(),
                full.inclusion_proof(size / 2, size).unwrap()
            );
        }
        // A commit that is stale (tiles committed since) still advances.
        let stale = b.snapshot(b.size()).prepare();
        let upto = b.size();
        store(&mut mem_b, b.pending_tiles(upto));
        b.commit_tiles(upto);
        b.commit_prepared(stale);
        assert_eq!(b.root_at(&mem_b, n).unwrap(), full.root_at(n).unwrap());
    }

    /// A changed tile is refused when read, with its coordinates.
    #[test]
    fn a_damaged_tile_is_found_when_read() {
        let mut t = TiledTree::new();
        let mut mem = Mem::default();
        for i in 0..1024u32 {
            t.push(leaf_hash(&i.to_be_bytes()));
        }
        store(&mut mem, t.pending_tiles(1024));
        t.commit_tiles(1024);
        mem.tiles.get_mut(&(0, 2)).unwrap()[5] ^= 1;
        assert_eq!(
            t.inclusion_proof(&mem, 600, 1024),
            Err(TileError::Mismatch { level: 0, index: 2 })
        );
        mem.tiles.get_mut(&(0, 1)).unwrap().pop();
        assert_eq!(
            t.root_at(&mem, 300),
            Err(TileError::Length {
                level: 0,
                index: 1,
                len: 8191
            })
        );
    }
}
