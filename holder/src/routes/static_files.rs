use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tracing::error;

use super::Files;
use crate::error::ApiError;
use crate::media::media_type;
use crate::request_path::PublishedPath;

/// Serves a published file with the media type, caching and range support players need.
pub async fn serve(State(files): State<Arc<Files>>, request: Request) -> Response {
    let requested = request.uri().path().to_owned();
    let is_head = request.method() == Method::HEAD;
    let response = serve_file(&files, request).await;
    let body_bytes = if is_head {
        0
    } else {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    files
        .metrics
        .served(&requested, response.status().as_u16(), body_bytes);
    response
}

async fn serve_file(files: &Files, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let path = match PublishedPath::parse(request.uri().path()) {
        Ok(path) => path,
        Err(err) => return err.into_response(),
    };
    let response = match files.serve_dir.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    finish(response.map(Body::new), &path, files)
}

fn finish(mut response: Response, path: &PublishedPath, files: &Files) -> Response {
    let status = response.status();
    match status {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
            if let Some(media) = media_type(path.as_str()) {
                let headers = response.headers_mut();
                if status != StatusCode::NOT_MODIFIED {
                    headers.insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(media.content_type),
                    );
                }
                headers.insert(header::CACHE_CONTROL, files.cache.header(media.caching));
            }
            response
        }
        StatusCode::NOT_FOUND => ApiError::NotFound.into_response(),
        status if status.is_server_error() => {
            error!(path = path.as_str(), %status, "file could not be served");
            ApiError::Internal.into_response()
        }
        _ => response,
    }
}
