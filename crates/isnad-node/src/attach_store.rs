//! The attachment store: ciphertext of attachments staged on disk under
//! the node's state directory, content-addressed by ciphertext root
//! (spec/transport.md §10.4).
//!
//! ```text
//!   <state>/attachments/<root-hex>.meta    origin peer and attachment-meta, written once, fsync'd
//!                       <root-hex>.part    ciphertext being received, chunks at their offsets
//!                       <root-hex>.leaves  leaf hash of every chunk written (32 bytes each)
//!                       <root-hex>.held    8 bytes: chunks 0 .. next are durable (fsync'd)
//!                       <root-hex>.ct      complete ciphertext, every chunk verified
//! ```
//!
//! Durability: chunks are written where they belong and the data and
//! leaf files are fsync'd every `sync_every_bytes` (4 MiB by default) and
//! at the end; only then does `.held` name the new durable point (itself
//! fsync'd). A crash loses at most what came after the last sync, which
//! the sender sends again. `.part` becomes `.ct` by a rename (the
//! directory fsync'd) only when every chunk is verified and durable, so a
//! `.ct` file is always complete. Staged files that no message took up
//! within `unreferenced_secs` are removed by [`AttachStore::sweep`].
//!
//! All functions here block (file I/O): the transfer runs them on the
//! blocking pool.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use isnad_attach::{
    AttachmentDescriptor, AttachmentMeta, ChunkSealer, ChunkSize, ChunkTree, FileName, MediaType,
    TreeHash, TAG_LEN,
};
use isnad_envelope::AgencyId;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

/// `[attachments]` in the node configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// Largest attachment ciphertext accepted from a peer (`too-large`
    /// above it). Default 64 GiB.
    pub max_attachment_bytes: u64,
    /// Most ciphertext bytes staged from one peer at once, complete and
    /// partial (`too-large` above it). Default 256 GiB.
    pub max_peer_bytes: u64,
    /// Bytes written between two syncs of an incoming attachment (data,
    /// leaves, then the durable point). Default 4 MiB.
    pub sync_every_bytes: u64,
    /// Staged attachments that no message took up within this many
    /// seconds of their last write are removed. Default 7 days (the
    /// default message lifetime).
    pub unreferenced_secs: u64,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            max_attachment_bytes: 64 << 30,
            max_peer_bytes: 256 << 30,
            sync_every_bytes: 4 << 20,
            unreferenced_secs: 7 * 24 * 3600,
        }
    }
}

/// A staged, complete attachment: its metadata and where its ciphertext is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The relay-visible metadata.
    pub meta: AttachmentMeta,
    /// The complete ciphertext file.
    pub path: PathBuf,
}

