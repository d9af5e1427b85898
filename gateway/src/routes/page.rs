//! `?limit=&offset=` of every list route, newest first: one extractor, so that every list
//! takes and refuses the same numbers with the same error.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;

use crate::error::ApiError;

const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;

/// The query as documented: numbers taken as text, so that a bad one is answered
/// `validation_failed` naming its field rather than a generic rejection.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many to list, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// How many of the newest to skip (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
}

/// A page, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
        Ok(Page {
            limit: page_number(
                query.limit.as_deref(),
                "limit",
                DEFAULT_PAGE_SIZE,
                1,
                MAX_PAGE_SIZE,
            )?,
            offset: page_number(query.offset.as_deref(), "offset", 0, 0, i64::MAX)?,
        })
    }
}

fn page_number(
    text: Option<&str>,
    field: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            ApiError::validation(
                field,
                format!("{field} must be an integer from {min} to {max}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::ValidationFailed { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn page_numbers_are_bounded() {
        assert_eq!(page_number(None, "limit", 20, 1, 100).ok(), Some(20));
        assert_eq!(
            page_number(Some("100"), "limit", 20, 1, 100).ok(),
            Some(100)
        );
        for bad in ["0", "101", "-1", "ten"] {
            assert_eq!(
                field_of(page_number(Some(bad), "limit", 20, 1, 100).expect_err(bad)),
                "limit"
            );
        }
    }

    #[tokio::test]
    async fn a_page_is_read_from_the_query() {
        let request = axum::http::Request::get("/v1/videos?limit=5&offset=10")
            .body(())
            .expect("a request");
        let (mut parts, ()) = request.into_parts();
        let page = Page::from_request_parts(&mut parts, &()).await.ok();
        assert_eq!(
            page,
            Some(Page {
                limit: 5,
                offset: 10
            })
        );

        let request = axum::http::Request::get("/v1/videos?limit=0")
            .body(())
            .expect("a request");
        let (mut parts, ()) = request.into_parts();
        let refused = Page::from_request_parts(&mut parts, &()).await;
        assert_eq!(field_of(refused.expect_err("limit 0")), "limit");
    }
}
