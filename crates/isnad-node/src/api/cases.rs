//! API routes for requests, cases and intelligence (spec/api.yaml,
//! "Cases"): thin wrappers of the [`NodeHandle`] case operations.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use isnad_envelope::{
    body_from_json, AgencyId, Body, Kind, MlaState, PermissionDecision, RefusalGround,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, parse_id, Api, ApiError, JsonBody};
use crate::node::now;

/// The routes, merged into the API router.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/requests", get(requests))
        .route("/v1/requests/{id}/status", post(change_status))
        .route("/v1/cases/{id}", get(case))
        .route("/v1/intel/shares", post(share))
        .route("/v1/intel/shares/{id}/forward", post(forward))
        .route(
            "/v1/intel/shares/{id}/permission-requests",
            post(permission_request),
        )
        .route(
            "/v1/intel/shares/{id}/permission-answers",
            post(permission_answer),
        )
        .route("/v1/intel/shares/{id}/retraction", post(retract))
        .route("/v1/intel/shares/{id}/correction", post(correct))
}

fn bad(m: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-message",
        m.to_string(),
    )
}

fn agency(field: &str, s: &str) -> Result<AgencyId, ApiError> {
    AgencyId::new(s).map_err(|e| bad(format!("{field}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| bad(format!("{field}: {e}")))
}

fn sent(list: &[(AgencyId, isnad_envelope::MessageId)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(a, id)| json!({ "to": a.as_str(), "id": id.to_hex() }))
            .collect(),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    overdue: bool,
}

async fn requests(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    Ok(Json(api.node.requests_json(now().0, q.overdue)?))
}

async fn case(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    api.node.case_json(&id, now().0)?.map(Json).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no request or share {id}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: Value,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    refusal_grounds: Vec<Value>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn change_status(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<StatusChange>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let status: MlaState = from_json("status", req.status)?;
    let grounds = req
        .refusal_grounds
        .into_iter()
        .map(|g| from_json::<RefusalGround>("refusal_grounds", g))
        .collect::<Result<Vec<_>, _>>()?;
    let mid = api
        .node
        .change_status(id, status, req.reason, grounds, req.ttl_secs)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": mid.to_hex() }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Share {
    to: Vec<String>,
    body: Value,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn share(
    State(api): State<Api>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<Share>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    if req.to.is_empty() {
        return Err(bad("to: at least one recipient"));
    }
    let to = req
        .to
        .iter()
        .map(|s| agency("to", s))
        .collect::<Result<Vec<_>, _>>()?;
    let Body::IntelShare(body) =
        body_from_json(Kind::IntelShare, &req.body.to_string()).map_err(bad)?
    else {
        return Err(bad("body: not an intel-share"));
    };
    let share_id = body.share_id;
    let list = api.node.share_intel(&to, *body, req.ttl_secs).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "share_id": share_id.to_hex(), "messages": sent(&list) })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Forward {
    to: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn forward(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Forward>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let to = agency("to", &req.to)?;
    let mid = api.node.forward_intel(id, to, req.ttl_secs).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": mid.to_hex() }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskPermission {
    target: String,
    purpose: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn permission_request(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AskPermission>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let target = agency("target", &req.target)?;
    let mid = api
        .node
        .request_permission(id, target, req.purpose, req.ttl_secs)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": mid.to_hex() }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    decision: Value,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    conditions: Option<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn permission_answer(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Answer>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let decision: PermissionDecision = from_json("decision", req.decision)?;
    let request_id = req.request_id.as_deref().map(parse_id).transpose()?;
    let to = req.to.as_deref().map(|s| agency("to", s)).transpose()?;
    let target = req
        .target
        .as_deref()
        .map(|s| agency("target", s))
        .transpose()?;
    let mid = api
        .node
        .answer_permission(
            id,
            decision,
            request_id,
            to,
            target,
            req.conditions,
            req.ttl_secs,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": mid.to_hex() }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Retract {
    reason: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn retract(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Retract>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let list = api.node.retract_intel(id, req.reason, req.ttl_secs).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "messages": sent(&list) })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Correct {
    content: String,
    #[serde(default)]
    summary: Option<String>,
    reason: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

async fn correct(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<Correct>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let id = parse_id(&id)?;
    let list = api
        .node
        .correct_intel(id, req.content, req.summary, req.reason, req.ttl_secs)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "messages": sent(&list) })),
    ))
}