/// Why an attachment cannot be staged from a local file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The caller's file: missing, unreadable, or a name that is not a
    /// valid attachment file name.
    #[error("cannot read {path}: {detail}")]
    Source {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The node's attachment directory could not be written or synced.
    #[error("attachment store: {0}")]
    Store(#[from] std::io::Error),
    /// Encryption failed (the random number generator, or more than 2^32
    /// chunks).
    #[error("cannot seal the attachment: {0}")]
    Seal(#[from] isnad_attach::SealError),
}

/// The node's attachment directory.
#[derive(Debug)]
pub(crate) struct AttachStore {
    dir: PathBuf,
    pub(crate) config: AttachmentsConfig,
    /// Roots being received now (one stream per root at a time).
    active: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl AttachStore {
    /// Opens (creates) `<state>/attachments`.
    pub(crate) fn open(state: &Path, config: &AttachmentsConfig) -> std::io::Result<Self> {
        let dir = state.join("attachments");
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            config: config.clone(),
            active: Arc::default(),
        })
    }

    /// The directory (for the free-space check).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, root: &TreeHash, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", root.to_hex()))
    }

    /// The complete attachment with this root, if staged.
    pub(crate) fn staged(&self, root: &TreeHash) -> Option<Staged> {
        let path = self.path(root, "ct");
        if !path.is_file() {
            return None;
        }
        let (meta, _) = self.read_meta(root).ok()??;
        Some(Staged { meta, path })
    }

    fn read_meta(&self, root: &TreeHash) -> std::io::Result<Option<(AttachmentMeta, String)>> {
        let bytes = match fs::read(self.path(root, "meta")) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(parse_meta_file(&bytes).filter(|(m, _)| m.ciphertext_root() == *root))
    }

    /// Ciphertext bytes staged from `peer` (complete and partial), other
    /// than `except`.
    pub(crate) fn peer_bytes(&self, peer: &AgencyId, except: &TreeHash) -> std::io::Result<u64> {
        let mut total = 0u64;
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".meta")) else {
                continue;
            };
            let Ok(bytes) = fs::read(self.dir.join(&name)) else {
                continue;
            };
            if let Some((meta, origin)) = parse_meta_file(&bytes) {
                let root = meta.ciphertext_root();
                if origin == peer.as_str() && root.to_hex() == hex && root != *except {
                    total = total.saturating_add(meta.layout().ciphertext_size());
                }
            }
        }
        Ok(total)
    }

    /// Starts (or resumes) receiving the attachment `meta` from `peer`;
    /// `Ok(None)` if another stream is receiving it now.
    pub(crate) fn receive(
        &self,
        peer: &AgencyId,
        meta: &AttachmentMeta,
    ) -> std::io::Result<Option<Receiving>> {
        let root = meta.ciphertext_root();
        {
            let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if !active.insert(*root.as_bytes()) {
                return Ok(None);
            }
        }
        let guard = ActiveGuard {
            set: Arc::clone(&self.active),
            root: *root.as_bytes(),
        };
        let chunks = meta.layout().chunks();
        if self.staged(&root).is_some() {
            return Ok(Some(Receiving::done(guard, *meta, chunks)));
        }
        let meta_path = self.path(&root, "meta");
        match self.read_meta(&root)? {
            None => {
                write_synced(&meta_path, &meta_file(meta, peer.as_str()))?;
                sync_dir(&self.dir)?;
            }
            // The root names one attachment: a stream declaring other sizes
            // under it must not resume (or cut short) what is held.
            Some((stored, _)) if stored != *meta => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "this ciphertext root is being received with other metadata",
                ));
            }
            Some(_) => {}
        }
        let open = |ext| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.path(&root, ext))
        };
        let (data, leaves, held) = (open("part")?, open("leaves")?, open("held")?);
        // The three names are durable before `.held` can name a point in
        // `.part` (a crash must not keep `.held` and lose `.part`).
        sync_dir(&self.dir)?;
        let mut next = [0u8; 8];
        let next = match held.read_exact_at(&mut next, 0) {
            Ok(()) => u64::from_be_bytes(next).min(chunks),
            Err(_) => 0,
        };
        Ok(Some(Receiving {
            guard,
            meta: *meta,
            dir: self.dir.clone(),
            data: Some((data, leaves, held)),
            durable: next,
            high: next,
            missing: std::collections::BTreeSet::new(),
            unsynced: 0,
            sync_every: self.config.sync_every_bytes.max(1),
            chunks,
        }))
    }

    /// Seals the file at `path` into the store (streaming, one chunk in
    /// memory) and returns its descriptor, key included, for the message
    /// body. The ciphertext is staged as complete, ready to push.
    pub(crate) fn stage_file(
        &self,
        path: &Path,
        media_type: &MediaType,
        rng: &dyn SecureRandom,
    ) -> Result<AttachmentDescriptor, StageError> {
        let source = |detail: String| StageError::Source {
            path: path.to_owned(),
            detail,
        };
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| source("no file name".into()))?;
        let name = FileName::new(name).map_err(|e| source(e.to_string()))?;
        let mut input = File::open(path).map_err(|e| source(e.to_string()))?;
        let tmp = self.dir.join(format!(
            "outgoing-{}.tmp",
            hex::encode(random16(rng).map_err(|_| isnad_attach::SealError::Random)?)
        ));
        let result = self.seal_into(&mut input, &tmp, rng, &source);
        let (sealed, leaves) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let root = sealed.ciphertext_root();
        let meta = AttachmentMeta::new(
            sealed.layout().chunk_size(),
            sealed.layout().ciphertext_size(),
            root,
        )
        .map_err(|e| source(e.to_string()))?;
        write_synced(&self.path(&root, "leaves"), &leaves)?;
        write_synced(&self.path(&root, "meta"), &meta_file(&meta, LOCAL))?;
        fs::rename(&tmp, self.path(&root, "ct"))?;
        sync_dir(&self.dir)?;
        Ok(sealed.describe(name, media_type.clone()))
    }

    fn seal_into(
        &self,
        input: &mut File,
        tmp: &Path,
        rng: &dyn SecureRandom,
        source: &dyn Fn(String) -> StageError,
    ) -> Result<(isnad_attach::Sealed, Vec<u8>), StageError> {
        let cs = ChunkSize::DEFAULT;
        let mut sealer = ChunkSealer::new(cs, rng)?;
        let mut out = std::io::BufWriter::new(File::create(tmp)?);
        let mut leaves = Vec::new();
        let size = cs.get() as usize;
        let (mut cur, mut ahead) = (Vec::with_capacity(size + TAG_LEN), Vec::new());
        read_up_to(input, &mut cur, size).map_err(|e| source(e.to_string()))?;
        loop {
            let last = if cur.len() < size {
                true
            } else {
                read_up_to(input, &mut ahead, size).map_err(|e| source(e.to_string()))?;
                ahead.is_empty()
            };
            sealer.seal_chunk(&mut cur, last)?;
            leaves.extend_from_slice(isnad_attach::leaf_hash(&cur).as_bytes());
            out.write_all(&cur)?;
            if last {
                break;
            }
            std::mem::swap(&mut cur, &mut ahead);
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((sealer.finish()?, leaves))
    }

    /// What a sender needs to push the staged attachment `root`: its
    /// metadata, the ciphertext file and the tree for inclusion proofs.
    pub(crate) fn outgoing(
        &self,
        root: &TreeHash,
    ) -> std::io::Result<Option<(AttachmentMeta, File, ChunkTree)>> {
        let Some(staged) = self.staged(root) else {
            return Ok(None);
        };
        let tree = leaf_tree(&self.path(root, "leaves"), &staged.meta)?;
        let Some(tree) = tree else {
            return Err(std::io::Error::other("leaf file does not match the root"));
        };
        Ok(Some((staged.meta, File::open(&staged.path)?, tree)))
    }

    /// Removes partial and complete attachments not written to for
    /// `unreferenced_secs` (the message linkage will keep referenced ones).
    pub(crate) fn sweep(&self, now: SystemTime) -> std::io::Result<usize> {
        let max = Duration::from_secs(self.config.unreferenced_secs);
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".meta")) else {
                continue;
            };
            let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
            if active.iter().any(|r| hex::encode(r) == hex) {
                continue;
            }
            drop(active);
            let newest = ["ct", "part", "held", "meta"]
                .iter()
                .filter_map(|ext| fs::metadata(self.dir.join(format!("{hex}.{ext}"))).ok())
                .filter_map(|m| m.modified().ok())
                .max();
            if newest.is_some_and(|t| now.duration_since(t).unwrap_or_default() > max) {
                for ext in ["ct", "part", "held", "leaves", "meta"] {
                    let _ = fs::remove_file(self.dir.join(format!("{hex}.{ext}")));
                }
                removed += 1;
            }
        }
        sync_dir(&self.dir)?;
        Ok(removed)
    }
}

