//! Entry points for the fuzz targets (fuzz/fuzz_targets/attach_*.rs) and
//! tests/fuzz_regressions.rs. Not part of the API.

use crate::{AttachmentDescriptor, AttachmentMeta, ChunkOpener, ChunkVerifier, InclusionProof};

/// Every decoder of the crate on the same bytes: descriptor, metadata,
/// inclusion proof. Whatever decodes must encode back to the same bytes.
pub fn decoders(data: &[u8]) {
    if let Ok(d) = AttachmentDescriptor::decode(data) {
        assert_eq!(d.encode(), data);
        assert_eq!(AttachmentMeta::decode(&d.meta().encode()), Ok(d.meta()));
    }
    if let Ok(m) = AttachmentMeta::decode(data) {
        assert_eq!(m.encode(), data);
    }
    if let Ok(p) = InclusionProof::decode(data) {
        assert_eq!(p.encode(), data);
    }
}

/// Chunk checking and decryption of arbitrary bytes: the first byte picks
/// a split; before it a descriptor, after it chunk bytes and a proof.
/// Nothing may panic; a chunk of hostile bytes must never open.
pub fn chunks(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (head, tail) = rest.split_at(usize::from(split).min(rest.len()));
    let Ok(d) = AttachmentDescriptor::decode(head) else {
        return;
    };
    let verifier = ChunkVerifier::new(&d.meta());
    let (chunk, proof) = tail.split_at(tail.len() / 2);
    if let Ok(proof) = InclusionProof::decode(proof) {
        for index in 0..3 {
            let _ = verifier.verify(index, chunk, &proof);
        }
    }
    let mut opener = ChunkOpener::new(&d);
    let mut buf = chunk.to_vec();
    let _ = opener.open_chunk(&mut buf);
    let _ = opener.finish();
}
