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

/// Chunk checking and decryption of arbitrary bytes, laid out as
/// `descriptor length (u16 BE) ‖ descriptor ‖ chunk index (u8) ‖
/// chunk length (u16 BE) ‖ chunk ‖ proof`. Nothing may panic.
pub fn chunks(data: &[u8]) {
    let Some((d, rest)) = take16(data) else {
        return;
    };
    let Ok(d) = AttachmentDescriptor::decode(d) else {
        return;
    };
    let Some((&index, rest)) = rest.split_first() else {
        return;
    };
    let Some((chunk, proof)) = take16(rest) else {
        return;
    };
    let verifier = ChunkVerifier::new(&d.meta());
    if let Ok(proof) = InclusionProof::decode(proof) {
        let _ = verifier.verify(u64::from(index), chunk, &proof);
    }
    let mut opener = ChunkOpener::new(&d);
    let mut buf = chunk.to_vec();
    let _ = opener.open_chunk(&mut buf);
    let _ = opener.finish();
}

/// A u16-BE-length-prefixed slice and the rest.
fn take16(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}
