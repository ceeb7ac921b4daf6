//! The streaming AEAD (spec/attachments.md §3–§4): STREAM over
//! AES-256-GCM with Tink's nonce layout, one fresh key per attachment.
//!
//! ```text
//!   nonce(i) = nonce-prefix (7 bytes) || i as u32 big-endian (4) || last (1: 0x00 or 0x01)
//!   chunk i  = AES-256-GCM(key, nonce(i), aad = "", plaintext[i*cs .. (i+1)*cs]) || tag (16)
//! ```

use std::fmt;
use std::io::{Read, Write};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest::{Context, SHA256};
use ring::rand::SecureRandom;
use zeroize::Zeroize;

use crate::descriptor::{AttachmentDescriptor, AttachmentMeta, FileName, MediaType};
use crate::error::{DecodeError, OpenError, SealError};
use crate::tree::{leaf_hash, ChunkTree, InclusionProof, RootBuilder, TreeHash};

/// Bytes of the AES-256-GCM tag that ends every ciphertext chunk.
pub const TAG_LEN: usize = 16;
/// Bytes of an attachment key.
pub const KEY_LEN: usize = 32;
/// Bytes of the nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Most chunks an attachment may have: the chunk counter is 32 bits.
pub const MAX_CHUNKS: u64 = 1 << 32;

/// The plaintext bytes of every chunk but the last: a power of two from
/// 64 bytes to 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkSize(u32);

impl ChunkSize {
    /// The smallest chunk size (2^6 bytes).
    pub const MIN: u32 = 1 << 6;
    /// The largest chunk size (2^24 bytes, 16 MiB).
    pub const MAX: u32 = 1 << 24;
    /// The chunk size the reference sender uses: 256 KiB.
    pub const DEFAULT: Self = Self(1 << 18);

    /// Checks a chunk size.
    pub fn new(bytes: u32) -> Result<Self, DecodeError> {
        if bytes.is_power_of_two() && (Self::MIN..=Self::MAX).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(DecodeError::Field {
                field: "chunk-size",
                reason: "must be a power of two from 64 to 16777216",
            })
        }
    }

    /// The size in bytes.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Bytes of a full ciphertext chunk (chunk size plus tag).
    pub const fn ciphertext_len(self) -> u64 {
        self.0 as u64 + TAG_LEN as u64
    }
}

/// How an attachment of a given size is cut into chunks. Every attachment
/// has at least one chunk; every chunk but the last holds exactly one
/// chunk size of plaintext; the last holds 1 to chunk-size bytes, or 0
/// when the attachment is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk_size: ChunkSize,
    size: u64,
    chunks: u64,
}

impl Layout {
    /// The layout of `size` plaintext bytes; `None` past [`MAX_CHUNKS`].
    pub fn for_plaintext(chunk_size: ChunkSize, size: u64) -> Option<Self> {
        let chunks = size.div_ceil(u64::from(chunk_size.get())).max(1);
        (chunks <= MAX_CHUNKS).then_some(Self {
            chunk_size,
            size,
            chunks,
        })
    }

    /// The layout with `ciphertext_size` bytes of ciphertext; `None` if no
    /// plaintext size gives it (the last chunk would be shorter than a tag,
    /// or a tag only while not the only chunk) or past [`MAX_CHUNKS`].
    pub fn for_ciphertext(chunk_size: ChunkSize, ciphertext_size: u64) -> Option<Self> {
        let full = chunk_size.ciphertext_len();
        let tag = TAG_LEN as u64;
        if ciphertext_size < tag {
            return None;
        }
        let chunks = ciphertext_size.div_ceil(full).max(1);
        let last = ciphertext_size - (chunks - 1) * full;
        if last < tag || (last == tag && chunks > 1) {
            return None;
        }
        let size = ciphertext_size - chunks * tag;
        Self::for_plaintext(chunk_size, size).filter(|l| l.chunks == chunks)
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }
    /// Plaintext bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of chunks (at least 1).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }
    /// Ciphertext bytes: the plaintext plus one tag per chunk.
    pub fn ciphertext_size(&self) -> u64 {
        self.size + self.chunks * TAG_LEN as u64
    }
    /// Offset of chunk `index` in the ciphertext.
    pub fn ciphertext_offset(&self, index: u64) -> u64 {
        index * self.chunk_size.ciphertext_len()
    }
    /// Ciphertext bytes of chunk `index` (`None` beyond the last chunk).
    pub fn ciphertext_chunk_len(&self, index: u64) -> Option<u64> {
        if index + 1 < self.chunks {
            Some(self.chunk_size.ciphertext_len())
        } else if index + 1 == self.chunks {
            Some(self.ciphertext_size() - self.ciphertext_offset(index))
        } else {
            None
        }
    }
}

