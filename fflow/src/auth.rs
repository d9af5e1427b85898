//! The internal routes take the token shared by the uploaders and the replicas, as
//! `Authorization: Bearer <token>`; anything else is refused with 401 `unauthorized` before a
//! handler runs or a body is read.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The secret the internal routes ask for.
#[derive(Clone)]
pub struct InternalToken(Arc<SecretString>);

impl InternalToken {
    pub fn new(token: SecretString) -> Self {
        Self(Arc::new(token))
    }

    /// Whether `headers` carry this token as a bearer credential, compared in constant time.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = bearer(headers) else {
            return false;
        };
        let expected = self.0.expose_secret().as_bytes();
        !expected.is_empty() && bool::from(given.ct_eq(expected))
    }
}

/// The credential of an `Authorization: Bearer <credential>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, credential) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| credential.trim_ascii())
}

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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_token_as_a_bearer_credential_is_admitted() {
        let token = InternalToken::new(SecretString::from("s3cret"));
        assert!(token.admits(&with_authorization("Bearer s3cret")));
        assert!(token.admits(&with_authorization("bearer s3cret")));
        assert!(!token.admits(&HeaderMap::new()));
        for refused in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer ",
            "Basic s3cret",
            "s3cret",
            "Bearers3cret",
        ] {
            assert!(!token.admits(&with_authorization(refused)), "{refused:?}");
        }
    }

    #[test]
    fn an_empty_token_admits_nobody() {
        let token = InternalToken::new(SecretString::from(""));
        assert!(!token.admits(&with_authorization("Bearer ")));
    }
}
