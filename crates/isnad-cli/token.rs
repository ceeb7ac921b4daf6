//! The PKCS#11 options shared by `keygen`, `directory root-init` and
//! `directory sign`: a key URI, the module, and where the PIN is (never
//! the PIN itself).

use std::path::PathBuf;

use anyhow::Context as _;
use isnad_envelope::SigningKey;
use isnad_node::token_keys::{self, Pkcs11Config, Tokens};

/// Where a key in a PKCS#11 token is and how to log in.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TokenArgs {
    /// The key in a PKCS#11 token, as an RFC 7512 URI
    /// (`pkcs11:token=…;object=…`): the key is made or used there and
    /// never leaves it.
    #[arg(long, value_name = "URI")]
    pub(crate) pkcs11: Option<String>,
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, value_name = "PATH")]
    pub(crate) pkcs11_module: Option<PathBuf>,
    /// A file holding the token's user PIN.
    #[arg(long, value_name = "FILE", conflicts_with = "pin_env")]
    pub(crate) pin_file: Option<PathBuf>,
    /// An environment variable holding the token's user PIN.
    #[arg(long, value_name = "VAR")]
    pub(crate) pin_env: Option<String>,
}

impl TokenArgs {
    /// The module and PIN source.
    pub(crate) fn config(&self) -> anyhow::Result<Pkcs11Config> {
        let module = self
            .pkcs11_module
            .clone()
            .context("--pkcs11-module is needed with a token key")?;
        if self.pin_file.is_none() && self.pin_env.is_none() {
            anyhow::bail!("--pin-file or --pin-env is needed with a token key");
        }
        Ok(Pkcs11Config {
            module,
            pin_file: self.pin_file.clone(),
            pin_env: self.pin_env.clone(),
            sessions: 1,
        })
    }

    /// The signing key in `path`: a PKCS#8 PEM file, or a file holding one
    /// line `pkcs11:…` naming a key in a token (`root.key.uri`,
    /// `sign.key.uri`), used with this module and PIN source.
    pub(crate) fn signing_key_at(&self, path: &std::path::Path) -> anyhow::Result<SigningKey> {
        match std::fs::read_to_string(path) {
            Ok(t) if t.trim_start().starts_with("pkcs11:") => self.signing_key(t.trim()),
            _ => crate::keys::read_signing_key(path),
        }
    }

    /// The signing key `uri` names in the token.
    pub(crate) fn signing_key(&self, uri: &str) -> anyhow::Result<SigningKey> {
        let mut tokens = Tokens::new(self.config()?);
        Ok(token_keys::signing_key(&mut tokens, uri)?)
    }
}
