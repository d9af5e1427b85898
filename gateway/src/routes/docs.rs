//! The OpenAPI document, and a page to try the API: Swagger UI, embedded in the binary.

use std::sync::Arc;

use anyhow::anyhow;
use axum::extract::{Extension, Path};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::Config;
use vod_contracts::api::ErrorBody;

use crate::error::ApiError;

/// The document of every route, made with the router and served as it is.
#[derive(Clone)]
pub struct Document(pub Arc<OpenApi>);

/// Relative URLs, so the page also works behind a proxy that serves the gateway under a
/// prefix.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>vod gateway API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", tryItOutEnabled: true });
  </script>
</body>
</html>
"##;

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi_document",
    tag = "service",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI document of every route of the gateway.", body = Object),
    ),
)]
pub async fn openapi_json(Extension(Document(document)): Extension<Document>) -> Response {
    Json(document.as_ref()).into_response()
}

#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "get_docs_page",
    tag = "service",
    summary = "A page to read this document and try its requests",
    responses(
        (status = 200, description = "Swagger UI showing `/openapi.json`.", content_type = "text/html", body = String),
    ),
)]
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

#[utoipa::path(
    get,
    path = "/docs/{file}",
    operation_id = "get_docs_file",
    tag = "service",
    summary = "A file of the page",
    params(("file" = String, Path, description = "A file of Swagger UI, e.g. `swagger-ui.css` or `swagger-ui-bundle.js`.")),
    responses(
        (status = 200, description = "The file, with its media type."),
        (status = 404, description = "`not_found`: no such file.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let config = Arc::new(Config::from("/openapi.json"));
    let file = utoipa_swagger_ui::serve(&file, config)
        .map_err(|error| ApiError::Internal(anyhow!("failed to read {file:?}: {error}")))?
        .ok_or(ApiError::RouteNotFound)?;
    let content_type = HeaderValue::from_str(&file.content_type)
        .map_err(|error| ApiError::Internal(anyhow!("invalid media type: {error}")))?;
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, content_type)],
        file.bytes.into_owned(),
    )
        .into_response();
    if file.gzpipped {
        response
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(response)
}
