//! `isnad keygen`: a node's signing and encryption keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_envelope::{EncryptionCurve, EncryptionKey, SignatureAlgorithm, SigningKey};
use isnad_node::node_dir;
use ring::rand::SystemRandom;

/// File names written by `isnad keygen` inside `--out`.
pub(crate) const SIGN_KEY: &str = "sign.key.pem";
pub(crate) const SIGN_PUB: &str = "sign.pub.cose";
pub(crate) const ENC_KEY: &str = "enc.key.pem";
pub(crate) const ENC_PUB: &str = "enc.pub.cose";

/// Arguments of `isnad keygen`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  isnad keygen --out keys/iq.moi.ahtd --sig ed25519 --enc p256\n\n\
Writes sign.key.pem and enc.key.pem (PKCS#8 PEM, mode 0600) and their public\n\
halves sign.pub.cose and enc.pub.cose (COSE_Key, RFC 9052 §7). Existing files\n\
are never overwritten."
)]
pub(crate) struct KeygenArgs {
    /// Directory to write the keys into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Signature algorithm.
    #[arg(long, value_enum, default_value = "ed25519")]
    sig: SigArg,
    /// Key-agreement curve for the encryption key (P-256 is the interoperable default).
    #[arg(long, value_enum, default_value = "p256")]
    enc: EncArg,
    /// Create the keys inside a PKCS#11 token instead (`--pkcs11` names the
    /// token and a label prefix: objects `<object>-sign` and
    /// `<object>-enc`); only the public halves are written.
    #[command(flatten)]
    token: crate::token::TokenArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SigArg {
    Ed25519,
    Es256,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EncArg {
    P256,
    X25519,
}

pub(crate) fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let rng = SystemRandom::new();
    let alg = match args.sig {
        SigArg::Ed25519 => SignatureAlgorithm::Ed25519,
        SigArg::Es256 => SignatureAlgorithm::Es256,
    };
    let curve = match args.enc {
        EncArg::P256 => EncryptionCurve::P256,
        EncArg::X25519 => EncryptionCurve::X25519,
    };
    // Keys written into a node's own key directory (next to its
    // config.toml): take the node's lock first, so a running node's keys
    // are never touched behind its back.
    let _lock = lock_node_of(&args.out)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for name in [SIGN_KEY, SIGN_PUB, ENC_KEY, ENC_PUB] {
        let p = args.out.join(name);
        if p.exists() {
            anyhow::bail!(
                "{} already exists; keygen never overwrites keys (choose another --out)",
                p.display()
            );
        }
    }
    if let Some(uri) = args.token.pkcs11.clone() {
        return keygen_in_token(&args, &uri, alg, curve);
    }
    let sign = SigningKey::generate(alg, &rng)?;
    let enc = EncryptionKey::generate(curve, &rng)?;
    write_private(&args.out.join(SIGN_KEY), sign.to_pkcs8_pem().as_bytes())?;
    write_public(
        &args.out.join(SIGN_PUB),
        &sign.verifying_key().to_cose_key(),
    )?;
    write_private(&args.out.join(ENC_KEY), enc.to_pkcs8_pem().as_bytes())?;
    write_public(&args.out.join(ENC_PUB), &enc.public_key().to_cose_key())?;
    println!("signing key    {:?}  kid {}", alg, sign.key_id());
    println!("encryption key {:?}  kid {}", curve, enc.key_id());
    println!("written to {}", args.out.display());
    println!("next: publish {SIGN_PUB} and {ENC_PUB} in your country's directory (isnad directory add-node)");
    Ok(ExitCode::SUCCESS)
}

/// `isnad keygen --pkcs11`: the signing and encryption key pairs are made
/// in the token as sensitive, non-extractable objects; their public halves
/// are written as COSE_Keys and the `[keys]` lines for config.toml printed.
fn keygen_in_token(
    args: &KeygenArgs,
    uri: &str,
    alg: SignatureAlgorithm,
    curve: EncryptionCurve,
) -> anyhow::Result<ExitCode> {
    use isnad_node::token_keys;
    use isnad_pkcs11::KeyKind;
    let config = args.token.config()?;
    let base = isnad_pkcs11::KeyUri::parse(uri)?;
    let with_object = |suffix: &str| {
        format!(
            "pkcs11:token={};object={}",
            token_keys::pct(base.token()),
            token_keys::pct(&format!("{}-{suffix}", base.object()))
        )
    };
    let (sign_uri, enc_uri) = (with_object("sign"), with_object("enc"));
    let sign_kind = match alg {
        SignatureAlgorithm::Es256 => KeyKind::Es256,
        _ => KeyKind::Ed25519,
    };
    let enc_kind = match curve {
        EncryptionCurve::X25519 => KeyKind::X25519,
        _ => KeyKind::P256Ecdh,
    };
    token_keys::generate(&config, &sign_uri, sign_kind)?;
    token_keys::generate(&config, &enc_uri, enc_kind)?;
    let mut tokens = token_keys::Tokens::new(config);
    let sign = token_keys::signing_key(&mut tokens, &sign_uri)?;
    let enc = token_keys::encryption_key(&mut tokens, &enc_uri)?;
    write_public(
        &args.out.join(SIGN_PUB),
        &sign.verifying_key().to_cose_key(),
    )?;
    write_public(&args.out.join(ENC_PUB), &enc.public_key().to_cose_key())?;
    println!(
        "signing key    {:?}  kid {}  in {sign_uri}",
        alg,
        sign.key_id()
    );
    println!(
        "encryption key {:?}  kid {}  in {enc_uri}",
        curve,
        enc.key_id()
    );
    println!("public halves written to {}", args.out.display());
    println!("config.toml:\n[keys]\nsigning = \"{sign_uri}\"\nencryption = \"{enc_uri}\"");
    Ok(ExitCode::SUCCESS)
}

/// Reads a PKCS#8 PEM signing key.
pub(crate) fn read_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(node_dir::read_signing_key(path)?)
}

/// Reads a PKCS#8 PEM encryption key.
pub(crate) fn read_encryption_key(path: &Path) -> anyhow::Result<EncryptionKey> {
    Ok(node_dir::read_encryption_key(path)?)
}

/// The node lock of the node whose key directory `out` is, if it is one
/// (its parent holds a `config.toml` naming `out` as `paths.keys`).
fn lock_node_of(out: &Path) -> anyhow::Result<Option<node_dir::NodeLock>> {
    let Some(parent) = out.parent() else {
        return Ok(None);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let config_path = parent.join("config.toml");
    if !config_path.is_file() {
        return Ok(None);
    }
    let config = isnad_node::config::Config::load(&config_path)?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(&config.paths.keys, out) {
        return Ok(None);
    }
    let lock = node_dir::NodeLock::acquire(&config.paths.state).with_context(|| {
        format!(
            "cannot write keys into the node of {}: it is owned by another process",
            config_path.display()
        )
    })?;
    Ok(Some(lock))
}

/// Writes a private key file: created new, mode 0600, synced.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(node_dir::write_private(path, bytes)?)
}

/// Writes a public file (never overwriting), synced.
pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(node_dir::write_public(path, bytes)?)
}
