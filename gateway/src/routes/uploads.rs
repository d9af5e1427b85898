//! tus 1.0.0 at `/v1/uploads`: core, `creation`, `creation-with-upload`,
//! `creation-defer-length`, `expiration`, `checksum`, `termination` and `concatenation`.
//!
//! The handlers translate HTTP: the tus headers come typed from `headers`, an upload body is
//! written by `crate::uploads` (the write lease, the pieces), and every other change is one
//! command to the uploader. `creation` holds `POST`, `patch` holds `PATCH`.

mod creation;
pub mod direct;
mod headers;
mod patch;

use anyhow::anyhow;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::TerminateUpload;
use vod_contracts::{SessionId, SessionStatus, UploadKind};

pub use self::creation::*;
pub use self::direct::*;
pub use self::patch::*;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::read_model::{self, UploadState};
use crate::state::AppState;
use crate::tus;
use headers::{TusResumable, TusVersion};

/// The bytes of an upload, as sent.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct UploadBytes(Vec<u8>);

/// `OPTIONS /v1/uploads`: what this server speaks.
#[utoipa::path(
    options,
    path = "/v1/uploads",
    operation_id = "discover_tus",
    tag = "tus",
    summary = "Discover the tus version, extensions and limits",
    responses(
        (status = 204, description = "What this server speaks.", headers(
            ("Tus-Version" = String, description = "`1.0.0`, the only version spoken."),
            ("Tus-Extension" = String, description = "`creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation`."),
            ("Tus-Max-Size" = u64, description = "The largest upload, in bytes."),
            ("Tus-Checksum-Algorithm" = String, description = "`sha1,sha256,sha512,md5`."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
    ),
)]
pub async fn options(state: State<AppState>) -> Response {
    describe_server(state)
}

/// `OPTIONS /v1/uploads/{id}`: the same answer, for clients that ask an upload's URL.
#[utoipa::path(
    options,
    path = "/v1/uploads/{id}",
    operation_id = "discover_tus_at_upload",
    tag = "tus",
    summary = "Discover the tus version, extensions and limits",
    params(("id" = String, Path, description = "The upload, as in the `Location` of its creation; any value.")),
    responses(
        (status = 204, description = "What this server speaks, whatever the upload.", headers(
            ("Tus-Version" = String, description = "`1.0.0`, the only version spoken."),
            ("Tus-Extension" = String, description = "`creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation`."),
            ("Tus-Max-Size" = u64, description = "The largest upload, in bytes."),
            ("Tus-Checksum-Algorithm" = String, description = "`sha1,sha256,sha512,md5`."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
    ),
)]
pub async fn options_upload(state: State<AppState>) -> Response {
    describe_server(state)
}

fn describe_server(State(state): State<AppState>) -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                tus::TUS_VERSION,
                HeaderValue::from_static(tus::SUPPORTED_VERSION),
            ),
            (
                tus::TUS_EXTENSION,
                HeaderValue::from_static(tus::EXTENSIONS),
            ),
            (
                tus::TUS_MAX_SIZE,
                HeaderValue::from(state.config.max_upload_bytes),
            ),
            (
                tus::TUS_CHECKSUM_ALGORITHM,
                HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
            ),
        ],
    )
        .into_response()
}

