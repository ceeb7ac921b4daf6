//! What the node writes down: refusals, acceptance batches and their
//! receipts, submissions, workflow plans. Every entry is built in
//! [`crate::exchange`]; this module appends them and notes their indexes.

use isnad_envelope::{seal_signed, AgencyId, Digest, ErrorCode, MessageId, Receipt};
use isnad_log::Entry;
use isnad_wire::Response;

use crate::exchange;
use crate::node_core::inbound::{self, Stored};
use crate::store::OutboxRecord;
use crate::workflow::{self};

use super::inner::Inner;
use super::types::{now, NodeError};

impl Inner {
    /// Logs the refusal of something `peer` sent on its own behalf, and
    /// counts it against `peer`'s refusal limit (transport.md §5).
    pub(crate) async fn log_rejected(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) {
        self.count_refusal(peer);
        self.log_rejected_relayed(peer, code, stage, digest).await;
    }

    /// Logs the refusal of relayed traffic `peer` (a relay) carried for
    /// others, without counting it against `peer`: throttling a relay would
    /// cut off every agency whose messages it carries (transport.md §5).
    pub(crate) async fn log_rejected_relayed(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) {
        self.metrics.rejected(code.as_str());
        let e = self.rejected_entry(peer, code, stage, digest);
        if let Err(err) = self.append(e).await {
            tracing::error!(error = %err, "could not log a rejection");
        }
    }

    /// A `rejected` entry for something `peer` sent, refused at `stage`.
    pub(super) fn rejected_entry(
        &self,
        peer: &AgencyId,
        code: ErrorCode,
        stage: &str,
        digest: Option<Digest>,
    ) -> Entry {
        exchange::rejected(peer, &self.config.agency, code, stage, digest, now().1)
    }

