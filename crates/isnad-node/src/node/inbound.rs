//! The inbound path (spec/transport.md §4): accept a connection, serve its
//! streams, read one request frame, open the envelope, check policy and the
//! workflow, log and store the message, answer with the receipt. The
//! decisions are [`crate::node_core::inbound`]'s; this module carries them out.

use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::{
    AgencyId, Digest, ErrorCode, Header, Kind, MessageId, OpenError, Opened, Opener, ReplayGuard,
};
use isnad_wire::{body_len, FrameError, Op, Request, Response};

use crate::admission::{self, Admit, REFUSED};
use crate::node_core::inbound::{self, Hop, Stored};
use crate::store::{InboxInsert, InboxRecord, Store};
use crate::workflow::{self, WorkflowError};

use super::connections::peer_agency;
use super::inner::Inner;
use super::types::{error_response, now};
use super::witness;

/// Accepts incoming connections until shutdown, through the handshake pool.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    let admission = Arc::clone(&inner.admission);
    let mut stop = inner.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => i,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(incoming) = incoming else { return };
        let addr = incoming.remote_address();
        let slot = admission.admit(
            addr.ip(),
            incoming.remote_address_validated(),
            incoming.may_retry(),
        );
        let slot = match slot {
            Admit::Start(slot) => slot,
            Admit::Retry => {
                inner.metrics.handshake_retries.inc();
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            Admit::Refuse(reason) => {
                incoming.refuse();
                inner.metrics.rejected(reason);
                tracing::debug!(%addr, reason, "incoming connection refused");
                continue;
            }
            Admit::Ignore(reason) => {
                incoming.ignore();
                inner.metrics.rejected(reason);
                continue;
            }
        };
        let task = Arc::clone(&inner);
        inner.spawn(async move {
            let inner = task;
            let admission = Arc::clone(&inner.admission);
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => return admission.handshake_failed(addr, "handshake", &e),
            };
            let conn =
                match tokio::time::timeout(admission.bounds.handshake_timeout, connecting).await {
                    Ok(Ok(conn)) => conn,
                    // TLS refusals of unlisted or certificate-less peers end here.
                    Ok(Err(e)) => return admission.handshake_failed(addr, "handshake", &e),
                    // Dropping the attempt closes it.
                    Err(_) => {
                        return admission.handshake_failed(
                            addr,
                            "handshake-timeout",
                            &"deadline passed",
                        )
                    }
                };
            drop(slot);
            serve_connection(inner, conn).await;
        });
    }
}

pub(super) async fn serve_connection(inner: Arc<Inner>, conn: quinn::Connection) {
    let Some(peer) = peer_agency(&inner, &conn) else {
        // The TLS verifier accepted a certificate the directory cannot map:
        // only possible if the directory changed in between. Refuse.
        conn.close(REFUSED, b"unknown peer");
        return;
    };
    let Some(_slot) = inner.admission.enter(&peer, &conn) else {
        conn.close(REFUSED, b"too many connections");
        return;
    };
    tracing::debug!(%peer, addr = %conn.remote_address(), "peer connected");
    inner.watch_listing(&conn, &peer);
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let task = Arc::clone(&inner);
        let peer = peer.clone();
        inner.spawn(async move {
            serve_stream(&task, &peer, send, recv).await;
        });
    }
}

pub(super) async fn serve_stream(
    inner: &Inner,
    peer: &AgencyId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let limit = Duration::from_secs(inner.config.limits.stream_timeout_secs);
    // The throttle is checked before any byte of the body is read.
    let response = if inner.throttled(peer).await {
        let _ = recv.stop(REFUSED);
        inner.metrics.rejected("throttled");
        error_response(
            ErrorCode::Unavailable,
            None,
            Some("too many refused requests from this peer; try again later"),
        )
    } else {
        // The client has the stream time limit to send its whole request;
        // one left unfinished still gets its one answer (transport.md §2, §5).
        match tokio::time::timeout(limit, read_request(inner, peer, &mut recv)).await {
            Err(_) => {
                let _ = recv.stop(REFUSED);
                inner.metrics.rejected("stream-timeout");
                tracing::info!(%peer, "request refused: not complete within the stream time limit");
                error_response(
                    ErrorCode::Unavailable,
                    None,
                    Some("request not complete within the stream time limit"),
                )
            }
            // The body's budget is held until the request is answered.
            Ok(Ok((req, _budget))) => match req.op {
                Op::Deliver => inner.deliver_in(peer, req.payload).await,
                Op::AddCheckpoint => witness::serve(inner, peer, req.payload).await,
                _ => error_response(ErrorCode::Malformed, None, Some("unsupported op")),
            },
            Ok(Err(Unread::Attachment)) => {
                return crate::attach_transfer::serve(inner, peer, send, recv).await;
            }
            Ok(Err(Unread::Busy(resp))) => {
                let _ = recv.stop(REFUSED);
                inner.metrics.rejected("body-budget");
                resp
            }
            Ok(Err(Unread::Frame(resp))) => {
                let _ = recv.stop(REFUSED);
                if let Response::Error { code, .. } = &resp {
                    tracing::info!(%peer, %code, "request refused: bad frame");
                    inner.log_rejected(peer, *code, "frame", None).await;
                }
                resp
            }
        }
    };
    write_answer(inner, &mut send, &response, limit).await;
}

