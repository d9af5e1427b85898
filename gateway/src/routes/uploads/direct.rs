//! tus at a direct upload's URL: `POST /v1/direct/{token}` creates the one upload the URL
//! takes, and `HEAD`, `PATCH` and `DELETE` on `/v1/direct/{token}/{upload_id}` work as on
//! `/v1/uploads/{id}`, for that upload only. No key: `auth::direct` found the token, checked
//! the origin and left the direct upload's project as the caller. The handlers are those of
//! `/v1/uploads`, called with the direct upload.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use vod_contracts::api::ErrorBody;

use super::headers::{
    ContentLength, DeclaredUploadLength, DeferLength, OffsetOctetStream, RawUploadMetadata,
    TusResumable, TusVersion, UploadChecksum, UploadConcat, UploadLength, UploadOffset,
};
use super::{
    append, create_upload, describe_server, describe_upload, public_base, terminate_upload, Append,
    Creation, UploadBytes,
};
use crate::direct_uploads::store::DirectGrant;
use crate::direct_uploads::URL_PREFIX;
use crate::error::ApiError;
use crate::state::AppState;

/// `OPTIONS /v1/direct/{token}`: what this server speaks (a CORS preflight is answered by
/// `auth::direct`).
#[utoipa::path(
    options,
    path = "/v1/direct/{token}",
    operation_id = "discover_tus_at_direct_upload",
    tag = "direct-uploads",
    summary = "Discover the tus version, extensions and limits at a direct upload's URL",
    params(("token" = String, Path, description = "The secret of the URL, as `POST /v1/direct-uploads` gave it.")),
    responses(
        (status = 204, description = "What this server speaks, as `OPTIONS /v1/uploads` says it."),
        (status = 403, description = "`origin_not_allowed`: `Origin` is not the direct upload's `cors_origin`.", body = ErrorBody),
        (status = 404, description = "`upload_url_not_found`: no direct upload has this URL.", body = ErrorBody),
    ),
)]
pub async fn options_direct(state: State<AppState>) -> Response {
    describe_server(state)
}