/// A fresh attachment key (AES-256). Not printed by `Debug`, wiped when
/// dropped; compared in constant time.
#[derive(Clone)]
pub struct AttachmentKey([u8; KEY_LEN]);

impl AttachmentKey {
    /// A new random key.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, SealError> {
        let mut k = [0u8; KEY_LEN];
        rng.fill(&mut k).map_err(|_| SealError::Random)?;
        Ok(Self(k))
    }

    /// A key from its bytes, as carried in a descriptor. Sealing with a
    /// chosen key is only for test vectors: a key must never be reused.
    #[doc(hidden)]
    pub fn less_safe_from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn aead(&self) -> LessSafeKey {
        // 32 bytes is always a valid AES-256 key; `expect` cannot fire.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key");
        LessSafeKey::new(key)
    }
}

impl Drop for AttachmentKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for AttachmentKey {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}
impl Eq for AttachmentKey {}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(..)")
    }
}

/// The random 7-byte nonce prefix of an attachment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoncePrefix([u8; NONCE_PREFIX_LEN]);

impl NoncePrefix {
    /// A new random prefix.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, SealError> {
        let mut p = [0u8; NONCE_PREFIX_LEN];
        rng.fill(&mut p).map_err(|_| SealError::Random)?;
        Ok(Self(p))
    }
    /// Wraps 7 bytes.
    pub const fn from_bytes(bytes: [u8; NONCE_PREFIX_LEN]) -> Self {
        Self(bytes)
    }
    /// The 7 bytes.
    pub const fn as_bytes(&self) -> &[u8; NONCE_PREFIX_LEN] {
        &self.0
    }
}

impl fmt::Debug for NoncePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoncePrefix({})", crate::hex(&self.0))
    }
}

/// The SHA-256 of an attachment's plaintext: the content digest the
/// message signs and the receipt binds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentDigest([u8; 32]);

impl ContentDigest {
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
    /// SHA-256 of a whole reader, in constant memory (for checking a file
    /// on disk against a signed digest).
    pub fn of_reader<R: Read>(mut reader: R) -> std::io::Result<Self> {
        let mut ctx = Context::new(&SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(Self::finish(ctx));
            }
            ctx.update(&buf[..n]);
        }
    }
    fn finish(ctx: Context) -> Self {
        let mut d = [0u8; 32];
        d.copy_from_slice(ctx.finish().as_ref());
        Self(d)
    }
}

impl fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentDigest({})", self.to_hex())
    }
}

