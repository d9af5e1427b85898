use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vod_contracts::fflow::FflowError;

use crate::session::SessionError;
use crate::unpublish::UnpublishError;

/// An error answer of the HTTP API: a status and a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("this is replica {own}, not {asked}")]
    WrongReplica { own: String, asked: String },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no such resource")]
    RouteNotFound,
    #[error("{0:?} is not a video id")]
    InvalidVideoId(String),
    #[error(transparent)]
    Unpublish(#[from] UnpublishError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::WrongReplica { .. } => (StatusCode::NOT_FOUND, "wrong_replica"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::InvalidVideoId(_) => (StatusCode::BAD_REQUEST, "invalid_video_id"),
            Self::Unpublish(UnpublishError::Unreachable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "holder_unavailable")
            }
            Self::Unpublish(UnpublishError::NotRemoved { .. }) => {
                (StatusCode::BAD_GATEWAY, "holder_refused")
            }
            Self::Session(err) => match err {
                SessionError::NotFound(_) => (StatusCode::NOT_FOUND, "session_not_found"),
                SessionError::Conflict(_) => (StatusCode::CONFLICT, "session_conflict"),
                SessionError::StaleWriter { .. } => (StatusCode::CONFLICT, "stale_writer"),
                SessionError::OffsetGap { .. } => (StatusCode::CONFLICT, "offset_gap"),
                SessionError::LengthExceeded { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "length_exceeded")
                }
                SessionError::ChunkTooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "chunk_too_large")
                }
                SessionError::Finished => (StatusCode::CONFLICT, "session_finished"),
                SessionError::Incomplete { .. } => (StatusCode::CONFLICT, "incomplete"),
                SessionError::BodyInterrupted(_) => (StatusCode::BAD_REQUEST, "body_interrupted"),
                SessionError::LengthMismatch { .. } => (StatusCode::CONFLICT, "length_mismatch"),
                SessionError::NotEncodable => (StatusCode::CONFLICT, "not_encodable"),
                SessionError::Unexpected(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %format!("{self:#}"), "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let body = FflowError {
            code: code.to_owned(),
            message,
        };
        (status, Json(body)).into_response()
    }
}
