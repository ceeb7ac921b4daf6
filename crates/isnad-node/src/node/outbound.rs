//! The outbound path: the delivery loop picks due outbox messages, one task
//! per attempt delivers it over the (cached) connection, checks the receipt
//! and settles the record. The decisions are [`crate::node_core::outbound`]'s;
//! this module carries them out.

use std::sync::Arc;
use std::time::Duration;

use isnad_envelope::{AgencyId, MessageId};
use isnad_wire::{body_len, Op, Request, Response, MAX_RESPONSE_BODY};
use ring::rand::SecureRandom;
use tokio::sync::OwnedSemaphorePermit;

use crate::node_core::outbound;
use crate::store::{Durability, OutState, OutboxRecord};
use crate::workflow::{self};

use super::inner::Inner;
use super::types::{now, NodeError, Peer};
use crate::reseal;

/// How often the delivery loop looks for relayed messages that expired
/// without their end-to-end receipt.
pub(super) const END_TO_END_CHECK: Duration = Duration::from_secs(1);

/// Why a request on a stream got no answer.
#[derive(Debug)]
pub(super) struct RequestFailed {
    /// The connection is broken or unresponsive (not just this stream).
    connection: bool,
    /// What failed, for the delivery record and the logs.
    detail: String,
}

pub(super) async fn delivery_loop(inner: Arc<Inner>) {
    let stop = inner.shutdown.subscribe();
    let mut checked_end_to_end: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        // While the log or the database fails, or after a bookkeeping
        // failure, no delivery starts: the health loop wakes this one when
        // storage is back (spec/transport.md §9).
        let hold = if inner.condition().storage_fails() {
            Some(Duration::from_secs(1))
        } else {
            inner.health.held_for()
        };
        if let Some(hold) = hold {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(hold) => {}
            }
            continue;
        }
        if checked_end_to_end.is_none_or(|t| t.elapsed() >= END_TO_END_CHECK) {
            checked_end_to_end = Some(std::time::Instant::now());
            inner.check_end_to_end().await;
        }
        let (_, ms) = now();
        let busy = |id: &MessageId| {
            inner
                .in_flight
                .lock()
                .map(|s| s.contains(id.as_bytes()))
                .unwrap_or(true)
        };
        let due = match inner
            .store
            .due(ms, inner.config.delivery.max_in_flight, &busy)
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        inner
            .metrics
            .queue_depth
            .set(inner.store.pending_count().unwrap_or(0));
        for id in due {
            if *stop.borrow() {
                return;
            }
            let id = *id.as_bytes();
            if !inner.mark_in_flight(id) {
                continue;
            }
            let Ok(permit) = Arc::clone(&inner.slots).acquire_owned().await else {
                return;
            };
            if *stop.borrow() {
                return;
            }
            Arc::clone(&inner).spawn_delivery(id, None, permit);
        }
        let wait_ms = match inner.store.next_due_ms() {
            Ok(Some(t)) => t.saturating_sub(now().1).clamp(10, 1000),
            _ => 1000,
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
    }
}

