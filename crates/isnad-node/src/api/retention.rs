//! `POST /v1/retention` (a retention pass now, or a dry run) and the
//! `purged` answers of the message endpoints (spec/api.yaml;
//! [`crate::retention`]).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use isnad_envelope::{AgencyId, MessageId};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, internal, Api, ApiError, JsonBody};
use crate::retention::RetentionReport;
use crate::store::{PurgeMark, Store};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionRequest {
    #[serde(default)]
    dry_run: bool,
}

pub(super) async fn run(
    State(api): State<Api>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<RetentionRequest>,
) -> Result<Json<RetentionReport>, ApiError> {
    authorize(&api, &headers)?;
    Ok(Json(api.node.retention(req.dry_run).await?))
}

/// The `purged` member of a message's JSON.
fn mark_json(m: PurgeMark) -> Value {
    json!({ "at_ms": m.at_ms, "log_index": m.index })
}

/// Adds `purged` to an outbox record's JSON if its content was purged.
pub(super) fn mark_outbox(store: &Store, id: &MessageId, v: &mut Value) -> Result<(), ApiError> {
    if let Some(m) = store.outbox_purged(id).map_err(internal)? {
        v["purged"] = mark_json(m);
    }
    Ok(())
}

/// Adds `purged` to an inbox record's JSON if its content was purged;
/// returns the mark.
pub(super) fn mark_inbox(
    store: &Store,
    id: &MessageId,
    sender: &AgencyId,
    v: &mut Value,
) -> Result<Option<PurgeMark>, ApiError> {
    let m = store.inbox_purged(id, sender).map_err(internal)?;
    if let Some(m) = m {
        v["purged"] = mark_json(m);
    }
    Ok(m)
}

/// `410 purged`: the content of message `id` was deleted under retention.
pub(super) fn gone(id: &MessageId, m: PurgeMark) -> ApiError {
    ApiError(
        StatusCode::GONE,
        "purged",
        format!(
            "the content of message {id} was purged under the retention rules at {} ms \
             (audit entry {}); its digests, receipt and log entries remain \
             (GET /v1/messages/{id}/status)",
            m.at_ms, m.index
        ),
    )
}
