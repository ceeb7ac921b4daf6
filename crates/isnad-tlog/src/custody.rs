//! Chain of custody for one attachment (spec/attachments.md §6.4): proves,
//! from a signed receipt and one party's verified audit log, that a file is
//! byte for byte an attachment the sender sealed and the recipient
//! acknowledged, and names the log entries that show it.
//!
//! ```text
//!   file ──SHA-256, size──▶ receipt attachment i {digest, size, ciphertext-root, ciphertext-size}
//!                               (signed by the recipient: binds plaintext to ciphertext)
//!                                              │ ciphertext-root:ciphertext-size
//!        sender's log:    sent (its attachments[i])      receipt-received (receipt-sha256, attachments[i])
//!     or recipient's log: received at log-index (…[i])   receipt-sent naming it (…[i])
//! ```
//!
//! Pure: the caller hashes the file, verifies the receipt's signature
//! (isnad-envelope `verify_evidence`) and the export (isnad-log
//! `read_verified_export`), then calls [`verify`].

use isnad_types::{AgencyId, MessageId, Receipt};

use crate::attachments::LoggedAttachment;
use crate::audited::AuditedLog;
use crate::entry::{Entry, EventType};

/// The detail key of a sender's `receipt-received` naming the receipt's
/// SHA-256 (spec/audit-log.md §2.3).
pub const RECEIPT_SHA256: &str = "receipt-sha256";

/// A receipt whose signature the caller verified.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedReceipt<'a> {
    /// Who signed it: the message's recipient.
    pub signer: &'a AgencyId,
    /// Whom it is addressed to: the message's sender.
    pub addressee: &'a AgencyId,
    /// Its body.
    pub receipt: &'a Receipt,
    /// SHA-256 of the receipt bytes as held (the sender logs it).
    pub receipt_sha256: [u8; 32],
}

/// The file on disk: its SHA-256 and size, read in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// SHA-256 of the bytes.
    pub digest: [u8; 32],
    /// Bytes.
    pub size: u64,
}

/// Whose log the proof was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The message's sender (`sent`, `receipt-received`).
    Sender,
    /// The message's recipient (`received`, `receipt-sent`).
    Recipient,
}

/// What [`verify`] proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custody {
    /// The message the file was attached to.
    pub message_id: MessageId,
    /// The attachment's position in the message (and the receipt).
    pub position: usize,
    /// Its ciphertext root and size, as the log records them.
    pub logged: LoggedAttachment,
    /// Whose log.
    pub party: Party,
    /// The index of the `sent` (sender) or `received` (recipient) entry.
    pub message_index: u64,
    /// The index of the `receipt-received` (sender) or `receipt-sent`
    /// (recipient) entry.
    pub receipt_index: u64,
}

/// Why the file is not proven to be the acknowledged attachment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CustodyError {
    // --- the file is not what was acknowledged ---
    /// No attachment of the receipt has the file's SHA-256 and size: the
    /// file differs (even by one byte) from everything the recipient
    /// acknowledged.
    #[error(
        "the file (SHA-256 {digest}, {size} bytes) is none of the {acknowledged} attachments the receipt acknowledges"
    )]
    NotAcknowledged {
        /// The file's SHA-256, hex.
        digest: String,
        /// The file's size.
        size: u64,
        /// How many attachments the receipt lists.
        acknowledged: usize,
    },
    // --- the inputs do not belong together ---
    /// The receipt acknowledges another message than the one asked about.
    #[error("the receipt acknowledges message {found}, not {asked}")]
    OtherMessage {
        /// The message asked about.
        asked: MessageId,
        /// The message the receipt names.
        found: MessageId,
    },
    /// The log is neither the sender's nor the recipient's.
    #[error("the log of {log} belongs to neither party of the receipt ({sender} → {recipient}); give the export of one of them")]
    OtherLog {
        /// Whose log it is (its origin if not an agency).
        log: String,
        /// The message's sender.
        sender: AgencyId,
        /// The message's recipient.
        recipient: AgencyId,
    },
    // --- the log does not show it ---
    /// The log holds no entry that the proof needs.
    #[error("the log holds no {what} of this message{}", at.map(|i| format!(" at index {i}")).unwrap_or_default())]
    EntryMissing {
        /// The entry looked for.
        what: &'static str,
        /// Where the receipt says it is, if it says.
        at: Option<u64>,
    },
    /// The entry is there but does not record this attachment (another
    /// ciphertext root or size, or none) at its position.
    #[error("log entry {index} ({what}) does not record attachment {position} as {logged}")]
    NotRecorded {
        /// The entry.
        what: &'static str,
        /// Its index.
        index: u64,
        /// The attachment's position.
        position: usize,
        /// What it should record.
        logged: LoggedAttachment,
    },
}