impl Inner {
    /// Runs one delivery attempt of message `id` (already marked in flight)
    /// as a node task. Its record is read here, when the attempt starts, so
    /// a message delivered meanwhile is not delivered twice; `sent_index`
    /// is its `sent` entry if the caller knows it and the record may not
    /// yet. When the message stays pending (a retry is scheduled) the
    /// delivery loop is woken to plan it.
    pub(super) fn spawn_delivery(
        self: Arc<Self>,
        id: [u8; 16],
        sent_index: Option<u64>,
        permit: OwnedSemaphorePermit,
    ) {
        let inner = Arc::clone(&self);
        self.spawn(async move {
            let stopping = *inner.shutdown.borrow();
            let state =
                match inner.store.outbox(&MessageId::from_bytes(id)) {
                    // Shutting down: no new attempt on a closing endpoint (the
                    // message stays due and is delivered after the restart).
                    Ok(Some(_)) if stopping => Ok(OutState::Pending),
                    Ok(Some(mut now)) if now.state == OutState::Pending => {
                        // Sealed with a key of this node revoked meanwhile (its
                        // directory changed): re-sealed, its new `sent` logged below.
                        let checked =
                            match reseal::reseal_if_revoked(&inner.sealer(), &inner.store, &now)
                                .await
                            {
                                Ok(true) => match inner.store.outbox(&MessageId::from_bytes(id)) {
                                    Ok(Some(resealed)) => {
                                        now = resealed;
                                        Ok(())
                                    }
                                    Ok(None) => Ok(()),
                                    Err(e) => Err(e.into()),
                                },
                                Ok(false) => {
                                    now.sent_index = now.sent_index.or(sent_index);
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            };
                        // No delivery before `sent`: a message accepted while
                        // the log failed gets its entry now.
                        let logged = match (checked, now.sent_index) {
                            (Err(e), _) => Err(e),
                            (Ok(()), Some(_)) => Ok(()),
                            (Ok(()), None) => inner
                                .log_submitted(&now, &workflow::Plan::default())
                                .await
                                .map(|i| now.sent_index = Some(i)),
                        };
                        match logged {
                            Ok(()) => inner.deliver_out(now).await,
                            Err(e) => Err(e),
                        }
                    }
                    // Delivered (or given up) meanwhile, or gone: nothing to do.
                    Ok(Some(now)) => Ok(now.state),
                    Ok(None) => Ok(OutState::Failed),
                    Err(e) => Err(e.into()),
                };
            // A failed bookkeeping write backs off like a failed delivery
            // (no new delivery starts meanwhile); logged once per row of
            // failures, and not at all when the node's condition already
            // says its storage fails.
            match &state {
                Err(e) => {
                    inner.metrics.bookkeeping_failures.inc();
                    let d = &inner.config.delivery;
                    let first = inner.health.bookkeeping_failed(
                        Duration::from_millis(d.initial_backoff_ms),
                        Duration::from_secs(d.max_backoff_secs),
                    );
                    if first && !inner.condition().storage_fails() {
                        tracing::error!(error = %e, "delivery bookkeeping failed; backing off");
                    } else {
                        tracing::debug!(error = %e, "delivery bookkeeping failed");
                    }
                }
                Ok(_) => inner.health.bookkeeping_ok(),
            }
            inner.unmark_in_flight(&id);
            drop(permit);
            if !matches!(state, Ok(s) if s != OutState::Pending) {
                inner.wake.notify_one();
            }
        });
    }

    /// One delivery attempt; updates the record and the log in the order
    /// [`outbound::Settled`] gives: the entry first, then the record.
    pub(super) async fn deliver_out(&self, rec: OutboxRecord) -> Result<OutState, NodeError> {
        let id = rec.id;
        let (secs, ms) = now();
        let me = &self.config.agency;
        let recipient = rec.recipient.clone();
        let mut settled = if outbound::expired(secs, rec.expires) {
            outbound::expire(me, &recipient, rec, ms)
        } else {
            let attempt = match self.directory.peer(&recipient) {
                None => outbound::Attempt::Transport(format!(
                    "{recipient} is not in any trusted directory"
                )),
                Some(peer) => self.attempt(&recipient, &peer, &rec, secs).await,
            };
            let mut random = [0u8; 2];
            let _ = self.rng.fill(&mut random);
            let cx = outbound::Context {
                me,
                recipient: &recipient,
                secs,
                ms,
                backoff: self.backoff(),
                random,
                own_revoked: self.own_key_revoked(secs),
            };
            if let outbound::Attempt::Transport(err) = &attempt {
                tracing::debug!(%id, %recipient, error = %err, attempt = rec.attempts + 1, "delivery attempt failed");
                self.metrics.retries.inc();
            }
            outbound::settle(cx, rec, attempt)
        };
        if let Some(e) = settled.entry.take() {
            let index = self.append(e).await?;
            settled.logged(index);
        }
        let rec = settled.record;
        match settled.outcome {
            outbound::Outcome::Delivered => {
                self.workflow_receipt(&rec, ms).await;
                tracing::info!(%id, peer = %recipient, peer_index = rec.peer_log_index, "message sent: receipt received");
                self.metrics.delivered.inc();
                self.metrics
                    .latency
                    .observe_ms(ms.saturating_sub(rec.created * 1000));
            }
            outbound::Outcome::Failed => {
                self.metrics.failed.inc();
                tracing::warn!(%id, peer = %recipient, error = rec.last_error.as_deref(), "message refused by the peer");
            }
            outbound::Outcome::Expired => {
                self.metrics.expired.inc();
                tracing::warn!(%id, %recipient, "message expired undelivered");
            }
            outbound::Outcome::Retry => {}
        }
        self.finish(rec).await
    }

    /// One attempt, started at `secs`: the receipt is checked as of then
    /// (before the message's expiry, spec/transport.md §6).
    pub(super) async fn attempt(
        &self,
        recipient: &AgencyId,
        peer: &Peer,
        rec: &OutboxRecord,
        secs: u64,
    ) -> outbound::Attempt {
        match self
            .exchange(recipient, peer, Op::Deliver, rec.envelope.clone())
            .await
        {
            Ok(answer) => outbound::classify(
                &self.config.agency,
                recipient,
                rec,
                answer,
                secs,
                self.directory.as_ref(),
                self.limits,
            ),
            Err(e) => outbound::Attempt::Transport(e),
        }
    }

    /// One request on a new stream of the (cached) connection to `agency`,
    /// and its decoded answer.
    pub(super) async fn exchange(
        &self,
        agency: &AgencyId,
        peer: &Peer,
        op: Op,
        payload: Vec<u8>,
    ) -> Result<Response, String> {
        let conn = self.connection(agency, peer).await?;
        let body = self.request_on(&conn, op, payload).await;
        match body {
            Ok(body) => Response::decode(&body).map_err(|e| e.to_string()),
            Err(e) => {
                // A failure of the connection (closed, or no answer in
                // time): the next request makes a new one. A failure of
                // this stream alone leaves the others on it alone.
                if e.connection || conn.close_reason().is_some() {
                    self.forget_connection(agency, &conn).await;
                }
                Err(e.detail)
            }
        }
    }

    /// One request on a new stream of `conn`, and the answer's body.
    pub(super) async fn request_on(
        &self,
        conn: &quinn::Connection,
        op: Op,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RequestFailed> {
        let conn_err = |e: &dyn std::fmt::Display| RequestFailed {
            connection: true,
            detail: e.to_string(),
        };
        let stream_err = |e: &dyn std::fmt::Display| RequestFailed {
            connection: false,
            detail: e.to_string(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| conn_err(&e))?;
        let frame = Request { op, payload }.encode();
        match send.write_all(&frame).await {
            Ok(()) => {
                let _ = send.finish();
            }
            // The server stopped reading (a refusal before the whole body,
            // transport.md §2): its one answer still comes; read it.
            Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(conn_err(&e)),
        }
        let mut prefix = [0u8; 4];
        let limit = Duration::from_secs(self.config.limits.stream_timeout_secs);
        tokio::time::timeout(limit, async {
            recv.read_exact(&mut prefix)
                .await
                .map_err(|e| stream_err(&e))?;
            let len = body_len(prefix, MAX_RESPONSE_BODY).map_err(|e| stream_err(&e))?;
            let mut body = vec![0u8; len];
            recv.read_exact(&mut body)
                .await
                .map_err(|e| stream_err(&e))?;
            Ok::<_, RequestFailed>(body)
        })
        .await
        .map_err(|_| conn_err(&"response timeout"))?
    }

    /// Stores the updated record (keeping a `sent` index recorded meanwhile)
    /// and wakes whoever waits for its final state.
    pub(super) async fn finish(&self, rec: OutboxRecord) -> Result<OutState, NodeError> {
        let (id, state) = (rec.id, rec.state);
        // Lazy: if this is lost in a crash the message is delivered again and
        // the recipient answers with the same receipt.
        self.store
            .modify_outbox(id, Durability::Lazy, move |stored| {
                let sent = stored.sent_index;
                // An end-to-end receipt may have come back while this attempt
                // was in flight (a retried hop): keep it.
                let e2e = stored.relay.take();
                *stored = rec;
                stored.sent_index = stored.sent_index.or(sent);
                if let (Some(now), Some(e2e)) = (stored.relay.as_mut(), e2e) {
                    now.end_to_end_receipt =
                        now.end_to_end_receipt.take().or(e2e.end_to_end_receipt);
                    now.end_to_end_index = now.end_to_end_index.or(e2e.end_to_end_index);
                }
            })
            .await?;
        if state != OutState::Pending {
            let waiters = self
                .waiters
                .lock()
                .ok()
                .and_then(|mut w| w.remove(id.as_bytes()));
            for w in waiters.unwrap_or_default() {
                let _ = w.send(state);
            }
        }
        Ok(state)
    }

    /// The delivery retry schedule of the configuration.
    pub(super) fn backoff(&self) -> outbound::Backoff {
        let d = &self.config.delivery;
        outbound::Backoff {
            initial_ms: d.initial_backoff_ms,
            max_secs: d.max_backoff_secs,
            jitter_percent: d.jitter_percent,
        }
    }

    /// Relayed messages this node originated whose expiry has passed: one
    /// that was handed to the first relay but never got its end-to-end
    /// receipt is logged as `delivery-expired` (detail `end-to-end`) and
    /// marked, so it is not silently lost after the first hop (spec/relay.md
    /// §8). One still pending is left to the delivery loop, which logs its
    /// own expiry.
    pub(super) async fn check_end_to_end(&self) {
        let (secs, ms) = now();
        let due = match self.store.awaiting_end_to_end(secs, 256) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the end-to-end watch list");
                return;
            }
        };
        for (expires, id) in due {
            let rec = match self.store.outbox(&id) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    return;
                }
            };
            let mut index = None;
            match outbound::end_to_end(&self.config.agency, id, rec.as_ref(), ms) {
                outbound::EndToEnd::Wait => continue,
                outbound::EndToEnd::Settle => {}
                outbound::EndToEnd::Missing(e) => {
                    match self.append(*e).await {
                        Ok(i) => index = Some(i),
                        Err(err) => {
                            tracing::error!(error = %err, "cannot log a missing end-to-end receipt");
                            return;
                        }
                    }
                    self.metrics.end_to_end_missing.inc();
                    let to = rec
                        .as_ref()
                        .and_then(|r| r.relay.as_ref())
                        .and_then(|x| x.route.last());
                    tracing::warn!(%id, ?to, "relayed message expired without its end-to-end receipt");
                }
            }
            let settled = self
                .store
                .settle_end_to_end(id, expires, move |r| {
                    if let (Some(x), Some(i)) = (r.relay.as_mut(), index) {
                        x.end_to_end_missing_index = Some(i);
                    }
                })
                .await;
            if let Err(e) = settled {
                tracing::error!(error = %e, "cannot settle an end-to-end wait");
                return;
            }
        }
    }
}
