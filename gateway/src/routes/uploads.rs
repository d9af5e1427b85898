//! tus 1.0.0 at `/v1/uploads`: core, `creation`, `creation-with-upload` and `termination`.

use anyhow::anyhow;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vod_contracts::commands::{Ack, ChunkHeader, Command};
use vod_contracts::{SessionId, SessionStatus};

use crate::error::ApiError;
use crate::read_model::{self, UploadState};
use crate::startup::AppState;
use crate::tus::{self, UploadMetadata};
use crate::upload_stream::{stream_in_pieces, BodyEnd, StoreFailed, Streamed};

/// `OPTIONS`: what this server speaks.
pub async fn options(State(state): State<AppState>) -> Response {
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
        ],
    )
        .into_response()
}

/// `POST`: creates a flow and its upload session through the uploader, and with
/// `creation-with-upload` stores the request body as the first bytes.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    tus::require_tus_resumable(&headers)?;
    if headers.contains_key(tus::UPLOAD_DEFER_LENGTH) {
        return Err(ApiError::invalid_header(
            "Upload-Defer-Length",
            "deferred upload length is not supported, send Upload-Length",
        ));
    }
    let total_bytes = tus::required_u64(&headers, &tus::UPLOAD_LENGTH, "Upload-Length")?;
    let max = state.config.max_upload_bytes;
    if total_bytes > max {
        return Err(ApiError::UploadTooLarge { max });
    }
    let raw_metadata = headers
        .get(tus::UPLOAD_METADATA)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ApiError::invalid_header("Upload-Metadata", "Upload-Metadata must be ASCII")
            })
        })
        .transpose()?;
    let metadata = UploadMetadata::from_header(raw_metadata.as_deref())?;
    let with_upload = tus::has_offset_octet_stream_body(&headers);
    if with_upload {
        check_fits(0, tus::content_length(&headers)?, total_bytes)?;
    }

    let ack = state
        .uploader
        .call(&Command::CreateUpload {
            video_id: metadata.video_id,
            title: metadata.title,
            filename: metadata.filename,
            total_bytes,
            metadata: raw_metadata,
        })
        .await?;
    let Ack::UploadCreated {
        video_id,
        flow_id,
        session_id,
    } = ack
    else {
        return Err(anyhow!("unexpected reply to create upload: {ack:?}").into());
    };
    tracing::info!(%session_id, %video_id, %flow_id, total_bytes, "upload created");

    let location = format!("{}/v1/uploads/{session_id}", public_base(&state, &headers));
    let mut response = (
        StatusCode::CREATED,
        [
            (LOCATION, header_value(&location)?),
            (tus::VIDEO_ID, header_value(&video_id.to_string())?),
        ],
    )
        .into_response();
    if with_upload {
        // The upload exists whatever happens to its first bytes: answer 201 with what was
        // stored, and the client goes on from there.
        let uploaded_bytes = match store_body(&state, session_id, 0, total_bytes, body).await {
            Ok(streamed) => {
                log_body_end(session_id, &streamed);
                streamed.uploaded_bytes
            }
            Err(failure) => {
                tracing::warn!(%session_id, error = %failure.error, "first bytes of the upload not stored");
                failure.uploaded_bytes
            }
        };
        response
            .headers_mut()
            .insert(tus::UPLOAD_OFFSET, HeaderValue::from(uploaded_bytes));
    }
    Ok(response)
}

/// `HEAD`: where the upload stands.
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
            (tus::UPLOAD_LENGTH, HeaderValue::from(upload.total_bytes)),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (tus::VIDEO_ID, header_value(&upload.video_id.to_string())?),
        ],
    )
        .into_response();
    if let Some(metadata) = upload.metadata.as_deref() {
        response
            .headers_mut()
            .insert(tus::UPLOAD_METADATA, header_value(metadata)?);
    }
    Ok(response)
}

/// `PATCH`: stores the body at `Upload-Offset`, piece by piece, and answers with the offset the
/// uploader confirmed last.
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
    let (session_id, upload) = find_live_upload(&state, &id).await?;
    if offset != upload.uploaded_bytes {
        return Err(ApiError::OffsetMismatch(format!(
            "Upload-Offset is {offset} but the upload is at offset {}",
            upload.uploaded_bytes
        )));
    }
    let content_length = tus::content_length(&headers)?;
    check_fits(offset, content_length, upload.total_bytes)?;
    if upload.status != SessionStatus::Open {
        if content_length == Some(0) {
            return Ok(offset_response(upload.uploaded_bytes));
        }
        return Err(ApiError::UploadClosed(
            "the upload takes no more bytes".to_owned(),
        ));
    }

    let streamed = store_body(&state, session_id, offset, upload.total_bytes, body)
        .await
        .map_err(|failure| {
            tracing::warn!(%session_id, uploaded_bytes = failure.uploaded_bytes, error = %failure.error, "upload body not fully stored");
            failure.error
        })?;
    log_body_end(session_id, &streamed);
    if streamed.end == BodyEnd::TooLong {
        return Err(ApiError::LengthExceeded(format!(
            "the body goes past Upload-Length {}; the upload is at offset {}",
            upload.total_bytes, streamed.uploaded_bytes
        )));
    }
    Ok(offset_response(streamed.uploaded_bytes))
}

/// `DELETE`: the client gives the upload up.
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

/// Sends the body to the uploader in pieces of at most `chunk_size_bytes`, each one confirmed
/// before the next is read. It runs as its own task so that the bytes received before a client
/// goes away are still stored when the request itself is dropped.
async fn store_body(
    state: &AppState,
    session_id: SessionId,
    offset: u64,
    total_bytes: u64,
    body: Body,
) -> Result<Streamed, StoreFailed<ApiError>> {
    let uploader = state.uploader.clone();
    let chunk_size_bytes = state.config.chunk_size_bytes;
    let storing = state.body_tasks.spawn(async move {
        let uploader = &uploader;
        stream_in_pieces(
            body.into_data_stream(),
            offset,
            total_bytes,
            chunk_size_bytes,
            move |offset, piece| async move {
                let header = ChunkHeader {
                    session_id,
                    offset,
                    len: piece.len() as u64,
                };
                match uploader.send_chunk(&header, &piece).await? {
                    Ack::ChunkStored { uploaded_bytes, .. } => {
                        tracing::debug!(%session_id, offset, len = header.len, uploaded_bytes, "chunk stored");
                        Ok(uploaded_bytes)
                    }
                    other => Err(ApiError::Internal(anyhow!(
                        "unexpected reply to a chunk: {other:?}"
                    ))),
                }
            },
        )
        .await
    });
    storing.await.unwrap_or_else(|err| {
        Err(StoreFailed {
            uploaded_bytes: offset,
            error: ApiError::Internal(anyhow!("upload body task failed: {err}")),
        })
    })
}

fn log_body_end(session_id: SessionId, streamed: &Streamed) {
    let uploaded_bytes = streamed.uploaded_bytes;
    match &streamed.end {
        BodyEnd::Complete => {}
        BodyEnd::TooLong => {
            tracing::info!(%session_id, uploaded_bytes, "upload body longer than the upload")
        }
        BodyEnd::Interrupted(reason) => {
            tracing::info!(%session_id, uploaded_bytes, reason = %reason, "upload body interrupted, received bytes kept")
        }
        BodyEnd::Diverged => {
            tracing::warn!(%session_id, uploaded_bytes, "uploader confirmed another offset, body cut short")
        }
    }
}

fn offset_response(uploaded_bytes: u64) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(tus::UPLOAD_OFFSET, HeaderValue::from(uploaded_bytes))],
    )
        .into_response()
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