/// The nonce of chunk `index` (spec/attachments.md §3.2).
fn nonce(prefix: &NoncePrefix, index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(&prefix.0);
    // Callers keep `index < MAX_CHUNKS`.
    n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

// ---------------------------------------------------------------------------
// sealing

/// Encrypts an attachment chunk by chunk (sans-IO): feed the plaintext in
/// chunk-size pieces, the last one marked, then [`ChunkSealer::finish`]
/// gives what the descriptor needs. Holds no more than a few hashes.
pub struct ChunkSealer {
    key: AttachmentKey,
    aead: LessSafeKey,
    prefix: NoncePrefix,
    chunk_size: ChunkSize,
    next: u64,
    done: bool,
    size: u64,
    digest: Context,
    tree: RootBuilder,
}

impl fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSealer")
            .field("chunk_size", &self.chunk_size)
            .field("next", &self.next)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ChunkSealer {
    /// A sealer with a fresh random key and nonce prefix.
    pub fn new(chunk_size: ChunkSize, rng: &dyn SecureRandom) -> Result<Self, SealError> {
        let key = AttachmentKey::generate(rng)?;
        let prefix = NoncePrefix::generate(rng)?;
        Ok(Self::less_safe_with(key, prefix, chunk_size))
    }

    /// A sealer with a chosen key and prefix: only for test vectors (a key
    /// and prefix must never seal two different plaintexts).
    #[doc(hidden)]
    pub fn less_safe_with(key: AttachmentKey, prefix: NoncePrefix, chunk_size: ChunkSize) -> Self {
        Self {
            aead: key.aead(),
            key,
            prefix,
            chunk_size,
            next: 0,
            done: false,
            size: 0,
            digest: Context::new(&SHA256),
            tree: RootBuilder::new(),
        }
    }

    /// Encrypts the next chunk in place: `buf` holds its plaintext and
    /// afterwards its ciphertext (the tag appended). Returns the chunk's
    /// index.
    pub fn seal_chunk(&mut self, buf: &mut Vec<u8>, last: bool) -> Result<u64, SealError> {
        let index = self.next;
        let cs = self.chunk_size.get();
        if self.done {
            return Err(SealError::AfterLast);
        }
        if buf.len() > cs as usize {
            return Err(SealError::LongChunk {
                index,
                len: buf.len(),
                chunk_size: cs,
            });
        }
        if !last && buf.len() != cs as usize {
            return Err(SealError::ShortChunk {
                index,
                len: buf.len(),
                chunk_size: cs,
            });
        }
        if last && buf.is_empty() && index > 0 {
            return Err(SealError::EmptyLastChunk { index });
        }
        if index >= MAX_CHUNKS {
            return Err(SealError::TooManyChunks);
        }
        self.digest.update(buf);
        self.size += buf.len() as u64;
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce(&self.prefix, index, last), Aad::empty(), buf)
            .map_err(|_| SealError::TooManyChunks)?;
        buf.extend_from_slice(tag.as_ref());
        self.tree.push(leaf_hash(buf));
        self.next += 1;
        self.done = last;
        Ok(index)
    }

    /// Ends the attachment: its key, digest, ciphertext root and sizes.
    pub fn finish(self) -> Result<Sealed, SealError> {
        let root = self.tree.root().filter(|_| self.done);
        let Some(ciphertext_root) = root else {
            return Err(SealError::Unfinished);
        };
        let layout =
            Layout::for_plaintext(self.chunk_size, self.size).ok_or(SealError::TooManyChunks)?;
        Ok(Sealed {
            key: self.key,
            nonce_prefix: self.prefix,
            layout,
            digest: ContentDigest::finish(self.digest),
            ciphertext_root,
        })
    }
}

/// A sealed attachment: everything its descriptor holds except the file
/// name and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub(crate) key: AttachmentKey,
    pub(crate) nonce_prefix: NoncePrefix,
    pub(crate) layout: Layout,
    pub(crate) digest: ContentDigest,
    pub(crate) ciphertext_root: TreeHash,
}

impl Sealed {
    /// The descriptor to put in the message body.
    pub fn describe(self, name: FileName, media_type: MediaType) -> AttachmentDescriptor {
        AttachmentDescriptor::from_sealed(self, name, media_type)
    }
    /// The plaintext's content digest.
    pub fn digest(&self) -> ContentDigest {
        self.digest
    }
    /// The ciphertext root.
    pub fn ciphertext_root(&self) -> TreeHash {
        self.ciphertext_root
    }
    /// The layout (sizes and chunk count).
    pub fn layout(&self) -> Layout {
        self.layout
    }
}

/// Encrypts everything `reader` yields to `writer`, holding two chunks in
/// memory (one read ahead, to know which chunk is the last).
pub fn seal<R: Read, W: Write>(
    mut reader: R,
    mut writer: W,
    chunk_size: ChunkSize,
    rng: &dyn SecureRandom,
) -> Result<Sealed, SealError> {
    let mut sealer = ChunkSealer::new(chunk_size, rng)?;
    seal_with(&mut sealer, &mut reader, &mut writer)?;
    sealer.finish()
}

