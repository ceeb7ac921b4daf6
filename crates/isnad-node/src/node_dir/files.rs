//! The files of a node's directory: creating them (`isnad init`) and
//! reading its keys back.

use std::path::{Path, PathBuf};

use isnad_envelope::{EncryptionCurve, EncryptionKey, SignatureAlgorithm, SigningKey};
use isnad_log::SignerKey;
use isnad_trust::tls::TlsIdentity;
use ring::rand::{SecureRandom as _, SystemRandom};

use super::{create_private_dir, NodeDirError, NodeLock};
use crate::config::Config;

/// [`NodeDir::init`](super::NodeDir::init).
pub(super) fn init(dir: &Path, config: &Config) -> Result<(), NodeDirError> {
    create_private_dir(dir).map_err(|source| NodeDirError::NotWritable {
        dir: dir.to_owned(),
        source,
    })?;
    // Two `init`s racing on one directory: the second waits for nothing and
    // is refused here, before it looks at or writes anything.
    let _lock = NodeLock::acquire(&dir.join("state")).map_err(|source| NodeDirError::Claim {
        dir: dir.to_owned(),
        source,
    })?;
    if dir.join("config.toml").exists() {
        return Err(NodeDirError::Exists {
            dir: dir.to_owned(),
        });
    }
    write_node(dir, config)
}

/// Writes the keys, directories and `config.toml` of a node.
pub(super) fn write_node(dir: &Path, config: &Config) -> Result<(), NodeDirError> {
    let agency = &config.agency;
    let keys = dir.join("keys");
    for sub in ["keys", "state", "log", "trust"] {
        let path = dir.join(sub);
        create_private_dir(&path).map_err(|source| NodeDirError::Create { path, source })?;
    }
    let keygen = |e: Box<dyn std::error::Error + Send + Sync>| NodeDirError::Keygen(e);
    let rng = SystemRandom::new();
    // Roles `[keys]` puts in a token: their public halves come from it,
    // and no private key file is written.
    let t =
        crate::token_keys::TokenPublics::load(&config.keys, config.pkcs11.as_ref(), &config.agency)
            .map_err(|source| NodeDirError::TokenKey {
                role: "[keys]",
                source,
            })?;
    let sign = match t.signing {
        Some(k) => k,
        None => {
            let k = SigningKey::generate(SignatureAlgorithm::Ed25519, &rng)
                .map_err(|e| keygen(e.into()))?;
            write_private(&keys.join("sign.key.pem"), k.to_pkcs8_pem().as_bytes())?;
            k
        }
    };
    write_public(
        &keys.join("sign.pub.cose"),
        &sign.verifying_key().to_cose_key(),
    )?;
    let enc = match t.encryption {
        Some(k) => k,
        None => {
            let k = EncryptionKey::generate(EncryptionCurve::P256, &rng)
                .map_err(|e| keygen(e.into()))?;
            write_private(&keys.join("enc.key.pem"), k.to_pkcs8_pem().as_bytes())?;
            k
        }
    };
    write_public(&keys.join("enc.pub.cose"), &enc.public_key().to_cose_key())?;
    let cert = match t.tls_cert {
        Some(cert) => cert,
        None => {
            let tls = TlsIdentity::generate(agency).map_err(|e| keygen(e.into()))?;
            write_private(&keys.join("tls.key.der"), &tls.key_der)?;
            tls.cert_der
        }
    };
    write_public(&keys.join("tls.cert.der"), &cert)?;
    let log_key = match t.log {
        Some(k) => k,
        None => {
            let k = SignerKey::generate(&isnad_log::origin_for(agency), &rng)
                .map_err(|e| keygen(e.into()))?;
            write_private(&keys.join("log.key"), k.to_secret_string().as_bytes())?;
            k
        }
    };
    write_public(
        &keys.join("log.pub"),
        format!("{}\n", log_key.verifier()).as_bytes(),
    )?;
    let witness_key = match t.witness {
        Some(k) => k,
        None => {
            let k =
                SignerKey::generate_cosigner(&isnad_log::witness::witness_name_for(agency), &rng)
                    .map_err(|e| keygen(e.into()))?;
            write_private(&keys.join("witness.key"), k.to_secret_string().as_bytes())?;
            k
        }
    };
    write_public(
        &keys.join("witness.pub"),
        format!("{}\n", witness_key.verifier()).as_bytes(),
    )?;
    let mut token = [0u8; 32];
    rng.fill(&mut token)
        .map_err(|_| keygen("random number generator failed".into()))?;
    write_private(&keys.join("api.token"), hex::encode(token).as_bytes())?;
    let text = format!(
        "# Isnad node configuration. Every key is documented in deploy/README.md;\n\
         # the values below are the defaults unless set by `isnad init`.\n{}",
        config.to_toml().map_err(NodeDirError::ConfigText)?
    );
    write_public(&dir.join("config.toml"), text.as_bytes())
}

