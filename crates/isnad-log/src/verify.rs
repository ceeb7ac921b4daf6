//! The offline auditor's verifier for a tlog-tiles export, and inclusion
//! proofs produced from an export.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, TlogProof};
use crate::entry::{Entry, EntryError, MAX_ENTRY_LEN};
use crate::merkle::{self, Hash, Tree};
use crate::note::{self, VerifierKey};
use crate::tiles::{self, BundleError, TILE_HEIGHT, TILE_WIDTH};

/// Most problems collected before the verifier stops listing them.
pub const MAX_PROBLEMS: usize = 1000;

/// Why verification could not be carried out, or failed before the
/// entries could be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    // --- The auditor's inputs are unusable (usage or IO: exit code 1) ---
    /// The export directory cannot be read.
    #[error("cannot read export directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A proof was asked for an entry the export does not hold.
    #[error("no entry {index}: the export holds {size} entries{}", if *.size == 0 { String::new() } else { format!(" (indexes 0 to {})", .size - 1) })]
    NoSuchEntry {
        /// The index asked for.
        index: u64,
        /// Entries in the export's checkpoint.
        size: u64,
    },

    // --- The export fails verification (exit code 2) ---
    /// The export's checkpoint is missing, malformed or not validly signed
    /// by the log key.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: CheckpointError,
    },
    /// The checkpoint file is missing or unreadable.
    #[error("checkpoint {path} cannot be read: {source}")]
    CheckpointFile {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The previously trusted checkpoint is not validly signed by the log key.
    #[error("previous checkpoint: {0}")]
    Previous(CheckpointError),
    /// A tile or bundle needed to build a proof is missing or wrong.
    #[error("{0}")]
    Export(Problem),
}

/// One thing wrong with an export. The verifier lists up to
/// [`MAX_PROBLEMS`] of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A file the checkpoint size requires is missing or unreadable.
    MissingFile {
        /// Path relative to the export root.
        path: String,
    },
    /// A file is larger than any valid file of its kind.
    Oversized {
        /// Path relative to the export root.
        path: String,
    },
    /// An entry bundle does not split into the expected entries.
    Bundle {
        /// Path relative to the export root.
        path: String,
        /// What is wrong.
        error: BundleError,
    },
    /// An entry does not decode against the schema.
    Entry {
        /// Entry index.
        index: u64,
        /// Bundle it is in.
        path: String,
        /// What is wrong.
        error: EntryError,
    },
    /// An entry's `seq` is not its index.
    Sequence {
        /// Entry index.
        index: u64,
        /// The `seq` it carries.
        seq: u64,
    },
    /// A hash tile is not the expected size.
    TileSize {
        /// Path relative to the export root.
        path: String,
        /// Expected bytes.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// A hash in a tile differs from the hash recomputed from the entries.
    /// At level 0 this is the leaf hash of entry `index`: the entry or the
    /// tile was altered.
    TileHash {
        /// Path relative to the export root.
        path: String,
        /// Tile level.
        level: u32,
        /// Position within the tile.
        position: u64,
        /// For level 0, the entry index.
        index: Option<u64>,
    },
    /// The root recomputed from the entries differs from the checkpoint.
    RootMismatch {
        /// Recomputed root.
        computed: Hash,
        /// Root in the checkpoint.
        checkpoint: Hash,
    },
    /// The export is not consistent with the previously trusted checkpoint.
    Inconsistent {
        /// Size of the previous checkpoint.
        previous_size: u64,
        /// Size of the export's checkpoint.
        size: u64,
        /// Why.
        reason: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingFile { path } => write!(f, "{path}: missing or unreadable"),
            Self::Oversized { path } => write!(f, "{path}: larger than any valid file"),
            Self::Bundle { path, error } => write!(f, "{path}: {error}"),
            Self::Entry { index, path, error } => write!(f, "entry {index} ({path}): {error}"),
            Self::Sequence { index, seq } => write!(f, "entry {index}: seq is {seq}"),
            Self::TileSize { path, expected, found } => {
                write!(f, "{path}: {found} bytes, expected {expected}")
            }
            Self::TileHash { path, position, index: Some(i), .. } => write!(
                f,
                "{path}: hash {position} is not the leaf hash of entry {i} (entry or tile altered)"
            ),
            Self::TileHash { path, level, position, index: None } => write!(
                f,
                "{path}: hash {position} differs from the level-{} node recomputed from the entries",
                level * TILE_HEIGHT
            ),
            Self::RootMismatch { computed, checkpoint } => write!(
                f,
                "root recomputed from the entries {computed} differs from the checkpoint root {checkpoint}"
            ),
            Self::Inconsistent { previous_size, size, reason } => write!(
                f,
                "not consistent with the previous checkpoint (size {previous_size} -> {size}): {reason}"
            ),
        }
    }
}

