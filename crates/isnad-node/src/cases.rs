//! Case operations on top of [`NodeHandle::submit`]: status changes,
//! multi-recipient intel shares, forwarding, permissions, retraction and
//! correction; and the JSON views of requests and cases (spec/api.yaml).
//!
//! Every operation goes through `submit`, so the checks of
//! [`crate::workflow`] apply to it exactly as to a raw message.

use isnad_envelope::{
    AgencyId, Body, IntelCorrection, IntelRetraction, IntelShare, Kind, MessageId, MlaState,
    MlaStatus, PermissionAnswer, PermissionDecision, PermissionRequest, RefusalGround,
};
use isnad_mla::{
    state_name, IntelError, LifecycleError, RequestRecord, ShareEventKind, ShareRecord,
};
use serde_json::{json, Value};

use crate::store::StoreError;
use crate::workflow::{self, WorkflowError};
use crate::{NodeError, NodeHandle};

impl NodeHandle {
    /// This node's agency changes the status of request `request_id`: an
    /// `mla-status` to the other party.
    pub async fn change_status(
        &self,
        request_id: MessageId,
        status: MlaState,
        reason: Option<String>,
        refusal_grounds: Vec<RefusalGround>,
        ttl_secs: Option<u64>,
    ) -> Result<MessageId, NodeError> {
        let rec = workflow::request(self.store(), &request_id)?.ok_or(WorkflowError::from(
            LifecycleError::UnknownRequest(request_id),
        ))?;
        let side = rec.side_of(self.agency()).map_err(WorkflowError::from)?;
        let to = rec.party(side.other()).clone();
        let body = Body::MlaStatus(MlaStatus {
            request_id,
            status,
            previous: None,
            reason,
            refusal_grounds,
            attachments: Vec::new(),
            extensions: Default::default(),
        });
        self.submit(to, body, ttl_secs).await
    }

    /// Shares intelligence with several agencies: one envelope each, one
    /// share id (`share.share_id`). Every recipient is checked (directory,
    /// policy) before anything is sent.
    pub async fn share_intel(
        &self,
        recipients: &[AgencyId],
        share: IntelShare,
        ttl_secs: Option<u64>,
    ) -> Result<Vec<(AgencyId, MessageId)>, NodeError> {
        for r in recipients {
            self.route(r, Kind::IntelShare)?;
        }
        let mut sent = Vec::with_capacity(recipients.len());
        for r in recipients {
            let body = Body::IntelShare(Box::new(share.clone()));
            sent.push((r.clone(), self.submit(r.clone(), body, ttl_secs).await?));
        }
        Ok(sent)
    }

    /// Passes a received share on to `to`, naming its originator and, for a
    /// restricted share, the originator's grant on record (without one the
    /// node refuses: [`IntelError::PermissionRequired`]). The latest
    /// correction's text replaces the original's.
    pub async fn forward_intel(
        &self,
        share_id: MessageId,
        to: AgencyId,
        ttl_secs: Option<u64>,
    ) -> Result<MessageId, NodeError> {
        let rec = self.held_share(share_id)?;
        let Some(received) = rec.received_id else {
            return Err(WorkflowError::from(IntelError::MisattributedForward(share_id)).into());
        };
        let mut share = match self.inbox_body(&received)? {
            Some(Body::IntelShare(s)) => *s,
            _ => return Err(WorkflowError::from(IntelError::UnknownShare(share_id)).into()),
        };
        if let Some(c) = rec.corrected_by {
            if let Some(Body::IntelCorrection(c)) = self.inbox_body(&c)? {
                share.content = c.content;
                if let Some(s) = c.summary {
                    share.summary = s;
                }
            }
        }
        share.originator = Some(rec.originator.clone());
        share.permission = rec.granted(&to);
        self.submit(to, Body::IntelShare(Box::new(share)), ttl_secs)
            .await
    }

    /// Asks the originator of a received share for permission to pass it on
    /// to `target`.
    pub async fn request_permission(
        &self,
        share_id: MessageId,
        target: AgencyId,
        purpose: String,
        ttl_secs: Option<u64>,
    ) -> Result<MessageId, NodeError> {
        let rec = self.held_share(share_id)?;
        let body = Body::PermissionRequest(PermissionRequest {
            share_id,
            target,
            purpose,
        });
        self.submit(rec.originator, body, ttl_secs).await
    }

