//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use crate::{
    AgencyId, EncryptionCurve, EncryptionKey, EncryptionPublicKey, Kind, Limits, MemoryReplayGuard,
    Opener, SenderKey, SignatureAlgorithm, SigningKey, VerifyingKey,
};

/// Runs every decoder that takes untrusted bytes: the CBOR scan, COSE_Key
/// decoding, claims and each body kind.
pub fn decoders(data: &[u8]) {
    let limits = Limits::default();
    let _ = crate::cbor::scan(data, &limits);
    let _ = VerifyingKey::from_cose_key(data);
    let _ = EncryptionPublicKey::from_cose_key(data);
    if let Ok(claims) = crate::codec::decode_claims(data, &limits) {
        for kind in Kind::ALL {
            let _ = crate::codec::decode_body(kind, claims.body.clone());
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = SigningKey::from_pkcs8_pem(s);
        let _ = EncryptionKey::from_pkcs8_pem(s);
    }
}

/// Opens `data` as an envelope with fixed test keys (a fuzzer will mostly
/// exercise the structural checks before decryption).
pub fn open(data: &[u8]) {
    with_opener(|opener, senders| {
        let _ = opener.open(
            data,
            1_800_000_000,
            senders,
            &mut MemoryReplayGuard::default(),
        );
    });
}

/// Verifies `data` as a bare signed message, as receipts travel
/// ([`Opener::open_signed`]), with the fixed test keys of [`open`].
pub fn open_signed(data: &[u8]) {
    with_opener(|opener, senders| {
        let _ = opener.open_signed(data, 1_800_000_000, senders);
        // A receipt kept as evidence (`isnad evidence verify`).
        let _ = crate::verify_evidence(data, senders, &Limits::default());
    });
}

/// Runs `f` with an opener for `iq.moj.ca` holding the fixed test keys.
fn with_opener(f: impl FnOnce(&Opener<'_>, &Vec<SenderKey>)) {
    FIXTURE.with(|fixture| {
        let Some((keys, senders)) = fixture else {
            return;
        };
        let Ok(me) = AgencyId::new("iq.moj.ca") else {
            return;
        };
        let opener = Opener {
            me: &me,
            keys,
            limits: Limits::default(),
        };
        f(&opener, senders);
    });
}

thread_local! {
    static FIXTURE: Option<(Vec<EncryptionKey>, Vec<SenderKey>)> = fixture();
}

fn fixture() -> Option<(Vec<EncryptionKey>, Vec<SenderKey>)> {
    let rng = ring::rand::SystemRandom::new();
    let keys = vec![
        EncryptionKey::generate(EncryptionCurve::P256, &rng).ok()?,
        EncryptionKey::generate(EncryptionCurve::X25519, &rng).ok()?,
    ];
    let signer = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng).ok()?;
    let senders = vec![SenderKey {
        agency: AgencyId::new("fr.mj.bepi").ok()?,
        key: signer.verifying_key().clone(),
        valid_from: None,
        valid_until: None,
        revoked_at: None,
    }];
    Some((keys, senders))
}

/// Decodes `data` as a relay body (spec/relay.md §3) and, if it decodes,
/// checks its endorsement chain at every position against an empty key set
/// (so every structural path up to the key lookup runs).
pub fn relay_body(data: &[u8]) {
    let Ok(relay) = crate::Relay::from_cbor(data, &Limits::default()) else {
        return;
    };
    let keys: Vec<SenderKey> = Vec::new();
    for (i, me) in relay.route.iter().enumerate().skip(1) {
        let _ = crate::verify_hop(&relay, me, &relay.route[i - 1], &keys, 1_800_000_000);
    }
    let _ = crate::check_attachment_metas(&relay, &[]);
    let _ = relay.to_cbor();
}
