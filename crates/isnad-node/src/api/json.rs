//! The JSON request-body extractor of the local API: axum's `Json`, with its
//! rejections answered as the `Error` JSON of spec/api.yaml instead of
//! axum's plain text.
//!
//! | rejection | status | `error` |
//! |---|---|---|
//! | `Content-Type` is not `application/json` | 415 | `unsupported-media-type` |
//! | not JSON (syntax) | 400 | `bad-json` |
//! | JSON, but a field is missing, unknown or of the wrong type | 422 | `invalid-request` |
//! | the body could not be read (e.g. too large) | its status | `payload-too-large` (413) or `bad-request` |

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON request body of type `T`; a body that is not one is refused with
/// the API's JSON error (see the module docs).
pub(super) struct JsonBody<T>(pub(super) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(refusal(&r)),
        }
    }
}

/// The API error for a rejected JSON body.
fn refusal(r: &JsonRejection) -> ApiError {
    let (status, code) = match r {
        JsonRejection::MissingJsonContentType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
        }
        JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "bad-json"),
        JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-request"),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large")
        }
        other => (other.status(), "bad-request"),
    };
    let message = match r {
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON with Content-Type: application/json".to_owned()
        }
        other => other.body_text(),
    };
    ApiError(status, code, message)
}
