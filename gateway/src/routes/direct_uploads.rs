//! `/v1/direct-uploads`: a project's direct uploads, single-use tus creation URLs for
//! browsers and apps that hold no key, managed with a key of the project. The URL itself is
//! served by `routes::uploads::direct`.

use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::{Validate, ValidationError};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{CancelDirectUpload, CreateDirectUpload, DirectUploadStored};
use vod_contracts::direct_upload::{
    DirectUploadCreated, DirectUploadList, DirectUploadStatus, DirectUploadView, NewVideoView,
    PlaybackPolicy,
};
use vod_contracts::DirectUploadId;

use super::json::{not_null, ValidJson};
use super::page::{Page, PageQuery};
use super::videos::{
    description_as_created, title_as_created, valid_description, valid_title, MAX_DESCRIPTION_CHARS,
};
use crate::auth::Caller;
use crate::direct_uploads::token::NewToken;
use crate::direct_uploads::{origin, store, URL_PREFIX};
use crate::error::ApiError;
use crate::state::AppState;
use crate::title::normalize_title;

/// How long a direct upload waits for its upload: 1 minute to 7 days, 1 hour unless asked.
const MIN_TIMEOUT_SECS: u32 = 60;
const MAX_TIMEOUT_SECS: u32 = 7 * 24 * 3600;
const DEFAULT_TIMEOUT_SECS: u32 = 3600;

/// What the video made by the upload gets.
#[derive(Debug, Default, Deserialize, Validate, utoipa::ToSchema)]
pub struct NewVideoRequest {
    /// As in `POST /v1/videos`; without it the title comes from the upload's
    /// `Upload-Metadata` (`title`, else `filename`).
    #[schema(schema_with = title_as_created)]
    #[serde(default, deserialize_with = "not_null")]
    #[validate(custom(function = "valid_title"))]
    title: Option<String>,
    /// As in `POST /v1/videos`; `null` is none.
    #[schema(schema_with = description_as_created)]
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "description must be at most 5000 characters"),
        custom(function = "valid_description")
    )]
    description: Option<String>,
    /// `public` (the default), the only policy for now: signed playback comes later.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    playback_policy: Option<PlaybackPolicy>,
}

/// `POST /v1/direct-uploads`: every field is optional.
#[derive(Debug, Default, Deserialize, Validate, utoipa::ToSchema)]
pub struct CreateDirectUploadRequest {
    #[validate(nested)]
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    new_video: Option<NewVideoRequest>,
    /// The one origin (`scheme://host[:port]`) browsers may use the URL from. Without it, a
    /// request that carries an `Origin` (any browser's) is refused: the URL is for apps only.
    #[schema(
        value_type = Option<String>,
        nullable = false,
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.\-:\[\]_]+$",
        example = "https://app.example"
    )]
    #[serde(default, deserialize_with = "not_null")]
    #[validate(custom(function = "valid_origin"))]
    cors_origin: Option<String>,
    /// Seconds the URL waits for its upload, 60 to 604800 (7 days); 3600 unless given. A
    /// whole number (`600.0` is one too).
    #[schema(value_type = Option<i64>, nullable = false, minimum = 60, maximum = 604800)]
    #[serde(default, deserialize_with = "not_null")]
    timeout_seconds: Option<f64>,
}

fn valid_origin(origin: &str) -> Result<(), ValidationError> {
    origin::normalize(origin)
        .map(|_| ())
        .map_err(|message| ValidationError::new("cors_origin").with_message(message.into()))
}

