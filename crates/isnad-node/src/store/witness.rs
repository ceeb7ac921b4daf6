//! Witnessing state (spec/witness.md), both roles. Neither table is
//! created when the store opens: a node that never witnessed has none, and
//! reads treat a missing table as empty.
//!
//! | table | key | value |
//! |---|---|---|
//! | `witness_latest` | log origin (`<agency>/audit`) | the latest checkpoint note this node cosigned (text) |
//! | `witness_submitted` | witness agency id | [`WitnessSubmitted`] (CBOR) |

use isnad_envelope::AgencyId;
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::{Store, StoreError};

/// Witness role: origin → the latest checkpoint note this node cosigned.
pub(super) const WITNESSED: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("witness_latest");
/// Log-operator role: witness agency → [`WitnessSubmitted`] (CBOR).
pub(super) const SUBMITTED: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("witness_submitted");

/// What a witness last cosigned of this node's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WitnessSubmitted {
    /// The size of the checkpoint cosigned.
    pub(crate) size: u64,
    /// The checkpoint note.
    pub(crate) note: String,
    /// The witness's cosignature line.
    pub(crate) cosignature: String,
}

impl Store {
    /// In one durable transaction: reads the note this node last cosigned
    /// for `origin`, runs `decide` on it, and stores the note `decide`
    /// returns (if any) in its place. Concurrent decisions for one origin
    /// run one after another on the writer thread.
    pub(crate) async fn decide_witnessed<R: Send + 'static>(
        &self,
        origin: String,
        decide: impl FnOnce(Option<&str>) -> Result<(R, Option<String>), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write(move |txn| {
            let mut t = txn.open_table(WITNESSED)?;
            let stored = t.get(origin.as_str())?.map(|v| v.value().to_vec());
            let stored = stored.as_deref().map(note_text).transpose()?;
            let (r, new) = decide(stored.as_deref())?;
            if let Some(note) = new {
                t.insert(origin.as_str(), note.as_bytes())?;
            }
            Ok(r)
        })
        .await
    }

    /// Every (origin, latest note cosigned), in origin order.
    pub(crate) fn witnessed_logs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = match txn.open_table(WITNESSED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        t.iter()?
            .map(|i| {
                let (k, v) = i?;
                Ok((k.value().to_owned(), note_text(v.value())?))
            })
            .collect()
    }

    /// What `witness` last cosigned of this node's log.
    pub(crate) fn witness_submitted(
        &self,
        witness: &AgencyId,
    ) -> Result<Option<WitnessSubmitted>, StoreError> {
        let txn = self.db.db()?.begin_read()?;
        let t = match txn.open_table(SUBMITTED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let v = t.get(witness.as_str())?;
        v.map(|v| decode(v.value())).transpose()
    }

    /// Records durably what `witness` cosigned.
    pub(crate) async fn set_witness_submitted(
        &self,
        witness: &AgencyId,
        rec: WitnessSubmitted,
    ) -> Result<(), StoreError> {
        let bytes = encode(&rec)?;
        let key = witness.as_str().to_owned();
        self.write(move |txn| {
            txn.open_table(SUBMITTED)?
                .insert(key.as_str(), bytes.as_slice())?;
            Ok(())
        })
        .await
    }
}

fn note_text(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Corrupt("witness state is not UTF-8".into()))
}
