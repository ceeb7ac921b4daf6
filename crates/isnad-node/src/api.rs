//! The local HTTP/JSON API for case-management systems (spec/api.yaml).
//!
//! Loopback only, every request carries `Authorization: Bearer <token>`,
//! checked before anything else of the request is read. Bodies are limited
//! to [`body_limit`] of the configured envelope size. A submission is
//! answered only after the message is durable.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use isnad_envelope::{body_from_json, body_to_json, AgencyId, Digest, Kind, MessageId};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::idempotency::{self, Claim, Prior};
use crate::metrics::Metrics;
use crate::node::NodeError;
use crate::store::{InboxRecord, OutboxRecord};
use crate::{ExportAt, ExportError, NodeHandle};

mod backup;
mod cases;
mod events;
mod json;
mod retention;

use json::JsonBody;

/// Shared state of the API handlers.
#[derive(Clone)]
struct Api {
    node: NodeHandle,
    token: Arc<String>,
    /// Idempotency keys of submissions in progress.
    submitting: idempotency::InProgress,
    /// [`body_limit`] of the node's envelope limit.
    body_limit: usize,
}

/// Serves the API on `addr` until the node shuts down: then it stops
/// accepting and finishes the requests in progress before
/// [`NodeHandle::shutdown`] returns. Returns the bound address.
pub async fn serve(
    node: NodeHandle,
    addr: SocketAddr,
    token: String,
) -> std::io::Result<SocketAddr> {
    let limit = body_limit(node.max_envelope_bytes());
    let api = Api {
        node: node.clone(),
        token: Arc::new(token),
        submitting: idempotency::InProgress::default(),
        body_limit: limit,
    };
    let protected = Router::new()
        .route("/v1/messages", post(submit))
        .route("/v1/messages/{id}", get(message))
        .route("/v1/messages/{id}/status", get(status))
        .route("/v1/inbox", get(inbox))
        .route("/v1/outbox", get(outbox))
        .route("/v1/checkpoint", get(checkpoint).post(checkpoint_now))
        .route("/v1/witness", get(witness_status))
        .route("/v1/audit/export", post(export_audit))
        .route("/v1/events", get(events::events))
        .route("/v1/backup", post(backup::backup))
        .route("/v1/retention", post(retention::run))
        .merge(cases::routes())
        // Outermost on every route but health: the token is checked before
        // the body is read or parsed, so an unauthenticated client can make
        // the node do nothing but compare it; then the announced length.
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    let app = Router::new()
        .route("/v1/health", get(health))
        .merge(protected)
        .layer(middleware::from_fn(move |r, n| json_refusals(limit, r, n)))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
        // The web console: its own sessions, not the token (spec/console.md).
        .merge(crate::console::routes(node.clone()));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    node.spawn_service(|stop| async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "local API stopped");
        }
    });
    Ok(bound)
}

/// The largest request body the API reads for an envelope limit of
/// `max_envelope_bytes`: twice the limit (byte strings travel as hex in
/// JSON) plus 64 KiB for the JSON around them. A body that fits here but
/// whose envelope would not is refused by sealing (422 invalid-message).
pub fn body_limit(max_envelope_bytes: usize) -> usize {
    max_envelope_bytes
        .saturating_mul(2)
        .saturating_add(64 * 1024)
}

/// Default number of records in a page of `/v1/inbox` and `/v1/outbox`.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page of `/v1/inbox` and `/v1/outbox` a client may ask for.
pub const MAX_PAGE: usize = 1000;

