//! Isnad federation and trust: national roots, signed directories, partner
//! trust, policy, key rotation and revocation, and the TLS peer check.
//!
//! ```text
//!  country root key ──signs──▶ directory vN (COSE_Sign1, CBOR)
//!                                 agencies: keys, endpoints, TLS SPKI hash
//!                                 policy rules
//!  TrustStore: own root + imported partner roots
//!     accept(signed, now) ── checks root, validity, version ──▶ held directories
//!     sender_key / encryption_key / evaluate / tls_identities
//! ```
//!
//! What it does: the document formats, their signing and strict decoding,
//! the acceptance rules (wrong root, rollback, expiry), key validity windows
//! for rotation and revocation, policy evaluation as a pure function, and
//! rustls verifiers that pin peers by SPKI hash.
//!
//! What it does not do: no networking and no clock (time is passed in);
//! fetching directories from partners and writing changes to the audit log
//! are the node's job.
//!
//! ```
//! use isnad_envelope::{AgencyId, SignatureAlgorithm, SigningKey};
//! use isnad_trust::{Directory, TrustStore, Accepted};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rng = ring::rand::SystemRandom::new();
//! let root = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)?;
//! let mut dir = Directory::new("iq");
//! dir.version = 1;
//! dir.valid_from = 1_000;
//! dir.valid_until = 2_000;
//! let signed = dir.sign(&root, &rng)?;
//! let mut store = TrustStore::new("iq", root.verifying_key().clone());
//! assert!(matches!(store.accept(&signed, 1_500)?, Accepted::Updated { version: 1, .. }));
//! assert!(store.accept(&signed, 2_500).is_err()); // expired
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod directory;
#[doc(hidden)]
pub mod fuzzing;
mod route;
mod store;
pub mod tls;

pub use directory::{
    verify_signed, AgencyEntry, Directory, KeyEntry, Role, Rule, Selector, DIRECTORY_CONTENT_TYPE,
    DIRECTORY_SCHEMA, MAX_AGENCIES, MAX_DIRECTORY_BYTES, MAX_ENDPOINTS, MAX_ENDPOINT_BYTES,
    MAX_KEYS_PER_KIND, MAX_NAMES, MAX_RULES, MAX_TEXT_BYTES,
};
pub use route::canonical_route;
pub use store::{diff, Accepted, Change, Decision, Held, TrustStore};

/// Fingerprint of a root key for out-of-band confirmation: the key id in
/// groups of four hex digits (first 16 bytes), e.g. `3f2a 91c0 …`.
pub fn fingerprint(key: &isnad_envelope::VerifyingKey) -> String {
    let hex = key.key_id().to_hex();
    hex.as_bytes()[..32]
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl TrustError {
    /// A stable kebab-case name for the error (used in test vectors and by
    /// `isnad directory verify`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::InvalidDirectory(_) => "invalid-directory",
            Self::UnknownRoot => "unknown-root",
            Self::WrongRoot => "wrong-root",
            Self::BadSignature => "bad-signature",
            Self::Rollback { .. } => "rollback",
            Self::VersionConflict(_) => "version-conflict",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not-yet-valid",
            Self::RootConflict(_) => "root-conflict",
            Self::Io(_) => "io",
            Self::Tls(_) => "tls",
            Self::Crypto => "crypto",
        }
    }
}

/// Errors of the trust layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    // --- a document or peer is not acceptable ---
    /// The document is not well-formed or not of the directory schema.
    #[error("malformed directory: {0}")]
    Malformed(String),
    /// The document decodes but breaks a directory rule.
    #[error("invalid directory: {0}")]
    InvalidDirectory(String),
    /// Signed by a key that is no trusted root: import the partner's root
    /// first (`isnad trust add-partner`).
    #[error("signed by an unknown root; import the country's root with `isnad trust add-partner`")]
    UnknownRoot,
    /// Signed by a root trusted for another country than the directory's.
    #[error("signed by the root of another country")]
    WrongRoot,
    /// The signature does not verify.
    #[error("directory signature does not verify")]
    BadSignature,
    /// Older than the version held: a rollback.
    #[error("directory version {offered} is older than the version {held} already held (rollback refused)")]
    Rollback {
        /// Version held.
        held: u64,
        /// Version offered.
        offered: u64,
    },
    /// Same version as held but different content.
    #[error("a different directory with the same version {0} is already held; the issuer must bump the version")]
    VersionConflict(u64),
    /// Past its validity.
    #[error("directory expired at {valid_until} (now {now}); ask the issuer for a new version")]
    Expired {
        /// End of validity.
        valid_until: u64,
        /// Time of the check.
        now: u64,
    },
    /// Not valid yet.
    #[error("directory is valid only from {valid_from} (now {now}); check the clock")]
    NotYetValid {
        /// Start of validity.
        valid_from: u64,
        /// Time of the check.
        now: u64,
    },
    // --- operator actions ---
    /// A different root is already trusted for this country.
    #[error(
        "a different root is already trusted for {0}; if the partner really replaced its root \
         (confirm the fingerprint out of band), delete roots/{0}.cose and directories/{0}.cose \
         from the trust directory, then add the new root"
    )]
    RootConflict(String),
    // --- local failures ---
    /// Reading or writing the trust directory failed.
    #[error("trust store file error: {0}")]
    Io(String),
    /// TLS configuration or certificate handling failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Signing failed (random number generator).
    #[error("signing failed")]
    Crypto,
}