/// Writes the one answer of a stream and finishes it, then waits for the
/// peer to read it, for at most `limit`.
pub(super) async fn write_answer(
    inner: &Inner,
    send: &mut quinn::SendStream,
    response: &Response,
    limit: Duration,
) {
    let written = tokio::time::timeout(limit, async {
        if send.write_all(&response.encode()).await.is_ok() {
            let _ = send.finish();
            let _ = send.stopped().await;
        }
    })
    .await;
    if written.is_err() {
        inner.metrics.rejected("stream-timeout");
    }
}

/// Why a request was not read, with the answer.
pub(super) enum Unread {
    /// The frame is bad: the peer's fault, logged and counted.
    Frame(Response),
    /// The peer's body budget (or the total) is used up: `unavailable`,
    /// neither logged nor counted (spec/transport.md §5).
    Busy(Response),
    /// An attachment stream (transport.md §10): served by attach_transfer.
    Attachment,
}

/// Reads one request frame, refusing oversize prefixes before reading the
/// body and bytes after the frame. The body's declared length is reserved
/// from `peer`'s budget before it is read (admission.rs).
pub(super) async fn read_request(
    inner: &Inner,
    peer: &AgencyId,
    recv: &mut quinn::RecvStream,
) -> Result<(Request, admission::BodyPermit), Unread> {
    let truncated = || {
        Unread::Frame(error_response(
            ErrorCode::Malformed,
            None,
            Some("truncated frame"),
        ))
    };
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|_| truncated())?;
    if prefix == isnad_wire::attach::MAGIC {
        return Err(Unread::Attachment);
    }
    let max = inner.limits.max_envelope_bytes + 1024;
    let len = body_len(prefix, max)
        .map_err(|e| Unread::Frame(error_response(e.code(), None, Some("frame too large"))))?;
    let budget = inner.admission.reserve(peer, len).ok_or_else(|| {
        Unread::Busy(error_response(
            ErrorCode::Unavailable,
            None,
            Some("too many request bytes in flight from this peer; try again later"),
        ))
    })?;
    let body = admission::read_body(recv, len)
        .await
        .ok_or_else(truncated)?;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => {}
        _ => {
            return Err(Unread::Frame(error_response(
                ErrorCode::Malformed,
                None,
                Some("bytes after the frame"),
            )))
        }
    }
    let request = Request::decode(&body)
        .map_err(|e: FrameError| Unread::Frame(error_response(e.code(), None, None)))?;
    Ok((request, budget))
}

/// The replay check backed by the inbox: a (sender, id) already stored is a
/// duplicate, and its record is kept to answer with the original receipt.
pub(super) struct InboxGuard<'a> {
    store: &'a Store,
    hit: Option<InboxRecord>,
    failed: bool,
}

impl ReplayGuard for InboxGuard<'_> {
    fn first_sight(&mut self, sender: &AgencyId, id: &MessageId, _expires: u64) -> bool {
        match self.store.inbox_get(id, sender) {
            Ok(Some(rec)) => {
                self.hit = Some(rec);
                false
            }
            Ok(None) => true,
            Err(e) => {
                tracing::error!(error = %e, "replay check failed");
                self.failed = true;
                false
            }
        }
    }
}

