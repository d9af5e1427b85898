//! Every HTTP error answer of holder: a status and a stable JSON code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vod_contracts::api::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the path is not allowed")]
    InvalidPath,
    #[error("no such file")]
    NotFound,
    #[error("only GET, HEAD and OPTIONS are allowed")]
    MethodNotAllowed,
    #[error("the storage is not available")]
    StorageUnavailable,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidPath => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidPath => "invalid_path",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::StorageUnavailable => "storage_unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            field: None,
        };
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::MethodNotAllowed) {
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
        }
        response
    }
}
