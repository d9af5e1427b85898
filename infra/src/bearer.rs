//! A secret shared by two services, presented as `Authorization: Bearer <token>`: fflow's
//! internal routes (asked by the uploaders) and the uploaders' chunk listener (asked by the
//! gateway) admit a request only with it.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The secret a listener asks for.
#[derive(Clone)]
pub struct SharedToken(Arc<SecretString>);

impl SharedToken {
    pub fn new(token: SecretString) -> Self {
        Self(Arc::new(token))
    }

    /// Whether `headers` carry this token as a bearer credential, compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn only_the_token_as_a_bearer_credential_is_admitted() {
        let token = SharedToken::new(SecretString::from("s3cret"));
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
        let token = SharedToken::new(SecretString::from(""));
        assert!(!token.admits(&with_authorization("Bearer ")));
    }
}