/// [`seal`] with a given sealer (test vectors use a fixed key).
#[doc(hidden)]
pub fn seal_with<R: Read, W: Write>(
    sealer: &mut ChunkSealer,
    reader: &mut R,
    writer: &mut W,
) -> Result<(), SealError> {
    let cs = sealer.chunk_size.get() as usize;
    let mut cur = Vec::with_capacity(cs + TAG_LEN);
    let mut ahead = Vec::with_capacity(cs + TAG_LEN);
    read_up_to(reader, &mut cur, cs)?;
    loop {
        let last = if cur.len() < cs {
            true
        } else {
            read_up_to(reader, &mut ahead, cs)?;
            ahead.is_empty()
        };
        sealer.seal_chunk(&mut cur, last)?;
        writer.write_all(&cur)?;
        if last {
            return Ok(writer.flush()?);
        }
        std::mem::swap(&mut cur, &mut ahead);
    }
}

// ---------------------------------------------------------------------------
// opening

/// Decrypts an attachment's chunks in order (sans-IO) and, at
/// [`ChunkOpener::finish`], checks the ciphertext root and the content
/// digest. Holds no more than a few hashes. Plaintext handed out before
/// `finish` returns `Ok` is authenticated chunk by chunk under the key,
/// but not yet checked against the signed digest: keep it apart until then.
pub struct ChunkOpener {
    aead: LessSafeKey,
    prefix: NoncePrefix,
    layout: Layout,
    root: TreeHash,
    digest: ContentDigest,
    next: u64,
    received: u64,
    hasher: Context,
    tree: RootBuilder,
}

impl fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkOpener")
            .field("layout", &self.layout)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl ChunkOpener {
    /// An opener for the attachment `descriptor` describes.
    pub fn new(descriptor: &AttachmentDescriptor) -> Self {
        Self {
            aead: descriptor.key().aead(),
            prefix: descriptor.nonce_prefix(),
            layout: descriptor.layout(),
            root: descriptor.ciphertext_root(),
            digest: descriptor.digest(),
            next: 0,
            received: 0,
            hasher: Context::new(&SHA256),
            tree: RootBuilder::new(),
        }
    }

    /// Decrypts the next chunk in place and returns its plaintext.
    pub fn open_chunk<'a>(&mut self, chunk: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        let index = self.next;
        let expected =
            self.layout
                .ciphertext_chunk_len(index)
                .ok_or(OpenError::ChunkBeyondEnd {
                    index,
                    chunks: self.layout.chunks(),
                })?;
        if chunk.len() as u64 != expected {
            return Err(OpenError::ChunkLength {
                index,
                expected,
                actual: chunk.len() as u64,
            });
        }
        self.tree.push(leaf_hash(chunk));
        let last = index + 1 == self.layout.chunks();
        let plain = self
            .aead
            .open_in_place(nonce(&self.prefix, index, last), Aad::empty(), chunk)
            .map_err(|_| OpenError::Undecryptable { index })?;
        self.hasher.update(plain);
        self.next += 1;
        self.received += expected;
        Ok(plain)
    }

    /// Checks that every chunk came, that they have the declared root and
    /// that the plaintext has the signed digest.
    pub fn finish(self) -> Result<(), OpenError> {
        if self.next < self.layout.chunks() {
            return Err(OpenError::Truncated {
                declared: self.layout.ciphertext_size(),
                received: self.received,
            });
        }
        if self.tree.root() != Some(self.root) {
            return Err(OpenError::RootMismatch);
        }
        if ContentDigest::finish(self.hasher) != self.digest {
            return Err(OpenError::DigestMismatch);
        }
        Ok(())
    }
}

/// Decrypts the ciphertext `reader` yields to `writer`, holding one chunk
/// in memory, and checks sizes, root and digest. On `Err` whatever was
/// written must be discarded (write to a temporary file and rename it on
/// `Ok`).
pub fn open<R: Read, W: Write>(
    descriptor: &AttachmentDescriptor,
    mut reader: R,
    mut writer: W,
) -> Result<(), OpenError> {
    let mut opener = ChunkOpener::new(descriptor);
    let layout = descriptor.layout();
    let mut buf = Vec::with_capacity(layout.chunk_size().ciphertext_len() as usize);
    let mut received = 0;
    for index in 0..layout.chunks() {
        let len = layout.ciphertext_chunk_len(index).unwrap_or(0);
        read_chunk(&mut reader, &mut buf, len, layout, &mut received)?;
        writer.write_all(opener.open_chunk(&mut buf)?)?;
    }
    check_end(&mut reader, layout)?;
    opener.finish()?;
    Ok(writer.flush()?)
}

