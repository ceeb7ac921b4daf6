//! The attachments of a message as the audit log records them: content-free,
//! one `ciphertext-root:ciphertext-size` pair per attachment in the
//! message's order, in the `attachments` detail of its `sent`, `received`,
//! `relayed`, `receipt-sent` and `receipt-received` entries
//! (spec/audit-log.md §2.5).
//!
//! Why the ciphertext root and not the plaintext SHA-256: a bare hash of
//! plaintext must never be logged (§2.4) — anyone holding a guess of the
//! file (a leaked document, a known image) could confirm it from an
//! exported log. The ciphertext is under a fresh random key, so its root
//! says nothing about the content; the signed receipt binds root and
//! plaintext digest together, and that is what ties a file on disk to
//! these entries ([`crate::custody`]).

use std::fmt;

/// The `detail` key (key 11) holding an entry's attachments.
pub const ATTACHMENTS_DETAIL_KEY: &str = "attachments";

/// Most attachments one entry records (the message limit of
/// spec/protocol.md §8); eight pairs fit one 1024-byte detail value.
pub const MAX_LOGGED_ATTACHMENTS: usize = 8;

/// One attachment as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoggedAttachment {
    /// Root of the hash tree over the ciphertext chunks
    /// (spec/attachments.md §4.1).
    pub ciphertext_root: [u8; 32],
    /// Ciphertext bytes.
    pub ciphertext_size: u64,
}

/// Why an `attachments` detail value is not a list of attachments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachmentsDetailError {
    /// An item is not 64 lower-case hex digits, a colon and a decimal
    /// size without leading zeros.
    #[error("attachment {index} is not ciphertext-root:ciphertext-size")]
    Item {
        /// Position in the list.
        index: usize,
    },
    /// The value lists no attachment, or more than [`MAX_LOGGED_ATTACHMENTS`].
    #[error("an attachments detail lists 1 to {MAX_LOGGED_ATTACHMENTS} attachments, not {count}")]
    Count {
        /// How many were listed.
        count: usize,
    },
}

impl fmt::Display for LoggedAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            crate::hex_encode(&self.ciphertext_root),
            self.ciphertext_size
        )
    }
}

/// The detail value for `list`: the items joined by `,`. `None` for an
/// empty list (the key is then left out).
pub fn format(list: &[LoggedAttachment]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    Some(
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Parses a detail value written by [`format()`]; only that exact form.
pub fn parse(value: &str) -> Result<Vec<LoggedAttachment>, AttachmentsDetailError> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_LOGGED_ATTACHMENTS || value.is_empty() {
        return Err(AttachmentsDetailError::Count {
            count: if value.is_empty() { 0 } else { items.len() },
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(item).ok_or(AttachmentsDetailError::Item { index }))
        .collect()
}

fn parse_item(item: &str) -> Option<LoggedAttachment> {
    let (root, size) = item.split_once(':')?;
    if root.len() != 64 || !root.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let ciphertext_root = <[u8; 32]>::try_from(crate::hex_decode(root)?).ok()?;
    let canonical = !size.is_empty()
        && size.bytes().all(|c| c.is_ascii_digit())
        && (size == "0" || !size.starts_with('0'));
    if !canonical {
        return None;
    }
    Some(LoggedAttachment {
        ciphertext_root,
        ciphertext_size: size.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(b: u8, size: u64) -> LoggedAttachment {
        LoggedAttachment {
            ciphertext_root: [b; 32],
            ciphertext_size: size,
        }
    }

    #[test]
    fn round_trips_and_fits_one_detail_value() {
        let eight: Vec<_> = (0..8).map(|i| at(i, u64::MAX - u64::from(i))).collect();
        let v = format(&eight).unwrap_or_default();
        assert!(v.len() <= crate::entry::MAX_TEXT_LEN, "{} bytes", v.len());
        assert_eq!(parse(&v), Ok(eight));
        assert_eq!(format(&[]), None);
        assert_eq!(
            format(&[at(0xab, 316)]).as_deref(),
            Some("abababababababababababababababababababababababababababababababab:316")
        );
    }

    #[test]
    fn only_the_exact_form_parses() {
        let root = "ab".repeat(32);
        for bad in [
            String::new(),
            root.clone(),
            format!("{root}:"),
            format!("{root}:016"),
            format!("{root}:+16"),
            format!("{root}:16,"),
            format!("{}:16", "AB".repeat(32)),
            format!("{}:16", "ab".repeat(31)),
            format!("{root}:18446744073709551616"),
            vec![format!("{root}:1"); 9].join(","),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&format!("{root}:0")), Ok(vec![at(0xab, 0)]));
    }

    #[test]
    fn an_entry_with_a_malformed_list_neither_encodes_nor_decodes() {
        use crate::entry::{Entry, EntryError, EventType};
        let mut e = Entry::new(EventType::Received, 1);
        e.message_id = Some(isnad_types::MessageId::from_bytes([1; 16]));
        e.sender = isnad_types::AgencyId::new("iq.moj.ca").ok();
        e.recipient = isnad_types::AgencyId::new("fr.mj.bepi").ok();
        e.envelope_sha256 = Some([2; 32]);
        e.set_attachments(&[at(0xab, 316)]);
        let good = e.encode().unwrap_or_default();
        assert_eq!(
            Entry::decode(&good).map(|d| d.attachments()),
            Ok(Ok(vec![at(0xab, 316)]))
        );
        // The same bytes with "316" made "016": same length, not the form.
        let at316 = good.windows(3).position(|w| w == b"316").unwrap_or(0);
        let mut bad = good.clone();
        bad[at316] = b'0';
        assert!(matches!(
            Entry::decode(&bad),
            Err(EntryError::Attachments(_))
        ));
        e.detail
            .insert(ATTACHMENTS_DETAIL_KEY.into(), "ab:1".into());
        assert!(matches!(e.encode(), Err(EntryError::Attachments(_))));
    }
}
