//! The internal routes take the token shared by the uploaders and the replicas, as
//! `Authorization: Bearer <token>`; anything else is refused with 401 `unauthorized` before a
//! handler runs or a body is read.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
pub use vod_infra::bearer::SharedToken as InternalToken;

use crate::error::ApiError;

/// Middleware of the internal routes.
pub async fn require_token(
    State(token): State<InternalToken>,
    request: Request,
    next: Next,
) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        "internal call refused: no valid token"
    );
    ApiError::Unauthorized.into_response()
}

/// Adds the token to a call to another replica.
pub fn authorize(
    request: reqwest::RequestBuilder,
    token: &SecretString,
) -> reqwest::RequestBuilder {
    request.bearer_auth(token.expose_secret())
}
