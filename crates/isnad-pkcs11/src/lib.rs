//! Isnad keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2):
//! key references as RFC 7512 URIs, a token handle with a small session
//! pool, and the operations a node needs — Ed25519 and ES256 signing, the
//! recipient side of ECDH-ES on P-256 and X25519, key generation — none of
//! which reads a private key out of the token.
//!
//! ```text
//!  config: key = "pkcs11:token=Isnad%20node;object=signing"   module, PIN file/env
//!            │ KeyUri::parse                                     │ TokenConfig
//!            ▼                                                   ▼
//!        Token::key(uri, KeyKind) ──► TokenKey (handle + public part)
//!            │ sign_ed25519 / sign_es256 / derive
//!            ▼
//!        session pool ──► C_Sign / C_DeriveKey in the token
//! ```
//!
//! What it does not do: no key files, no software fallback, no async (the
//! calls block; a node runs them off its async runtime), no retry of a
//! wrong PIN. The derived ECDH secret is the one value that leaves the
//! token, for HKDF in the caller. spec/federation.md "Keys in a PKCS#11
//! token" is the normative text.
//!
//! ```
//! use isnad_pkcs11::{KeyUri, UriError};
//!
//! let uri: KeyUri = "pkcs11:token=Isnad%20node;object=signing;type=private".parse()?;
//! assert_eq!(uri.token(), "Isnad node");
//! assert_eq!(
//!     KeyUri::parse("pkcs11:token=t;object=o?pin-value=1234"),
//!     Err(UriError::PinInUri("pin-value".into()))
//! );
//! # Ok::<(), UriError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod softhsm;
mod token;
mod uri;

pub use cryptoki::mechanism::MechanismType;
pub use token::{
    EcdsaSignature, KeyKind, PinSource, PrivateFlags, SharedSecret, Token, TokenConfig, TokenError,
    TokenKey,
};
pub use uri::{KeyUri, ObjectType, UriError};
