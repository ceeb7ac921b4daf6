//! Attachment crypto throughput per MiB (criterion): encrypt + hash
//! (`seal`: AES-256-GCM, SHA-256 of the plaintext, chunk-tree leaf hashes)
//! and verify + decrypt (`open`), in memory, one core, for the default
//! 256 KiB chunks and for 64 KiB and 1 MiB chunks. This is the crypto
//! bound of an attachment transfer: no disk, no network.
//!
//! `cargo bench -p isnad-attach` — figures are quoted in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isnad_attach::*;
use ring::rand::SystemRandom;

const MIB: usize = 1 << 20;

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let plaintext: Vec<u8> = (0..16 * MIB).map(|i| (i * 31 + 7) as u8).collect();
    let mut group = c.benchmark_group("attachment 16 MiB");
    group.throughput(Throughput::Bytes(plaintext.len() as u64));
    group.sample_size(20);
    for cs in [1 << 16, 1 << 18, 1 << 20] {
        let chunk_size = ChunkSize::new(cs).expect("chunk size");
        let mut ciphertext = Vec::with_capacity(plaintext.len() + MIB);
        group.bench_function(
            format!("seal (encrypt + hash), {} KiB chunks", cs >> 10),
            |b| {
                b.iter(|| {
                    ciphertext.clear();
                    black_box(
                        seal(&plaintext[..], &mut ciphertext, chunk_size, &rng).expect("seal"),
                    )
                })
            },
        );
        let name = FileName::new("bench.bin").expect("name");
        let media = MediaType::new("application/octet-stream").expect("media type");
        ciphertext.clear();
        let d = seal(&plaintext[..], &mut ciphertext, chunk_size, &rng)
            .expect("seal")
            .describe(name, media);
        let mut out = Vec::with_capacity(plaintext.len());
        group.bench_function(
            format!("open (verify + decrypt), {} KiB chunks", cs >> 10),
            |b| {
                b.iter(|| {
                    out.clear();
                    open(&d, &ciphertext[..], &mut out).expect("open");
                    black_box(out.len())
                })
            },
        );
        group.bench_function(
            format!("verify without key, {} KiB chunks", cs >> 10),
            |b| {
                b.iter(|| {
                    black_box(verify_ciphertext(&d.meta(), &ciphertext[..], false).expect("verify"))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
