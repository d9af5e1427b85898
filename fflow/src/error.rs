use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vod_contracts::fflow::{FflowError, FflowErrorCode};

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
    #[error("this route needs the internal token as `Authorization: Bearer`")]
    Unauthorized,
    #[error("partial upload {session_id} is on replica {replica_id:?}, which this replica does not know")]
    UnknownReplica {
        replica_id: String,
        session_id: vod_contracts::SessionId,
    },
    #[error(transparent)]
    Unpublish(#[from] UnpublishError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl ApiError {
    pub fn code(&self) -> FflowErrorCode {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, FflowErrorCode) {
        match self {
            Self::WrongReplica { .. } => (StatusCode::NOT_FOUND, FflowErrorCode::WrongReplica),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, FflowErrorCode::InvalidRequest),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, FflowErrorCode::NotFound),
            Self::InvalidVideoId(_) => (StatusCode::BAD_REQUEST, FflowErrorCode::InvalidVideoId),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, FflowErrorCode::Unauthorized),
            Self::UnknownReplica { .. } => {
                (StatusCode::BAD_REQUEST, FflowErrorCode::UnknownReplica)
            }
            Self::Unpublish(UnpublishError::Unreachable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                FflowErrorCode::HolderUnavailable,
            ),
            Self::Unpublish(UnpublishError::NotRemoved { .. }) => {
                (StatusCode::BAD_GATEWAY, FflowErrorCode::HolderRefused)
            }
            Self::Session(err) => match err {
                SessionError::NotFound(_) => {
                    (StatusCode::NOT_FOUND, FflowErrorCode::SessionNotFound)
                }
                SessionError::Conflict(_) => {
                    (StatusCode::CONFLICT, FflowErrorCode::SessionConflict)
                }
                SessionError::StaleWriter { .. } => {
                    (StatusCode::CONFLICT, FflowErrorCode::StaleWriter)
                }
                SessionError::OffsetGap { .. } => (StatusCode::CONFLICT, FflowErrorCode::OffsetGap),
                SessionError::LengthExceeded { .. } => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    FflowErrorCode::LengthExceeded,
                ),
                SessionError::ChunkTooLarge { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, FflowErrorCode::ChunkTooLarge)
                }
                SessionError::Finished => (StatusCode::CONFLICT, FflowErrorCode::SessionFinished),
                SessionError::Incomplete { .. } => {
                    (StatusCode::CONFLICT, FflowErrorCode::Incomplete)
                }
                SessionError::BodyInterrupted(_) => {
                    (StatusCode::BAD_REQUEST, FflowErrorCode::BodyInterrupted)
                }
                SessionError::LengthMismatch { .. } => {
                    (StatusCode::CONFLICT, FflowErrorCode::LengthMismatch)
                }
                SessionError::NotEncodable => (StatusCode::CONFLICT, FflowErrorCode::NotEncodable),
                SessionError::InsufficientStorage(_) => (
                    StatusCode::INSUFFICIENT_STORAGE,
                    FflowErrorCode::InsufficientStorage,
                ),
                SessionError::Unexpected(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    FflowErrorCode::InternalError,
                ),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // A full spool is a refusal the caller passes on, not a fault to hide.
        let message = if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = %format!("{self:#}"), "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let challenge =
            (status == StatusCode::UNAUTHORIZED).then_some([(header::WWW_AUTHENTICATE, "Bearer")]);
        let body = FflowError { code, message };
        (status, challenge, Json(body)).into_response()
    }
}
