//! `GET /v1/events`: server-sent events for case systems, so they need not
//! poll (spec/api.yaml).
//!
//! The audit log is the event source: every event is one audit entry, its
//! SSE `id` the entry's log index. A client that reconnects with
//! `Last-Event-ID: N` (or `?from=N+1`) gets every event after index N again,
//! across restarts of either side, since the log is durable and never
//! rewritten; nothing is kept per client. Events carry what the entry
//! carries (ids, agencies, states; no content): the client reads the
//! message itself with `GET /v1/messages/{id}`.
//!
//! | entry | event |
//! |---|---|
//! | `received`, for a message now in this node's inbox | `message-received` |
//! | `status-changed` | `status-changed` |
//! | `receipt-received` | `delivered` |
//! | `delivery-failed` | `delivery-failed` |
//! | `delivery-expired` | `delivery-expired` |
//!
//! A `received` entry is appended just before its inbox record is
//! committed; the stream waits for the record (a commit can wait behind a
//! backup or a slow disk), and skips the entry once it is clear that no
//! record will come: a relay hop or an end-to-end receipt (detail `kind`
//! `relay` or `receipt`), a hop a central authority relays onward (its
//! outbox then holds the forward hop under the same id), or after
//! [`INBOX_WAIT`].
//! If the state cannot be read, the stream ends instead of skipping, so a
//! client that reconnects with `Last-Event-ID` loses nothing.
//!
//! The stream ends when the node shuts down (clients reconnect and resume).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream};
use isnad_log::{Entry, EventType};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, Api, ApiError};
use crate::NodeHandle;

/// How long the stream waits for the inbox record of a `received` entry
/// that is not relayed onward either (then the entry is skipped, with a
/// warning: the record's commit failed).
const INBOX_WAIT: Duration = Duration::from_secs(60);
/// Entries read from the log per step.
const READ_BATCH: u64 = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// First log index to consider; default: the log's size now (only new
    /// events), or one past `Last-Event-ID`.
    #[serde(default)]
    from: Option<u64>,
}

pub(super) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let last_seen = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError(
                        axum::http::StatusCode::BAD_REQUEST,
                        "bad-event-id",
                        "Last-Event-ID must be a log index (decimal)".into(),
                    )
                })?,
        ),
    };
    let node = api.node.clone();
    let from = match (last_seen, q.from) {
        (Some(n), _) => n.saturating_add(1),
        (None, Some(f)) => f,
        (None, None) => node.log().size(),
    };
    Ok(Sse::new(stream_from(node, from)).keep_alive(KeepAlive::default()))
}

struct Cursor {
    node: NodeHandle,
    next: u64,
    grew: tokio::sync::watch::Receiver<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
    ready: std::collections::VecDeque<Event>,
}

fn stream_from(node: NodeHandle, from: u64) -> impl Stream<Item = Result<Event, Infallible>> {
    let cursor = Cursor {
        grew: node.watch_log(),
        stop: node.watch_shutdown(),
        node,
        next: from,
        ready: Default::default(),
    };
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.ready.pop_front() {
                return Some((Ok(e), c));
            }
            if *c.stop.borrow() {
                return None;
            }
            let size = c.node.log().size();
            if c.next < size {
                let end = size.min(c.next + READ_BATCH);
                for index in c.next..end {
                    let entry = match read(&c.node, index) {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(index, error = %e, "event stream: cannot read a log entry; ending the stream");
                            return None;
                        }
                    };
                    match event_of(&c.node, index, &entry).await {
                        Ok(Some(ev)) => c.ready.push_back(ev),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(index, error = %e, "event stream: cannot read the state; ending the stream");
                            return None;
                        }
                    }
                }
                c.next = end;
                continue;
            }
            tokio::select! {
                r = c.grew.changed() => if r.is_err() { return None },
                _ = c.stop.wait_for(|s| *s) => return None,
            }
        }
    })
}

fn read(node: &NodeHandle, index: u64) -> Result<Entry, String> {
    let bytes = node.log().entry_bytes(index).map_err(|e| e.to_string())?;
    Entry::decode(&bytes).map_err(|e| e.to_string())
}

/// The event an entry makes, if any.
async fn event_of(node: &NodeHandle, index: u64, e: &Entry) -> Result<Option<Event>, String> {
    let name = match e.event {
        EventType::Received => {
            let Some(id) = e.message_id else {
                return Ok(None);
            };
            // A relay hop (its end-to-end message, if it is for this node,
            // has a `received` entry of its own) and an end-to-end receipt
            // are not messages for the inbox.
            let kind = e.detail.get("kind").map(String::as_str);
            if matches!(kind, Some("relay" | "receipt")) {
                return Ok(None);
            }
            if !in_inbox(node, index, &id).await? {
                return Ok(None);
            }
            "message-received"
        }
        EventType::StatusChanged => "status-changed",
        EventType::ReceiptReceived => "delivered",
        EventType::DeliveryFailed => "delivery-failed",
        EventType::DeliveryExpired => "delivery-expired",
        _ => return Ok(None),
    };
    let data = data_of(index, e);
    Ok(Some(
        Event::default()
            .id(index.to_string())
            .event(name)
            .data(data.to_string()),
    ))
}

/// The event's JSON: the entry's identifying keys, no content.
fn data_of(index: u64, e: &Entry) -> Value {
    let mut v = json!({
        "log_index": index,
        "log_event": e.event.to_string(),
        "time_ms": e.time_ms,
    });
    if let Some(id) = &e.message_id {
        v["message_id"] = json!(id.to_hex());
    }
    if let Some(s) = &e.sender {
        v["sender"] = json!(s.as_str());
    }
    if let Some(r) = &e.recipient {
        v["recipient"] = json!(r.as_str());
    }
    if let Some(i) = e.peer_index {
        v["peer_log_index"] = json!(i);
    }
    if !e.detail.is_empty() {
        v["detail"] = json!(e.detail);
    }
    v
}

/// Whether the message of the `received` entry at `index` is (or comes to
/// be) in the inbox; false for a hop relayed onward. An error if the state
/// cannot be read.
async fn in_inbox(
    node: &NodeHandle,
    index: u64,
    id: &isnad_envelope::MessageId,
) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + INBOX_WAIT;
    let mut stop = node.watch_shutdown();
    loop {
        let store = node.store();
        if !store.inbox_by_id(id).map_err(|e| e.to_string())?.is_empty() {
            return Ok(true);
        }
        let relayed = store
            .outbox(id)
            .map_err(|e| e.to_string())?
            .is_some_and(|r| r.relay.is_some());
        if relayed {
            return Ok(false);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(index, %id, "event stream: a received message never reached the inbox; no event for it");
            return Ok(false);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.wait_for(|s| *s) => return Err("the node is shutting down".into()),
        }
    }
}