// ---------------------------------------------------------------------------
// verifying without the key (relays, and receivers before decrypting)

/// Checks single ciphertext chunks against the relay-visible metadata
/// (root, sizes) with their inclusion proofs, without the key: a relay
/// or a receiver refuses a damaged chunk, naming its index, before
/// anything is decrypted or forwarded.
#[derive(Debug, Clone)]
pub struct ChunkVerifier {
    root: TreeHash,
    layout: Layout,
}

impl ChunkVerifier {
    /// A verifier for the attachment `meta` describes.
    pub fn new(meta: &AttachmentMeta) -> Self {
        Self {
            root: meta.ciphertext_root(),
            layout: meta.layout(),
        }
    }

    /// The declared layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Checks chunk `index`: its position exists, its length is the one
    /// that position has, and its hash leads to the root with `proof`.
    pub fn verify(
        &self,
        index: u64,
        chunk: &[u8],
        proof: &InclusionProof,
    ) -> Result<(), OpenError> {
        let chunks = self.layout.chunks();
        let expected = self
            .layout
            .ciphertext_chunk_len(index)
            .ok_or(OpenError::ChunkBeyondEnd { index, chunks })?;
        if chunk.len() as u64 != expected {
            return Err(OpenError::ChunkLength {
                index,
                expected,
                actual: chunk.len() as u64,
            });
        }
        if !proof.verifies(index, chunks, &leaf_hash(chunk), &self.root) {
            return Err(OpenError::ChunkMismatch { index });
        }
        Ok(())
    }
}

/// Reads a whole ciphertext in order and checks its size and root without
/// the key, holding one chunk and a few hashes; returns the tree if
/// `keep_tree` (about 64 bytes per chunk, to serve inclusion proofs).
pub fn verify_ciphertext<R: Read>(
    meta: &AttachmentMeta,
    mut reader: R,
    keep_tree: bool,
) -> Result<Option<ChunkTree>, OpenError> {
    let layout = meta.layout();
    let mut buf = Vec::with_capacity(layout.chunk_size().ciphertext_len() as usize);
    let mut leaves = Vec::new();
    let mut builder = RootBuilder::new();
    let mut received = 0;
    for index in 0..layout.chunks() {
        let len = layout.ciphertext_chunk_len(index).unwrap_or(0);
        read_chunk(&mut reader, &mut buf, len, layout, &mut received)?;
        let leaf = leaf_hash(&buf);
        builder.push(leaf);
        if keep_tree {
            leaves.push(leaf);
        }
    }
    check_end(&mut reader, layout)?;
    if builder.root() != Some(meta.ciphertext_root()) {
        return Err(OpenError::RootMismatch);
    }
    Ok(ChunkTree::from_leaves(leaves))
}

// ---------------------------------------------------------------------------
// helpers

/// Reads until `buf` holds `max` bytes or the reader ends.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<()> {
    buf.clear();
    reader.take(max as u64).read_to_end(buf)?;
    Ok(())
}

/// Reads exactly `len` bytes of the next chunk, or reports truncation.
fn read_chunk<R: Read>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    len: u64,
    layout: Layout,
    received: &mut u64,
) -> Result<(), OpenError> {
    buf.clear();
    let got = reader.take(len).read_to_end(buf)? as u64;
    *received += got;
    if got < len {
        return Err(OpenError::Truncated {
            declared: layout.ciphertext_size(),
            received: *received,
        });
    }
    Ok(())
}