/// Serves `GET /metrics` (Prometheus text format) on `addr` until the node
/// shuts down.
pub async fn serve_metrics(node: NodeHandle, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    async fn metrics(State(node): State<NodeHandle>) -> String {
        let m: &Arc<Metrics> = node.metrics();
        m.render(node.log().size())
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(node.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    node.spawn_service(|stop| async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// An API error: status code and a JSON body `{"error": code, "message": text}`.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1, "message": self.2 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let (status, code) = match &e {
            NodeError::UnknownRecipient(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown-recipient")
            }
            NodeError::PolicyDenied(_) => (StatusCode::FORBIDDEN, "policy-denied"),
            NodeError::Seal(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-message"),
            NodeError::Workflow(w) => {
                use crate::workflow::WorkflowError as W;
                use isnad_envelope::ErrorCode as C;
                match (w, w.code()) {
                    (W::Store(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                    (W::Conflict, _) => (StatusCode::CONFLICT, w.name()),
                    (W::AttachmentsNotStored, _) => (StatusCode::UNPROCESSABLE_ENTITY, w.name()),
                    (_, C::PermissionRequired) => (StatusCode::FORBIDDEN, w.name()),
                    (_, C::IllegalTransition) => (StatusCode::CONFLICT, w.name()),
                    // Unknown request or share.
                    _ => (StatusCode::NOT_FOUND, w.name()),
                }
            }
            _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Self(status, code, e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Refuses a request without the right token, then one whose announced
/// body exceeds the limit, before its body is read.
async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    if let Err(e) = authorize(&api, req.headers()) {
        return e.into_response();
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > api.body_limit as u64) {
        return too_large(api.body_limit).into_response();
    }
    next.run(req).await
}

/// Gives the framework's plain-text refusals (a body over the limit found
/// while reading, a body that is not JSON or misses a field) the JSON error
/// form of spec/api.yaml.
async fn json_refusals(limit: usize, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !plain || !resp.status().is_client_error() {
        return resp;
    }
    let status = resp.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit).into_response();
    }
    // Rejections of the framework's extractors are short texts.
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    ApiError(status, "invalid-request", text).into_response()
}

fn too_large(limit: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!(
            "the request body exceeds {limit} bytes (twice limits.max_envelope_bytes plus 64 KiB)"
        ),
    )
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, token)| {
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim_start_matches(' '))
        })
        .unwrap_or("");
    // Compare digests so the time taken does not depend on where they differ.
    let a = ring::digest::digest(&ring::digest::SHA256, given.as_bytes());
    let b = ring::digest::digest(&ring::digest::SHA256, api.token.as_bytes());
    let ok = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    if ok && !api.token.is_empty() {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token".into(),
        ))
    }
}

/// The node's condition (spec/transport.md §9): 200 `ok`, or 503
/// `degraded` with each reason's code and what to do.
async fn health(State(api): State<Api>) -> impl IntoResponse {
    let c = api.node.condition();
    let reasons: Vec<Value> = c
        .reasons
        .iter()
        .map(|r| json!({ "reason": r.code(), "detail": r.to_string() }))
        .collect();
    let status = if c.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "agency": api.node.agency().as_str(),
        "status": c.status(),
        "reasons": reasons,
    });
    (status, Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    to: String,
    kind: String,
    body: Value,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Submit>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let bad = |m: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid-message", m);
    let to = AgencyId::new(&req.to).map_err(|e| bad(format!("to: {e}")))?;
    let kind = Kind::parse(&req.kind).ok_or_else(|| bad(format!("unknown kind {:?}", req.kind)))?;
    let body = body_from_json(kind, &req.body.to_string()).map_err(|e| bad(e.to_string()))?;
    let Some(key) = headers.get("idempotency-key") else {
        let node = api.node.clone();
        let ttl = req.ttl_secs;
        let id = run_to_end(async move { node.submit(to, body, ttl).await }).await?;
        return Ok(created(id, false));
    };
    // The request's fingerprint: its canonical JSON (object keys sorted,
    // no insignificant white space), so a retry that re-serializes the
    // same request matches.
    let canonical = json!({
        "to": req.to, "kind": req.kind, "body": req.body, "ttl_secs": req.ttl_secs,
    });
    let claim = key
        .to_str()
        .ok()
        .and_then(|k| Claim::new(k, Digest::sha256(canonical.to_string().as_bytes())).ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad-idempotency-key",
                idempotency::BadKey::Invalid.to_string(),
            )
        })?;
    let Some(submitting) = api.submitting.enter(claim.key()) else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "idempotency-key-in-use",
            "a request with this Idempotency-Key is still being processed; retry it later".into(),
        ));
    };
    let (_, now_ms) = crate::node::now();
    match idempotency::lookup(api.node.store(), &claim, now_ms).map_err(NodeError::from)? {
        Prior::Same(id) => return Ok(created(id, true)),
        Prior::Different => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "this Idempotency-Key was used for a different request; use a new key for a new message".into(),
            ))
        }
        Prior::None => {}
    }
    let node = api.node.clone();
    let ttl = req.ttl_secs;
    let id = run_to_end(async move {
        // Held until the submission is complete, even if this request is
        // cancelled (the client went away): a retry meanwhile is told the
        // key is in use, and after it gets the stored message's id.
        let _submitting = submitting;
        node.submit_keyed(to, body, ttl, Some(claim)).await
    })
    .await?;
    Ok(created(id, false))
}

