//! `isnad envelope seal|open`: offline debugging and interoperability tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use isnad_envelope::{
    body_from_json, body_to_json, AgencyId, EncryptionPublicKey, Header, Kind, Limits,
    MemoryReplayGuard, Message, MessageId, OpenError, Opener, SenderKey, VerifyingKey,
};
use ring::rand::SystemRandom;

use crate::keys::read_encryption_key;

/// Exit code when an envelope is rejected.
const EXIT_REJECTED: u8 = crate::exit::FAILED;

/// Envelope commands.
#[derive(Debug, Subcommand)]
pub(crate) enum EnvelopeCommand {
    /// Sign a JSON payload and encrypt it to one recipient.
    #[command(
        after_help = "Example:\n  isnad envelope seal --from-key a/sign.key.pem --sender iq.moi.ahtd \\\n    \
--to-key b/enc.pub.cose --recipient iq.moj.ca --kind mla-request \\\n    \
--payload request.json --out request.cbor\n\n\
The payload is the JSON form of the body of KIND (spec/messages.cddl): byte\n\
strings as lower-case hex; keys starting with x- are extensions.\n\
Prints the new message id."
    )]
    Seal(SealArgs),
    /// Decrypt, verify and check an envelope; print the payload as JSON.
    #[command(
        after_help = "Example:\n  isnad envelope open --key b/enc.key.pem --recipient iq.moj.ca \\\n    \
--sender-key a/sign.pub.cose --sender iq.moi.ahtd --in request.cbor\n\n\
Exit codes: 0 accepted; 1 usage or file error; 2 envelope rejected (the reason\n\
is printed on stderr, including which cryptographic check failed: this tool\n\
runs locally, so the detail is not hidden)."
    )]
    Open(OpenArgs),
}

/// Arguments of `isnad envelope seal`.
#[derive(Debug, clap::Args)]
pub(crate) struct SealArgs {
    /// Sender's signing key: PKCS#8 PEM, or a file holding the
    /// `pkcs11:` URI of a key in a token (then give the module and PIN
    /// source).
    #[arg(long)]
    from_key: PathBuf,
    /// The module and PIN source of a token-held signing key.
    #[command(flatten)]
    token: crate::token::TokenArgs,
    /// Sender agency id, e.g. iq.moi.ahtd.
    #[arg(long)]
    sender: AgencyId,
    /// Recipient's encryption public key (COSE_Key).
    #[arg(long)]
    to_key: PathBuf,
    /// Recipient agency id.
    #[arg(long)]
    recipient: AgencyId,
    /// Message kind: mla-request, mla-status, intel-share, receipt, error.
    #[arg(long, value_parser = parse_kind)]
    kind: Kind,
    /// JSON file with the body.
    #[arg(long)]
    payload: PathBuf,
    /// Where to write the envelope (CBOR).
    #[arg(long)]
    out: PathBuf,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    ttl: u64,
    /// Creation time (seconds since the Unix epoch) instead of the clock; for test vectors.
    #[arg(long, hide = true)]
    now: Option<u64>,
}

/// Arguments of `isnad envelope open`.
#[derive(Debug, clap::Args)]
pub(crate) struct OpenArgs {
    /// Recipient's encryption key (PKCS#8 PEM). Repeat during a key rotation.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Recipient agency id (this side).
    #[arg(long)]
    recipient: AgencyId,
    /// Sender's signing public key (COSE_Key).
    #[arg(long)]
    sender_key: PathBuf,
    /// The agency the sender key belongs to; the signed `from` claim must match.
    #[arg(long)]
    sender: AgencyId,
    /// The envelope file.
    #[arg(long = "in")]
    input: PathBuf,
    /// Check times against this instant (seconds since the Unix epoch) instead of the clock.
    #[arg(long, hide = true)]
    now: Option<u64>,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind {s:?}; one of: {}", all.join(", "))
    })
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs())
}

pub(crate) fn run(cmd: EnvelopeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EnvelopeCommand::Seal(a) => seal(a),
        EnvelopeCommand::Open(a) => open(a),
    }
}

fn seal(a: SealArgs) -> anyhow::Result<ExitCode> {
    let rng = SystemRandom::new();
    let signer = a.token.signing_key_at(&a.from_key)?;
    let to_key =
        std::fs::read(&a.to_key).with_context(|| format!("cannot read {}", a.to_key.display()))?;
    let to_key = EncryptionPublicKey::from_cose_key(&to_key).with_context(|| {
        format!(
            "{} is not an encryption public key (COSE_Key)",
            a.to_key.display()
        )
    })?;
    let json = std::fs::read_to_string(&a.payload)
        .with_context(|| format!("cannot read {}", a.payload.display()))?;
    let body = body_from_json(a.kind, &json)
        .with_context(|| format!("{} is not a valid {} body", a.payload.display(), a.kind))?;
    let created = match a.now {
        Some(t) => t,
        None => unix_now()?,
    };
    let msg = Message {
        header: Header {
            id: MessageId::time_ordered(created.saturating_mul(1000), &rng)?,
            sender: a.sender,
            recipient: a.recipient,
            created,
            expires: created.saturating_add(a.ttl),
        },
        body,
    };
    let env = isnad_envelope::seal(&msg, &signer, &to_key, &Limits::default(), &rng)?;
    std::fs::write(&a.out, &env).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("{}", msg.header.id);
    eprintln!(
        "sealed {} ({} bytes) to {}",
        a.kind,
        env.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn open(a: OpenArgs) -> anyhow::Result<ExitCode> {
    let keys = a
        .key
        .iter()
        .map(|p| read_encryption_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sk = std::fs::read(&a.sender_key)
        .with_context(|| format!("cannot read {}", a.sender_key.display()))?;
    let sender_key = VerifyingKey::from_cose_key(&sk).with_context(|| {
        format!(
            "{} is not a signing public key (COSE_Key)",
            a.sender_key.display()
        )
    })?;
    let envelope =
        std::fs::read(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let now = match a.now {
        Some(t) => t,
        None => unix_now()?,
    };
    let opener = Opener {
        me: &a.recipient,
        keys: &keys,
        limits: Limits::default(),
    };
    let senders = vec![SenderKey {
        agency: a.sender,
        key: sender_key,
        valid_from: None,
        valid_until: None,
        revoked_at: None,
    }];
    match opener.open(&envelope, now, &senders, &mut MemoryReplayGuard::default()) {
        Ok(o) => {
            let h = &o.message.header;
            let body: serde_json::Value = serde_json::from_str(&body_to_json(&o.message.body)?)?;
            let out = serde_json::json!({
                "id": h.id.to_hex(),
                "kind": o.message.body.kind().as_str(),
                "from": h.sender.as_str(),
                "to": h.recipient.as_str(),
                "created": h.created,
                "expires": h.expires,
                "signer-kid": o.signer.to_hex(),
                "envelope-sha256": o.envelope_digest.to_hex(),
                "body": body,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("rejected: {}: {}", e.code(), describe(&e));
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}

/// The detailed local description, including the opaque detail.
fn describe(e: &OpenError) -> String {
    match e {
        OpenError::Unauthentic(u) => format!("{e} ({})", u.detail().as_str()),
        _ => e.to_string(),
    }
}