/// After the declared size the reader must end.
fn check_end<R: Read>(reader: &mut R, layout: Layout) -> Result<(), OpenError> {
    let mut one = [0u8; 1];
    loop {
        match reader.read(&mut one) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(OpenError::Oversize {
                    declared: layout.ciphertext_size(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ring::rand::SystemRandom;

    fn describe(s: Sealed) -> AttachmentDescriptor {
        s.describe(
            FileName::new("f.bin").unwrap(),
            MediaType::new("application/octet-stream").unwrap(),
        )
    }

    #[test]
    fn every_size_around_the_chunk_boundaries_round_trips_and_has_the_layout_it_declares() {
        let rng = SystemRandom::new();
        let cs = ChunkSize::new(64).unwrap();
        for size in (0..=300).chain([511, 512, 513, 4095, 4096, 4097]) {
            let plain: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
            let mut ct = Vec::new();
            let d = describe(seal(&plain[..], &mut ct, cs, &rng).unwrap());
            let layout = d.layout();
            assert_eq!(layout.size(), size as u64);
            assert_eq!(layout.ciphertext_size(), ct.len() as u64, "size {size}");
            assert_eq!(Layout::for_ciphertext(cs, ct.len() as u64), Some(layout));
            let want_chunks = (size as u64).div_ceil(64).max(1);
            assert_eq!(layout.chunks(), want_chunks, "size {size}");
            let mut back = Vec::new();
            open(&d, &ct[..], &mut back).unwrap();
            assert_eq!(back, plain);
            assert!(verify_ciphertext(&d.meta(), &ct[..], false)
                .unwrap()
                .is_none());
        }
    }

    #[test]
    fn a_ciphertext_size_no_plaintext_gives_is_refused() {
        let cs = ChunkSize::new(64).unwrap();
        // 80 = one full chunk; 81..=96 would leave a last chunk of 1..16 bytes.
        for bad in (0..16).chain(81..=96).chain(161..=176) {
            assert_eq!(Layout::for_ciphertext(cs, bad), None, "{bad}");
        }
        for good in [16, 17, 80, 97, 160, 177] {
            assert!(Layout::for_ciphertext(cs, good).is_some(), "{good}");
        }
        // The counter is 32 bits.
        assert!(Layout::for_plaintext(cs, 64 << 32).is_some());
        assert!(Layout::for_plaintext(cs, (64 << 32) + 1).is_none());
    }

    #[test]
    fn the_sealer_refuses_chunks_that_break_the_framing() {
        let rng = SystemRandom::new();
        let cs = ChunkSize::new(64).unwrap();
        let mut s = ChunkSealer::new(cs, &rng).unwrap();
        assert!(matches!(
            s.seal_chunk(&mut vec![0; 63], false),
            Err(SealError::ShortChunk {
                index: 0,
                len: 63,
                ..
            })
        ));
        assert!(matches!(
            s.seal_chunk(&mut vec![0; 65], true),
            Err(SealError::LongChunk { index: 0, .. })
        ));
        assert_eq!(s.seal_chunk(&mut vec![0; 64], false).unwrap(), 0);
        assert!(matches!(
            s.seal_chunk(&mut Vec::new(), true),
            Err(SealError::EmptyLastChunk { index: 1 })
        ));
        let unfinished = ChunkSealer::new(cs, &rng).unwrap();
        assert!(matches!(unfinished.finish(), Err(SealError::Unfinished)));
        assert_eq!(s.seal_chunk(&mut vec![0; 10], true).unwrap(), 1);
        assert!(matches!(
            s.seal_chunk(&mut vec![0; 10], true),
            Err(SealError::AfterLast)
        ));
        let sealed = s.finish().unwrap();
        assert_eq!(sealed.layout().size(), 74);
    }

    #[test]
    fn two_seals_of_the_same_file_share_no_key_nonce_or_ciphertext() {
        let rng = SystemRandom::new();
        let plain = vec![1u8; 1000];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let cs = ChunkSize::new(256).unwrap();
        let sa = seal(&plain[..], &mut a, cs, &rng).unwrap();
        let sb = seal(&plain[..], &mut b, cs, &rng).unwrap();
        assert_ne!(sa.key, sb.key);
        assert_ne!(sa.nonce_prefix, sb.nonce_prefix);
        assert_ne!(a, b);
        assert_ne!(sa.ciphertext_root(), sb.ciphertext_root());
        assert_eq!(sa.digest(), sb.digest());
        assert_eq!(
            sa.digest(),
            ContentDigest::of_reader(&plain[..]).unwrap(),
            "the content digest is the plaintext's SHA-256"
        );
    }

    /// A 256 MiB attachment is sealed from a generated stream and opened
    /// from a regenerated ciphertext stream, never held in memory: every
    /// write the adapters make is at most one ciphertext chunk, and the
    /// plaintext that comes out is checked piece by piece.
    #[test]
    fn a_256_mib_attachment_streams_through_seal_and_open_one_chunk_at_a_time() {
        const SIZE: u64 = 256 << 20;
        let cs = ChunkSize::DEFAULT;
        let key = [0x42; KEY_LEN];
        let prefix = NoncePrefix::from_bytes([7; NONCE_PREFIX_LEN]);
        let fresh =
            || ChunkSealer::less_safe_with(AttachmentKey::less_safe_from_bytes(key), prefix, cs);
        // Pass 1: seal into a sink that only counts and bounds each write.
        let mut sealer = fresh();
        let mut sink = Bounded {
            max: cs.ciphertext_len() as usize,
            total: 0,
            expect: None,
        };
        seal_with(&mut sealer, &mut Generated::new(SIZE), &mut sink).unwrap();
        let d = describe(sealer.finish().unwrap());
        assert_eq!(d.size(), SIZE);
        assert_eq!(sink.total, d.layout().ciphertext_size());
        // Pass 2: open a ciphertext made on the fly by the same sealer, into
        // a sink that compares with the generated plaintext.
        let ct = Resealed {
            sealer: fresh(),
            plain: Generated::new(SIZE),
            buf: Vec::new(),
            pos: 0,
            cs: cs.get() as usize,
            done: false,
        };
        let mut check = Bounded {
            max: cs.get() as usize,
            total: 0,
            expect: Some(Generated::new(SIZE)),
        };
        open(&d, ct, &mut check).unwrap();
        assert_eq!(check.total, SIZE);
    }

    /// `SIZE` bytes of a fixed 1 MiB block, each MiB stamped with its number.
    struct Generated {
        block: Vec<u8>,
        pos: u64,
        size: u64,
    }
    impl Generated {
        fn new(size: u64) -> Self {
            let block = (0..1u32 << 20)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            Self {
                block,
                pos: 0,
                size,
            }
        }
        fn byte_run(&self, out: &mut [u8]) -> usize {
            let left = (self.size - self.pos) as usize;
            let off = (self.pos % (1 << 20)) as usize;
            let n = out.len().min(left).min(self.block.len() - off);
            out[..n].copy_from_slice(&self.block[off..off + n]);
            // Stamp the first 8 bytes of each MiB with its number.
            let mib = self.pos >> 20;
            for (k, b) in out[..n]
                .iter_mut()
                .enumerate()
                .take(8usize.saturating_sub(off))
            {
                *b ^= (mib >> (8 * (k + off))) as u8;
            }
            n
        }
    }
    impl Read for Generated {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.byte_run(out);
            self.pos += n as u64;
            Ok(n)
        }
    }

    /// Counts what is written; refuses writes larger than `max`; compares
    /// with `expect` if given.
    struct Bounded {
        max: usize,
        total: u64,
        expect: Option<Generated>,
    }
    impl Write for Bounded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            assert!(buf.len() <= self.max, "a write of {} bytes", buf.len());
            if let Some(g) = &mut self.expect {
                let mut want = vec![0u8; buf.len()];
                let mut got = 0;
                while got < want.len() {
                    got += g.read(&mut want[got..])?;
                }
                assert!(want == buf, "plaintext differs at {}", self.total);
            }
            self.total += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The ciphertext of a `Generated` plaintext, sealed chunk by chunk as
    /// it is read.
    struct Resealed {
        sealer: ChunkSealer,
        plain: Generated,
        buf: Vec<u8>,
        pos: usize,
        cs: usize,
        done: bool,
    }
    impl Read for Resealed {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pos == self.buf.len() {
                if self.done {
                    return Ok(0);
                }
                self.buf.clear();
                (&mut self.plain)
                    .take(self.cs as u64)
                    .read_to_end(&mut self.buf)?;
                let last = self.plain.pos == self.plain.size;
                self.sealer
                    .seal_chunk(&mut self.buf, last)
                    .map_err(std::io::Error::other)?;
                self.done = last;
                self.pos = 0;
            }
            let n = out.len().min(self.buf.len() - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
}
