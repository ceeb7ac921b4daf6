//! `POST /v1/backup`: an online backup of the running node, written by the
//! node on its own machine (spec/api.yaml; [`crate::backup`]).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{authorize, internal, Api, ApiError};
use crate::backup::BackupError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupRequest {
    out: std::path::PathBuf,
}

pub(super) async fn backup(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(req): Json<BackupRequest>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&api, &headers)?;
    let done = api.node.backup(&req.out).await.map_err(|e| match e {
        BackupError::NotAbsolute(_) => ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad-backup-target",
            e.to_string(),
        ),
        BackupError::Exists(_) => {
            ApiError(StatusCode::CONFLICT, "backup-target-exists", e.to_string())
        }
        e => internal(e),
    })?;
    Ok((StatusCode::CREATED, Json(done)))
}
