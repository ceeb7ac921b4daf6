//! TLS identity: self-signed node certificates whose key is pinned by its
//! SPKI hash in the national directory, and rustls verifiers that accept a
//! peer only if its certificate's SPKI hash is listed in a verified, current
//! directory (spec/federation.md §9). TLS 1.3 only, ALPN `isnad/1`, ring.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use isnad_envelope::AgencyId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::TrustError;

/// The ALPN protocol id of Isnad version 1.
pub const ALPN: &[u8] = b"isnad/1";

/// Every ALPN protocol id this release speaks, newest first
/// (spec/transport.md §1.1). A client offers all of them; a server picks
/// the first of its list that the client offered (rustls), so two releases
/// agree on the newest version both speak, and a partner that offers none
/// of them fails the handshake (`no_application_protocol`). A release that
/// adds `isnad/2` puts it first and keeps `isnad/1` for partners still on
/// the release before.
pub const ALPN_PROTOCOLS: &[&[u8]] = &[ALPN];

/// Signs with a key held elsewhere (SHA-256, DER `Ecdsa-Sig-Value`), or
/// says why it could not.
pub type SignDer<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Sync + 'a;

/// A node's TLS certificate and private key (PKCS#8 DER).
#[derive(Clone)]
pub struct TlsIdentity {
    /// The self-signed certificate, DER.
    pub cert_der: Vec<u8>,
    /// The ECDSA P-256 private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A new ECDSA P-256 key and a self-signed certificate naming `agency`.
    pub fn generate(agency: &AgencyId) -> Result<Self, TrustError> {
        let ck = rcgen::generate_simple_self_signed(vec![agency.as_str().to_owned()])
            .map_err(|e| TrustError::Tls(e.to_string()))?;
        Ok(Self {
            cert_der: ck.cert.der().to_vec(),
            key_der: ck.signing_key.serialize_der(),
        })
    }

    /// A self-signed certificate for `agency` whose ECDSA P-256 key is held
    /// elsewhere (a PKCS#11 token): `public` is its 65-byte SEC1 point and
    /// `sign_der` signs with it (SHA-256, DER `Ecdsa-Sig-Value`). Only the
    /// certificate is returned; the key never passes through here.
    pub fn certificate_for_external_key(
        agency: &AgencyId,
        public: &[u8],
        sign_der: &SignDer<'_>,
    ) -> Result<Vec<u8>, TrustError> {
        struct Remote<'a> {
            public: &'a [u8],
            sign: &'a SignDer<'a>,
        }
        impl rcgen::PublicKeyData for Remote<'_> {
            fn der_bytes(&self) -> &[u8] {
                self.public
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &rcgen::PKCS_ECDSA_P256_SHA256
            }
        }
        impl rcgen::SigningKey for Remote<'_> {
            fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
                (self.sign)(msg).map_err(|_| rcgen::Error::RemoteKeyError)
            }
        }
        let params = rcgen::CertificateParams::new(vec![agency.as_str().to_owned()])
            .map_err(|e| TrustError::Tls(e.to_string()))?;
        let cert = params
            .self_signed(&Remote {
                public,
                sign: sign_der,
            })
            .map_err(|e| TrustError::Tls(e.to_string()))?;
        Ok(cert.der().to_vec())
    }

    /// SHA-256 of this certificate's SubjectPublicKeyInfo.
    pub fn spki_sha256(&self) -> Result<[u8; 32], TrustError> {
        spki_sha256(&self.cert_der)
    }
}

/// SHA-256 over the DER SubjectPublicKeyInfo of a certificate: the value
/// directories list as `tls-spki-sha256`.
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32], TrustError> {
    let cert = CertificateDer::from(cert_der);
    let parsed = ParsedCertificate::try_from(&cert).map_err(|e| TrustError::Tls(e.to_string()))?;
    let spki = parsed.subject_public_key_info();
    let d = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

/// The set of acceptable peers: SPKI hash → agency. Shared between the
/// verifiers and whoever accepts new directories; replace its content with
/// [`PeerSet::replace`] and new handshakes use it at once.
#[derive(Debug, Clone, Default)]
pub struct PeerSet(Arc<RwLock<BTreeMap<[u8; 32], AgencyId>>>);

impl PeerSet {
    /// Replaces the accepted identities.
    pub fn replace(&self, ids: BTreeMap<[u8; 32], AgencyId>) {
        if let Ok(mut g) = self.0.write() {
            *g = ids;
        }
    }

    /// The agency whose listed TLS key is in `cert_der`.
    pub fn agency_of(&self, cert_der: &[u8]) -> Option<AgencyId> {
        let h = spki_sha256(cert_der).ok()?;
        self.0.read().ok()?.get(&h).cloned()
    }
}

/// Verifies peers against a [`PeerSet`], and handshake signatures with the
/// ring provider's algorithms.
#[derive(Debug)]
struct SpkiVerifier {
    peers: PeerSet,
    provider: Arc<CryptoProvider>,
}

fn refuse() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// TLS 1.2 is never negotiated (QUIC requires 1.3); both verifiers say so.
fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

/// What the server and the client verifier share: the handshake signature is
/// checked with the ring provider's algorithms.
impl SpkiVerifier {
    fn tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for SpkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is the agency we meant to reach; its listed key
        // must be the one presented.
        let ServerName::DnsName(name) = server_name else {
            return Err(refuse());
        };
        match self.peers.agency_of(end_entity) {
            Some(a) if a.as_str() == name.as_ref() => Ok(ServerCertVerified::assertion()),
            _ => Err(refuse()),
        }
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for SpkiVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.peers.agency_of(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(refuse()),
        }
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// rustls server and client configurations for a node: TLS 1.3 only, ring,
/// ALPN `isnad/1`, client certificates required, both sides verified
/// against `peers`.
pub fn configs(
    identity: &TlsIdentity,
    peers: &PeerSet,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), TrustError> {
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(identity.key_der.clone().into()))
        .map_err(|e| TrustError::Tls(e.to_string()))?;
    configs_with_key(&identity.cert_der, key, peers)
}

/// [`configs`] for a private key held elsewhere (a PKCS#11 token): `key`
/// signs the TLS 1.3 handshakes, as server and as client, and must match
/// the certificate `cert_der`. rustls calls it synchronously inside the
/// QUIC driver; an implementation that blocks keeps the async runtime
/// free itself.
pub fn configs_with_key(
    cert_der: &[u8],
    key: Arc<dyn rustls::sign::SigningKey>,
    peers: &PeerSet,
) -> Result<(Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>), TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SpkiVerifier {
        peers: peers.clone(),
        provider: Arc::clone(&provider),
    });
    let tls = |e: rustls::Error| TrustError::Tls(e.to_string());
    let certified =
        rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert_der.to_vec())], key);
    certified.keys_match().or_else(|e| match e {
        // A key that cannot give its SPKI cannot be compared: the handshake
        // would fail at the peer, whose pin does not match.
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown) => Ok(()),
        e => Err(tls(e)),
    })?;
    let resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(resolver.clone());
    server.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // rustls puts every custom server verifier behind `dangerous()`; this one
    // verifies (pinned SPKI plus the TLS 1.3 handshake signature).
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(resolver);
    client.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(server), Arc::new(client)))
}