    /// The originator answers a permission request: to `requester` about
    /// `target`, or, given the request's message id, to whoever asked about
    /// the target it named.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer_permission(
        &self,
        share_id: MessageId,
        decision: PermissionDecision,
        request_id: Option<MessageId>,
        requester: Option<AgencyId>,
        target: Option<AgencyId>,
        conditions: Option<String>,
        ttl_secs: Option<u64>,
    ) -> Result<MessageId, NodeError> {
        let rec = self.held_share(share_id)?;
        let asked = request_id.and_then(|id| {
            rec.events
                .iter()
                .find(|e| e.message_id == id && e.kind == ShareEventKind::PermissionRequested)
        });
        let requester = requester.or_else(|| asked.map(|e| e.from.clone()));
        let target = target.or_else(|| asked.and_then(|e| e.target.clone()));
        let (Some(requester), Some(target)) = (requester, target) else {
            return Err(NodeError::Workflow(WorkflowError::from(
                IntelError::UnknownPermissionRequest(share_id),
            )));
        };
        let body = Body::PermissionAnswer(PermissionAnswer {
            share_id,
            target,
            decision,
            request_id,
            conditions,
        });
        self.submit(requester, body, ttl_secs).await
    }

    /// Retracts a share: an `intel-retraction` to every agency this node
    /// sent it to (as originator, or passing on a retraction it received).
    pub async fn retract_intel(
        &self,
        share_id: MessageId,
        reason: String,
        ttl_secs: Option<u64>,
    ) -> Result<Vec<(AgencyId, MessageId)>, NodeError> {
        let body = Body::IntelRetraction(IntelRetraction { share_id, reason });
        self.to_recipients(share_id, Kind::IntelRetraction, body, ttl_secs)
            .await
    }

    /// Corrects a share: an `intel-correction` to every recipient.
    pub async fn correct_intel(
        &self,
        share_id: MessageId,
        content: String,
        summary: Option<String>,
        reason: String,
        ttl_secs: Option<u64>,
    ) -> Result<Vec<(AgencyId, MessageId)>, NodeError> {
        let body = Body::IntelCorrection(IntelCorrection {
            share_id,
            summary,
            content,
            reason,
        });
        self.to_recipients(share_id, Kind::IntelCorrection, body, ttl_secs)
            .await
    }

    async fn to_recipients(
        &self,
        share_id: MessageId,
        kind: Kind,
        body: Body,
        ttl_secs: Option<u64>,
    ) -> Result<Vec<(AgencyId, MessageId)>, NodeError> {
        let rec = self.held_share(share_id)?;
        let mut targets: Vec<AgencyId> = Vec::new();
        for (a, _) in &rec.recipients {
            if !targets.contains(a) {
                self.route(a, kind)?;
                targets.push(a.clone());
            }
        }
        let mut sent = Vec::with_capacity(targets.len());
        for a in targets {
            sent.push((a.clone(), self.submit(a, body.clone(), ttl_secs).await?));
        }
        Ok(sent)
    }

    fn held_share(&self, share_id: MessageId) -> Result<ShareRecord, NodeError> {
        Ok(workflow::held_share(
            self.store(),
            &share_id,
            self.agency(),
            |_| true,
        )?)
    }

    fn inbox_body(&self, id: &MessageId) -> Result<Option<Body>, NodeError> {
        let Some(rec) = self.store().inbox_by_id(id)?.into_iter().next() else {
            return Ok(None);
        };
        let opened = self.read_inbox(&rec).map_err(|e| {
            NodeError::Store(StoreError::Corrupt(format!(
                "stored envelope no longer opens: {e}"
            )))
        })?;
        Ok(Some(opened.message.body))
    }

    /// The JSON summary of every request (`overdue_only`: those past their
    /// deadline at `now_secs`), most urgent first.
    pub fn requests_json(&self, now_secs: u64, overdue_only: bool) -> Result<Value, NodeError> {
        let recs = workflow::requests(self.store())?;
        Ok(Value::Array(
            recs.iter()
                .filter(|r| !overdue_only || r.overdue(now_secs))
                .map(|r| self.request_summary(r, now_secs))
                .collect(),
        ))
    }

    fn request_summary(&self, r: &RequestRecord, now_secs: u64) -> Value {
        let me = self.agency();
        json!({
            "type": "mla-request",
            "id": r.request_id.to_hex(),
            "reference": r.reference,
            "requesting": r.requesting.as_str(),
            "requested": r.requested.as_str(),
            "side": r.side_of(me).ok().map(|s| s.as_str()),
            "state": state_name(r.state),
            "urgency": r.urgency,
            "deadline": r.deadline.as_ref().map(|d| d.date.clone()),
            "overdue": r.overdue(now_secs),
            "updated_ms": r.history.last().map(|e| e.at_ms),
        })
    }

    /// The whole history of a request or share known here: each status
    /// event with its time and this node's log index, and each message with
    /// its delivery, receipt and the peer's log index. `None` if `id` is
    /// neither a request nor a share id.
    pub fn case_json(&self, id: &MessageId, now_secs: u64) -> Result<Option<Value>, NodeError> {
        if let Some(r) = workflow::request(self.store(), id)? {
            let mut v = self.request_summary(&r, now_secs);
            v["events"] = Value::Array(
                r.history
                    .iter()
                    .map(|e| {
                        json!({
                            "at_ms": e.at_ms,
                            "from": state_name(e.from),
                            "to": state_name(e.to),
                            "by": e.by.as_str(),
                            "reason": e.reason,
                            "refusal_grounds": e.refusal_grounds,
                            "log_index": e.log_index,
                            "message_id": e.message_id.map(|m| m.to_hex()),
                            "message": e.message_id.map(|m| self.message_summary(&m)),
                        })
                    })
                    .collect(),
            );
            return Ok(Some(v));
        }
        if let Some(s) = workflow::shares_with_id(self.store(), id)?
            .into_iter()
            .next()
        {
            let me = self.agency();
            let v = json!({
                "type": "intel-share",
                "id": s.share_id.to_hex(),
                "originator": s.originator.as_str(),
                "source": s.source.as_ref().map(AgencyId::as_str),
                "handling": s.handling,
                "tlp": s.tlp,
                "restricted": s.restricted(),
                "summary": s.summary,
                "retracted": s.retracted,
                "corrected_by": s.corrected_by.map(|m| m.to_hex()),
                "role": if &s.originator == me { "originator" } else { "recipient" },
                "recipients": s.recipients.iter().map(|(a, m)| json!({
                    "agency": a.as_str(), "message_id": m.to_hex(),
                })).collect::<Vec<_>>(),
                "permissions": s.permissions.iter().map(|p| json!({
                    "target": p.target.as_str(), "decision": p.decision,
                    "answer_id": p.answer_id.to_hex(), "conditions": p.conditions,
                })).collect::<Vec<_>>(),
                "events": s.events.iter().map(|e| json!({
                    "at_ms": e.at_ms,
                    "event": e.kind.as_str(),
                    "from": e.from.as_str(),
                    "to": e.to.as_str(),
                    "target": e.target.as_ref().map(AgencyId::as_str),
                    "note": e.note,
                    "log_index": e.log_index,
                    "message_id": e.message_id.to_hex(),
                    "message": self.message_summary(&e.message_id),
                })).collect::<Vec<_>>(),
            });
            return Ok(Some(v));
        }
        Ok(None)
    }

    /// Delivery facts of one message: for a sent one its `sent` index, state,
    /// receipt (`receipt-received` index and the peer's log index); for a
    /// received one its `received` index. A relayed message also has its
    /// route (`via`, originator first); a sent one then names the first hop
    /// in `to` and the final recipient's log index (from the end-to-end
    /// receipt) in `end_to_end_log_index`.
    fn message_summary(&self, id: &MessageId) -> Value {
        if let Ok(Some(o)) = self.store().outbox(id) {
            let relay = o.relay.as_ref();
            return json!({
                "via": relay.map(|r| r.route.clone()).unwrap_or_default(),
                "end_to_end_log_index": relay.and_then(|r| r.end_to_end_index),
                "direction": "out",
                "to": o.recipient,
                "kind": o.kind.as_str(),
                "delivery": o.state,
                "sent_log_index": o.sent_index,
                "receipt_log_index": o.final_index,
                "peer_log_index": o.peer_log_index,
                "delivered_ms": o.delivered_ms,
                "last_error": o.last_error,
            });
        }
        if let Ok(Some(i)) = self.store().inbox_by_id(id).map(|v| v.into_iter().next()) {
            return json!({
                "direction": "in",
                "from": i.sender,
                "kind": i.kind.as_str(),
                "via": i.via,
                "received_log_index": i.log_index,
                "received_ms": i.received_ms,
            });
        }
        Value::Null
    }
}
