//! Idempotency keys (`Idempotency-Key` on `POST /v1/messages`; the rules
//! are in [`crate::idempotency`]).
//!
//! | table | key | value |
//! |---|---|---|
//! | `idempotency_keys` | the key (text) | `{v: 1, request, message, at_ms}` (CBOR) |
//! | `idempotency_by_time` | submission time (ms, u64 BE) ‖ key | () |

use isnad_envelope::{Digest, MessageId};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// How long a key is remembered after its submission, milliseconds.
pub const RETENTION_MS: u64 = 24 * 3600 * 1000;
/// Longest key accepted, bytes.
pub const MAX_KEY_LEN: usize = 255;
/// Expired keys purged per keyed submission (enough to keep up with any
/// rate of keyed submissions: each adds one key and purges up to this many).
const PURGE_PER_INSERT: usize = 8;

/// Key → [`Record`].
const KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("idempotency_keys");
/// Submission time (ms, big-endian) ‖ key → (): what to purge first.
const BY_TIME: TableDefinition<'_, &[u8], ()> = TableDefinition::new("idempotency_by_time");

/// The record format version written by this code.
const VERSION: u32 = 1;

/// Why an `Idempotency-Key` header value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadKey {
    /// Empty, longer than [`MAX_KEY_LEN`], or with a character outside
    /// printable ASCII (`!`..`~`).
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")]
    Invalid,
}

/// A client's idempotency key with the fingerprint of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    key: String,
    request: Digest,
}

impl Claim {
    /// Parses a header value: a token, or a structured-field string in
    /// double quotes (`"8e03978e-40d5-43e8"`), as the IETF draft writes it.
    pub fn new(header: &str, request: Digest) -> Result<Self, BadKey> {
        let key = header
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .unwrap_or(header);
        if key.is_empty()
            || key.len() > MAX_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        {
            return Err(BadKey::Invalid);
        }
        Ok(Self {
            key: key.to_owned(),
            request,
        })
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What the store knows about a claim's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Unknown (or older than the retention): submit.
    None,
    /// Submitted before with the same request: this is its message.
    Same(MessageId),
    /// Submitted before with another request.
    Different,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    v: u32,
    request: [u8; 32],
    message: [u8; 16],
    at_ms: u64,
}

/// Creates the tables (at store open).
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(KEYS).map_err(db)?;
    txn.open_table(BY_TIME).map_err(db)?;
    Ok(())
}

/// Looks the claim's key up (outside a write).
pub fn lookup(store: &Store, claim: &Claim, now_ms: u64) -> Result<Prior, StoreError> {
    let txn = store.db.db()?.begin_read()?;
    let t = txn.open_table(KEYS).map_err(db)?;
    let rec = match t.get(claim.key.as_str()).map_err(db)? {
        Some(v) => decode(v.value())?,
        None => return Ok(Prior::None),
    };
    Ok(judge(claim, &rec, now_ms))
}

/// Inside the submission's write transaction, before anything is written:
/// whether the key is still free (a racing request with the same key may
/// have committed since [`lookup`]).
pub(super) fn is_free(
    txn: &WriteTransaction,
    claim: &Claim,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let t = txn.open_table(KEYS).map_err(db)?;
    let rec = match t.get(claim.key.as_str()).map_err(db)? {
        Some(v) => decode(v.value())?,
        None => return Ok(true),
    };
    Ok(judge(claim, &rec, now_ms) == Prior::None)
}

