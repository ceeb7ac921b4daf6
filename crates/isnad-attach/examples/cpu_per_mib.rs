//! CPU time per MiB of the attachment crypto, for a loaded machine where
//! criterion's wall-clock figures say more about the other processes than
//! about the code: seals, checks and opens a 256 MiB attachment in memory
//! (64 MiB with `--quick`) and prints the CPU time this thread spent per
//! MiB (Linux `/proc/thread-self/schedstat`) and the MiB/s one core would
//! give. `cargo run --release -p isnad-attach --example cpu_per_mib`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A developer tool.

use isnad_attach::*;
use ring::rand::SystemRandom;

fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn main() {
    let mib: usize = if std::env::args().any(|a| a == "--quick") {
        64
    } else {
        256
    };
    let rng = SystemRandom::new();
    let plain: Vec<u8> = (0..mib << 20).map(|i| (i * 31 + 7) as u8).collect();
    for cs in [1u32 << 16, 1 << 18, 1 << 20] {
        let chunk_size = ChunkSize::new(cs).unwrap();
        let mut ct = Vec::with_capacity(plain.len() + (1 << 20));
        let t = cpu_ns();
        let d = seal(&plain[..], &mut ct, chunk_size, &rng)
            .unwrap()
            .describe(FileName::new("x").unwrap(), MediaType::new("a/b").unwrap());
        let seal_ns = cpu_ns() - t;
        let t = cpu_ns();
        verify_ciphertext(&d.meta(), &ct[..], false).unwrap();
        let verify_ns = cpu_ns() - t;
        let mut out = Vec::with_capacity(plain.len());
        let t = cpu_ns();
        open(&d, &ct[..], &mut out).unwrap();
        let open_ns = cpu_ns() - t;
        assert_eq!(out, plain);
        for (what, ns) in [
            ("seal", seal_ns),
            ("verify (no key)", verify_ns),
            ("open", open_ns),
        ] {
            let per = ns as f64 / mib as f64 / 1e3;
            println!(
                "{:>5} KiB chunks  {what:<16} {per:>8.0} µs CPU per MiB  = {:>6.0} MiB/s per core",
                cs >> 10,
                1e6 / per
            );
        }
    }
    // The two AEADs ring offers, alone, in 256 KiB chunks (the choice in
    // spec/attachments.md §3.6).
    for (name, alg) in [
        ("AES-256-GCM", &ring::aead::AES_256_GCM),
        ("ChaCha20-Poly1305", &ring::aead::CHACHA20_POLY1305),
    ] {
        let key = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(alg, &[9; 32]).unwrap());
        let mut buf = vec![0u8; 1 << 18];
        let t = cpu_ns();
        for (i, c) in plain.chunks(1 << 18).enumerate() {
            buf.copy_from_slice(c);
            let mut n = [0u8; 12];
            n[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let nonce = ring::aead::Nonce::assume_unique_for_key(n);
            let tag = key
                .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), &mut buf)
                .unwrap();
            let _ = std::hint::black_box(tag);
        }
        let per = (cpu_ns() - t) as f64 / mib as f64 / 1e3;
        println!(
            "AEAD only  {name:<18} {per:>8.0} µs CPU per MiB  = {:>6.0} MiB/s per core",
            1e6 / per
        );
    }
    let t = cpu_ns();
    let _ = ContentDigest::of_reader(&plain[..]).unwrap();
    let per = (cpu_ns() - t) as f64 / mib as f64 / 1e3;
    println!(
        "SHA-256 only                  {per:>8.0} µs CPU per MiB  = {:>6.0} MiB/s per core",
        1e6 / per
    );
}
