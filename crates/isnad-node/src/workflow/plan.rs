//! The plan a checked message makes: the case records to write (each
//! valid only if the record is as it was checked) and the
//! `status-changed` entries that document each new event. Pure data: the
//! store commits the writes ([`crate::store::Store::apply_cases`]) with
//! the message, the driver appends the entries.

use isnad_envelope::{AgencyId, MlaState};
use isnad_log::Entry;
use isnad_mla::{state_name, RequestRecord, ShareRecord};

use crate::exchange;
use crate::store::{Case, CaseKey, CaseView, CaseWrite, IndexNote, StoreError};

/// Longest reason or detail value in an audit entry (spec/audit-log.md §2.1).
const MAX_LOG_TEXT: usize = 1024;

/// The changes a checked message makes: record writes and audit entries.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    writes: Vec<CaseWrite>,
    /// Entries with the record event each one documents (its position).
    entries: Vec<(Entry, CaseKey, usize)>,
}

impl Plan {
    /// Whether the message changes nothing here (receipts, errors, …).
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The record the plan changes (plans change at most one).
    pub fn record(&self) -> Option<CaseKey> {
        self.writes.first().map(|w| w.record.key())
    }

    /// The record writes, for the store to commit with the message.
    pub fn writes(&self) -> &[CaseWrite] {
        &self.writes
    }

    /// The `status-changed` entries to append with the message's entries.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.iter().map(|e| e.0.clone()).collect()
    }

    /// Whether every write still applies to the records `view` holds
    /// (`false`: a record changed since the check; the store refuses the
    /// plan then, and nothing is written).
    pub fn is_current(&self, view: &impl CaseView) -> Result<bool, StoreError> {
        for w in &self.writes {
            if !w.is_current(view.events(&w.record.key())?) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// When the entries are appended before the commit (the receiving
    /// side logs first), from index `first` in the order of
    /// [`Plan::entries`]: writes each index into the record the plan
    /// writes, so the record is committed with its indexes.
    pub fn set_indexes(&mut self, first: u64) {
        for (note, (_, key, pos)) in (first..).zip(&self.entries) {
            if let Some(w) = self.writes.iter_mut().find(|w| &w.record.key() == key) {
                w.record.set_log_index(*pos, note);
            }
        }
    }

    /// After the entries were appended from index `first` (in the order of
    /// [`Plan::entries`]): the index of each, to note in its record
    /// (lazily: losing this only loses the shortcut; the log has the entry).
    pub fn notes(&self, first: u64) -> Vec<IndexNote> {
        (first..)
            .zip(&self.entries)
            .map(|(index, (_, key, pos))| IndexNote {
                key: key.clone(),
                pos: *pos,
                index,
            })
            .collect()
    }

    /// Keeps only the entries of events at `missing` positions and no
    /// writes (for entries lost in a crash).
    pub(super) fn only_entries(mut self, missing: &[usize]) -> Self {
        self.writes.clear();
        self.entries.retain(|(_, _, pos)| missing.contains(pos));
        self
    }

    /// Adds the entries of `other`.
    pub(super) fn extend_entries(&mut self, other: Plan) {
        self.entries.extend(other.entries);
    }

    /// The change from `before` to `after` of a request record.
    pub(super) fn request(
        &mut self,
        before: Option<&RequestRecord>,
        after: &RequestRecord,
        me: &AgencyId,
    ) {
        let key = CaseKey::Request(after.request_id);
        let start = before.map_or(0, |r| r.history.len());
        for (pos, ev) in after.history.iter().enumerate().skip(start) {
            let counterpart = if ev.by == after.requesting {
                &after.requested
            } else {
                &after.requesting
            };
            let mut e = exchange::status_changed(
                "mla-request",
                ev.message_id,
                &ev.by,
                counterpart,
                ev.reason.as_deref().map(clip),
                ev.at_ms,
            );
            let d = &mut e.detail;
            d.insert("request-id".into(), after.request_id.to_hex());
            d.insert("from".into(), state_name(ev.from).into());
            d.insert("to".into(), state_name(ev.to).into());
            let by = if matches!(ev.to, MlaState::Submitted | MlaState::Delivered) {
                "node"
            } else if ev.by == after.requesting {
                "requesting"
            } else {
                "requested"
            };
            d.insert("by".into(), by.into());
            if &ev.by == me {
                d.insert("origin".into(), "local".into());
            }
            self.entries.push((e, key.clone(), pos));
        }
        self.writes.push(CaseWrite {
            record: Case::Request(after.clone()),
            expect: before.map(|r| r.history.len()),
        });
    }

    /// The change from `before` to `after` of a share record.
    pub(super) fn share(&mut self, before: Option<&ShareRecord>, after: &ShareRecord) {
        let key = CaseKey::Share(after.share_id, after.originator.clone());
        let start = before.map_or(0, |r| r.events.len());
        for (pos, ev) in after.events.iter().enumerate().skip(start) {
            let mut e = exchange::status_changed(
                "intel-share",
                Some(ev.message_id),
                &ev.from,
                &ev.to,
                ev.note.as_deref().map(clip),
                ev.at_ms,
            );
            let d = &mut e.detail;
            d.insert("share-id".into(), after.share_id.to_hex());
            d.insert("event".into(), ev.kind.as_str().into());
            d.insert("originator".into(), after.originator.to_string());
            if let Some(t) = &ev.target {
                d.insert("target".into(), t.to_string());
            }
            self.entries.push((e, key.clone(), pos));
        }
        self.writes.push(CaseWrite {
            record: Case::Share(after.clone()),
            expect: before.map(|r| r.events.len()),
        });
    }
}

/// `s`, cut to at most [`MAX_LOG_TEXT`] bytes at a character boundary.
pub(super) fn clip(s: &str) -> String {
    if s.len() <= MAX_LOG_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_LOG_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
