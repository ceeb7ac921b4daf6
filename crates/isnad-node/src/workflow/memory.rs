//! Case records held in memory: a [`CaseView`] for tests and simulations
//! that carries out plans the way the store does.

use std::collections::BTreeMap;

use isnad_envelope::{AgencyId, MessageId};
use isnad_mla::{RequestRecord, ShareRecord};

use crate::store::{Case, CaseView, CaseWrite, StoreError};

/// Case records in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryCases {
    requests: BTreeMap<MessageId, RequestRecord>,
    shares: BTreeMap<(MessageId, AgencyId), ShareRecord>,
}

impl MemoryCases {
    /// Carries out `writes` as the store does: all of them if every record
    /// is as the plan expects, else none (`false`).
    pub fn apply(&mut self, writes: &[CaseWrite]) -> bool {
        let current = writes.iter().all(|w| {
            let events = match &w.record {
                Case::Request(r) => self.requests.get(&r.request_id).map(|r| r.history.len()),
                Case::Share(s) => self
                    .shares
                    .get(&(s.share_id, s.originator.clone()))
                    .map(|s| s.events.len()),
            };
            w.is_current(events)
        });
        if !current {
            return false;
        }
        for w in writes {
            match &w.record {
                Case::Request(r) => {
                    self.requests.insert(r.request_id, r.clone());
                }
                Case::Share(s) => {
                    self.shares
                        .insert((s.share_id, s.originator.clone()), s.clone());
                }
            }
        }
        true
    }
}

impl CaseView for MemoryCases {
    fn request(&self, id: &MessageId) -> Result<Option<RequestRecord>, StoreError> {
        Ok(self.requests.get(id).cloned())
    }

    fn shares_with_id(&self, id: &MessageId) -> Result<Vec<ShareRecord>, StoreError> {
        Ok(self
            .shares
            .iter()
            .filter(|((sid, _), _)| sid == id)
            .map(|(_, s)| s.clone())
            .collect())
    }
}
