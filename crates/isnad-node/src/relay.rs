//! Store-and-forward through the central authorities (spec/relay.md).
//!
//! ```text
//!  originator ──hop──▶ own central authority ──hop──▶ partner central authority ──hop──▶ final recipient
//!     seals the inner envelope to the final recipient; every hop is an ordinary
//!     envelope of kind `relay` (sender → next hop) carrying the routing metadata,
//!     one endorsement per sender so far, and the inner envelope, opaque
//! ```
//!
//! A relay opens only the hop envelope, checks the route, the endorsements
//! and policy, logs `relayed` (metadata only), stores the hop and the
//! forward in one durable transaction, answers with its signed hop receipt
//! and delivers the forward with the ordinary outbox machinery. The final
//! recipient opens the inner envelope and accepts it through
//! [`Inner::accept_end_to_end`], then routes an end-to-end receipt back.

use isnad_envelope::{
    check_attachment_metas, endorse, verify_hop, AgencyId, Body, Digest, ErrorCode, Kind,
    MessageId, Opened, Opener, Relay, RelayError,
};
use isnad_wire::Response;

use crate::exchange;
use crate::exchange::Ack;
use crate::node::inner::Inner;
use crate::node::types::{error_response, now, NodeError};
use crate::node_core::inbound::Hop;
use crate::node_core::inbound::{self, Stored};
use crate::sealing;
use crate::store::{Durability, InboxInsert, InboxRecord};

impl Inner {
    /// Handles an authenticated hop envelope of kind `relay` from `peer`
    /// (spec/relay.md §6).
    pub(crate) async fn deliver_relay(
        &self,
        peer: &AgencyId,
        opened: Opened,
        envelope: Vec<u8>,
        digest: Digest,
    ) -> Response {
        let h = opened.message.header;
        let Body::Relay(relay) = opened.message.body else {
            return error_response(ErrorCode::Malformed, Some(h.id), Some("not a relay body"));
        };
        let relay = *relay;
        let secs = now().0;
        if h.id != relay.inner_id || h.expires != relay.inner_expires {
            tracing::info!(id = %h.id, %peer, "message refused: hop header does not match the relay body");
            self.log_rejected_relayed(peer, ErrorCode::Malformed, "relay-header", Some(digest))
                .await;
            return error_response(
                ErrorCode::Malformed,
                Some(h.id),
                Some("a hop envelope carries the inner message's id and expiry"),
            );
        }
        let me = &self.config.agency;
        let pos = match verify_hop(&relay, me, peer, self.directory.as_ref(), secs) {
            Ok(p) => p,
            Err(e) => return self.refuse(peer, h.id, digest, &e).await,
        };
        if let Err(why) = self
            .directory
            .allows_relayed(&relay.route, relay.inner_kind)
        {
            tracing::info!(id = %h.id, %peer, %why, "message refused: policy denies the relayed message");
            self.log_rejected_relayed(peer, ErrorCode::PolicyDenied, &why, Some(digest))
                .await;
            return error_response(ErrorCode::PolicyDenied, Some(h.id), Some(&why));
        }
        if pos + 1 < relay.route.len() {
            self.forward(peer, relay, envelope, digest).await
        } else if relay.inner_kind == Kind::Receipt {
            self.accept_end_to_end_receipt(peer, relay, digest).await
        } else {
            self.deliver_final(peer, relay, digest).await
        }
    }

