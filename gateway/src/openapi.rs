//! The OpenAPI document of the gateway.
//!
//! Each operation is described on its handler (`#[utoipa::path]`) and registered with
//! `routes!` in `startup.rs`, which adds the route to the router and the operation to the
//! document in one step: the document lists the routes that are served. This module holds
//! what the operations share.

use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::{OpenApi, RefOr, Required};

use crate::config::Config;
use crate::error::ApiError;
use crate::tus::grammar;

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

/// The `operation_id` of `POST /v1/uploads`, whose body (creation-with-upload) is optional.
const CREATE_UPLOAD: &str = "create_upload";

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

/// Gives the tus headers their grammar (`tus::grammar`) and the limits of this gateway's
/// configuration, and makes the first bytes of a creation optional, so that what the document
/// allows is what the gateway accepts.
pub fn describe_tus(document: &mut OpenApi, config: &Config) {
    let operations = document.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.post,
            &mut item.patch,
            &mut item.head,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    });
    for operation in operations {
        if operation.operation_id.as_deref() == Some(CREATE_UPLOAD) {
            if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                body.required = Some(Required::False);
            }
        }
        for (name, schema) in header_schemas(operation) {
            match name {
                "Upload-Length" => {
                    schema.maximum = Some(utoipa::Number::UInt(
                        usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX),
                    ));
                }
                "Upload-Metadata" => {
                    schema.pattern = Some(grammar::metadata(config.max_metadata_keys));
                    schema.max_length = Some(config.max_metadata_bytes);
                }
                "Upload-Checksum" => schema.pattern = Some(grammar::checksum()),
                "Upload-Concat" => schema.pattern = Some(grammar::CONCAT.to_owned()),
                _ => {}
            }
        }
    }
}

/// The inline schema of each header parameter of `operation`, by the header's name.
fn header_schemas(operation: &mut Operation) -> impl Iterator<Item = (&str, &mut Object)> {
    operation
        .parameters
        .iter_mut()
        .flatten()
        .filter_map(|parameter| match parameter {
            RefOr::T(parameter) if parameter.parameter_in == ParameterIn::Header => match parameter
                .schema
                .as_mut()
            {
                Some(RefOr::T(Schema::Object(object))) => Some((parameter.name.as_str(), object)),
                _ => None,
            },
            _ => None,
        })
}
