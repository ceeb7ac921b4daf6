//! `isnad evidence verify`: proves offline that a file is byte for byte an
//! attachment the sender sealed and the recipient acknowledged
//! (spec/attachments.md §6.4), from the signed receipt and one party's
//! exported audit log. Glue: the receipt is checked by isnad-envelope, the
//! export by isnad-log, the chain by `isnad_log::custody::verify`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use isnad_envelope::{
    verify_evidence, AgencyId, Body, Digest, Limits, MessageId, SenderKey, VerifyingKey,
};
use isnad_log::custody::{self, FileFacts, Party, VerifiedReceipt};

use crate::exit;

/// `isnad evidence …`.
#[derive(Debug, Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Prove that FILE is an attachment the recipient acknowledged, offline.
    #[command(
        after_help = "Example:\n  isnad evidence verify extraction-report.pdf --receipt 927346b6.receipt \\\n    \
--signer fr.pn.ocrtis --signer-key fr.pn.ocrtis/sign.pub.cose --export exports/iq.moi.ahtd --verifier-key iq.moi.ahtd.log.pub\n\n\
FILE is hashed in one pass (SHA-256, constant memory) and must be one of the\n\
attachments the receipt (the COSE_Sign1 the sender's node keeps, signed by the\n\
recipient --signer with the key in --signer-key) acknowledges. The export (the sender's\n\
or the recipient's, verified with --verifier-key) must hold the entries that\n\
record it: sent and receipt-received at the sender, received (the receipt's\n\
log index) and receipt-sent at the recipient. Exit 0: proven, with the log\n\
indexes; 2: not proven (the reason); 1: unreadable input."
    )]
    Verify(VerifyArgs),
}

/// Arguments of `isnad evidence verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The file to prove.
    file: PathBuf,
    /// The receipt: the signed receipt's bytes (raw, or as hex text).
    #[arg(long)]
    receipt: PathBuf,
    /// The agency that signed the receipt: the message's recipient.
    #[arg(long, value_parser = parse_agency)]
    signer: AgencyId,
    /// Its signing public key (COSE_Key file, e.g. its `sign.pub.cose`).
    #[arg(long)]
    signer_key: PathBuf,
    /// An audit-log export of the sender or the recipient.
    #[arg(long)]
    export: PathBuf,
    /// That log's verifier key (name+keyid+key).
    #[arg(long)]
    verifier_key: PathBuf,
    /// The message the file must be attached to (32 hex digits).
    #[arg(long, value_parser = parse_id)]
    message: Option<MessageId>,
}

pub(crate) fn run(cmd: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvidenceCommand::Verify(a) => verify(&a),
    }
}

fn verify(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let failed = |why: String| {
        println!("NOT PROVEN: {why}");
        Ok(ExitCode::from(exit::FAILED))
    };
    let receipt_bytes = read_receipt(&a.receipt)?;
    let key_bytes = std::fs::read(&a.signer_key)
        .with_context(|| format!("cannot read signer key {}", a.signer_key.display()))?;
    let key = VerifyingKey::from_cose_key(&key_bytes)
        .with_context(|| format!("{} is not a COSE_Key", a.signer_key.display()))?;
    let trusted = vec![SenderKey {
        agency: a.signer.clone(),
        key,
        valid_from: None,
        valid_until: None,
        revoked_at: None,
    }];
    let opened = match verify_evidence(&receipt_bytes, &trusted, &Limits::default()) {
        Ok(o) => o,
        Err(e) => return failed(format!("the receipt does not verify with this key: {e}")),
    };
    let h = &opened.message.header;
    let Body::Receipt(receipt) = &opened.message.body else {
        return failed(format!(
            "{} is a {} message, not a receipt",
            a.receipt.display(),
            opened.message.body.kind()
        ));
    };
    let loaded = crate::audit::crosscheck::load(&a.export, &a.verifier_key, None)?;
    let Some(log) = loaded.log else {
        return failed(format!(
            "the export {} does not verify: {}",
            loaded.label,
            loaded.problems.join("; ")
        ));
    };
    let file = hash_file(&a.file)?;
    let verified = VerifiedReceipt {
        signer: &h.sender,
        addressee: &h.recipient,
        receipt,
        receipt_sha256: Digest::sha256(&receipt_bytes).0,
    };
    match custody::verify(&file, &verified, &log, a.message) {
        Ok(c) => {
            let (party, msg, rcpt) = match c.party {
                Party::Sender => ("sender", "sent", "receipt-received"),
                Party::Recipient => ("recipient", "received", "receipt-sent"),
            };
            println!(
                "PROVEN: {} is attachment {} of message {}",
                a.file.display(),
                c.position,
                c.message_id.to_hex()
            );
            println!(
                "  sha256 {}  {} bytes",
                Digest(file.digest).to_hex(),
                file.size
            );
            println!(
                "  acknowledged by {} in receipt {} (log index {})",
                h.sender,
                Digest::sha256(&receipt_bytes).to_hex(),
                receipt.log_index
            );
            println!("  ciphertext {}", c.logged);
            println!(
                "  {party}'s log {}: {msg} at index {}, {rcpt} at index {}",
                log.checkpoint.origin, c.message_index, c.receipt_index
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => failed(e.to_string()),
    }
}

fn read_receipt(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw =
        std::fs::read(path).with_context(|| format!("cannot read receipt {}", path.display()))?;
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    Ok(match text.and_then(|t| hex::decode(t).ok()) {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => raw,
    })
}

/// SHA-256 and size of the file in one pass.
fn hash_file(path: &Path) -> anyhow::Result<FileFacts> {
    struct Counting<R>(R, u64);
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = Counting(f, 0);
    let d = isnad_attach::ContentDigest::of_reader(&mut r)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(FileFacts {
        digest: *d.as_bytes(),
        size: r.1,
    })
}

fn parse_agency(s: &str) -> Result<AgencyId, String> {
    AgencyId::new(s).map_err(|e| e.to_string())
}

fn parse_id(s: &str) -> Result<MessageId, String> {
    MessageId::from_hex(s).ok_or_else(|| "a message id is 32 hex digits".to_owned())
}