/// `POST /v1/direct-uploads`.
#[utoipa::path(
    post,
    path = "/v1/direct-uploads",
    operation_id = "create_direct_upload",
    tag = "direct-uploads",
    summary = "Make a single-use upload URL that needs no key",
    description = "The answer's `url` is a tus creation endpoint (`POST`, then `HEAD` and \
        `PATCH` on the `Location` it answers) that takes one upload without a key, until \
        `expires_at`, and in browsers only from `cors_origin`. The upload makes a new video \
        of the project with `new_video`'s title and description. `url` is shown this once: \
        only a hash of its secret is kept.",
    request_body = CreateDirectUploadRequest,
    responses(
        (status = 201, description = "The direct upload, with its URL.", body = DirectUploadCreated, headers(
            ("Location" = String, description = "`/v1/direct-uploads/{id}`."),
        )),
        (status = 400, description = "`validation_failed` (`timeout_seconds`, `cors_origin`, `new_video.title`, `new_video.description` or `new_video.playback_policy` in `field`), `invalid_json`, `invalid_request`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(request): ValidJson<CreateDirectUploadRequest>,
) -> Result<Response, ApiError> {
    let new_video = request.new_video.unwrap_or_default();
    let title = new_video
        .title
        .as_deref()
        .map(normalize_title)
        .transpose()
        .map_err(|err| ApiError::validation("new_video.title", err.to_string()))?;
    let description = new_video.description.unwrap_or_default();
    let cors_origin = request
        .cors_origin
        .as_deref()
        .map(origin::normalize)
        .transpose()
        .map_err(|message| ApiError::validation("cors_origin", message))?;
    let timeout_secs = match request.timeout_seconds {
        None => DEFAULT_TIMEOUT_SECS,
        Some(secs) => Some(secs)
            .filter(|secs| {
                secs.fract() == 0.0
                    && (f64::from(MIN_TIMEOUT_SECS)..=f64::from(MAX_TIMEOUT_SECS)).contains(secs)
            })
            // Whole and in range: the cast is exact.
            .map(|secs| secs as u32)
            .ok_or_else(|| {
                ApiError::validation(
                    "timeout_seconds",
                    "timeout_seconds must be a whole number from 60 to 604800",
                )
            })?,
    };
    let direct_upload_id = DirectUploadId::new();
    let token = NewToken::generate()?;
    let DirectUploadStored {
        created_at,
        expires_at,
    } = state
        .uploader
        .call(&CreateDirectUpload {
            project_id: caller.project_id,
            direct_upload_id,
            token_sha256: token.sha256_hex(),
            title: title.clone(),
            description: description.clone(),
            cors_origin: cors_origin.clone(),
            timeout_secs,
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %direct_upload_id, "direct upload created");
    let base = state.config.public_url.as_deref().unwrap_or_default();
    let created = DirectUploadCreated {
        id: direct_upload_id,
        url: format!("{base}{URL_PREFIX}/{}", token.token),
        status: DirectUploadStatus::Waiting,
        expires_at,
        cors_origin,
        new_video: NewVideoView {
            title,
            description,
            playback_policy: new_video.playback_policy.unwrap_or_default(),
        },
        created_at,
    };
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/v1/direct-uploads/{direct_upload_id}"))],
        Json(created),
    )
        .into_response())
}

/// `GET /v1/direct-uploads/{id}`.
#[utoipa::path(
    get,
    path = "/v1/direct-uploads/{id}",
    operation_id = "get_direct_upload",
    tag = "direct-uploads",
    summary = "Where a direct upload stands",
    description = "`waiting` for its upload, `asset_created` (with `video_id`) once an upload \
        was made through its URL, `cancelled`, or `timed_out` when nobody used it before \
        `expires_at`. The URL is not shown again.",
    params(("id" = uuid::Uuid, Path, description = "The direct upload's id.")),
    responses(
        (status = 200, description = "The direct upload.", body = DirectUploadView),
        (status = 404, description = "`direct_upload_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let direct_upload_id = parse_id(&id)?;
    let view = store::find(&state.pool, caller.project_id, direct_upload_id)
        .await?
        .ok_or(ApiError::DirectUploadNotFound)?;
    Ok(Json(view).into_response())
}

/// `GET /v1/direct-uploads?limit=&offset=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/direct-uploads",
    operation_id = "list_direct_uploads",
    tag = "direct-uploads",
    summary = "List direct uploads, newest first",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of direct uploads.", body = DirectUploadList),
        (status = 400, description = "`validation_failed` (`limit` or `offset` in `field`), `invalid_request`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Page { limit, offset }: Page,
) -> Result<Response, ApiError> {
    let direct_uploads = store::list(&state.pool, caller.project_id, limit, offset).await?;
    Ok(Json(DirectUploadList { direct_uploads }).into_response())
}

/// `DELETE /v1/direct-uploads/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/direct-uploads/{id}",
    operation_id = "cancel_direct_upload",
    tag = "direct-uploads",
    summary = "Cancel a direct upload that made no upload yet",
    description = "Its URL is refused from then on (`410 upload_url_expired`). One that \
        made its upload already cannot be cancelled: delete its video instead.",
    params(("id" = uuid::Uuid, Path, description = "The direct upload's id.")),
    responses(
        (status = 204, description = "Cancelled (also when it already was, or had timed out)."),
        (status = 404, description = "`direct_upload_not_found`.", body = ErrorBody),
        (status = 409, description = "`direct_upload_finished`: an upload was made through its URL already.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let direct_upload_id = parse_id(&id)?;
    // Answered without a command when the answer is known; the uploader decides the rest.
    let found = store::find(&state.pool, caller.project_id, direct_upload_id)
        .await?
        .ok_or(ApiError::DirectUploadNotFound)?;
    if found.status == DirectUploadStatus::AssetCreated {
        return Err(finished(direct_upload_id));
    }
    state
        .uploader
        .call(&CancelDirectUpload {
            project_id: caller.project_id,
            direct_upload_id,
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %direct_upload_id, "direct upload cancelled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn finished(direct_upload_id: DirectUploadId) -> ApiError {
    ApiError::DirectUploadFinished(format!(
        "direct upload {direct_upload_id} made its upload already; delete its video instead"
    ))
}

fn parse_id(id: &str) -> Result<DirectUploadId, ApiError> {
    id.parse().map_err(|_| ApiError::DirectUploadNotFound)
}