/// `HEAD`: where the upload stands.
#[utoipa::path(
    head,
    path = "/v1/uploads/{id}",
    operation_id = "get_upload_offset",
    tag = "tus",
    summary = "Where an upload stands",
    description = "The offset to resume from. A completed upload is still answered (its \
        offset is its length); a terminated one is gone.",
    params(
        ("id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(Option<TusVersion>), Header, nullable = false, description = "`1.0.0`; when sent, any other value is refused."),
    ),
    responses(
        (status = 200, description = "The upload's state, in headers (no body).", headers(
            ("Upload-Offset" = u64, description = "Bytes stored so far: resume from here."),
            ("Upload-Length" = u64, description = "The upload's size, once known."),
            ("Upload-Defer-Length" = String, description = "`1` while the length is not known yet."),
            ("Upload-Metadata" = String, description = "The `Upload-Metadata` of the creation."),
            ("Upload-Concat" = String, description = "`partial`, or `final;URL URL …` with the partial uploads."),
            ("Upload-Expires" = String, description = "When the open upload is given up, as an HTTP date."),
            ("Video-Id" = String, description = "The video of the upload's flow (not for a partial upload)."),
            ("Cache-Control" = String, description = "`no-store`."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 404, description = "`upload_not_found`: no such upload, or it was terminated (no body: the answer to a `HEAD`)."),
        (status = 410, description = "`upload_expired` (no body)."),
        (status = 412, description = "`tus_version_unsupported` (no body).", headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 500, description = "`internal` (no body)."),
        (status = 503, description = "`service_unavailable`: the database is unreachable (no body).", headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    // tus requires the header on every request; one that names another version is refused,
    // and a plain `HEAD` without it is still answered.
    _: Option<TusResumable>,
) -> Result<Response, ApiError> {
    describe_upload(&state, &caller, &id).await
}

/// The answer to a `HEAD` of the upload `id` of the caller's project.
async fn describe_upload(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Response, ApiError> {
    let upload = find_live_upload(state, caller, id).await?.1;
    let mut response = (
        StatusCode::OK,
        [
            (tus::UPLOAD_OFFSET, HeaderValue::from(upload.uploaded_bytes)),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    let response_headers = response.headers_mut();
    match upload.total_bytes {
        Some(total_bytes) => {
            response_headers.insert(tus::UPLOAD_LENGTH, HeaderValue::from(total_bytes));
        }
        None => {
            response_headers.insert(tus::UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1"));
        }
    }
    if let Some(video_id) = upload.video_id {
        response_headers.insert(tus::VIDEO_ID, header_value(&video_id.to_string())?);
    }
    if let Some(metadata) = upload.metadata.as_deref() {
        response_headers.insert(tus::UPLOAD_METADATA, header_value(metadata)?);
    }
    if let Some(expires_at) = upload
        .expires_at
        .filter(|_| upload.status == SessionStatus::Open)
    {
        response_headers.insert(
            tus::UPLOAD_EXPIRES,
            header_value(&tus::http_date(expires_at))?,
        );
    }
    match upload.kind {
        UploadKind::Single => {}
        UploadKind::Partial => {
            response_headers.insert(tus::UPLOAD_CONCAT, HeaderValue::from_static("partial"));
        }
        UploadKind::Final => {
            let base = public_base(state);
            let urls: Vec<String> = upload
                .parts
                .iter()
                .map(|part| format!("{base}/v1/uploads/{part}"))
                .collect();
            response_headers.insert(
                tus::UPLOAD_CONCAT,
                header_value(&format!("final;{}", urls.join(" ")))?,
            );
        }
    }
    Ok(response)
}

/// `DELETE`: the client gives the upload up.
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}",
    operation_id = "terminate_upload",
    tag = "tus",
    summary = "Give an upload up",
    description = "Terminates the upload; its flow is cancelled. `POST` with \
        `X-HTTP-Method-Override: DELETE` does the same.",
    params(
        ("id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
    ),
    responses(
        (status = 204, description = "The upload is gone (also when it already was).", headers(
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 404, description = "`upload_not_found`.", body = ErrorBody),
        (status = 409, description = "`upload_closed`: the upload is complete, expired or failed.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _: TusResumable,
) -> Result<Response, ApiError> {
    terminate_upload(&state, &caller, &id).await
}

/// Terminates the upload `id` of the caller's project.
async fn terminate_upload(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Response, ApiError> {
    let session_id = parse_session_id(id)?;
    state
        .uploader
        .call(&TerminateUpload {
            project_id: caller.project_id,
            session_id,
        })
        .await?;
    tracing::info!(%session_id, "upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The upload named by the path; terminated ones are gone, expired ones say so.
async fn find_live_upload(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(SessionId, UploadState), ApiError> {
    let session_id = parse_session_id(id)?;
    let upload = read_model::find_upload(&state.pool, caller.project_id, session_id)
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    if upload.expired {
        return Err(ApiError::UploadExpired);
    }
    match upload.status {
        SessionStatus::Terminated => Err(ApiError::UploadNotFound),
        SessionStatus::Expired => Err(ApiError::UploadExpired),
        SessionStatus::Open | SessionStatus::Completed | SessionStatus::Failed => {
            Ok((session_id, upload))
        }
    }
}

fn parse_session_id(id: &str) -> Result<SessionId, ApiError> {
    id.parse().map_err(|_| ApiError::UploadNotFound)
}

/// 413 before reading a body whose declared length goes past the upload's.
fn check_fits(offset: u64, content_length: Option<u64>, total_bytes: u64) -> Result<(), ApiError> {
    match content_length {
        Some(len) if offset.saturating_add(len) > total_bytes => Err(ApiError::LengthExceeded(
            format!("{len} bytes at offset {offset} go past Upload-Length {total_bytes}"),
        )),
        _ => Ok(()),
    }
}

/// The base of the upload URLs, from configuration only (`Config::public_base`, set when the
/// gateway starts): never the request's `Host`, which the client chooses.
fn public_base(state: &AppState) -> &str {
    state.config.public_url.as_deref().unwrap_or_default()
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|err| ApiError::Internal(anyhow!("invalid header value {text:?}: {err}")))
}