/// The outcome of [`verify_export`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Report {
    /// The export's checkpoint (its signature verified).
    pub checkpoint: Checkpoint,
    /// The previous checkpoint, if one was given.
    pub previous: Option<Checkpoint>,
    /// Everything found wrong (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Total problems found, including any beyond [`MAX_PROBLEMS`].
    pub problem_count: u64,
    /// Index of the first entry read and checked: 0 for a full
    /// verification; with a previous checkpoint no larger than the
    /// export's, the first entry of the bundle holding the previous
    /// checkpoint's end (what is before was verified when that checkpoint
    /// was, and is tied to it by its root).
    pub checked_from: u64,
}

impl Report {
    /// True if nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }

    fn push(&mut self, p: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Verifies a tlog-tiles export in `dir`:
///
/// 1. `checkpoint` is a signed note with a valid signature by `log_key`,
///    whose body is a checkpoint with origin = key name;
/// 2. every entry bundle the size requires exists, splits into exactly the
///    expected entries, and every entry decodes against the schema with
///    `seq` equal to its index;
/// 3. every hash tile the size requires exists, has the exact length, and
///    equals the hashes recomputed from the entries;
/// 4. the root recomputed from the entries equals the checkpoint root;
/// 5. if `previous` (a signed checkpoint note) is given, it verifies under
///    `log_key`, its size is not larger, and the export is consistent with it.
///
/// With a `previous` checkpoint no larger than the export's, steps 2 to 5
/// cover only what is new since it (incremental verification,
/// `spec/audit-log.md` §9.1): the bundles from the one holding its last
/// entry on and the tiles above them are checked as in steps 2 and 3; the
/// hashes of the stored tiles that cover the entries before must hash to
/// the previous root and, extended by the new entries, to the export's
/// root — the RFC 9162 consistency proof, taken from the tiles.
///
/// `progress(done, total)` is called after each round of bundles.
pub fn verify_export(
    dir: &Path,
    log_key: &VerifierKey,
    previous: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, AuditError> {
    let cp_path = dir.join(tiles::CHECKPOINT_PATH);
    fs::read_dir(dir).map_err(|source| AuditError::Directory {
        path: dir.to_owned(),
        source,
    })?;
    let cp_bytes = read_bounded(&cp_path, note::MAX_NOTE_LEN as u64).map_err(|source| {
        AuditError::CheckpointFile {
            path: cp_path.clone(),
            source,
        }
    })?;
    verify_tiles(dir, &cp_bytes, log_key, previous, progress)
}

/// [`verify_export`] of the tiles in `dir` against the signed checkpoint
/// note `checkpoint` given apart (`isnad audit sync` verifies what it
/// fetched before its new checkpoint replaces the old one in `dir`).
pub fn verify_tiles(
    dir: &Path,
    checkpoint: &[u8],
    log_key: &VerifierKey,
    previous: Option<&[u8]>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, AuditError> {
    let cp_path = dir.join(tiles::CHECKPOINT_PATH);
    fs::read_dir(dir).map_err(|source| AuditError::Directory {
        path: dir.to_owned(),
        source,
    })?;
    let checkpoint =
        open_checkpoint(checkpoint, log_key).map_err(|source| AuditError::Checkpoint {
            path: cp_path.clone(),
            source,
        })?;
    let previous = previous
        .map(|p| open_checkpoint(p, log_key).map_err(AuditError::Previous))
        .transpose()?;
    let mut report = Report {
        checkpoint,
        previous,
        problems: Vec::new(),
        problem_count: 0,
        checked_from: 0,
    };
    match report.previous.clone() {
        Some(prev) if prev.size <= report.checkpoint.size => {
            verify_since(dir, &prev, &mut report, progress);
        }
        _ => verify_all(dir, &mut report, progress),
    }
    Ok(report)
}

/// Checks every entry and tile of the export (steps 2 to 5 in full).
fn verify_all(dir: &Path, report: &mut Report, progress: &mut dyn FnMut(u64, u64)) {
    let checkpoint = report.checkpoint.clone();
    let size = checkpoint.size;

    // Entries and level-0 tiles, bundle by bundle; the tree is built in order.
    let mut tree = Tree::new();
    check_bundles(dir, 0, size, report, progress, &mut |leaf| {
        tree.push(leaf);
    });

    // Upper tile levels.
    for (level, index, width) in tiles::tiles_for(size) {
        if level == 0 {
            continue;
        }
        let path = tiles::tile_path(level, index, width);
        let mut problems = Vec::new();
        let stored = read_tile(dir, &path, width, &mut problems);
        problems.into_iter().for_each(|p| report.push(p));
        if let Some(stored) = stored {
            for (j, s) in stored.iter().enumerate() {
                let expect = tree.node(level * TILE_HEIGHT, index * TILE_WIDTH + j as u64);
                if expect != Some(*s) {
                    report.push(Problem::TileHash {
                        path: path.clone(),
                        level,
                        position: j as u64,
                        index: None,
                    });
                }
            }
        }
    }

    let computed = tree.root();
    if computed != checkpoint.root {
        report.push(Problem::RootMismatch {
            computed,
            checkpoint: checkpoint.root,
        });
    }

    if let Some(prev) = report.previous.clone() {
        let reason = if prev.size > size {
            Some("the previous checkpoint is larger: the log was rolled back")
        } else {
            // The RFC 9162 consistency proof from the recomputed tree, checked
            // against the two signed roots.
            match tree.consistency_proof(prev.size, size) {
                Ok(proof) => merkle::verify_consistency(
                    prev.size,
                    size,
                    &prev.root,
                    &checkpoint.root,
                    &proof,
                )
                .err()
                .map(|_| "the consistency proof does not verify: history was rewritten"),
                Err(_) => Some("cannot build a consistency proof"),
            }
        };
        if let Some(reason) = reason {
            report.push(Problem::Inconsistent {
                previous_size: prev.size,
                size,
                reason,
            });
        }
    }
}

/// Checks bundles `from..` of a tree of `size` entries against their
/// level-0 tiles, in parallel rounds, handing each leaf hash to `leaf` in
/// order (the recomputed one, else the stored one: the problem is listed).
fn check_bundles(
    dir: &Path,
    from: u64,
    size: u64,
    report: &mut Report,
    progress: &mut dyn FnMut(u64, u64),
    leaf: &mut dyn FnMut(Hash),
) {
    let bundles = size.div_ceil(TILE_WIDTH);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16) as u64;
    let round = threads * 16;
    let first = (from * TILE_WIDTH).min(size);
    let mut pushed = first;
    let mut next = from;
    while next < bundles {
        let end = (next + round).min(bundles);
        let results: Vec<BundleCheck> = if threads == 1 || end - next == 1 {
            (next..end)
                .map(|n| check_bundle_and_tile(dir, n, size))
                .collect()
        } else {
            let per = (end - next).div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let lo = (next + t * per).min(end);
                        let hi = (lo + per).min(end);
                        s.spawn(move || {
                            (lo..hi)
                                .map(|n| check_bundle_and_tile(dir, n, size))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        for r in results {
            for p in r.problems {
                report.push(p);
            }
            for h in r.leaves {
                leaf(h);
                pushed += 1;
            }
        }
        next = end;
        progress((end * TILE_WIDTH).min(size) - first, size - first);
    }
    if pushed != size {
        // A worker thread panicked (it cannot on valid or invalid input; this
        // guards the invariant instead of building a short tree).
        report.push(Problem::MissingFile {
            path: "(internal: bundle worker failed)".into(),
        });
        while pushed < size {
            leaf(merkle::empty_root());
            pushed += 1;
        }
    }
}

/// The hashes at tree level `8L` of one tile level `L`, from index `start`.
struct Row {
    start: u64,
    hashes: Vec<Hash>,
}

/// Incremental verification since `prev` (`prev.size` at most the
/// export's size): see [`verify_export`].
fn verify_since(
    dir: &Path,
    prev: &Checkpoint,
    report: &mut Report,
    progress: &mut dyn FnMut(u64, u64),
) {
    let checkpoint = report.checkpoint.clone();
    let (size, m) = (checkpoint.size, prev.size);
    // Level 0: the leaves of every bundle from the one holding entry m on
    // (entries before m in it are checked again: at most 255).
    let from = m / TILE_WIDTH;
    report.checked_from = from * TILE_WIDTH;
    let mut row = Row {
        start: from * TILE_WIDTH,
        hashes: Vec::with_capacity((size - from * TILE_WIDTH) as usize),
    };
    check_bundles(dir, from, size, report, progress, &mut |h| {
        row.hashes.push(h);
    });
    let mut rows = vec![row];
    // Each level above: the nodes complete at m from the stored tile that
    // holds them (tied to the previous root below), the new ones computed
    // from the level under it and compared with the stored tiles.
    let mut level = 1u32;
    while level * TILE_HEIGHT < 64 && size >> (level * TILE_HEIGHT) > 0 {
        let shift = level * TILE_HEIGHT;
        let (n, old) = (size >> shift, m >> shift);
        let start = old / TILE_WIDTH * TILE_WIDTH;
        let mut row = Row {
            start,
            hashes: Vec::with_capacity((n - start) as usize),
        };
        if old > start {
            let width = (n - start).min(TILE_WIDTH);
            let path = tiles::tile_path(level, start / TILE_WIDTH, width);
            let mut problems = Vec::new();
            let Some(stored) = read_tile(dir, &path, width, &mut problems) else {
                problems.into_iter().for_each(|p| report.push(p));
                return;
            };
            row.hashes
                .extend_from_slice(&stored[..(old - start) as usize]);
        }
        let below = &rows[(level - 1) as usize];
        for j in old..n {
            let at = (j * TILE_WIDTH - below.start) as usize;
            let Some(group) = below.hashes.get(at..at + TILE_WIDTH as usize) else {
                report.push(Problem::MissingFile {
                    path: "(internal: level below incomplete)".into(),
                });
                return;
            };
            row.hashes.push(hash_up(group));
        }
        for t in start / TILE_WIDTH..n.div_ceil(TILE_WIDTH) {
            let width = (n - t * TILE_WIDTH).min(TILE_WIDTH);
            let path = tiles::tile_path(level, t, width);
            let mut problems = Vec::new();
            let stored = read_tile(dir, &path, width, &mut problems);
            problems.into_iter().for_each(|p| report.push(p));
            let Some(stored) = stored else { continue };
            for (j, s) in stored.iter().enumerate() {
                let index = t * TILE_WIDTH + j as u64;
                if index >= old && row.hashes.get((index - start) as usize) != Some(s) {
                    report.push(Problem::TileHash {
                        path: path.clone(),
                        level,
                        position: j as u64,
                        index: None,
                    });
                }
            }
        }
        rows.push(row);
        level += 1;
    }
    if root_of(&rows, m) != Some(prev.root) {
        report.push(Problem::Inconsistent {
            previous_size: m,
            size,
            reason:
                "the tiles of the entries before it do not hash to its root: history was rewritten",
        });
    }
    let computed = root_of(&rows, size).unwrap_or_else(merkle::empty_root);
    if computed != checkpoint.root {
        report.push(Problem::RootMismatch {
            computed,
            checkpoint: checkpoint.root,
        });
    }
}

/// The root of the tree of `size` leaves from the rows: the RFC 9162
/// subtrees of sizes the bits of `size`, largest first, hashed right to
/// left. `None` if a row lacks a hash it needs.
fn root_of(rows: &[Row], size: u64) -> Option<Hash> {
    let mut subtrees = Vec::new();
    let mut start = 0u64;
    for k in (0..64u32).rev() {
        if size & (1u64 << k) != 0 {
            let (l, r) = (k / TILE_HEIGHT, k % TILE_HEIGHT);
            let row = rows.get(l as usize)?;
            let first = (start >> k) << r;
            let at = first.checked_sub(row.start)? as usize;
            subtrees.push(hash_up(row.hashes.get(at..at + (1usize << r))?));
            start += 1u64 << k;
        }
    }
    let mut it = subtrees.into_iter().rev();
    let Some(mut root) = it.next() else {
        return Some(merkle::empty_root());
    };
    for left in it {
        root = merkle::node_hash(&left, &root);
    }
    Some(root)
}

/// The root of a complete subtree from its `2^r` hashes at one level.
fn hash_up(hashes: &[Hash]) -> Hash {
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
    }
    level.first().copied().unwrap_or_else(merkle::empty_root)
}

/// Builds a C2SP tlog-proof for entry `index` from an export, against the
/// export's checkpoint. The entry bytes go in the `extra` line. The
/// checkpoint signature is not checked here (the proof's verifier does);
/// the tiles are checked to hash to the checkpoint root and the entry to
/// its leaf hash.
pub fn prove_from_export(dir: &Path, index: u64) -> Result<TlogProof, AuditError> {
    let cp_path = dir.join(tiles::CHECKPOINT_PATH);
    let cp_bytes = read_bounded(&cp_path, note::MAX_NOTE_LEN as u64).map_err(|source| {
        AuditError::CheckpointFile {
            path: cp_path.clone(),
            source,
        }
    })?;
    let note_text = String::from_utf8(cp_bytes).map_err(|_| AuditError::Checkpoint {
        path: cp_path.clone(),
        source: CheckpointError::Malformed("not UTF-8"),
    })?;
    let body = note::text_unverified(note_text.as_bytes()).map_err(|e| AuditError::Checkpoint {
        path: cp_path.clone(),
        source: e.into(),
    })?;
    let cp = Checkpoint::parse_body(body).map_err(|source| AuditError::Checkpoint {
        path: cp_path.clone(),
        source,
    })?;
    if index >= cp.size {
        return Err(AuditError::NoSuchEntry {
            index,
            size: cp.size,
        });
    }
    let mut scratch = Vec::new();
    let mut tree = Tree::new();
    for n in 0..cp.size.div_ceil(TILE_WIDTH) {
        let width = (cp.size - n * TILE_WIDTH).min(TILE_WIDTH);
        let path = tiles::tile_path(0, n, width);
        let hashes = read_tile(dir, &path, width, &mut scratch);
        let Some(hashes) = hashes else {
            return Err(AuditError::Export(
                scratch.pop().unwrap_or(Problem::MissingFile { path }),
            ));
        };
        for h in hashes {
            tree.push(h);
        }
    }
    let root = tree.root();
    if root != cp.root {
        return Err(AuditError::Export(Problem::RootMismatch {
            computed: root,
            checkpoint: cp.root,
        }));
    }
    let n = index / TILE_WIDTH;
    let width = (cp.size - n * TILE_WIDTH).min(TILE_WIDTH);
    let bpath = tiles::entries_path(n, width);
    let data = read_bounded(&dir.join(&bpath), bundle_limit(width)).map_err(|_| {
        AuditError::Export(Problem::MissingFile {
            path: bpath.clone(),
        })
    })?;
    let entries = tiles::split_bundle(&data, width as usize).map_err(|error| {
        AuditError::Export(Problem::Bundle {
            path: bpath.clone(),
            error,
        })
    })?;
    let entry = entries[(index % TILE_WIDTH) as usize];
    if tree.node(0, index) != Some(merkle::leaf_hash(entry)) {
        return Err(AuditError::Export(Problem::TileHash {
            path: tiles::tile_path(0, n, width),
            level: 0,
            position: index % TILE_WIDTH,
            index: Some(index),
        }));
    }
    let hashes = tree
        .inclusion_proof(index, cp.size)
        .map_err(|e| AuditError::Checkpoint {
            path: cp_path,
            source: e.into(),
        })?;
    Ok(TlogProof {
        extra: Some(entry.to_vec()),
        index,
        hashes,
        checkpoint: note_text,
    })
}

pub(crate) fn bundle_limit(width: u64) -> u64 {
    width * (2 + MAX_ENTRY_LEN as u64)
}

/// What checking one entry bundle and its level-0 tile found.
#[derive(Default)]
struct BundleCheck {
    /// One leaf hash per entry position (recomputed, else the stored one).
    leaves: Vec<Hash>,
    problems: Vec<Problem>,
}

/// Checks bundle `n` of a tree of `size` entries against its level-0 tile.
fn check_bundle_and_tile(dir: &Path, n: u64, size: u64) -> BundleCheck {
    let width = (size - n * TILE_WIDTH).min(TILE_WIDTH);
    let first = n * TILE_WIDTH;
    let bpath = tiles::entries_path(n, width);
    let tpath = tiles::tile_path(0, n, width);
    let mut problems = Vec::new();
    let leaves = check_bundle(dir, &bpath, first, width, &mut problems);
    let tile = read_tile(dir, &tpath, width, &mut problems);
    let mut out = Vec::with_capacity(width as usize);
    for j in 0..width {
        let computed = leaves.as_ref().map(|l| l[j as usize]);
        let stored = tile.as_ref().map(|t| t[j as usize]);
        if let (Some(c), Some(s)) = (computed, stored) {
            if c != s {
                problems.push(Problem::TileHash {
                    path: tpath.clone(),
                    level: 0,
                    position: j,
                    index: Some(first + j),
                });
            }
        }
        // Without a usable bundle, fall back to the stored hash so that the
        // upper tiles can still be checked; the problem is already listed.
        out.push(computed.or(stored).unwrap_or_else(merkle::empty_root));
    }
    BundleCheck {
        leaves: out,
        problems,
    }
}

/// Reads, decodes and hashes one bundle; `None` if it is unusable.
fn check_bundle(
    dir: &Path,
    path: &str,
    first: u64,
    width: u64,
    report: &mut Vec<Problem>,
) -> Option<Vec<Hash>> {
    let data = match read_bounded(&dir.join(path), bundle_limit(width)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            report.push(Problem::Oversized {
                path: path.to_owned(),
            });
            return None;
        }
        Err(_) => {
            report.push(Problem::MissingFile {
                path: path.to_owned(),
            });
            return None;
        }
    };
    let entries = match tiles::split_bundle(&data, width as usize) {
        Ok(e) => e,
        Err(error) => {
            report.push(Problem::Bundle {
                path: path.to_owned(),
                error,
            });
            return None;
        }
    };
    let mut leaves = Vec::with_capacity(entries.len());
    for (j, bytes) in entries.iter().enumerate() {
        let index = first + j as u64;
        match Entry::decode(bytes) {
            Ok(e) if e.seq != index => report.push(Problem::Sequence { index, seq: e.seq }),
            Ok(_) => {}
            Err(error) => report.push(Problem::Entry {
                index,
                path: path.to_owned(),
                error,
            }),
        }
        leaves.push(merkle::leaf_hash(bytes));
    }
    Some(leaves)
}

fn read_tile(dir: &Path, path: &str, width: u64, report: &mut Vec<Problem>) -> Option<Vec<Hash>> {
    let expected = width * Hash::LEN as u64;
    let data = match read_bounded(&dir.join(path), expected) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            report.push(Problem::TileSize {
                path: path.to_owned(),
                expected,
                found: expected + 1,
            });
            return None;
        }
        Err(_) => {
            report.push(Problem::MissingFile {
                path: path.to_owned(),
            });
            return None;
        }
    };
    if data.len() as u64 != expected {
        report.push(Problem::TileSize {
            path: path.to_owned(),
            expected,
            found: data.len() as u64,
        });
        return None;
    }
    Some(
        data.chunks_exact(Hash::LEN)
            .filter_map(|c| Hash::from_slice(c).ok())
            .collect(),
    )
}

/// Reads a file of at most `limit` bytes (checked before reading).
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use io::Read as _;
    let f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            "file too large",
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            "file too large",
        ));
    }
    Ok(out)
}
