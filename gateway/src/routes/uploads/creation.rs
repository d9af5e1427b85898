//! `POST /v1/uploads`: creation, with `creation-with-upload`, `creation-defer-length` and
//! `concatenation`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{
    CreateFinalUpload, CreatePartialUpload, CreateUpload, PartialUploadCreated, UploadCreated,
};
use vod_contracts::{DirectUploadId, SessionId};

use super::headers::{
    ContentLength, DeclaredUploadLength, DeferLength, OffsetOctetStream, RawUploadMetadata,
    TusResumable, TusVersion, UploadChecksum, UploadConcat,
};
use super::{check_fits, header_value, public_base, UploadBytes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tus::{self, Concat, DeclaredLength, UploadMetadata};
use crate::uploads::{log_body_end, store_body, BodyTarget};

/// `POST`: creates an upload through the uploader (a flow and its session, a partial upload,
/// or a final upload joining partial ones), and with `creation-with-upload` stores the request
/// body as the first bytes.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "create_upload",
    tag = "tus",
    summary = "Create an upload",
    description = "Creates an upload and, unless it is a partial upload, a flow of a video: a \
        new video, or the one named by `video_id` in `Upload-Metadata`. With a body of type \
        `application/offset+octet-stream` (creation-with-upload) the body is stored as the \
        first bytes, and the answer says how many were. With `Upload-Concat: final;…` the \
        upload is the partial uploads joined in order, and takes no length and no body.",
    params(
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
        ("Upload-Length" = Option<u64>, Header, nullable = false, description = "The size of the whole upload in bytes. Required unless `Upload-Defer-Length` or a final `Upload-Concat` is sent."),
        ("Upload-Defer-Length" = inline(Option<DeferLength>), Header, nullable = false, description = "`1`: the length is sent later, in a `PATCH`."),
        ("Upload-Metadata" = Option<String>, Header, nullable = false, description = "Comma-separated `key base64(value)` pairs. Keys read: `filename`, `title` (else taken from `filename`), optional `video_id` (attach a new flow to this existing video). The whole header is kept and given back by `HEAD`."),
        ("Upload-Concat" = Option<String>, Header, nullable = false, description = "`partial` for a part of a later final upload, or `final;URL URL …` to join partial uploads (their `Location`s, each once) in order."),
        ("Upload-Checksum" = Option<String>, Header, nullable = false, description = "`ALGORITHM base64(digest)` of the body (creation-with-upload); a body that does not match is not stored."),
    ),
    // Optional: `openapi::describe_tus` says so, which this attribute cannot without making
    // the bytes nullable.
    request_body(
        content = inline(UploadBytes),
        content_type = "application/offset+octet-stream",
        description = "Optional: the first bytes of the upload (creation-with-upload).",
    ),
    responses(
        (status = 201, description = "The upload exists.", headers(
            ("Location" = String, description = "Absolute URL of the upload, for `HEAD`, `PATCH` and `DELETE`."),
            ("Video-Id" = String, description = "The video the new flow belongs to (not sent for a partial upload)."),
            ("Upload-Offset" = u64, description = "With a body: the bytes of it that were stored."),
            ("Upload-Expires" = String, description = "When an unfinished upload is given up, as an HTTP date."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 400, description = "`invalid_header` (the offending header in `field`), `validation_failed` (`title`, `filename` or `video_id` in `Upload-Metadata`: a control or bidirectional formatting character, a blank or long title, a bad id), `metadata_too_large` and `metadata_too_many_keys` (`Upload-Metadata` over its limit), `filename_too_long`, `checksum_algorithm_unsupported`, `invalid_concat` (a partial upload of a final one is not a partial upload, not complete, expired or already joined), `invalid_length`, `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`video_not_found`: `video_id` names no video; `upload_not_found`: a partial upload of a final one does not exist.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`: `Tus-Resumable` is missing or not `1.0.0`. `Tus-Version` says what is spoken.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 413, description = "`upload_too_large`: `Upload-Length` is over `Tus-Max-Size`; `length_exceeded`: the body goes past `Upload-Length`; `quota_exceeded`: the project stores its quota of bytes (`GET /v1/usage`), no upload is created.", body = ErrorBody),
        (status = 429, description = "`too_many_open_uploads`: the project has its quota of open uploads; `rate_limited`: the project created its quota of uploads this hour. No upload is created; retry after `Retry-After` seconds (for `rate_limited`, the end of the hour).", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the broker or the uploader is down or slow; `server_busy`: too many uploads at once for the gateway's memory. Retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
#[allow(clippy::too_many_arguments)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: TusResumable,
    UploadConcat(concat): UploadConcat,
    RawUploadMetadata(raw_metadata): RawUploadMetadata,
    // Checked only for an upload that is not final, and in this order.
    length: Result<DeclaredUploadLength, ApiError>,
    with_upload: Option<OffsetOctetStream>,
    content_length: Result<ContentLength, ApiError>,
    checksum: Result<UploadChecksum, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = Creation {
        concat,
        raw_metadata,
        length,
        with_upload: with_upload.is_some(),
        content_length,
        checksum,
        headers,
        body,
    };
    let location_base = format!("{}/v1/uploads", public_base(&state));
    create_upload(&state, &caller, request, None, &location_base).await
}

/// A `POST` with its tus headers read; those checked only for an upload that is not final
/// are still results.
pub(super) struct Creation {
    pub concat: Option<Concat>,
    pub raw_metadata: Option<String>,
    pub length: Result<DeclaredUploadLength, ApiError>,
    pub with_upload: bool,
    pub content_length: Result<ContentLength, ApiError>,
    pub checksum: Result<UploadChecksum, ApiError>,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Creates an upload of the caller's project, through the direct upload `direct_upload_id`
/// when there is one; its URL is `<location_base>/<upload id>`.
pub(super) async fn create_upload(
    state: &AppState,
    caller: &Caller,
    request: Creation,
    direct_upload_id: Option<DirectUploadId>,
    location_base: &str,
) -> Result<Response, ApiError> {
    let Creation {
        concat,
        raw_metadata,
        length,
        with_upload,
        content_length,
        checksum,
        headers,
        body,
    } = request;
    let state = state.clone();
    let caller = caller.clone();
    if let Some(raw) = &raw_metadata {
        tus::check_metadata_limits(raw, state.config.metadata_limits())?;
    }
    if let Some(Concat::Final(urls)) = concat {
        return create_final(&state, &caller, &headers, raw_metadata, &urls).await;
    }

    let DeclaredUploadLength(length) = length?;
    let max = state.config.max_upload_bytes;
    if let DeclaredLength::Known(total_bytes) = length {
        if total_bytes > max {
            return Err(ApiError::UploadTooLarge { max });
        }
    }
    let total_bytes = match length {
        DeclaredLength::Known(total_bytes) => Some(total_bytes),
        DeclaredLength::Deferred => None,
    };
    let metadata = UploadMetadata::from_header(raw_metadata.as_deref())?;
    let (checksum, ends_at) = if with_upload {
        let ContentLength(content_length) = content_length?;
        check_fits(0, content_length, total_bytes.unwrap_or(max))?;
        (checksum?.0, content_length)
    } else {
        (None, None)
    };

    let (session_id, video_id, mut expires_at) = if concat == Some(Concat::Partial) {
        let PartialUploadCreated {
            session_id,
            expires_at,
        } = state
            .uploader
            .call(&CreatePartialUpload {
                project_id: caller.project_id,
                total_bytes,
                metadata: raw_metadata,
            })
            .await?;
        tracing::info!(%session_id, total_bytes, "partial upload created");
        (session_id, None, expires_at)
    } else {
        let UploadCreated {
            video_id,
            flow_id,
            session_id,
            expires_at,
        } = state
            .uploader
            .call(&CreateUpload {
                project_id: caller.project_id,
                // A direct upload always makes a new video.
                video_id: metadata.video_id.filter(|_| direct_upload_id.is_none()),
                title: metadata.title,
                filename: metadata.filename,
                total_bytes,
                metadata: raw_metadata,
                direct_upload_id,
                playback_policy: metadata.playback_policy,
            })
            .await?;
        tracing::info!(%session_id, %video_id, %flow_id, total_bytes, "upload created");
        (session_id, Some(video_id), expires_at)
    };

    let location = format!("{location_base}/{session_id}");
    let mut response =
        (StatusCode::CREATED, [(LOCATION, header_value(&location)?)]).into_response();
    if let Some(video_id) = video_id {
        response
            .headers_mut()
            .insert(tus::VIDEO_ID, header_value(&video_id.to_string())?);
    }
    if with_upload {
        // The upload exists whatever happens to its first bytes: answer 201 with what was
        // stored, and the client goes on from there.
        let target = BodyTarget {
            project_id: caller.project_id,
            session_id,
            offset: 0,
            limit: total_bytes.unwrap_or(max),
            ends_at,
            checksum,
        };
        let uploaded_bytes = match store_body(&state, target, body).await {
            Ok(stored) => {
                log_body_end(session_id, &stored.streamed);
                expires_at = stored.expires_at.or(expires_at);
                stored.uploaded_bytes()
            }
            Err(failure) => {
                tracing::warn!(%session_id, error = %failure.error, "first bytes of the upload not stored");
                failure.uploaded_bytes
            }
        };
        response
            .headers_mut()
            .insert(tus::UPLOAD_OFFSET, HeaderValue::from(uploaded_bytes));
        if total_bytes == Some(uploaded_bytes) {
            expires_at = None;
        }
    }
    if let Some(expires_at) = expires_at {
        response.headers_mut().insert(
            tus::UPLOAD_EXPIRES,
            header_value(&tus::http_date(expires_at))?,
        );
    }
    Ok(response)
}

/// `POST` with `Upload-Concat: final;…`: the upload is the partial uploads joined, in order.
async fn create_final(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    raw_metadata: Option<String>,
    urls: &[String],
) -> Result<Response, ApiError> {
    if headers.contains_key(tus::UPLOAD_LENGTH) || headers.contains_key(tus::UPLOAD_DEFER_LENGTH) {
        return Err(ApiError::invalid_header(
            "Upload-Length",
            "a final upload takes its length from its partial uploads",
        ));
    }
    let parts = urls
        .iter()
        .map(|url| {
            tus::session_id_from_url(url).ok_or_else(|| {
                ApiError::InvalidConcat(format!("{url:?} is not an upload of this server"))
            })
        })
        .collect::<Result<Vec<SessionId>, ApiError>>()?;
    let metadata = UploadMetadata::from_header(raw_metadata.as_deref())?;
    let UploadCreated {
        video_id,
        flow_id,
        session_id,
        ..
    } = state
        .uploader
        .call(&CreateFinalUpload {
            project_id: caller.project_id,
            video_id: metadata.video_id,
            title: metadata.title,
            filename: metadata.filename,
            metadata: raw_metadata,
            parts,
            playback_policy: metadata.playback_policy,
        })
        .await?;
    tracing::info!(%session_id, %video_id, %flow_id, parts = urls.len(), "final upload created");
    let location = format!("{}/v1/uploads/{session_id}", public_base(state));
    Ok((
        StatusCode::CREATED,
        [
            (LOCATION, header_value(&location)?),
            (tus::VIDEO_ID, header_value(&video_id.to_string())?),
        ],
    )
        .into_response())
}
