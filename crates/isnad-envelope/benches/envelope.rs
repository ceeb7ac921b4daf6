//! Seal and open throughput for 1 KiB payloads (criterion).
//!
//! `cargo bench -p isnad-envelope` — figures are quoted in the README with the
//! machine they were measured on.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use isnad_envelope::*;
use ring::rand::SystemRandom;

fn message(me: &AgencyId, them: &AgencyId, rng: &SystemRandom) -> Message {
    Message {
        header: Header {
            id: MessageId::random(rng).expect("rng"),
            sender: them.clone(),
            recipient: me.clone(),
            created: 1_800_000_000,
            expires: 1_800_086_400,
        },
        body: Body::IntelShare(Box::new(IntelShare {
            share_id: MessageId::from_bytes([1; 16]),
            handling: HandlingCode::H0,
            source_grading: SourceGrading::B,
            information_grading: 2,
            tlp: Tlp::Amber,
            classification: "RESTRICTED".into(),
            case_id: None,
            summary: "bench".into(),
            content: "x".repeat(1024),
            entities: vec![],
            originator: None,
            permission: None,
            attachments: Vec::new(),
            extensions: Extensions::new(),
        })),
    }
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let me = AgencyId::new("fr.mj.bepi").expect("id");
    let them = AgencyId::new("iq.moi.ahtd").expect("id");
    let mut group = c.benchmark_group("envelope-1KiB");
    group.throughput(Throughput::Elements(1));
    for (alg, alg_name) in [
        (SignatureAlgorithm::Ed25519, "ed25519"),
        (SignatureAlgorithm::Es256, "es256"),
    ] {
        for (curve, curve_name) in [
            (EncryptionCurve::P256, "p256"),
            (EncryptionCurve::X25519, "x25519"),
        ] {
            let signer = SigningKey::generate(alg, &rng).expect("key");
            let enc = EncryptionKey::generate(curve, &rng).expect("key");
            let msg = message(&me, &them, &rng);
            let limits = Limits::default();
            group.bench_function(format!("seal/{alg_name}/{curve_name}"), |b| {
                b.iter(|| {
                    seal(black_box(&msg), &signer, enc.public_key(), &limits, &rng).expect("seal")
                })
            });
            let env = seal(&msg, &signer, enc.public_key(), &limits, &rng).expect("seal");
            let senders = vec![SenderKey {
                agency: them.clone(),
                key: signer.verifying_key().clone(),
                valid_from: None,
                valid_until: None,
                revoked_at: None,
            }];
            let keys = [enc];
            let opener = Opener {
                me: &me,
                keys: &keys,
                limits,
            };
            group.bench_function(format!("open/{alg_name}/{curve_name}"), |b| {
                // A fresh replay set per call: we measure the checks, not the set.
                b.iter(|| {
                    opener
                        .open(
                            black_box(&env),
                            1_800_000_000,
                            &senders,
                            &mut MemoryReplayGuard::default(),
                        )
                        .expect("open")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