    /// A relay's part: endorse, log `relayed`, store hop and forward in one
    /// transaction, answer with the hop receipt.
    async fn forward(
        &self,
        peer: &AgencyId,
        mut relay: Relay,
        envelope: Vec<u8>,
        digest: Digest,
    ) -> Response {
        let (secs, ms) = now();
        let id = relay.inner_id;
        let unavailable =
            || error_response(ErrorCode::Unavailable, Some(id), Some("try again later"));
        let (Some(originator), Some(last)) = (
            relay.originator().cloned(),
            relay.final_recipient().cloned(),
        ) else {
            return unavailable();
        };
        let Some(next) = relay.next_after(&self.config.agency).cloned() else {
            return unavailable();
        };
        let route = relay.route.clone();
        let metas = relay.attachments.clone();
        let (inner_kind, inner_digest, expires) =
            (relay.inner_kind, relay.inner_digest, relay.inner_expires);
        if let Err(e) = endorse(&mut relay, &self.identity.signing_key, &self.rng) {
            tracing::error!(error = %e, "cannot endorse a relayed message");
            return unavailable();
        }
        let mut fwd = match sealing::hop_record(&self.sealer(), relay, secs, ms) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%id, %next, error = %e, "cannot forward a relayed message");
                self.log_rejected_relayed(
                    peer,
                    ErrorCode::Unavailable,
                    "relay-next-hop",
                    Some(digest),
                )
                .await;
                return unavailable();
            }
        };
        let relayed = exchange::relayed(
            id,
            originator,
            last,
            inner_digest,
            inner_kind,
            [peer, &next],
            [digest, Digest(fwd.digest)],
            &metas,
            ms,
        );
        let ack = Ack {
            entry: hop_received(
                id,
                peer,
                &self.config.agency,
                digest,
                inner_kind,
                &metas,
                ms,
            ),
            id,
            to: peer.clone(),
            digest,
        };
        // received (hop) i, receipt-sent i+1, relayed i+2, sent (forward) i+3.
        let tail = vec![relayed]
            .into_iter()
            .chain(self.sent_entries(&fwd))
            .collect();
        let acceptance = inbound::acknowledge_one(&self.config.agency, ack, tail, ms);
        let (at, receipt) = match self.acknowledge(acceptance, secs).await {
            Ok(x) => x,
            Err(err) => {
                tracing::error!(error = %err, "cannot log or sign the receipt; refusing relay");
                return unavailable();
            }
        };
        // The forward's `sent` follows the `relayed` entry at the tail.
        fwd.sent_index = Some(at.tail + 1);
        let index = at.receipt;
        let hop = InboxRecord {
            id,
            sender: peer.clone(),
            kind: Kind::Relay,
            envelope,
            digest: digest.0,
            expires,
            received_ms: ms,
            log_index: index,
            receipt: receipt.clone(),
            via: route,
        };
        let stored = match self.store.insert_relay_forward(hop, fwd).await {
            Ok(Some(InboxInsert::Stored)) => {
                tracing::info!(%id, %peer, %next, "message relayed");
                self.metrics.inc(Kind::Relay.as_str());
                self.wake.notify_one();
                return Response::Receipt(receipt);
            }
            Ok(Some(InboxInsert::Duplicate(existing))) => {
                self.metrics.duplicates.inc();
                Stored::Duplicate(existing.receipt)
            }
            Ok(None) => {
                self.log_rejected_relayed(
                    peer,
                    ErrorCode::Replayed,
                    "relay-id-in-use",
                    Some(digest),
                )
                .await;
                Stored::IdInUse
            }
            Err(err) => {
                tracing::error!(error = %err, "relay store write failed");
                Stored::Failed(err.to_string())
            }
        };
        self.answer_after_inbox(peer, id, digest, at, receipt, stored, None, ms)
            .await
    }

    /// The final recipient's part: open the inner envelope, check it is the
    /// one the metadata describes, accept it.
    async fn deliver_final(&self, peer: &AgencyId, relay: Relay, digest: Digest) -> Response {
        let secs = now().0;
        let id = relay.inner_id;
        let opened = match self
            .open_checked(peer, &relay.inner.0, secs, digest, "relay-inner", true)
            .await
        {
            Ok(o) => o,
            Err(answer) => return answer,
        };
        let ih = &opened.message.header;
        if Some(&ih.sender) != relay.originator()
            || ih.id != id
            || ih.expires != relay.inner_expires
            || opened.message.body.kind() != relay.inner_kind
        {
            tracing::info!(%peer, %id, "relayed inner envelope does not match its routing metadata");
            self.log_rejected_relayed(
                peer,
                ErrorCode::Unauthentic,
                "relay-inner-mismatch",
                Some(digest),
            )
            .await;
            return error_response(ErrorCode::Unauthentic, Some(id), None);
        }
        if let Err(e) = check_attachment_metas(&relay, opened.message.body.attachments()) {
            tracing::info!(%peer, %id, "relayed message: {e}");
            self.log_rejected_relayed(peer, e.code(), e.as_str(), Some(digest))
                .await;
            return error_response(e.code(), Some(id), None);
        }
        let hop = Hop {
            peer: peer.clone(),
            digest,
            via: relay.route.clone(),
        };
        self.accept_end_to_end(opened, relay.inner.0, hop).await
    }

    /// After accepting a relayed message: queues the end-to-end receipt
    /// (signed by us, for the inner envelope, naming our `received` entry)
    /// back to the originator along the reverse route (spec/relay.md §8).
    /// A failure is logged; the message stays accepted.
    pub(crate) async fn send_end_to_end_receipt(
        &self,
        opened: &Opened,
        route: &[AgencyId],
        index: u64,
        secs: u64,
    ) {
        let h = &opened.message.header;
        let result: Result<(), NodeError> = async {
            let (rid, bytes) =
                self.make_receipt(&h.sender, h.id, opened.envelope_digest, index, secs)?;
            let back: Vec<AgencyId> = route.iter().rev().cloned().collect();
            let mut relay = Relay::new(back, rid, Kind::Receipt, self.receipt_expires(secs), bytes);
            endorse(&mut relay, &self.identity.signing_key, &self.rng)?;
            let rec = sealing::hop_record(&self.sealer(), relay, secs, now().1)?;
            self.store.insert_outbox(rec.clone()).await?;
            let entries = self.sent_entries(&rec);
            let index = self.append_with(Box::new(move |_| entries)).await?;
            self.store
                .modify_outbox(rec.id, Durability::Lazy, move |r| {
                    r.sent_index = Some(index)
                })
                .await?;
            self.wake.notify_one();
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(id = %h.id, error = %e, "cannot queue the end-to-end receipt");
        }
    }

    /// The originator's part for an end-to-end receipt routed back: verify
    /// it, match it to our outbox record, log `receipt-received` with the
    /// final recipient's log index.
    async fn accept_end_to_end_receipt(
        &self,
        peer: &AgencyId,
        relay: Relay,
        digest: Digest,
    ) -> Response {
        let (secs, ms) = now();
        let rid = relay.inner_id;
        let Some(signer) = relay.originator().cloned() else {
            return error_response(ErrorCode::Malformed, Some(rid), None);
        };
        match self.store.inbox_get(&rid, &signer) {
            Ok(Some(rec)) => return Response::Receipt(rec.receipt),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "inbox lookup failed");
                return error_response(ErrorCode::Unavailable, Some(rid), Some("try again later"));
            }
        }
        let opener = Opener {
            me: &self.config.agency,
            keys: &[],
            limits: self.limits,
        };
        let matched = opener
            .open_signed(&relay.inner.0, secs, self.directory.as_ref())
            .map_err(|e| e.to_string())
            .and_then(|o| self.match_end_to_end(&o, &signer, rid).map(|r| (o, r)));
        let (opened, (original, log_index)) = match matched {
            Ok(x) => x,
            Err(why) => {
                tracing::info!(%peer, %rid, %why, "end-to-end receipt rejected");
                self.log_rejected_relayed(
                    peer,
                    ErrorCode::Unauthentic,
                    "end-to-end-receipt",
                    Some(digest),
                )
                .await;
                return error_response(ErrorCode::Unauthentic, Some(rid), None);
            }
        };
        let got = exchange::end_to_end_receipt_received(
            &self.config.agency,
            original.0,
            signer.clone(),
            original.1,
            log_index,
            relay.inner_digest,
            ms,
        );
        let unavailable =
            || error_response(ErrorCode::Unavailable, Some(rid), Some("try again later"));
        let ack = Ack {
            entry: hop_received(
                rid,
                peer,
                &self.config.agency,
                digest,
                Kind::Receipt,
                &[],
                ms,
            ),
            id: rid,
            to: peer.clone(),
            digest,
        };
        let acceptance = inbound::acknowledge_one(&self.config.agency, ack, vec![got], ms);
        let Ok((at, receipt)) = self.acknowledge(acceptance, secs).await else {
            return unavailable();
        };
        let index = at.receipt;
        let bytes = relay.inner.0;
        let rec = InboxRecord {
            id: rid,
            sender: signer.clone(),
            kind: Kind::Receipt,
            envelope: bytes.clone(),
            digest: relay.inner_digest.0,
            expires: opened.message.header.expires,
            received_ms: ms,
            log_index: index,
            receipt: receipt.clone(),
            via: relay.route.clone(),
        };
        if let Err(e) = self.store.insert_inbox(rec).await {
            tracing::error!(error = %e, "inbox write failed");
            let failed = Stored::Failed(e.to_string());
            return self
                .answer_after_inbox(peer, rid, digest, at, receipt, failed, None, ms)
                .await;
        }
        let stored = self
            .store
            .modify_outbox(original.0, Durability::Durable, move |r| {
                if let Some(x) = r.relay.as_mut() {
                    x.end_to_end_receipt = Some(bytes);
                    x.end_to_end_index = Some(log_index);
                }
            })
            .await;
        match stored {
            Err(e) => tracing::error!(error = %e, "cannot record the end-to-end receipt"),
            // A relayed `mla-request` is delivered now, not on the hop receipt.
            Ok(Some(out)) => self.workflow_receipt(&out, ms).await,
            Ok(None) => {}
        }
        Response::Receipt(receipt)
    }

    /// Checks that an opened end-to-end receipt from `signer` acknowledges
    /// a message we relayed to it, with the inner envelope we sealed.
    /// Returns that message's (id, inner digest) and the signer's log index.
    fn match_end_to_end(
        &self,
        opened: &Opened,
        signer: &AgencyId,
        rid: MessageId,
    ) -> Result<((MessageId, Digest), u64), String> {
        let h = &opened.message.header;
        if &h.sender != signer || h.id != rid {
            return Err("receipt header does not match its routing metadata".into());
        }
        let Body::Receipt(r) = &opened.message.body else {
            return Err("not a receipt".into());
        };
        let rec = self
            .store
            .outbox(&r.message_id)
            .map_err(|e| e.to_string())?
            .ok_or("receipt for a message we did not send")?;
        let ok = rec.relay.as_ref().is_some_and(|x| {
            x.inner_digest == r.envelope_digest.0
                && x.route.first() == Some(&self.config.agency)
                && x.route.last() == Some(signer)
        });
        if !ok {
            return Err("receipt does not acknowledge our inner envelope".into());
        }
        Ok(((r.message_id, r.envelope_digest), r.log_index))
    }

    /// Refuses a hop whose route or endorsements do not hold: the detail
    /// goes to the local log, the peer gets the code only (one opaque
    /// `unauthentic` for every endorsement failure).
    async fn refuse(
        &self,
        peer: &AgencyId,
        id: MessageId,
        digest: Digest,
        e: &RelayError,
    ) -> Response {
        tracing::info!(%peer, %id, error = %e, "relay hop rejected");
        let stage = format!("relay: {}", e.as_str());
        self.log_rejected_relayed(peer, e.code(), &stage, Some(digest))
            .await;
        let public = match e.code() {
            ErrorCode::Unauthentic => None,
            _ => Some(e.to_string()),
        };
        error_response(e.code(), Some(id), public.as_deref())
    }
}

use crate::exchange::hop_received;