/// The origin recorded for attachments staged by the local user.
const LOCAL: &str = "";

/// Releases a root from the active set when its stream ends.
#[derive(Debug)]
pub(crate) struct ActiveGuard {
    set: Arc<Mutex<HashSet<[u8; 32]>>>,
    root: [u8; 32],
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.root);
    }
}

/// An attachment being received: which chunks are held, which are
/// durable, which were refused and are awaited again.
#[derive(Debug)]
pub(crate) struct Receiving {
    guard: ActiveGuard,
    meta: AttachmentMeta,
    dir: PathBuf,
    /// `.part`, `.leaves`, `.held`; `None` when already complete.
    data: Option<(File, File, File)>,
    /// Chunks `0 .. durable` are fsync'd and named in `.held`.
    durable: u64,
    /// One past the highest chunk written.
    high: u64,
    /// Chunks below `high` refused and not yet received again.
    missing: std::collections::BTreeSet<u64>,
    unsynced: u64,
    sync_every: u64,
    chunks: u64,
}

/// Where an incoming chunk index stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The next new chunk, or one asked for again: check and write it.
    Wanted,
    /// At or past the declared number of chunks.
    BeyondEnd,
    /// Already held, or ahead of the next new chunk: the sender is confused.
    Unexpected,
}

impl Receiving {
    fn done(guard: ActiveGuard, meta: AttachmentMeta, chunks: u64) -> Self {
        Self {
            guard,
            meta,
            dir: PathBuf::new(),
            data: None,
            durable: chunks,
            high: chunks,
            missing: Default::default(),
            unsynced: 0,
            sync_every: 1,
            chunks,
        }
    }

    /// The durable resume point: chunks below it need not be sent again.
    pub(crate) fn resume_point(&self) -> u64 {
        self.durable
    }

    /// Whether every chunk is held and durable (complete).
    pub(crate) fn is_complete(&self) -> bool {
        self.data.is_none()
    }

    /// Whether chunk `index` may come now.
    pub(crate) fn slot(&self, index: u64) -> Slot {
        if index >= self.chunks {
            Slot::BeyondEnd
        } else if index == self.high || self.missing.contains(&index) {
            Slot::Wanted
        } else {
            Slot::Unexpected
        }
    }

