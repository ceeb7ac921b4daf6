//! The TLS key in a token as a rustls signing key (QUIC client and server
//! authentication, spec/federation.md §14).

use std::sync::Arc;

use super::TokenSigner;

/// The TLS key in a token, as rustls wants it: ECDSA P-256 with SHA-256
/// (the only scheme Isnad's TLS keys use).
pub(super) struct TokenTls(pub(super) Arc<TokenSigner>);

impl std::fmt::Debug for TokenTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenTls({})", self.0.key.label())
    }
}

impl rustls::sign::SigningKey for TokenTls {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(TokenTlsSigner(Arc::clone(&self.0))) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }

    /// The P-256 SubjectPublicKeyInfo, so rustls checks at start that the
    /// certificate holds this key.
    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        let point = self.0.key.public();
        if point.len() != 65 {
            return None;
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        Some(spki.into())
    }
}

/// DER of `SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 }` up to the
/// 65-byte uncompressed point (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

struct TokenTlsSigner(Arc<TokenSigner>);

impl std::fmt::Debug for TokenTlsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenTlsSigner({})", self.0.key.label())
    }
}

impl rustls::sign::Signer for TokenTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0.es256_der(message).map_err(|e| {
            tracing::warn!(error = %e, "PKCS#11 TLS signing failed");
            rustls::Error::General(format!("TLS key unavailable: {e}"))
        })
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
