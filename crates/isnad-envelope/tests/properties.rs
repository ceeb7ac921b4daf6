//! Property tests: seal/open round trips for arbitrary content, and no
//! single-bit change to an envelope is ever accepted.

use isnad_envelope::*;
use proptest::prelude::*;
use ring::rand::SystemRandom;

struct Fixture {
    me: AgencyId,
    them: AgencyId,
    signers: Vec<SigningKey>,
    keys: Vec<EncryptionKey>,
}

fn fixture() -> Fixture {
    let rng = SystemRandom::new();
    let gen_sig = |alg| SigningKey::generate(alg, &rng).expect("rng");
    let gen_enc = |c| EncryptionKey::generate(c, &rng).expect("rng");
    Fixture {
        me: AgencyId::new("fr.mj.bepi").expect("valid id"),
        them: AgencyId::new("iq.moi.ahtd").expect("valid id"),
        signers: vec![
            gen_sig(SignatureAlgorithm::Ed25519),
            gen_sig(SignatureAlgorithm::Es256),
        ],
        keys: vec![
            gen_enc(EncryptionCurve::P256),
            gen_enc(EncryptionCurve::X25519),
        ],
    }
}

fn senders(f: &Fixture) -> Vec<SenderKey> {
    f.signers
        .iter()
        .map(|s| SenderKey {
            agency: f.them.clone(),
            key: s.verifying_key().clone(),
            valid_from: None,
            valid_until: None,
            revoked_at: None,
        })
        .collect()
}

fn intel(summary: String, content: String, grading: u8, id: [u8; 16]) -> Body {
    Body::IntelShare(Box::new(IntelShare {
        share_id: MessageId::from_bytes(id),
        handling: HandlingCode::H1,
        source_grading: SourceGrading::A,
        information_grading: grading,
        tlp: Tlp::Green,
        classification: "RESTRICTED".into(),
        case_id: None,
        summary,
        content,
        entities: vec![],
        originator: None,
        permission: None,
        attachments: Vec::new(),
        extensions: Extensions::new(),
    }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn seal_open_round_trip(
        summary in "\\PC{0,40}",
        content in "\\PC{0,400}",
        grading in 1u8..=4,
        id in any::<[u8; 16]>(),
        created in 1_000_000_000u64..3_000_000_000,
        ttl in 1u64..=90 * 86400,
        signer in 0usize..2,
        key in 0usize..2,
    ) {
        let f = fixture();
        let rng = SystemRandom::new();
        let msg = Message {
            header: Header { id: MessageId::from_bytes(id), sender: f.them.clone(), recipient: f.me.clone(), created, expires: created + ttl },
            body: intel(summary, content, grading, id),
        };
        let env = seal(&msg, &f.signers[signer], f.keys[key].public_key(), &Limits::default(), &rng).expect("seal");
        let opener = Opener { me: &f.me, keys: &f.keys, limits: Limits::default() };
        let opened = opener.open(&env, created, &senders(&f), &mut MemoryReplayGuard::default()).expect("open");
        prop_assert_eq!(opened.message, msg);
        prop_assert_eq!(opened.signer, f.signers[signer].key_id());
    }

    #[test]
    fn no_single_bit_flip_is_accepted(bit in any::<prop::sample::Index>(), signer in 0usize..2, key in 0usize..2) {
        let f = fixture();
        let rng = SystemRandom::new();
        let msg = Message {
            header: Header { id: MessageId::random(&rng).expect("rng"), sender: f.them.clone(), recipient: f.me.clone(), created: 1_800_000_000, expires: 1_800_003_600 },
            body: intel("s".into(), "c".into(), 3, [9; 16]),
        };
        let mut env = seal(&msg, &f.signers[signer], f.keys[key].public_key(), &Limits::default(), &rng).expect("seal");
        let i = bit.index(env.len() * 8);
        env[i / 8] ^= 1 << (i % 8);
        let opener = Opener { me: &f.me, keys: &f.keys, limits: Limits::default() };
        let r = opener.open(&env, 1_800_000_000, &senders(&f), &mut MemoryReplayGuard::default());
        prop_assert!(r.is_err(), "flipped bit {} accepted", i);
    }

    #[test]
    fn arbitrary_bytes_are_rejected_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let f = fixture();
        let opener = Opener { me: &f.me, keys: &f.keys, limits: Limits::default() };
        let r = opener.open(&bytes, 1_800_000_000, &senders(&f), &mut MemoryReplayGuard::default());
        prop_assert!(r.is_err());
    }
}

/// Every bit of one envelope per signature algorithm and curve, flipped in
/// turn, is refused. Regression: the top bit of an X25519 ephemeral key
/// (ignored by X25519 itself) was accepted until non-canonical keys were.
#[test]
fn every_single_bit_flip_of_one_envelope_is_refused() {
    let f = fixture();
    let rng = SystemRandom::new();
    let opener = Opener {
        me: &f.me,
        keys: &f.keys,
        limits: Limits::default(),
    };
    for (signer, key) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let msg = Message {
            header: Header {
                id: MessageId::random(&rng).expect("rng"),
                sender: f.them.clone(),
                recipient: f.me.clone(),
                created: 1_800_000_000,
                expires: 1_800_003_600,
            },
            body: intel("s".into(), "c".into(), 3, [9; 16]),
        };
        let env = seal(
            &msg,
            &f.signers[signer],
            f.keys[key].public_key(),
            &Limits::default(),
            &rng,
        )
        .expect("seal");
        let mut replay = MemoryReplayGuard::default();
        assert!(opener
            .open(&env, 1_800_000_000, &senders(&f), &mut replay)
            .is_ok());
        for i in 0..env.len() * 8 {
            let mut bad = env.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let r = opener.open(
                &bad,
                1_800_000_000,
                &senders(&f),
                &mut MemoryReplayGuard::default(),
            );
            assert!(
                r.is_err(),
                "signer {signer}, key {key}: flipped bit {i} of {} accepted",
                env.len() * 8
            );
        }
    }
}

#[test]
fn signed_only_messages_verify_and_reject_tampering() {
    let f = fixture();
    let rng = SystemRandom::new();
    let msg = Message {
        header: Header {
            id: MessageId::random(&rng).expect("rng"),
            sender: f.them.clone(),
            recipient: f.me.clone(),
            created: 1_800_000_000,
            expires: 1_800_003_600,
        },
        body: Body::Receipt(Receipt {
            message_id: MessageId::from_bytes([4; 16]),
            envelope_digest: Digest::sha256(b"x"),
            log_index: 7,
            received_at: 1_800_000_000,
            attachments: Vec::new(),
        }),
    };
    let opener = Opener {
        me: &f.me,
        keys: &f.keys,
        limits: Limits::default(),
    };
    for signer in &f.signers {
        let signed = seal_signed(&msg, signer, &Limits::default(), &rng).expect("sign");
        let opened = opener
            .open_signed(&signed, 1_800_000_001, &senders(&f))
            .expect("verify");
        assert_eq!(opened.message, msg);
        assert_eq!(opened.envelope_digest, Digest::sha256(&signed));
        let mut bad = signed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        assert!(matches!(
            opener.open_signed(&bad, 1_800_000_001, &senders(&f)),
            Err(OpenError::Unauthentic(_))
        ));
        let other = AgencyId::new("fr.pn.ocrtis").expect("id");
        let elsewhere = Opener {
            me: &other,
            keys: &f.keys,
            limits: Limits::default(),
        };
        assert!(matches!(
            elsewhere.open_signed(&signed, 1_800_000_001, &senders(&f)),
            Err(OpenError::Misaddressed { .. })
        ));
    }
}
