//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! The `iq` directories in `spec/vectors/federation/` are signed with
//! [`test_root`], so seeds taken from them pass the signature check and the
//! fuzzer reaches the decoder and the acceptance rules behind it.

use isnad_envelope::{SigningKey, VerifyingKey};

use crate::{verify_signed, Directory, TrustStore};

/// The time at which the fuzz targets accept directories (the vectors' `now`).
pub const FUZZ_NOW: u64 = 1_800_000_000;

/// A fixed Ed25519 root for tests, vectors and fuzzing. Its private key is
/// public: never trust it outside tests.
pub fn test_root() -> Option<SigningKey> {
    // PKCS#8 v1 (RFC 8410) prefix for an Ed25519 private key, then the seed.
    let mut der = hex_bytes("302e020100300506032b657004220420");
    der.extend_from_slice(&[0x49; 32]);
    SigningKey::from_pkcs8_der(&der).ok()
}

/// Decodes `data` as a directory payload (strict CBOR, then the checks).
pub fn directory_decode(data: &[u8]) {
    if let Ok(d) = Directory::from_cbor(data) {
        // What decodes must re-encode and decode to the same directory.
        if let Ok(bytes) = d.to_cbor() {
            assert_eq!(Directory::from_cbor(&bytes).ok(), Some(d));
        }
    }
}

/// Verifies `data` as a signed directory against [`test_root`], and offers
/// it to a trust store that trusts that root for `iq`.
pub fn directory_verify(data: &[u8]) {
    thread_local! {
        static ROOT: Option<VerifyingKey> = test_root().map(|k| k.verifying_key().clone());
    }
    ROOT.with(|root| {
        let Some(root) = root else { return };
        let _ = verify_signed(data, root);
        let mut store = TrustStore::new("iq", root.clone());
        if store.accept(data, FUZZ_NOW).is_ok() {
            // The same bytes again are a no-op.
            assert!(matches!(
                store.accept(data, FUZZ_NOW),
                Ok(crate::Accepted::Unchanged)
            ));
        }
    });
}

/// Takes `data` as a peer's TLS certificate (DER): computing its pin never
/// panics, and a peer set holding that pin maps the certificate to its
/// agency (and an empty one to none).
pub fn certificate(data: &[u8]) {
    let peers = crate::tls::PeerSet::default();
    assert_eq!(peers.agency_of(data), None);
    if let (Ok(pin), Ok(agency)) = (
        crate::tls::spki_sha256(data),
        isnad_envelope::AgencyId::new("iq.moi.ahtd"),
    ) {
        peers.replace(std::collections::BTreeMap::from([(pin, agency.clone())]));
        assert_eq!(peers.agency_of(data), Some(agency));
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    crate::directory::hex(s).unwrap_or_default()
}
