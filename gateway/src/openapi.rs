//! The OpenAPI document of the gateway.
//!
//! Each operation is described on its handler (`#[utoipa::path]`) and registered with
//! `routes!` in `startup.rs`, which adds the route to the router and the operation to the
//! document in one step: the document lists the routes that are served. This module holds
//! what the operations share.

use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

use crate::error::ApiError;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "vod gateway",
        description = "The public write API of vod: tus 1.0.0 resumable uploads and a small \
            JSON API for videos.\n\n\
            Every error answer is JSON: `{\"code\", \"message\", \"field\"}`, with a stable \
            machine-readable `code` (listed in the `ErrorBody` schema), a message for people, \
            and the offending header or field of a validation error. A `503` and a `507` \
            (`insufficient_storage`) always carry `Retry-After`.\n\n\
            tus clients that cannot send `PATCH` or `DELETE` may send a `POST` with \
            `X-HTTP-Method-Override: PATCH` (or `DELETE`) instead. Browsers may call every \
            endpoint across origins (CORS).",
        license(name = "MIT"),
    ),
    tags(
        (name = "tus", description = "Resumable uploads, tus 1.0.0 with the creation, \
            creation-with-upload, creation-defer-length, termination, expiration, checksum \
            and concatenation extensions. Every response of these endpoints carries \
            `Tus-Resumable: 1.0.0`."),
        (name = "videos", description = "Videos, their uploaded flows and where to play them."),
        (name = "service", description = "Health, this document and the page to try it."),
    ),
)]
pub struct ApiDoc;

/// Lists the stable error codes of [`ApiError`] in the `code` of `ErrorBody`, which the
/// contracts crate can only call a string. Runs on the finished document: registering a
/// route puts the schemas of its handler in afresh.
pub fn list_error_codes(document: &mut OpenApi) {
    let code = document
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut("ErrorBody"))
        .and_then(|schema| match schema {
            RefOr::T(Schema::Object(object)) => object.properties.get_mut("code"),
            _ => None,
        });
    if let Some(RefOr::T(Schema::Object(code))) = code {
        code.enum_values = Some(
            ApiError::CODES
                .iter()
                .map(|code| Value::from(*code))
                .collect(),
        );
    }
}
