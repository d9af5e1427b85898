//! Requests to a direct upload's URL (`/v1/direct/<token>[/<upload id>]`): the token is the
//! credential. It is looked up by its hash on every request (one indexed read, as the
//! upload's own state is read on each anyway); the request then acts for the direct upload's
//! project only, and reaches only the upload the URL created (the handlers
//! check that with the [`DirectGrant`] left here). A browser may call it only from the direct
//! upload's `cors_origin`: a request with another `Origin` is refused, and the CORS answers
//! name that origin, never `*`.

use axum::extract::{FromRequestParts, Request};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Caller;
use crate::direct_uploads::store::{self, DirectGrant};
use crate::direct_uploads::{origin, token, URL_PREFIX};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tus;

impl DirectGrant {
    /// The project the request acts for.
    pub fn caller(&self) -> Caller {
        Caller {
            project_id: self.project_id,
        }
    }
}

/// How long a browser may remember a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The token of a path under [`URL_PREFIX`].
fn token_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(URL_PREFIX)?.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Checks the URL's token and the request's origin, answers a CORS preflight itself, and
/// adds the CORS headers of the allowed origin to the answer of any other request. The
/// handlers take the [`DirectGrant`] left here, and act for its project only.
pub async fn authorize(state: &AppState, mut request: Request, next: Next) -> Response {
    let grant = match find(state, request.uri().path()).await {
        Ok(Some(grant)) => grant,
        // Routed without a grant: a method the URL does not take is told so, and every
        // handler of the URL answers `upload_url_not_found` once the request's own tus
        // headers are found right.
        Ok(None) => return next.run(request).await,
        Err(error) => return error.into_response(),
    };
    let presented_origin = request.headers().get(ORIGIN).cloned();
    if let Some(presented) = &presented_origin {
        if !origin::allows(grant.cors_origin.as_deref(), presented.as_bytes()) {
            return ApiError::OriginNotAllowed(
                "this upload URL does not take requests from this origin".to_owned(),
            )
            .into_response();
        }
    }
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        preflight_answer()
    } else {
        request.extensions_mut().insert(grant);
        next.run(request).await
    };
    if let Some(presented) = presented_origin {
        allow_origin(response.headers_mut(), presented);
    }
    response
}

async fn find(state: &AppState, path: &str) -> Result<Option<DirectGrant>, ApiError> {
    let Some(token_sha256) = token_of(path).and_then(token::presented_sha256) else {
        return Ok(None);
    };
    Ok(store::find_grant(&state.pool, &token_sha256).await?)
}

/// Header names as one comma-separated value.
fn name_list(names: &[HeaderName]) -> HeaderValue {
    let joined: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    HeaderValue::from_str(&joined.join(", ")).unwrap_or(HeaderValue::from_static(""))
}

fn preflight_answer() -> Response {
    let request_headers = tus::CORS_REQUEST_HEADERS;
    (
        StatusCode::NO_CONTENT,
        [
            (
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, HEAD, PATCH, DELETE, OPTIONS"),
            ),
            (ACCESS_CONTROL_ALLOW_HEADERS, name_list(&request_headers)),
            (
                ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
            ),
        ],
    )
        .into_response()
}

/// The origin checked is the one allowed: it is named back, with the tus headers exposed.
fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    let exposed = tus::CORS_EXPOSED_HEADERS;
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, name_list(&exposed));
    headers.append(VARY, HeaderValue::from_static("origin"));
}

impl<S: Send + Sync> FromRequestParts<S> for DirectGrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<DirectGrant>()
            .cloned()
            .ok_or(ApiError::UploadUrlNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_segment_after_the_prefix() {
        assert_eq!(token_of("/v1/direct/abc"), Some("abc"));
        assert_eq!(token_of("/v1/direct/abc/123"), Some("abc"));
        assert_eq!(token_of("/v1/direct/"), Some(""));
        assert_eq!(token_of("/v1/direct"), None);
        assert_eq!(token_of("/v1/direct-uploads/abc"), None);
    }
}