/// `POST /v1/direct/{token}`: the one upload of the direct upload.
#[utoipa::path(
    post,
    path = "/v1/direct/{token}",
    operation_id = "create_upload_through_url",
    tag = "direct-uploads",
    summary = "Create the upload of a direct upload, without a key",
    description = "tus creation (with `creation-with-upload` and `creation-defer-length`) as \
        `POST /v1/uploads`, without `Authorization`: the URL's token is the credential. The \
        upload makes a new video of the direct upload's project, with the direct upload's \
        `new_video` (a title it lacks comes from `Upload-Metadata`; `video_id` there is \
        ignored). The URL takes one upload: used again, after its timeout or after a cancel \
        it answers `410 upload_url_expired`. From a browser only the direct upload's \
        `cors_origin` may call it. Concatenation is not offered here.",
    params(
        ("token" = String, Path, description = "The secret of the URL, as `POST /v1/direct-uploads` gave it."),
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
        ("Upload-Length" = Option<u64>, Header, nullable = false, description = "The size of the whole upload in bytes. Required unless `Upload-Defer-Length` is sent."),
        ("Upload-Defer-Length" = inline(Option<DeferLength>), Header, nullable = false, description = "`1`: the length is sent later, in a `PATCH`."),
        ("Upload-Metadata" = Option<String>, Header, nullable = false, description = "As for `POST /v1/uploads`; `video_id` is ignored."),
        ("Upload-Checksum" = Option<String>, Header, nullable = false, description = "`ALGORITHM base64(digest)` of the body (creation-with-upload)."),
    ),
    request_body(
        content = inline(UploadBytes),
        content_type = "application/offset+octet-stream",
        description = "Optional: the first bytes of the upload (creation-with-upload).",
    ),
    security(()),
    responses(
        (status = 201, description = "The upload exists.", headers(
            ("Location" = String, description = "`<url>/<upload id>`, for `HEAD`, `PATCH` and `DELETE`."),
            ("Video-Id" = String, description = "The new video."),
            ("Upload-Offset" = u64, description = "With a body: the bytes of it that were stored."),
            ("Upload-Expires" = String, description = "When an unfinished upload is given up, as an HTTP date."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 400, description = "As for `POST /v1/uploads`; `invalid_concat` for any `Upload-Concat`.", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`: `Origin` is not the direct upload's `cors_origin`.", body = ErrorBody),
        (status = 404, description = "`upload_url_not_found`: no direct upload has this URL.", body = ErrorBody),
        (status = 410, description = "`upload_url_expired`: the URL was used already, timed out or was cancelled.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 413, description = "`upload_too_large`, `length_exceeded`; `quota_exceeded`: the project stores its quota of bytes, no upload is created.", body = ErrorBody),
        (status = 429, description = "`too_many_open_uploads`, `rate_limited`: the project's quota of open uploads, or of uploads this hour, as for `POST /v1/uploads`. No upload is created; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`, `server_busy`. Retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
#[allow(clippy::too_many_arguments)]
pub async fn create_direct(
    State(state): State<AppState>,
    // Before the grant: a request without it is answered 412 whatever its URL.
    _: TusResumable,
    grant: DirectGrant,
    Path(token): Path<String>,
    UploadConcat(concat): UploadConcat,
    RawUploadMetadata(raw_metadata): RawUploadMetadata,
    length: Result<DeclaredUploadLength, ApiError>,
    with_upload: Option<OffsetOctetStream>,
    content_length: Result<ContentLength, ApiError>,
    checksum: Result<UploadChecksum, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if concat.is_some() {
        return Err(ApiError::InvalidConcat(
            "a direct upload's URL takes one whole upload, not concatenation".to_owned(),
        ));
    }
    // A URL that was used, timed out or cancelled is refused by the uploader's claim, after
    // the request's own headers are found right.
    let caller = grant.caller();
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
    let location_base = format!("{}{URL_PREFIX}/{token}", public_base(&state));
    create_upload(
        &state,
        &caller,
        request,
        Some(grant.direct_upload_id),
        &location_base,
    )
    .await
}

/// `OPTIONS /v1/direct/{token}/{upload_id}`.
#[utoipa::path(
    options,
    path = "/v1/direct/{token}/{upload_id}",
    operation_id = "discover_tus_at_direct_upload_upload",
    tag = "direct-uploads",
    summary = "Discover the tus version, extensions and limits at a direct upload's upload",
    params(
        ("token" = String, Path, description = "The secret of the URL."),
        ("upload_id" = String, Path, description = "The upload, as in the `Location` of its creation; any value."),
    ),
    responses(
        (status = 204, description = "What this server speaks, as `OPTIONS /v1/uploads` says it."),
        (status = 403, description = "`origin_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`upload_url_not_found`.", body = ErrorBody),
    ),
)]
pub async fn options_direct_upload(state: State<AppState>) -> Response {
    describe_server(state)
}

/// `HEAD /v1/direct/{token}/{upload_id}`.
#[utoipa::path(
    head,
    path = "/v1/direct/{token}/{upload_id}",
    operation_id = "get_direct_upload_offset",
    tag = "direct-uploads",
    summary = "Where the upload of a direct upload stands, without a key",
    description = "As `HEAD /v1/uploads/{id}`, for the upload made through this URL only.",
    params(
        ("token" = String, Path, description = "The secret of the URL."),
        ("upload_id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(Option<TusVersion>), Header, nullable = false, description = "`1.0.0`; when sent, any other value is refused."),
    ),
    security(()),
    responses(
        (status = 200, description = "The upload's state, in headers, as `HEAD /v1/uploads/{id}` gives it."),
        (status = 403, description = "`origin_not_allowed` (no body)."),
        (status = 404, description = "`upload_url_not_found`, `upload_not_found`: not the upload made through this URL (no body)."),
        (status = 410, description = "`upload_expired` (no body)."),
        (status = 412, description = "`tus_version_unsupported` (no body).", headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 500, description = "`internal` (no body)."),
        (status = 503, description = "`service_unavailable` (no body).", headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn head_direct(
    State(state): State<AppState>,
    _: Option<TusResumable>,
    grant: DirectGrant,
    Path((_token, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = grant.caller();
    check_own_upload(&grant, &id)?;
    describe_upload(&state, &caller, &id).await
}

/// `PATCH /v1/direct/{token}/{upload_id}`.
#[utoipa::path(
    patch,
    path = "/v1/direct/{token}/{upload_id}",
    operation_id = "append_to_direct_upload",
    tag = "direct-uploads",
    summary = "Append bytes to the upload of a direct upload, without a key",
    description = "As `PATCH /v1/uploads/{id}`, for the upload made through this URL only.",
    params(
        ("token" = String, Path, description = "The secret of the URL."),
        ("upload_id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
        ("Upload-Offset" = u64, Header, description = "Where the body goes: must equal the upload's offset (`HEAD`)."),
        ("Upload-Length" = Option<u64>, Header, nullable = false, description = "The upload's size, once, when it was deferred at creation."),
        ("Upload-Checksum" = Option<String>, Header, nullable = false, description = "`ALGORITHM base64(digest)` of the body."),
    ),
    request_body(
        content = inline(UploadBytes),
        content_type = "application/offset+octet-stream",
        description = "The next bytes of the upload.",
    ),
    security(()),
    responses(
        (status = 204, description = "Bytes stored.", headers(
            ("Upload-Offset" = u64, description = "The new offset: every byte under it is stored."),
            ("Upload-Expires" = String, description = "When the unfinished upload is given up, as an HTTP date."),
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 400, description = "As for `PATCH /v1/uploads/{id}`.", body = ErrorBody),
        (status = 403, description = "`origin_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`upload_url_not_found`, `upload_not_found`: not the upload made through this URL.", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`, `upload_closed`, `upload_locked`.", body = ErrorBody),
        (status = 410, description = "`upload_expired`.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 413, description = "`length_exceeded`, `upload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`.", body = ErrorBody),
        (status = 460, description = "`checksum_mismatch`: nothing of the body was stored.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`, `server_busy`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 507, description = "`insufficient_storage`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
#[allow(clippy::too_many_arguments)]
pub async fn patch_direct(
    State(state): State<AppState>,
    _: TusResumable,
    _: OffsetOctetStream,
    UploadOffset(offset): UploadOffset,
    UploadLength(declared_length): UploadLength,
    UploadChecksum(checksum): UploadChecksum,
    grant: DirectGrant,
    Path((_token, id)): Path<(String, String)>,
    content_length: Result<ContentLength, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = grant.caller();
    check_own_upload(&grant, &id)?;
    let request = Append {
        offset,
        declared_length,
        checksum,
        content_length,
        body,
    };
    append(&state, &caller, &id, request).await
}

/// `DELETE /v1/direct/{token}/{upload_id}`.
#[utoipa::path(
    delete,
    path = "/v1/direct/{token}/{upload_id}",
    operation_id = "terminate_direct_upload",
    tag = "direct-uploads",
    summary = "Give the upload of a direct upload up, without a key",
    description = "As `DELETE /v1/uploads/{id}`, for the upload made through this URL only. \
        The URL stays used.",
    params(
        ("token" = String, Path, description = "The secret of the URL."),
        ("upload_id" = uuid::Uuid, Path, description = "The upload, as in the `Location` of its creation."),
        ("Tus-Resumable" = inline(TusVersion), Header, description = "Must be `1.0.0`."),
    ),
    security(()),
    responses(
        (status = 204, description = "The upload is gone (also when it already was).", headers(
            ("Tus-Resumable" = String, description = "`1.0.0`."),
        )),
        (status = 403, description = "`origin_not_allowed`.", body = ErrorBody),
        (status = 404, description = "`upload_url_not_found`, `upload_not_found`.", body = ErrorBody),
        (status = 409, description = "`upload_closed`.", body = ErrorBody),
        (status = 412, description = "`tus_version_unsupported`.", body = ErrorBody,
            headers(("Tus-Version" = String, description = "`1.0.0`."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn terminate_direct(
    State(state): State<AppState>,
    _: TusResumable,
    grant: DirectGrant,
    Path((_token, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = grant.caller();
    check_own_upload(&grant, &id)?;
    terminate_upload(&state, &caller, &id).await
}

/// A direct upload's URL reaches the upload it created, and no other.
fn check_own_upload(grant: &DirectGrant, id: &str) -> Result<(), ApiError> {
    let own = grant
        .upload_id
        .is_some_and(|upload_id| id.parse().ok() == Some(upload_id));
    if own {
        Ok(())
    } else {
        Err(ApiError::UploadNotFound)
    }
}
