//! What one token operation costs: Ed25519 and ES256 signatures and a
//! P-256 / X25519 derive in a SoftHSM2 token (criterion), one session, one
//! thread. The token's own work bounds a node whose keys live in it.
//!
//! `cargo bench -p isnad-pkcs11` — needs SoftHSM2 (`ISNAD_SKIP_PKCS11=1`
//! skips, printing so).

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{criterion_group, criterion_main, Criterion};
use isnad_pkcs11::{softhsm, KeyKind, PinSource, Token, TokenConfig};

const PIN: &str = "4711-bench";

fn bench(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("isnad-softhsm-bench")
        .tempdir()
        .expect("tempdir");
    let module = match softhsm::init_tokens(dir.path(), &["isnad bench"], PIN) {
        Ok(m) => m,
        Err(softhsm::Missing(what)) if std::env::var("ISNAD_SKIP_PKCS11").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (ISNAD_SKIP_PKCS11=1): {what}");
            return;
        }
        Err(softhsm::Missing(what)) => panic!("{what}; ISNAD_SKIP_PKCS11=1 skips this bench"),
    };
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, PIN).expect("pin file");
    let token = Token::open(&TokenConfig {
        module,
        token: "isnad bench".into(),
        pin: PinSource::File(pin_file),
        sessions: NonZeroUsize::MIN,
    })
    .expect("open token");
    let ed = token.generate(KeyKind::Ed25519, "ed").expect("ed25519 key");
    let es = token.generate(KeyKind::Es256, "es").expect("es256 key");
    let p256 = token.generate(KeyKind::P256Ecdh, "p256").expect("p256 key");
    let x25519 = token
        .generate(KeyKind::X25519, "x25519")
        .expect("x25519 key");
    // Peers' public keys: another token key of the same curve will do.
    let p256_peer = token.generate(KeyKind::P256Ecdh, "p256-peer").expect("key");
    let x_peer = token.generate(KeyKind::X25519, "x25519-peer").expect("key");
    let msg = [0x5a; 200]; // about a COSE Sig_structure of a 1 KiB message's header
    let mut group = c.benchmark_group("softhsm2");
    group.bench_function("sign/ed25519", |b| {
        b.iter(|| token.sign_ed25519(&ed, black_box(&msg)).expect("sign"))
    });
    group.bench_function("sign/es256", |b| {
        b.iter(|| token.sign_es256(&es, black_box(&msg)).expect("sign"))
    });
    group.bench_function("derive/p256", |b| {
        b.iter(|| {
            token
                .derive(&p256, black_box(p256_peer.public()))
                .expect("derive")
        })
    });
    group.bench_function("derive/x25519", |b| {
        b.iter(|| {
            token
                .derive(&x25519, black_box(x_peer.public()))
                .expect("derive")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
