//! tus 1.0.0 at `/v1/uploads`: core, `creation`, `creation-with-upload`,
//! `creation-defer-length`, `expiration`, `checksum`, `termination` and `concatenation`.

use anyhow::anyhow;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tracing::Instrument;
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{Ack, Command};
use vod_contracts::{SessionId, SessionStatus};

use crate::error::ApiError;
use crate::read_model::{self, UploadKind, UploadState};
use crate::startup::AppState;
use crate::tus::{self, Concat, DeclaredLength, UploadMetadata};
use crate::upload_stream::BodyEnd;
use crate::uploads::{log_body_end, store_body, BodyTarget};

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
    params(("id" = String, Path, description = "The upload, as in the `Location` of its creation.")),
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
        ("Tus-Resumable" = String, Header, description = "Must be `1.0.0`.", example = "1.0.0"),
        ("Upload-Length" = Option<u64>, Header, description = "The size of the whole upload in bytes. Required unless `Upload-Defer-Length` or a final `Upload-Concat` is sent."),
        ("Upload-Defer-Length" = Option<String>, Header, description = "`1`: the length is sent later, in a `PATCH`."),
        ("Upload-Metadata" = Option<String>, Header, description = "Comma-separated `key base64(value)` pairs. Keys read: `filename`, `title` (else taken from `filename`), optional `video_id` (attach a new flow to this existing video). The whole header is kept and given back by `HEAD`."),
        ("Upload-Concat" = Option<String>, Header, description = "`partial` for a part of a later final upload, or `final;URL URL …` to join partial uploads (their `Location`s) in order."),
        ("Upload-Checksum" = Option<String>, Header, description = "`ALGORITHM base64(digest)` of the body (creation-with-upload); a body that does not match is not stored."),
        ("Content-Type" = Option<String>, Header, description = "`application/offset+octet-stream` when the request carries the first bytes."),
    ),
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
        (status = 400, description = "`invalid_header` (the offending header in `field`), `validation_failed` (`title` or `video_id` in `Upload-Metadata`), `checksum_algorithm_unsupported`, `invalid_concat`, `invalid_length`, `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`video_not_found`: `video_id` names no video; `upload_not_found`: a partial upload of a final one does not exist.", body = ErrorBody),
        (status = 409, description = "`upload_closed`: a partial upload of a final one is not complete or already used.", body = ErrorBody),
        (status = 410, description = "`upload_expired`: a partial upload of a final one expired.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`: `Tus-Resumable` is missing or not `1.0.0`. `Tus-Version` says what is spoken.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 413, description = "`upload_too_large`: `Upload-Length` is over `Tus-Max-Size`; `length_exceeded`: the body goes past `Upload-Length`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the broker or the uploader is down or slow; `server_busy`: too many uploads at once for the gateway's memory. Retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    tus::require_tus_resumable(&headers)?;
    let concat = tus::concat(&headers)?;
    let raw_metadata = headers
        .get(tus::UPLOAD_METADATA)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ApiError::invalid_header("Upload-Metadata", "Upload-Metadata must be ASCII")
            })
        })
        .transpose()?;
    if let Some(Concat::Final(urls)) = concat {
        return create_final(&state, &headers, raw_metadata, &urls).await;
    }

    let length = tus::declared_length(&headers)?;
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
    let with_upload = tus::has_offset_octet_stream_body(&headers);
    let checksum = if with_upload {
        check_fits(
            0,
            tus::content_length(&headers)?,
            total_bytes.unwrap_or(max),
        )?;
        tus::checksum(&headers)?
    } else {
        None
    };

    let partial = concat == Some(Concat::Partial);
    let command = if partial {
        Command::CreatePartialUpload {
            total_bytes,
            metadata: raw_metadata,
        }
    } else {
        Command::CreateUpload {
            video_id: metadata.video_id,
            title: metadata.title,
            filename: metadata.filename,
            total_bytes,
            metadata: raw_metadata,
        }
    };
    let (session_id, video_id, mut expires_at) = match state.uploader.call(&command).await? {
        Ack::UploadCreated {
            video_id,
            flow_id,
            session_id,
            expires_at,
        } => {
            tracing::info!(%session_id, %video_id, %flow_id, total_bytes, "upload created");
            (session_id, Some(video_id), expires_at)
        }
        Ack::PartialUploadCreated {
            session_id,
            expires_at,
        } => {
            tracing::info!(%session_id, total_bytes, "partial upload created");
            (session_id, None, expires_at)
        }
        other => return Err(anyhow!("unexpected reply to create upload: {other:?}").into()),
    };

    let location = format!("{}/v1/uploads/{session_id}", public_base(&state, &headers));
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
            session_id,
            offset: 0,
            limit: total_bytes.unwrap_or(max),
            ends_at: tus::content_length(&headers).ok().flatten(),
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
    let ack = state
        .uploader
        .call(&Command::CreateFinalUpload {
            video_id: metadata.video_id,
            title: metadata.title,
            filename: metadata.filename,
            metadata: raw_metadata,
            parts,
        })
        .await?;
    let Ack::UploadCreated {
        video_id,
        flow_id,
        session_id,
        ..
    } = ack
    else {
        return Err(anyhow!("unexpected reply to create a final upload: {ack:?}").into());
    };
    tracing::info!(%session_id, %video_id, %flow_id, parts = urls.len(), "final upload created");
    let location = format!("{}/v1/uploads/{session_id}", public_base(state, headers));
    Ok((
        StatusCode::CREATED,
        [
            (LOCATION, header_value(&location)?),
            (tus::VIDEO_ID, header_value(&video_id.to_string())?),
        ],
    )
        .into_response())
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
        ("id" = String, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = Option<String>, Header, description = "`1.0.0`; when sent, any other value is refused.", example = "1.0.0"),
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
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // tus requires the header on every request; one that names another version is refused,
    // and a plain `HEAD` without it is still answered.
    if headers.contains_key(tus::TUS_RESUMABLE) {
        tus::require_tus_resumable(&headers)?;
    }
    let upload = find_live_upload(&state, &id).await?.1;
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
            let base = public_base(&state, &headers);
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
        ("id" = String, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = String, Header, description = "Must be `1.0.0`.", example = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where the body goes: must equal the upload's offset (`HEAD`)."),
        ("Upload-Length" = Option<u64>, Header, description = "The upload's size, once, when it was deferred at creation."),
        ("Upload-Checksum" = Option<String>, Header, description = "`ALGORITHM base64(digest)` of the body; algorithms in `Tus-Checksum-Algorithm`."),
        ("Content-Type" = String, Header, description = "Must be `application/offset+octet-stream`."),
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
    ),
)]
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    tus::require_tus_resumable(&headers)?;
    if !tus::has_offset_octet_stream_body(&headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of a PATCH must be {}",
            tus::OFFSET_OCTET_STREAM
        )));
    }
    let offset = tus::required_u64(&headers, &tus::UPLOAD_OFFSET, "Upload-Offset")?;
    let declared_length = tus::optional_u64(&headers, &tus::UPLOAD_LENGTH, "Upload-Length")?;
    let checksum = tus::checksum(&headers)?;
    let (session_id, upload) = find_live_upload(&state, &id).await?;
    if upload.kind == UploadKind::Final {
        return Err(ApiError::FinalUploadNotPatchable);
    }
    if offset != upload.uploaded_bytes {
        return Err(ApiError::OffsetMismatch(format!(
            "Upload-Offset is {offset} but the upload is at offset {}",
            upload.uploaded_bytes
        )));
    }
    let content_length = tus::content_length(&headers)?;
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
                declare_length(&state, session_id, declared).await?;
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
    session_id: SessionId,
    total_bytes: u64,
) -> Result<(), ApiError> {
    let ack = state
        .uploader
        .call(&Command::DeclareLength {
            session_id,
            total_bytes,
        })
        .await?;
    match ack {
        Ack::LengthDeclared { .. } => {
            tracing::info!(%session_id, total_bytes, "upload length declared");
            Ok(())
        }
        other => Err(anyhow!("unexpected reply to declare a length: {other:?}").into()),
    }
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
        ("id" = String, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = String, Header, description = "Must be `1.0.0`.", example = "1.0.0"),
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
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    tus::require_tus_resumable(&headers)?;
    let session_id = parse_session_id(&id)?;
    let ack = state
        .uploader
        .call(&Command::TerminateUpload { session_id })
        .await?;
    if ack != Ack::UploadTerminated {
        return Err(anyhow!("unexpected reply to terminate upload: {ack:?}").into());
    }
    tracing::info!(%session_id, "upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The upload named by the path; terminated ones are gone, expired ones say so.
async fn find_live_upload(
    state: &AppState,
    id: &str,
) -> Result<(SessionId, UploadState), ApiError> {
    let session_id = parse_session_id(id)?;
    let upload = read_model::find_upload(&state.pool, session_id)
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

/// `public_url` when configured, else the address the client used.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &state.config.public_url {
        return base.trim_end_matches('/').to_owned();
    }
    headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_default()
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|err| ApiError::Internal(anyhow!("invalid header value {text:?}: {err}")))
}