/// Runs a submission on its own task and waits for it: if the client goes
/// away and the request is cancelled, the submission still runs to its end
/// (its commit, its `sent` entry, its hand-over to delivery) instead of
/// stopping between two of them.
async fn run_to_end(
    submission: impl std::future::Future<Output = Result<MessageId, NodeError>> + Send + 'static,
) -> Result<MessageId, ApiError> {
    match tokio::spawn(submission).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(internal(format!("the submission task failed: {e}"))),
    }
}

/// `201 Created` with the message id; `Idempotent-Replayed: true` when the
/// answer repeats an earlier submission with the same key.
fn created(id: MessageId, replayed: bool) -> Response {
    let mut r = (StatusCode::CREATED, Json(json!({ "id": id.to_hex() }))).into_response();
    if replayed {
        r.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    r
}

fn parse_id(s: &str) -> Result<MessageId, ApiError> {
    MessageId::from_hex(s).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad-id",
            "message id must be 32 hex characters".into(),
        )
    })
}

/// The JSON summary of an outbox record (no content: the sender keeps only
/// the envelope sealed to the recipient).
pub fn outbox_json(r: &OutboxRecord) -> Value {
    let mut v = json!({
        "id": hex::encode(r.id.as_bytes()),
        "direction": "out",
        "to": r.recipient,
        "kind": r.kind.as_str(),
        "state": r.state,
        "attempts": r.attempts,
        "created": r.created,
        "expires": r.expires,
        "envelope_sha256": hex::encode(r.digest),
        "last_error": r.last_error,
        "sent_log_index": r.sent_index,
        "delivered_ms": r.delivered_ms,
        "peer_log_index": r.peer_log_index,
        "receipt_hex": r.receipt.as_ref().map(hex::encode),
        "final_log_index": r.final_index,
    });
    if let Some(x) = &r.relay {
        v["route"] = json!(x.route);
        v["inner_envelope_sha256"] = json!(hex::encode(x.inner_digest));
        v["end_to_end_log_index"] = json!(x.end_to_end_index);
        v["end_to_end_missing_log_index"] = json!(x.end_to_end_missing_index);
    }
    v
}

/// The JSON summary of an inbox record.
pub fn inbox_json(r: &InboxRecord) -> Value {
    let mut v = json!({
        "id": hex::encode(r.id.as_bytes()),
        "direction": "in",
        "from": r.sender,
        "kind": r.kind.as_str(),
        "received_ms": r.received_ms,
        "expires": r.expires,
        "envelope_sha256": hex::encode(r.digest),
        "log_index": r.log_index,
        "receipt_hex": hex::encode(&r.receipt),
    });
    if !r.via.is_empty() {
        v["via"] = json!(r.via);
    }
    v
}

