//! The OpenAPI document of the gateway.
//!
//! Each operation is described on its handler (`#[utoipa::path]`) and registered with
//! `routes!` in `startup.rs`, which adds the route to the router and the operation to the
//! document in one step: the document lists the routes that are served. This module holds
//! what the operations share.

use serde_json::Value;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Required};

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
            endpoint across origins (CORS), a direct upload's URL only from its `cors_origin`.\n\n\
            Every `/v1` route but `OPTIONS` takes `Authorization: Bearer <key>`: an API key of \
            a project (scope `read` for `GET` and `HEAD`, `write` for the rest), which sees \
            only its project's videos and uploads; another project's are answered `404` as \
            if they did not exist. `/v1/admin/...` takes the operator's admin token instead. \
            A missing, malformed, unknown or revoked credential is `401 unauthorized` with \
            `WWW-Authenticate: Bearer`; a key without the scope is `403 forbidden`. A direct \
            upload's URL (`/v1/direct/...`) takes no credential: its token is one.\n\n\
            Each project has quotas (`GET /v1/usage`), checked when an upload is created, never \
            on the bytes of an upload already created: a project storing its quota of bytes is \
            refused new uploads with `413 quota_exceeded`; one with its quota of open uploads, \
            or of uploads created this hour, with `429 too_many_open_uploads` or \
            `429 rate_limited` and `Retry-After`.",
        license(name = "MIT"),
    ),
    tags(
        (name = "tus", description = "Resumable uploads, tus 1.0.0 with the creation, \
            creation-with-upload, creation-defer-length, termination, expiration, checksum \
            and concatenation extensions. Every response of these endpoints carries \
            `Tus-Resumable: 1.0.0`."),
        (name = "videos", description = "Videos, their uploaded flows and where to play them."),
        (name = "direct-uploads", description = "Single-use tus creation URLs that need no \
            key, for browsers and apps: `POST /v1/direct-uploads` makes one with a key, its \
            `url` takes one upload (`/v1/direct/{token}`), in browsers only from its \
            `cors_origin`. An unknown URL is `404 upload_url_not_found`; one used already, \
            timed out or cancelled is `410 upload_url_expired`. Only `public` playback for \
            now: signed playback comes later."),
        (name = "keys", description = "The API keys of the caller's project."),
        (name = "usage", description = "The caller's project's usage counters and quotas."),
        (name = "events", description = "What happened to the project's videos and direct \
            uploads, in order: each change is recorded with its event in one transaction."),
        (name = "webhooks", description = "Endpoints the project's events are posted to, as \
            they happen, at least once. Each delivery is a `POST` of the event's JSON (as \
            `GET /v1/events/{id}` shows it) with `Vod-Event-Id`, `Vod-Event-Type` and \
            `Vod-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>` \
            (one `v1` per secret in force). A 2xx within the timeout delivers it; anything \
            else is retried with exponential backoff for a day, keeping the event's id. An \
            endpoint failing for days is disabled, with a `webhook_endpoint.disabled` event."),
        (name = "admin", description = "Projects, their quotas and their keys, with the \
            admin token."),
        (name = "service", description = "Health, this document and the page to try it."),
    ),
)]
pub struct ApiDoc;

/// The security scheme of a project's API key.
pub const API_KEY: &str = "api_key";
/// The security scheme of the operator's admin token.
pub const ADMIN_TOKEN: &str = "admin_token";

/// Declares the two bearer credentials, asks for the API key on every `/v1` operation that
/// does not name its own (all but `OPTIONS`, the admin ones name the admin token), and lists
/// the answers a credential can bring on each, as `auth::authenticate` decides them.
pub fn secure(document: &mut OpenApi) {
    let components = document.components.get_or_insert_with(Default::default);
    let bearer = |description: &str| {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(description.to_owned());
        SecurityScheme::Http(scheme)
    };
    components.add_security_scheme(
        API_KEY,
        bearer("An API key of a project: `vod_<id>_<secret>`, as `POST /v1/keys` answers it."),
    );
    components.add_security_scheme(
        ADMIN_TOKEN,
        bearer("The operator's admin token (`GATEWAY_ADMIN_TOKEN`)."),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        if !(path == "/v1" || path.starts_with("/v1/")) {
            continue;
        }
        if path.starts_with(DIRECT_UPLOAD_URL) {
            // The token in the path is the credential: no scheme, no 401.
            for operation in [
                &mut item.head,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(Vec::new());
            }
            continue;
        }
        // A `HEAD` answer has no body.
        let operations = [
            (&mut item.get, true),
            (&mut item.head, false),
            (&mut item.post, true),
            (&mut item.patch, true),
            (&mut item.put, true),
            (&mut item.delete, true),
        ];
        for (operation, with_body) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            let admin = operation.security.is_some();
            if !admin {
                let key = SecurityRequirement::new::<_, [&str; 0], &str>(API_KEY, []);
                operation.security = Some(vec![key]);
            }
            let unauthorized = ResponseBuilder::new()
                .description(
                    "`unauthorized`: no credential, or one that is malformed, unknown or revoked.",
                )
                .header(
                    "WWW-Authenticate",
                    Header::new(ObjectBuilder::new().schema_type(Type::String)),
                );
            add_response(operation, "401", unauthorized, with_body);
            if !admin {
                let forbidden =
                    ResponseBuilder::new().description("`forbidden`: the key lacks the scope.");
                add_response(operation, "403", forbidden, with_body);
            }
        }
    }
}

/// Adds an error answer unless the operation describes that status itself.
fn add_response(operation: &mut Operation, status: &str, response: ResponseBuilder, body: bool) {
    if operation.responses.responses.contains_key(status) {
        return;
    }
    let response = if body {
        response.content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    } else {
        response
    };
    operation
        .responses
        .responses
        .insert(status.to_owned(), RefOr::T(response.build()));
}

/// The `operation_id`s of `POST /v1/uploads` and `POST /v1/direct/{token}`, whose body
/// (creation-with-upload) is optional.
const CREATE_UPLOAD: [&str; 2] = ["create_upload", "create_upload_through_url"];

/// The paths of direct upload URLs, which take no credential but their token.
const DIRECT_UPLOAD_URL: &str = "/v1/direct/";

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
        if CREATE_UPLOAD.contains(&operation.operation_id.as_deref().unwrap_or_default()) {
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