impl Inner {
    /// Handles one delivered envelope and returns the answer.
    pub(super) async fn deliver_in(&self, peer: &AgencyId, envelope: Vec<u8>) -> Response {
        self.metrics.received_bytes.add(envelope.len() as u64);
        let digest = Digest::sha256(&envelope);
        // An exact retransmission: answer with the receipt we gave before.
        match self.store.inbox_by_digest(&digest) {
            Ok(Some(rec)) => {
                self.metrics.duplicates.inc();
                return Response::Receipt(rec.receipt);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "inbox lookup failed");
                return error_response(ErrorCode::Unavailable, None, Some("try again later"));
            }
        }
        // Degraded: no new work (spec/transport.md §9); the reason stays in
        // the local log and health, the peer only learns to retry.
        if self.condition().accepting().is_err() {
            self.metrics.rejected("degraded");
            return error_response(
                ErrorCode::Unavailable,
                None,
                Some("node degraded; try again later"),
            );
        }
        let secs = now().0;
        let opened = match self
            .open_checked(peer, &envelope, secs, digest, "open", false)
            .await
        {
            Ok(o) => o,
            Err(answer) => return answer,
        };
        let h = &opened.message.header;
        let kind = opened.message.body.kind();
        if &h.sender != peer {
            tracing::info!(id = %h.id, %peer, sender = %h.sender, "message refused: the sender is not the peer");
            self.log_rejected(
                peer,
                ErrorCode::PolicyDenied,
                "sender-is-not-peer",
                Some(digest),
            )
            .await;
            return error_response(
                ErrorCode::PolicyDenied,
                Some(h.id),
                Some("a node delivers only its own agency's messages"),
            );
        }
        if kind == Kind::Relay {
            return self.deliver_relay(peer, opened, envelope, digest).await;
        }
        if let Err(rule) = self.directory.allows(&h.sender, &h.recipient, kind) {
            tracing::info!(id = %h.id, %peer, %rule, "message refused: policy denies it");
            self.log_rejected(peer, ErrorCode::PolicyDenied, &rule, Some(digest))
                .await;
            return error_response(ErrorCode::PolicyDenied, Some(h.id), Some(&rule));
        }
        let hop = Hop {
            peer: peer.clone(),
            digest,
            via: Vec::new(),
        };
        self.accept_end_to_end(opened, envelope, hop).await
    }

    /// Opens an envelope addressed to this node at `secs`, with the inbox
    /// as the replay set. On failure returns the answer for `peer`, after
    /// logging the rejection with `stage`; a replay of an accepted message
    /// is answered with the receipt given the first time.
    pub(crate) async fn open_checked(
        &self,
        peer: &AgencyId,
        envelope: &[u8],
        secs: u64,
        digest: Digest,
        stage: &str,
        relayed: bool,
    ) -> Result<Opened, Response> {
        let opener = Opener {
            me: &self.config.agency,
            keys: &self.identity.encryption_keys,
            limits: self.limits,
        };
        let mut guard = InboxGuard {
            store: &self.store,
            hit: None,
            failed: false,
        };
        let e = match opener.open(envelope, secs, self.directory.as_ref(), &mut guard) {
            Ok(o) => return Ok(o),
            Err(e) => e,
        };
        if let (OpenError::Replayed { .. }, Some(hit)) = (&e, guard.hit) {
            // Accepted before (a retransmission or a replay): never twice;
            // answer as the first time.
            self.metrics.duplicates.inc();
            return Err(Response::Receipt(hit.receipt));
        }
        if guard.failed {
            return Err(error_response(
                ErrorCode::Unavailable,
                None,
                Some("try again later"),
            ));
        }
        let detail = match &e {
            OpenError::Unauthentic(u) => u.detail().as_str().to_owned(),
            other => other.to_string(),
        };
        tracing::info!(
            id = e.message_id().map(tracing::field::display),
            %peer,
            code = %e.code(),
            %detail,
            stage,
            "message refused: envelope rejected"
        );
        if !relayed {
            self.count_refusal(peer);
        }
        self.log_rejected_relayed(peer, e.code(), stage, Some(digest))
            .await;
        let public_detail = match &e {
            OpenError::Unauthentic(_) => None,
            other => Some(other.to_string()),
        };
        // The id only once the signature verified (transport.md §3.2).
        Err(error_response(
            e.code(),
            e.message_id(),
            public_detail.as_deref(),
        ))
    }

    /// THE point where an opened end-to-end message addressed to this node
    /// is accepted, whether it came directly or through relays
    /// (spec/relay.md §7): every check that applies to all accepted
    /// messages belongs here, before the first audit entry. `envelope` is
    /// the end-to-end envelope (stored as received, still encrypted);
    /// `hop` says who handed it over and how.
    ///
    /// Durable order: audit entries, then the inbox record, then the answer.
    /// `received` and `receipt-sent` share one sync: the receipt carries the
    /// index of `received`, and `receipt-sent` names it (key 8).
    pub(crate) async fn accept_end_to_end(
        &self,
        opened: Opened,
        envelope: Vec<u8>,
        hop: Hop,
    ) -> Response {
        let (secs, ms) = now();
        let h = &opened.message.header;
        let kind = opened.message.body.kind();
        let digest = opened.envelope_digest;
        let via: Vec<String> = hop.via.iter().map(|a| a.to_string()).collect();
        let checked = self
            .record_locks
            .checked(|| workflow::check_incoming(&self.store, &opened.message, ms).map(|p| (p, ())))
            .await;
        let (mut plan, _record_lock) = match checked {
            Ok((p, (), lock)) => (p, lock),
            Err(err) => {
                let peer = via.is_empty().then_some(&hop.peer);
                return self.refuse_workflow(peer, h, &err, digest, ms).await;
            }
        };
        let acceptance = inbound::accept(
            &self.config.agency,
            h,
            kind,
            digest,
            &hop,
            plan.entries(),
            ms,
        )
        .with_attachments(&crate::exchange::logged_descriptors(
            opened.message.body.attachments(),
        ));
        let (at, receipt) = match self.acknowledge(acceptance, secs).await {
            Ok(x) => x,
            Err(err) => {
                tracing::error!(error = %err, "cannot log or sign the receipt; refusing delivery");
                return error_response(ErrorCode::Unavailable, Some(h.id), Some("try again later"));
            }
        };
        let index = at.message;
        // The status-changed entries follow the acknowledged ones: their
        // indexes go into the records committed now.
        plan.set_indexes(at.tail);
        let rec = InboxRecord {
            id: h.id,
            sender: h.sender.clone(),
            kind,
            envelope,
            digest: digest.0,
            expires: h.expires,
            received_ms: ms,
            log_index: index,
            receipt: receipt.clone(),
            via: hop.via.clone(),
        };
        let stored = match self
            .store
            .insert_inbox_checked(rec, plan.writes().to_vec())
            .await
        {
            Ok(Some(InboxInsert::Stored)) => {
                tracing::info!(
                    id = %h.id,
                    peer = %hop.peer,
                    sender = %h.sender,
                    kind = kind.as_str(),
                    log_index = index,
                    "message received"
                );
                Stored::Stored
            }
            Ok(None) => {
                tracing::info!(id = %h.id, "request or share changed meanwhile; asking for a retry");
                Stored::Changed
            }
            Ok(Some(InboxInsert::Duplicate(existing))) => {
                self.metrics.duplicates.inc();
                Stored::Duplicate(existing.receipt)
            }
            Err(err) => {
                tracing::error!(error = %err, "inbox write failed");
                Stored::Failed(err.to_string())
            }
        };
        if stored != Stored::Stored {
            return self
                .answer_after_inbox(
                    &hop.peer,
                    h.id,
                    hop.digest,
                    at,
                    receipt,
                    stored,
                    Some((&h.sender, digest)),
                    ms,
                )
                .await;
        }
        self.metrics.inc(kind.as_str());
        if !hop.via.is_empty() {
            self.send_end_to_end_receipt(&opened, &hop.via, index, secs)
                .await;
        }
        Response::Receipt(receipt)
    }

    /// Answers a message the workflow refused: a final refusal is logged as
    /// `rejected`; a transient one (an earlier message still in transit)
    /// asks the peer to retry. A logged refusal counts against `peer`'s
    /// limit (the TLS peer, when it is the sender; `None` when relayed).
    pub(super) async fn refuse_workflow(
        &self,
        peer: Option<&AgencyId>,
        h: &Header,
        err: &WorkflowError,
        digest: Digest,
        ms: u64,
    ) -> Response {
        let code = err.code();
        self.metrics.rejected(code.as_str());
        if code == ErrorCode::Unavailable {
            tracing::info!(id = %h.id, peer = peer.map(tracing::field::display), sender = %h.sender, %err, "message must wait; asking for a retry");
        } else {
            tracing::info!(id = %h.id, peer = peer.map(tracing::field::display), sender = %h.sender, %err, "message refused by the workflow");
            if let Some(peer) = peer {
                self.count_refusal(peer);
            }
            let entry = workflow::rejected_entry(h, err, digest.0, ms);
            if let Err(e) = self.append(entry).await {
                tracing::error!(error = %e, "could not log a rejection");
            }
        }
        error_response(code, Some(h.id), Some(&err.to_string()))
    }
}