/// Proves that `file` is attachment `i` of the message `receipt`
/// acknowledges (if `message` is given, that message), from `log`, the
/// sender's or the recipient's verified log (spec/attachments.md §6.4).
pub fn verify(
    file: &FileFacts,
    receipt: &VerifiedReceipt<'_>,
    log: &AuditedLog,
    message: Option<MessageId>,
) -> Result<Custody, CustodyError> {
    let r = receipt.receipt;
    if let Some(asked) = message.filter(|m| *m != r.message_id) {
        return Err(CustodyError::OtherMessage {
            asked,
            found: r.message_id,
        });
    }
    let (position, acked) = r
        .attachments
        .iter()
        .enumerate()
        .find(|(_, a)| a.digest.0 == file.digest && a.size == file.size)
        .ok_or_else(|| CustodyError::NotAcknowledged {
            digest: crate::hex_encode(&file.digest),
            size: file.size,
            acknowledged: r.attachments.len(),
        })?;
    let logged = LoggedAttachment {
        ciphertext_root: acked.ciphertext_root.0,
        ciphertext_size: acked.ciphertext_size,
    };
    let records = |e: &Entry, what: &'static str| {
        if e.attachments().ok().and_then(|l| l.get(position).copied()) == Some(logged) {
            Ok(())
        } else {
            Err(CustodyError::NotRecorded {
                what,
                index: e.seq,
                position,
                logged,
            })
        }
    };
    let of_message = |e: &&Entry, event: EventType, from: &AgencyId, to: &AgencyId| {
        e.event == event
            && e.message_id == Some(r.message_id)
            && e.sender.as_ref() == Some(from)
            && e.recipient.as_ref() == Some(to)
    };
    let (sender, recipient) = (receipt.addressee, receipt.signer);
    let agency = log.agency();
    if agency.as_ref() == Some(recipient) {
        // The receipt names the `received` entry; its `receipt-sent` names it back.
        let received = log
            .entries
            .get(usize::try_from(r.log_index).unwrap_or(usize::MAX))
            .filter(|e| of_message(e, EventType::Received, sender, recipient))
            .filter(|e| e.envelope_sha256 == Some(r.envelope_digest.0))
            .ok_or(CustodyError::EntryMissing {
                what: "received",
                at: Some(r.log_index),
            })?;
        records(received, "received")?;
        let sent_receipt = log
            .entries
            .iter()
            .filter(|e| of_message(e, EventType::ReceiptSent, recipient, sender))
            .find(|e| e.peer_index == Some(r.log_index))
            .ok_or(CustodyError::EntryMissing {
                what: "receipt-sent",
                at: None,
            })?;
        records(sent_receipt, "receipt-sent")?;
        return Ok(Custody {
            message_id: r.message_id,
            position,
            logged,
            party: Party::Recipient,
            message_index: received.seq,
            receipt_index: sent_receipt.seq,
        });
    }
    if agency.as_ref() != Some(sender) {
        return Err(CustodyError::OtherLog {
            log: agency.map_or_else(|| log.checkpoint.origin.clone(), |a| a.to_string()),
            sender: sender.clone(),
            recipient: recipient.clone(),
        });
    }
    // The sender logged this very receipt (by its SHA-256), and sent the
    // envelope it acknowledges (a re-sealed message: the last such `sent`).
    let hex = crate::hex_encode(&receipt.receipt_sha256);
    let got = log
        .entries
        .iter()
        .filter(|e| of_message(e, EventType::ReceiptReceived, sender, recipient))
        .find(|e| e.detail.get(RECEIPT_SHA256) == Some(&hex) && e.peer_index == Some(r.log_index))
        .ok_or(CustodyError::EntryMissing {
            what: "receipt-received",
            at: None,
        })?;
    records(got, "receipt-received")?;
    let sent = log
        .entries
        .iter()
        .rfind(|e| {
            of_message(e, EventType::Sent, sender, recipient)
                && e.envelope_sha256 == Some(r.envelope_digest.0)
        })
        .ok_or(CustodyError::EntryMissing {
            what: "sent",
            at: None,
        })?;
    records(sent, "sent")?;
    Ok(Custody {
        message_id: r.message_id,
        position,
        logged,
        party: Party::Sender,
        message_index: sent.seq,
        receipt_index: got.seq,
    })
}
