//! The API key the command line sends to the gateway: given by `--api-key` or `VOD_API_KEY`,
//! sent as `Authorization: Bearer` on every request, never shown.

use std::convert::Infallible;
use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

/// A key as given. Neither its `Debug` nor any error names a character of it.
#[derive(Clone)]
pub struct ApiKey(SecretString);

#[derive(Debug, thiserror::Error)]
#[error(
    "the API key holds characters an HTTP header cannot carry (set VOD_API_KEY or --api-key \
     to the key `vod keys create` printed)"
)]
pub struct UnsendableApiKey;

impl ApiKey {
    /// The key given on the command line or in the environment. Never fails, so that clap,
    /// which quotes a value it refuses, never prints a key; blanks around it are dropped.
    pub fn parse(text: &str) -> Result<ApiKey, Infallible> {
        Ok(ApiKey(SecretString::from(text.trim())))
    }

    /// An empty key (`VOD_API_KEY=`) is no key.
    pub fn given(key: Option<ApiKey>) -> Option<ApiKey> {
        key.filter(|key| !key.0.expose_secret().is_empty())
    }

    /// `Bearer <key>`, marked sensitive so that the HTTP client never shows it.
    pub fn authorization(&self) -> Result<HeaderValue, UnsendableApiKey> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0.expose_secret()))
            .map_err(|_| UnsendableApiKey)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// The headers every request to the gateway carries.
pub fn default_headers(key: Option<&ApiKey>) -> Result<HeaderMap, UnsendableApiKey> {
    let mut headers = HeaderMap::new();
    if let Some(key) = key {
        headers.insert(AUTHORIZATION, key.authorization()?);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "vod_0123456789abcdef0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn key(text: &str) -> ApiKey {
        match ApiKey::parse(text) {
            Ok(key) => key,
            Err(never) => match never {},
        }
    }

    #[test]
    fn the_key_goes_out_as_a_sensitive_bearer_authorization() {
        let headers = default_headers(Some(&key(&format!("  {KEY}\n")))).expect("sendable");
        let value = headers.get(AUTHORIZATION).expect("an Authorization header");
        assert_eq!(value.to_str().expect("ascii"), format!("Bearer {KEY}"));
        assert!(value.is_sensitive());
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn without_a_key_no_authorization_is_sent() {
        assert!(default_headers(None).expect("no key").is_empty());
        assert!(ApiKey::given(Some(key("  "))).is_none());
        assert!(ApiKey::given(None).is_none());
        assert!(ApiKey::given(Some(key(KEY))).is_some());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = key(KEY);
        let headers = default_headers(Some(&key)).expect("sendable");
        for shown in [format!("{key:?}"), format!("{headers:?}")] {
            assert!(!shown.contains(KEY), "{shown}");
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
        }
    }

    #[test]
    fn a_key_no_header_can_carry_is_refused_without_being_quoted() {
        let error = default_headers(Some(&key("vod_1\n2_secret-part"))).expect_err("unsendable");
        let said = error.to_string();
        assert!(!said.contains("secret-part"), "{said}");
        assert!(said.contains("VOD_API_KEY"), "{said}");
    }
}