    /// Records that chunk `index` was refused: it is awaited again.
    pub(crate) fn refused(&mut self, index: u64) -> usize {
        if index == self.high {
            self.high += 1;
        }
        self.missing.insert(index);
        self.missing.len()
    }

    /// Whether every chunk is held (written, maybe not yet durable).
    pub(crate) fn all_held(&self) -> bool {
        self.high == self.chunks && self.missing.is_empty()
    }

    /// Writes a verified chunk at its place; syncs when enough is written.
    pub(crate) fn write(&mut self, index: u64, chunk: &[u8]) -> std::io::Result<()> {
        let Some((data, leaves, _)) = &self.data else {
            return Ok(());
        };
        let layout = self.meta.layout();
        data.write_all_at(chunk, layout.ciphertext_offset(index))?;
        leaves.write_all_at(isnad_attach::leaf_hash(chunk).as_bytes(), index * 32)?;
        if index == self.high {
            self.high += 1;
        }
        self.missing.remove(&index);
        self.unsynced += chunk.len() as u64;
        if self.unsynced >= self.sync_every {
            self.sync()?;
        }
        Ok(())
    }

    /// Gives up a transfer refused before its first chunk: its files are
    /// removed if nothing of it is durable (so a refused attachment does
    /// not count against the peer's quota).
    pub(crate) fn abandon(&mut self) -> std::io::Result<()> {
        if self.data.is_none() || self.durable > 0 {
            return Ok(());
        }
        self.data = None;
        let root = self.meta.ciphertext_root().to_hex();
        for ext in ["part", "leaves", "held", "meta"] {
            let _ = fs::remove_file(self.dir.join(format!("{root}.{ext}")));
        }
        sync_dir(&self.dir)
    }

    /// Makes everything written durable and moves the durable point to
    /// the first chunk not held.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        let Some((data, leaves, held)) = &self.data else {
            return Ok(());
        };
        let point = self.missing.first().copied().unwrap_or(self.high);
        data.sync_data()?;
        leaves.sync_data()?;
        if point != self.durable {
            held.write_all_at(&point.to_be_bytes(), 0)?;
            held.sync_data()?;
            self.durable = point;
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Every chunk is held: sync, then make the attachment complete
    /// (`.part` renamed to `.ct`, the directory synced).
    pub(crate) fn complete(&mut self) -> std::io::Result<()> {
        if self.data.is_none() {
            return Ok(());
        }
        self.sync()?;
        let root = self.meta.ciphertext_root().to_hex();
        let p = |ext: &str| self.dir.join(format!("{root}.{ext}"));
        // Complete means verified: the leaves written must make the root
        // and the number of chunks of the metadata.
        if leaf_tree(&p("leaves"), &self.meta)?.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the chunks held do not make the attachment's ciphertext root",
            ));
        }
        if let Some((data, _, _)) = &self.data {
            data.set_len(self.meta.layout().ciphertext_size())?;
            data.sync_all()?;
        }
        fs::rename(p("part"), p("ct"))?;
        sync_dir(&self.dir)?;
        let _ = fs::remove_file(p("held"));
        self.data = None;
        let _ = &self.guard;
        Ok(())
    }
}

/// The tree of the leaf file at `path` (a leaf hash per chunk), if it is
/// the tree of `meta`: its root and its number of chunks.
fn leaf_tree(path: &Path, meta: &AttachmentMeta) -> std::io::Result<Option<ChunkTree>> {
    let leaves: Vec<TreeHash> = fs::read(path)?
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            TreeHash::from_bytes(h)
        })
        .collect();
    Ok(ChunkTree::from_leaves(leaves)
        .filter(|t| t.root() == meta.ciphertext_root() && t.size() == meta.layout().chunks()))
}

fn meta_file(meta: &AttachmentMeta, origin: &str) -> Vec<u8> {
    let m = meta.encode();
    let mut out = (m.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&m);
    out.extend_from_slice(origin.as_bytes());
    out
}

fn parse_meta_file(bytes: &[u8]) -> Option<(AttachmentMeta, String)> {
    let n = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
    let meta = AttachmentMeta::decode(bytes.get(2..2 + n)?).ok()?;
    let origin = std::str::from_utf8(&bytes[2 + n..]).ok()?.to_owned();
    Some((meta, origin))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn random16(rng: &dyn SecureRandom) -> Result<[u8; 16], ring::error::Unspecified> {
    let mut b = [0u8; 16];
    rng.fill(&mut b)?;
    Ok(b)
}

fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    buf.clear();
    r.by_ref().take(n as u64).read_to_end(buf)?;
    Ok(())
}
