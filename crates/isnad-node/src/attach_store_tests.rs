//! The attachment store refuses what would make a staged attachment
//! complete without its chunks: a second stream declaring other sizes
//! under a root being received, and a completion whose chunks do not make
//! the root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;

use isnad_attach::{AttachmentMeta, MediaType};
use isnad_envelope::AgencyId;
use ring::rand::SystemRandom;

use crate::attach_store::{AttachStore, AttachmentsConfig};

/// A sender's store holding a staged attachment of several chunks, and the
/// bytes of its first chunks.
fn staged(dir: &std::path::Path) -> (AttachmentMeta, Vec<Vec<u8>>) {
    let sender = AttachStore::open(&dir.join("sender"), &AttachmentsConfig::default()).unwrap();
    let path = dir.join("evidence.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all(&data).unwrap();
    drop(f);
    let desc = sender
        .stage_file(
            &path,
            &MediaType::new("application/octet-stream").unwrap(),
            &SystemRandom::new(),
        )
        .unwrap();
    let (meta, file, _) = sender.outgoing(&desc.ciphertext_root()).unwrap().unwrap();
    let layout = meta.layout();
    assert!(layout.chunks() >= 3, "several chunks: {}", layout.chunks());
    let chunks = (0..2)
        .map(|i| {
            let len = layout.ciphertext_chunk_len(i).unwrap();
            let mut buf = vec![0u8; usize::try_from(len).unwrap()];
            file.read_exact_at(&mut buf, layout.ciphertext_offset(i))
                .unwrap();
            buf
        })
        .collect();
    (meta, chunks)
}

/// The same root with one full chunk's ciphertext size: a valid layout of
/// one chunk, which the real attachment is not.
fn forged(meta: &AttachmentMeta, chunk: &[u8]) -> AttachmentMeta {
    AttachmentMeta::new(
        meta.layout().chunk_size(),
        chunk.len() as u64,
        meta.ciphertext_root(),
    )
    .unwrap()
}

#[test]
fn other_metadata_under_a_root_being_received_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, chunks) = staged(tmp.path());
    let receiver =
        AttachStore::open(&tmp.path().join("receiver"), &AttachmentsConfig::default()).unwrap();
    let honest = AgencyId::new("fr.pn.ocrtis").unwrap();
    let mut rx = receiver.receive(&honest, &meta).unwrap().unwrap();
    for (i, c) in chunks.iter().enumerate() {
        rx.write(i as u64, c).unwrap();
    }
    rx.sync().unwrap();
    assert_eq!(rx.resume_point(), 2);
    drop(rx);

    let other = AgencyId::new("iq.moj.ca").unwrap();
    let err = match receiver.receive(&other, &forged(&meta, &chunks[0])) {
        Err(e) => e,
        Ok(Some(mut rx)) => {
            // The old store resumed at min(held, 1) = 1 chunk: complete.
            let done = rx.all_held() && rx.complete().is_ok();
            panic!("a stream with other sizes was accepted (completed: {done})");
        }
        Ok(None) => panic!("refused as busy, not as other metadata"),
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(receiver.staged(&meta.ciphertext_root()).is_none());
    // The honest sender resumes where it was.
    let rx = receiver.receive(&honest, &meta).unwrap().unwrap();
    assert_eq!(rx.resume_point(), 2);
}

#[test]
fn chunks_that_do_not_make_the_root_do_not_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, chunks) = staged(tmp.path());
    let receiver =
        AttachStore::open(&tmp.path().join("receiver"), &AttachmentsConfig::default()).unwrap();
    let liar = AgencyId::new("iq.moj.ca").unwrap();
    let fake = forged(&meta, &chunks[0]);
    let mut rx = receiver.receive(&liar, &fake).unwrap().unwrap();
    rx.write(0, &chunks[0]).unwrap();
    assert!(rx.all_held());
    let err = rx
        .complete()
        .expect_err("completed without the attachment's chunks");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert!(receiver.staged(&meta.ciphertext_root()).is_none());
}
