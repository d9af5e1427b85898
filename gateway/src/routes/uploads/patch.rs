//! `PATCH /v1/uploads/{id}`: bytes appended at the upload's offset, and a deferred length
//! declared.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tracing::Instrument;
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::DeclareLength;
use vod_contracts::{SessionId, SessionStatus, UploadKind};

use super::headers::{
    ContentLength, OffsetOctetStream, TusResumable, TusVersion, UploadChecksum, UploadLength,
    UploadOffset,
};
use super::{check_fits, find_live_upload, UploadBytes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::read_model::UploadState;
use crate::state::AppState;
use crate::tus;
use crate::upload_stream::BodyEnd;
use crate::uploads::{log_body_end, store_body, BodyTarget};

/// `PATCH`: stores the body at `Upload-Offset`, piece by piece, while holding the upload's
/// write lock, and answers with the offset the uploader confirmed last. With `Upload-Checksum`
/// every piece but the last is only staged, and the offset moves over all of them at once
/// when the whole body hashes right.
#[utoipa::path(
    patch,
    path = "/v1/uploads/{id}",
    operation_id = "append_to_upload",
    tag = "tus",
    summary = "Append bytes to an upload",
    description = "Stores the body at `Upload-Offset` and answers with the offset the uploader \
        confirmed: bytes under it survive the crash of any one process. A body cut short \
        keeps what arrived. With `Upload-Checksum` nothing of the body counts unless all of \
        it arrived and hashes right. `POST` with `X-HTTP-Method-Override: PATCH` does the same.",
    params(
        ("id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
        ("Upload-Offset" = u64, Header, description = "Where the body goes: must equal the upload's offset (`HEAD`)."),
        ("Upload-Length" = Option<u64>, Header, nullable = false, description = "The upload's size, once, when it was deferred at creation."),
        ("Upload-Checksum" = Option<String>, Header, nullable = false, description = "`ALGORITHM base64(digest)` of the body; algorithms in `Tus-Checksum-Algorithm`."),
    ),
    request_body(
        content = inline(UploadBytes),
        content_type = "application/offset+octet-stream",
        description = "The next bytes of the upload.",
    ),
    responses(
        (status = 204, description = "Bytes stored.", headers(
            ("Upload-Offset" = u64, description = "The new offset: every byte under it is stored."),
            ("Upload-Expires" = String, description = "When the unfinished upload is given up, as an HTTP date."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 400, description = "`invalid_header` (the offending header in `field`), `checksum_algorithm_unsupported`, `invalid_length` (`Upload-Length` differs from the known length), `invalid_request`.", body = ErrorBody),
        (status = 403, description = "`upload_is_final`: a final upload is made of its partial uploads.", body = ErrorBody),
        (status = 404, description = "`upload_not_found`: no such upload, or it was terminated.", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`: `Upload-Offset` is not the upload's offset; `upload_closed`: the upload takes no more bytes; `upload_locked`: another request is writing to it.", body = ErrorBody),
        (status = 410, description = "`upload_expired`.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 413, description = "`length_exceeded`: the body goes past `Upload-Length`; `upload_too_large`: past `Tus-Max-Size`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/offset+octet-stream`.", body = ErrorBody),
        (status = 460, description = "`checksum_mismatch`: the body does not hash to `Upload-Checksum`; nothing of it was stored.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`, or `server_busy` (too many uploads at once for the gateway's memory); retry after `Retry-After` seconds from the offset `HEAD` gives.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 507, description = "`insufficient_storage`: the service's disk is down to its free-space reserve. The bytes stored before (the offset `HEAD` gives) are kept; send the rest again from there after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
#[allow(clippy::too_many_arguments)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _: TusResumable,
    _: OffsetOctetStream,
    UploadOffset(offset): UploadOffset,
    UploadLength(declared_length): UploadLength,
    UploadChecksum(checksum): UploadChecksum,
    // Checked once the upload is found.
    content_length: Result<ContentLength, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let request = Append {
        offset,
        declared_length,
        checksum,
        content_length,
        body,
    };
    append(&state, &caller, &id, request).await
}

/// A `PATCH` with its headers read; `content_length` is checked once the upload is found.
pub(super) struct Append {
    pub offset: u64,
    pub declared_length: Option<u64>,
    pub checksum: Option<tus::Checksum>,
    pub content_length: Result<ContentLength, ApiError>,
    pub body: Body,
}

/// Stores the body of a `PATCH` of the upload `id` of the caller's project.
pub(super) async fn append(
    state: &AppState,
    caller: &Caller,
    id: &str,
    request: Append,
) -> Result<Response, ApiError> {
    let Append {
        offset,
        declared_length,
        checksum,
        content_length,
        body,
    } = request;
    let state = state.clone();
    let (session_id, upload) = find_live_upload(&state, caller, id).await?;
    if upload.kind == UploadKind::Final {
        return Err(ApiError::FinalUploadNotPatchable);
    }
    if offset != upload.uploaded_bytes {
        return Err(ApiError::OffsetMismatch(format!(
            "Upload-Offset is {offset} but the upload is at offset {}",
            upload.uploaded_bytes
        )));
    }
    let ContentLength(content_length) = content_length?;
    let max = state.config.max_upload_bytes;
    let total_bytes = match (upload.total_bytes, declared_length) {
        (Some(known), Some(declared)) if known != declared => {
            return Err(ApiError::InvalidLength(format!(
                "the upload's length is {known} and cannot change"
            )))
        }
        (Some(known), _) => Some(known),
        (None, Some(declared)) => {
            if declared > max {
                return Err(ApiError::UploadTooLarge { max });
            }
            check_fits(offset, content_length, declared)?;
            if upload.status == SessionStatus::Open {
                declare_length(&state, caller, session_id, declared).await?;
                if declared == offset {
                    // The length was all that was missing: the upload is complete.
                    return Ok(offset_response(offset, None));
                }
            }
            Some(declared)
        }
        (None, None) => None,
    };
    check_fits(offset, content_length, total_bytes.unwrap_or(max))?;
    if upload.status != SessionStatus::Open {
        if content_length == Some(0) || total_bytes == Some(offset) {
            return Ok(offset_response(upload.uploaded_bytes, None));
        }
        return Err(ApiError::UploadClosed(
            "the upload takes no more bytes".to_owned(),
        ));
    }

    let target = BodyTarget {
        project_id: caller.project_id,
        session_id,
        offset,
        limit: total_bytes.unwrap_or(max),
        ends_at: content_length.map(|len| offset.saturating_add(len)),
        checksum,
    };
    let span = upload_span(session_id, &upload);
    let stored = store_body(&state, target, body)
        .instrument(span.clone())
        .await
        .map_err(|failure| {
            span.in_scope(|| tracing::warn!(uploaded_bytes = failure.uploaded_bytes, error = %failure.error, "upload body not fully stored"));
            failure.error
        })?;
    span.in_scope(|| log_body_end(session_id, &stored.streamed));
    if stored.checksum_mismatch {
        return Err(ApiError::ChecksumMismatch);
    }
    let uploaded_bytes = stored.uploaded_bytes();
    if stored.streamed.end == BodyEnd::TooLong {
        return Err(match total_bytes {
            Some(total_bytes) => ApiError::LengthExceeded(format!(
                "the body goes past Upload-Length {total_bytes}; the upload is at offset {uploaded_bytes}"
            )),
            None => ApiError::UploadTooLarge { max },
        });
    }
    let expires_at = stored
        .expires_at
        .or(upload.expires_at)
        .filter(|_| total_bytes != Some(uploaded_bytes));
    Ok(offset_response(uploaded_bytes, expires_at))
}

async fn declare_length(
    state: &AppState,
    caller: &Caller,
    session_id: SessionId,
    total_bytes: u64,
) -> Result<(), ApiError> {
    state
        .uploader
        .call(&DeclareLength {
            project_id: caller.project_id,
            session_id,
            total_bytes,
        })
        .await?;
    tracing::info!(%session_id, total_bytes, "upload length declared");
    Ok(())
}

/// A span naming the upload, so the lines logged while its body is stored carry its session,
/// flow and video (a partial upload has neither flow nor video).
fn upload_span(session_id: SessionId, upload: &UploadState) -> tracing::Span {
    match (upload.flow_id, upload.video_id) {
        (Some(flow_id), Some(video_id)) => {
            tracing::info_span!("upload", %session_id, %flow_id, %video_id)
        }
        _ => tracing::info_span!("upload", %session_id),
    }
}

fn offset_response(uploaded_bytes: u64, expires_at: Option<DateTime<Utc>>) -> Response {
    let mut response = (
        StatusCode::NO_CONTENT,
        [(tus::UPLOAD_OFFSET, HeaderValue::from(uploaded_bytes))],
    )
        .into_response();
    if let Some(expires_at) = expires_at {
        if let Ok(value) = HeaderValue::from_str(&tus::http_date(expires_at)) {
            response.headers_mut().insert(tus::UPLOAD_EXPIRES, value);
        }
    }
    response
}