async fn message(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let store = api.node.store();
    if let Some(rec) = store.inbox_by_id(&id).map_err(internal)?.into_iter().next() {
        if let Some(m) = store.inbox_purged(&rec.id, &rec.sender).map_err(internal)? {
            return Err(retention::gone(&id, m));
        }
        // Decrypt on read.
        let opened = api
            .node
            .read_inbox(&rec)
            .map_err(|e| internal(format!("stored envelope no longer opens: {e}")))?;
        let h = &opened.message.header;
        let body: Value =
            serde_json::from_str(&body_to_json(&opened.message.body).map_err(internal)?)
                .map_err(internal)?;
        let mut v = inbox_json(&rec);
        v["message"] = json!({
            "id": h.id.to_hex(), "from": h.sender.as_str(), "to": h.recipient.as_str(),
            "created": h.created, "expires": h.expires, "kind": opened.message.body.kind().as_str(), "body": body,
        });
        return Ok(Json(v));
    }
    if let Some(rec) = store.outbox(&id).map_err(internal)? {
        let mut v = outbox_json(&rec);
        retention::mark_outbox(store, &id, &mut v)?;
        return Ok(Json(v));
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no message {id}"),
    ))
}

async fn status(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let store = api.node.store();
    if let Some(rec) = store.outbox(&id).map_err(internal)? {
        let mut v = outbox_json(&rec);
        retention::mark_outbox(store, &id, &mut v)?;
        return Ok(Json(v));
    }
    if let Some(rec) = store.inbox_by_id(&id).map_err(internal)?.into_iter().next() {
        let mut v = inbox_json(&rec);
        retention::mark_inbox(store, &rec.id, &rec.sender, &mut v)?;
        return Ok(Json(v));
    }
    Err(ApiError(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no message {id}"),
    ))
}

/// `?limit=N&after=ID` of a listing.
#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

impl PageQuery {
    fn parse(&self) -> Result<(Option<MessageId>, usize), ApiError> {
        let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, "bad-page", m);
        let limit = match self.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| bad(format!("limit must be 1..={MAX_PAGE}, not {s:?}")))?,
        };
        let after = match self.after.as_deref() {
            None => None,
            Some(s) => Some(
                MessageId::from_hex(s)
                    .ok_or_else(|| bad("after must be a message id (32 hex characters)".into()))?,
            ),
        };
        Ok((after, limit))
    }
}

async fn inbox(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let (after, limit) = q.parse()?;
    let recs = api
        .node
        .store()
        .inbox_page(after.as_ref(), limit)
        .map_err(internal)?;
    Ok(Json(Value::Array(recs.iter().map(inbox_json).collect())))
}

async fn outbox(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let (after, limit) = q.parse()?;
    let recs = api
        .node
        .store()
        .outbox_page(after.as_ref(), limit)
        .map_err(internal)?;
    Ok(Json(Value::Array(recs.iter().map(outbox_json).collect())))
}

async fn checkpoint(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    match api.node.latest_checkpoint() {
        Some(note) => Ok(note.into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "no-checkpoint",
            "no checkpoint signed yet".into(),
        )),
    }
}

async fn checkpoint_now(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    Ok(api.node.checkpoint_now().await?.into_response())
}

async fn witness_status(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    Ok(Json(api.node.witness_status()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    out: std::path::PathBuf,
    #[serde(default)]
    at: Option<String>,
}

async fn export_audit(
    State(api): State<Api>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<ExportRequest>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let at = match req.at.as_deref() {
        None | Some("new") => ExportAt::New,
        Some("latest") => ExportAt::Latest,
        Some(other) => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-export-target",
                format!("at must be \"new\" or \"latest\", not {other:?}"),
            ))
        }
    };
    let done = api
        .node
        .export_audit(&req.out, at)
        .await
        .map_err(|e| match e {
            ExportError::NotAbsolute(_) | ExportError::Io { .. } => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-export-target",
                e.to_string(),
            ),
            ExportError::NotEmpty(_) => ApiError(
                StatusCode::CONFLICT,
                "export-target-not-empty",
                e.to_string(),
            ),
            ExportError::NoCheckpoint => {
                ApiError(StatusCode::NOT_FOUND, "no-checkpoint", e.to_string())
            }
            ExportError::Node(e) => e.into(),
            e => internal(e),
        })?;
    Ok((StatusCode::CREATED, Json(done)))
}