    /// Carries out [`inbound::after_inbox`]: when the inbox did not store
    /// the message, the receipt already logged is withdrawn in the log
    /// before the peer is answered (spec/transport.md §7).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn answer_after_inbox(
        &self,
        peer: &AgencyId,
        id: MessageId,
        digest: Digest,
        at: inbound::Indexes,
        receipt: Vec<u8>,
        stored: Stored,
        end_to_end: Option<(&AgencyId, Digest)>,
        ms: u64,
    ) -> Response {
        let answer = inbound::after_inbox(
            &self.config.agency,
            peer,
            id,
            digest,
            at,
            receipt,
            stored,
            end_to_end,
            ms,
        );
        if !answer.withdraw.is_empty() {
            let entries = answer.withdraw;
            if let Err(e) = self.append_with(Box::new(move |_| entries)).await {
                tracing::error!(error = %e, %id, "could not log the withdrawal of an unsent receipt");
            }
        }
        answer.response
    }

    /// Appends a plan's `status-changed` entries and notes their indexes.
    pub(crate) async fn log_plan(&self, plan: &workflow::Plan) -> Result<(), NodeError> {
        let entries = plan.entries();
        if entries.is_empty() {
            return Ok(());
        }
        let first = self.append_with(Box::new(move |_| entries)).await?;
        if let Err(e) = self.store.note_indexes(None, plan.notes(first)).await {
            tracing::warn!(error = %e, "could not note status-changed log indexes");
        }
        Ok(())
    }

    /// After a receipt (for a relayed message: the end-to-end one): records
    /// the delivery of an `mla-request`.
    pub(crate) async fn workflow_receipt(&self, rec: &OutboxRecord, ms: u64) {
        let checked = self
            .record_locks
            .checked(|| {
                workflow::on_receipt(&self.store, &self.config.agency, rec, ms)
                    .map(|p| (p.unwrap_or_default(), ()))
            })
            .await;
        let (plan, _record_lock) = match checked {
            Ok((p, (), lock)) if !p.is_empty() => (p, lock),
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the delivery of a request");
                return;
            }
        };
        match self.store.commit_cases(plan.writes().to_vec()).await {
            Ok(true) => {
                if let Err(e) = self.log_plan(&plan).await {
                    tracing::error!(error = %e, "cannot log the delivery of a request");
                }
            }
            Ok(false) => {} // a later state arrived meanwhile
            Err(e) => tracing::error!(error = %e, "cannot record the delivery of a request"),
        }
    }

    /// Appends an acceptance batch ([`inbound::Acceptance`]) in one
    /// durable append and signs the receipt for its first
    /// acknowledgement. Returns where the entries landed and that receipt.
    pub(crate) async fn acknowledge(
        &self,
        acceptance: inbound::Acceptance,
        secs: u64,
    ) -> Result<(inbound::Indexes, Vec<u8>), NodeError> {
        let (id, to, digest) = acceptance.receipt();
        let layout = acceptance.clone();
        let first = self
            .append_with(Box::new(move |first| acceptance.entries(first)))
            .await?;
        let at = layout.indexes(first);
        let (_, receipt) = self.make_receipt(&to, id, digest, at.receipt, secs)?;
        Ok((at, receipt))
    }

    /// The `exp` of a receipt signed at `secs`: the longest lifetime a
    /// message may have (`max_lifetime_secs`, 90 days), so a receipt
    /// returned to a retry made before the message expired still verifies
    /// (spec/protocol.md §4.4).
    pub(crate) fn receipt_expires(&self, secs: u64) -> u64 {
        exchange::receipt_expires(secs, &self.limits)
    }

    /// Signs a receipt to `to` for message `id` delivered as the envelope
    /// with `digest`, naming our log entry `index`; returns the receipt's
    /// own message id and its bytes.
    pub(crate) fn make_receipt(
        &self,
        to: &AgencyId,
        id: MessageId,
        digest: Digest,
        index: u64,
        secs: u64,
    ) -> Result<(MessageId, Vec<u8>), NodeError> {
        let receipt_id = MessageId::time_ordered(secs.saturating_mul(1000), &self.rng)
            .map_err(|_| NodeError::System)?;
        let body = Receipt {
            message_id: id,
            envelope_digest: digest,
            log_index: index,
            received_at: secs,
            attachments: Vec::new(),
        };
        let msg = exchange::receipt(&self.config.agency, to, receipt_id, body, &self.limits);
        let bytes = seal_signed(&msg, &self.identity.signing_key, &self.limits, &self.rng)?;
        Ok((msg.header.id, bytes))
    }

    /// Logs a submitted message: its `sent` entries and its plan's
    /// `status-changed` entries in one durable append, then their indexes
    /// in the outbox and case records in one lazy write (losing that write
    /// in a crash only means a second `sent` entry for the same message
    /// after restart, see [`Inner::recover`]).
    pub(crate) async fn log_submitted(
        &self,
        rec: &OutboxRecord,
        plan: &workflow::Plan,
    ) -> Result<u64, NodeError> {
        let mut entries = self.sent_entries(rec);
        let sent = entries.len() as u64;
        entries.extend(plan.entries());
        let first = self.append_with(Box::new(move |_| entries)).await?;
        let noted = self
            .store
            .note_indexes(Some((rec.id, first)), plan.notes(first + sent))
            .await;
        if let Err(e) = noted {
            tracing::error!(error = %e, "could not record the sent and status-changed indexes");
        }
        Ok(first)
    }

    /// The `sent` entries for an outbox record: its own (the first; its
    /// index is the record's `sent_index`), then for a relayed message this
    /// node originated the end-to-end one (spec/relay.md §9).
    pub(crate) fn sent_entries(&self, rec: &OutboxRecord) -> Vec<Entry> {
        let mut e = exchange::sent(
            &self.config.agency,
            rec.id,
            Some(rec.recipient.clone()),
            rec.kind.as_str(),
            rec.digest,
            rec.created * 1000,
        );
        if let Some(from) = rec.reseal.as_ref().and_then(|r| r.resealed_from) {
            // A re-seal supersedes the earlier `sent` (spec/cross-check.md §3.1).
            e.detail
                .insert("resealed-from".into(), Digest(from).to_hex());
        }
        let mut end_to_end = exchange::end_to_end_sent(&mut e, rec, &self.config.agency);
        if let (Some(end), Some(from)) = (
            end_to_end.as_mut(),
            rec.reseal.as_ref().and_then(|r| r.inner_resealed_from),
        ) {
            // The re-sealed inner envelope supersedes the earlier one too.
            end.detail
                .insert("resealed-from".into(), Digest(from).to_hex());
        }
        std::iter::once(e).chain(end_to_end).collect()
    }

    /// This node's signing key's `revoked-at`, if its directory revokes it
    /// as of `now`.
    pub(crate) fn own_key_revoked(&self, now: u64) -> Option<u64> {
        self.sealer().own_key_revoked(now)
    }
}