/// Reads a PKCS#8 PEM signing key.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, NodeDirError> {
    read_pem(path, "signing key", SigningKey::from_pkcs8_pem)
}

/// Reads a PKCS#8 PEM encryption key.
pub fn read_encryption_key(path: &Path) -> Result<EncryptionKey, NodeDirError> {
    read_pem(path, "encryption key", EncryptionKey::from_pkcs8_pem)
}

/// Writes a private key file: created new, mode 0600, synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeDirError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true).mode(0o600);
    write_new(&opts, path, bytes)
}

/// Writes a public file (never overwriting), synced.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), NodeDirError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    write_new(&opts, path, bytes)
}

/// The file `name` of the key directory `keys`.
pub(crate) fn read_key_file(keys: &Path, name: &str) -> Result<Vec<u8>, NodeDirError> {
    let path = keys.join(name);
    std::fs::read(&path).map_err(|source| NodeDirError::MissingKeyFile { path, source })
}

/// `keys/log.key`, the audit-log signer key.
pub(crate) fn read_log_key(keys: &Path) -> Result<SignerKey, NodeDirError> {
    let path = keys.join("log.key");
    let bytes = read_key_file(keys, "log.key")?;
    let bad = |path: PathBuf, source: Box<dyn std::error::Error + Send + Sync>| {
        NodeDirError::BadSignerKey {
            what: "an audit-log signer key",
            path,
            source,
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| bad(path.clone(), e.into()))?;
    SignerKey::parse(text.trim()).map_err(|e| bad(path, e.into()))
}

/// `keys/witness.key`, optional: a node created before witnessing existed
/// has no witness key.
pub(crate) fn read_witness_key(keys: &Path) -> Result<Option<SignerKey>, NodeDirError> {
    let path = keys.join("witness.key");
    match std::fs::read_to_string(&path) {
        Ok(t) => SignerKey::parse(t.trim())
            .map(Some)
            .map_err(|e| NodeDirError::BadSignerKey {
                what: "a witness cosigning key",
                path,
                source: e.into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NodeDirError::Read { path, source }),
    }
}

fn write_new(opts: &std::fs::OpenOptions, path: &Path, bytes: &[u8]) -> Result<(), NodeDirError> {
    use std::io::Write as _;
    let mut f = opts.open(path).map_err(|source| NodeDirError::Create {
        path: path.to_owned(),
        source,
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| NodeDirError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Reads the PEM file `path` holding `what`, parsed by `parse`.
fn read_pem<K>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&str) -> Result<K, isnad_envelope::KeyError>,
) -> Result<K, NodeDirError> {
    let pem = std::fs::read_to_string(path).map_err(|source| NodeDirError::ReadKey {
        what,
        path: path.to_owned(),
        source,
    })?;
    parse(&pem).map_err(|source| NodeDirError::BadKey {
        what,
        path: path.to_owned(),
        source,
    })
}