/// Inside the submission's write transaction, after its checks passed:
/// binds the key to `message` and purges a few expired keys.
pub(super) fn remember(
    txn: &WriteTransaction,
    claim: &Claim,
    message: &MessageId,
    now_ms: u64,
) -> Result<(), StoreError> {
    let rec = Record {
        v: VERSION,
        request: claim.request.0,
        message: *message.as_bytes(),
        at_ms: now_ms,
    };
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&rec, &mut bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut keys = txn.open_table(KEYS).map_err(db)?;
    let mut by_time = txn.open_table(BY_TIME).map_err(db)?;
    keys.insert(claim.key.as_str(), bytes.as_slice())
        .map_err(db)?;
    by_time
        .insert(time_key(now_ms, &claim.key).as_slice(), ())
        .map_err(db)?;
    // Lazy purge, oldest first.
    let cutoff = now_ms.saturating_sub(RETENTION_MS);
    let mut old = Vec::new();
    for item in by_time.iter().map_err(db)?.take(PURGE_PER_INSERT) {
        let (k, _) = item.map_err(db)?;
        let k = k.value().to_vec();
        let Some((at, key)) = split_time_key(&k) else {
            old.push((k, None));
            continue;
        };
        if at > cutoff {
            break;
        }
        old.push((k.clone(), Some((at, key.to_owned()))));
    }
    for (index_key, entry) in old {
        by_time.remove(index_key.as_slice()).map_err(db)?;
        let Some((at, key)) = entry else { continue };
        // The key may have been bound again since (after it expired): only
        // the record this index entry was written for is removed.
        let same = match keys.get(key.as_str()).map_err(db)? {
            Some(v) => decode(v.value())?.at_ms == at,
            None => false,
        };
        if same {
            keys.remove(key.as_str()).map_err(db)?;
        }
    }
    Ok(())
}

/// The number of keys held (tests, metrics).
pub fn held(store: &Store) -> Result<u64, StoreError> {
    use redb::ReadableTableMetadata as _;
    let txn = store.db.db()?.begin_read()?;
    txn.open_table(KEYS).map_err(db)?.len().map_err(db)
}

fn judge(claim: &Claim, r: &Record, now_ms: u64) -> Prior {
    if now_ms.saturating_sub(r.at_ms) >= RETENTION_MS {
        Prior::None
    } else if r.request == claim.request.0 {
        Prior::Same(MessageId::from_bytes(r.message))
    } else {
        Prior::Different
    }
}

/// Decodes a record; an unknown version is a damaged store, not misread.
fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    let r: Record =
        ciborium::de::from_reader(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if r.v != VERSION {
        return Err(StoreError::Corrupt(format!(
            "idempotency record of version {} (this node reads version {VERSION})",
            r.v
        )));
    }
    Ok(r)
}

fn time_key(at_ms: u64, key: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn split_time_key(k: &[u8]) -> Option<(u64, &str)> {
    let (at, key) = k.split_at_checked(8)?;
    let at = u64::from_be_bytes(at.try_into().ok()?);
    Some((at, std::str::from_utf8(key).ok()?))
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(key: &str, body: &[u8]) -> Claim {
        Claim::new(key, Digest::sha256(body)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn header_values() {
        let d = Digest::sha256(b"x");
        assert_eq!(
            Claim::new("\"abc-1\"", d).map(|c| c.key),
            Ok("abc-1".into())
        );
        assert_eq!(Claim::new("abc-1", d).map(|c| c.key), Ok("abc-1".into()));
        for bad in ["", "\"\"", "a b", "é", &"k".repeat(256)] {
            assert_eq!(Claim::new(bad, d), Err(BadKey::Invalid), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn remembered_judged_and_purged_after_retention() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let store = Store::open(&tmp.path().join("s.redb"))?;
        let (a, id) = (claim("a", b"one"), MessageId::from_bytes([7; 16]));
        assert_eq!(lookup(&store, &a, 1000)?, Prior::None);
        let c = a.clone();
        store
            .write(move |txn| {
                assert!(is_free(txn, &c, 1000)?);
                remember(txn, &c, &id, 1000)
            })
            .await?;
        assert_eq!(lookup(&store, &a, 2000)?, Prior::Same(id));
        assert_eq!(lookup(&store, &claim("a", b"two"), 2000)?, Prior::Different);
        // At the end of the retention the key is unknown, and the next keyed
        // submission purges it.
        let later = 1000 + RETENTION_MS;
        assert_eq!(lookup(&store, &a, later)?, Prior::None);
        let b = claim("b", b"one");
        store
            .write(move |txn| remember(txn, &b, &MessageId::from_bytes([8; 16]), later))
            .await?;
        assert_eq!(held(&store)?, 1, "the expired key was purged");
        Ok(())
    }
}
