//! Serves a published file from the store, with the media type, caching, validators and byte
//! ranges players need, the same from every back end.
//!
//! A plain GET costs the store one request; a conditional or ranged one first reads the file's
//! metadata, so the preconditions and the range are decided before any byte is sent.

use std::io::SeekFrom;
use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResult, GetResultPayload, ObjectMeta};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tracing::{error, warn};

use super::Files;
use crate::byte_range::{self, RangeRequest};
use crate::conditional::{self, Precondition, Validators};
use crate::error::ApiError;
use crate::media::{media_type, Caching};
use crate::request_path::PublishedPath;
use crate::store::object_key;

/// Bytes read from a local file at once.
const FILE_READ_CHUNK: usize = 64 * 1024;

/// Serves a published file with the media type, caching and range support players need.
pub async fn serve(State(files): State<Arc<Files>>, request: Request) -> Response {
    let requested = request.uri().path().to_owned();
    let is_head = request.method() == Method::HEAD;
    let response = serve_file(&files, request).await;
    let body_bytes = if is_head {
        0
    } else {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    files
        .metrics
        .served(&requested, response.status().as_u16(), body_bytes);
    response
}

async fn serve_file(files: &Files, request: Request) -> Response {
    let is_head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return ApiError::MethodNotAllowed.into_response(),
    };
    let path = match PublishedPath::parse(request.uri().path()) {
        Ok(path) => path,
        Err(err) => return err.into_response(),
    };
    let Some(key) = object_key(path.as_str()) else {
        return ApiError::NotFound.into_response();
    };
    let served = Served {
        files,
        path: &path,
        key: &key,
    };
    if !is_head && is_immutable(&path) {
        if let Some(signed) = files.store.presigned_get(&key).await {
            return match signed {
                Ok((url, lasts)) => redirect(&url, lasts),
                Err(err) => served.store_failed(err).await,
            };
        }
    }
    let headers = request.headers();
    if !is_head && !conditional::is_conditional(headers) {
        return served.whole().await;
    }
    let meta = match files.store.objects().head(&key).await {
        Ok(meta) => meta,
        Err(err) => return served.store_failed(err).await,
    };
    let validators = Validators::new(meta.last_modified.into(), meta.size);
    match conditional::evaluate(headers, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => return served.not_modified(&validators),
        Precondition::Failed => return StatusCode::PRECONDITION_FAILED.into_response(),
    }
    let range = match headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
    {
        Some(range) if conditional::range_applies(headers, &validators) => {
            byte_range::parse(range, meta.size)
        }
        _ => RangeRequest::Whole,
    };
    match (range, is_head) {
        (RangeRequest::Unsatisfiable, _) => unsatisfiable(meta.size),
        (RangeRequest::Whole, true) => served.head(&meta, None),
        (RangeRequest::Bytes(bytes), true) => served.head(&meta, Some(bytes)),
        (RangeRequest::Whole, false) => served.whole().await,
        (RangeRequest::Bytes(bytes), false) => served.part(bytes).await,
    }
}

/// One request for one file.
struct Served<'a> {
    files: &'a Files,
    path: &'a PublishedPath,
    key: &'a ObjectPath,
}

impl Served<'_> {
    async fn whole(&self) -> Response {
        match self.files.store.objects().get(self.key).await {
            Ok(result) => self.body(StatusCode::OK, result),
            Err(err) => self.store_failed(err).await,
        }
    }

    async fn part(&self, bytes: Range<u64>) -> Response {
        let options = GetOptions {
            range: Some(GetRange::Bounded(bytes)),
            ..GetOptions::default()
        };
        match self.files.store.objects().get_opts(self.key, options).await {
            Ok(result) => self.body(StatusCode::PARTIAL_CONTENT, result),
            Err(err) => self.store_failed(err).await,
        }
    }

    fn head(&self, meta: &ObjectMeta, bytes: Option<Range<u64>>) -> Response {
        let status = if bytes.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let bytes = bytes.unwrap_or(0..meta.size);
        let mut response = status.into_response();
        self.describe(response.headers_mut(), meta, &bytes, status);
        response
    }

    fn body(&self, status: StatusCode, result: GetResult) -> Response {
        let meta = result.meta.clone();
        let bytes = result.range.clone();
        let mut response = Response::new(body_of(result));
        *response.status_mut() = status;
        self.describe(response.headers_mut(), &meta, &bytes, status);
        response
    }

    /// The headers of a 200 or 206 answer carrying `bytes` of the file.
    fn describe(
        &self,
        headers: &mut HeaderMap,
        meta: &ObjectMeta,
        bytes: &Range<u64>,
        status: StatusCode,
    ) {
        let validators = Validators::new(meta.last_modified.into(), meta.size);
        self.validator_headers(headers, &validators);
        let content_type = media_type(self.path.as_str())
            .map_or("application/octet-stream", |media| media.content_type);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(bytes.end - bytes.start),
        );
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!(
                "bytes {}-{}/{}",
                bytes.start,
                bytes.end.saturating_sub(1),
                meta.size
            );
            if let Ok(range) = HeaderValue::try_from(range) {
                headers.insert(header::CONTENT_RANGE, range);
            }
        }
    }

    fn not_modified(&self, validators: &Validators) -> Response {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        self.validator_headers(response.headers_mut(), validators);
        response
    }

    /// `ETag`, `Last-Modified` and `Cache-Control`, which a 304 repeats.
    fn validator_headers(&self, headers: &mut HeaderMap, validators: &Validators) {
        if let Some(etag) = validators.etag_header() {
            headers.insert(header::ETAG, etag);
        }
        if let Some(last_modified) = validators.last_modified_header() {
            headers.insert(header::LAST_MODIFIED, last_modified);
        }
        if let Some(media) = media_type(self.path.as_str()) {
            headers.insert(
                header::CACHE_CONTROL,
                self.files.cache.header(media.caching),
            );
        }
    }

    /// A missing object is 404; a store that cannot answer is 503 with `Retry-After`, so a
    /// player (or a load balancer) tries again rather than taking an error page for the file.
    /// A path with keys under it is a directory, 404 too, whatever the store answered for
    /// reading it as an object (a server keeping objects as files may fail it otherwise).
    async fn store_failed(&self, err: object_store::Error) -> Response {
        match err {
            object_store::Error::NotFound { .. } | object_store::Error::InvalidPath { .. } => {
                ApiError::NotFound.into_response()
            }
            _ if self.is_directory().await => ApiError::NotFound.into_response(),
            err => {
                let store = self.files.store.describe();
                if matches!(
                    err,
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                ) {
                    error!(path = self.path.as_str(), %store, error = %err, "the store refused holder's key");
                } else {
                    warn!(path = self.path.as_str(), %store, error = %err, "the store cannot be read");
                }
                let mut response = ApiError::StorageUnavailable.into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.files.store.retry_after().as_secs()),
                );
                response
            }
        }
    }
}

impl Served<'_> {
    async fn is_directory(&self) -> bool {
        self.files
            .store
            .objects()
            .list_with_delimiter(Some(self.key))
            .await
            .is_ok_and(|listed| !listed.objects.is_empty() || !listed.common_prefixes.is_empty())
    }
}

/// Segments, renditions, downloads and images: what never changes once published, and may be
/// fetched from the bucket directly. Playlists and manifests are not: their relative URIs must
/// resolve against holder.
fn is_immutable(path: &PublishedPath) -> bool {
    media_type(path.as_str()).is_some_and(|media| media.caching == Caching::Immutable)
}

/// `307` to a signed URL of the bucket. The redirect itself may be cached by the player (not a
/// shared cache: the URL is a credential) for half of the URL's life, so that it is never
/// followed once expired.
fn redirect(url: &str, lasts: std::time::Duration) -> Response {
    let Ok(location) = HeaderValue::try_from(url) else {
        error!("a signed URL of the bucket is no header value");
        return ApiError::StorageUnavailable.into_response();
    };
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    if let Ok(cache) = HeaderValue::try_from(format!("private, max-age={}", lasts.as_secs() / 2)) {
        headers.insert(header::CACHE_CONTROL, cache);
    }
    response
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(range) = HeaderValue::try_from(format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, range);
    }
    response
}

/// The bytes of a read, streamed. A local file is read in larger steps than `object_store`
/// reads it. A stream that fails midway ends the response short of its `Content-Length`, so
/// the client sees a broken transfer, never a complete one.
fn body_of(result: GetResult) -> Body {
    let range = result.range.clone();
    match result.payload {
        GetResultPayload::File(file, path) => {
            let read = async move {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(SeekFrom::Start(range.start)).await?;
                Ok::<_, std::io::Error>(ReaderStream::with_capacity(
                    file.take(range.end - range.start),
                    FILE_READ_CHUNK,
                ))
            };
            let stream = futures_util::stream::once(read)
                .try_flatten()
                .inspect_err(move |err| {
                    warn!(path = %path.display(), error = %err, "reading a served file failed");
                });
            Body::from_stream(stream)
        }
        GetResultPayload::Stream(stream) => Body::from_stream(stream.inspect_err(|err| {
            warn!(error = %err, "reading a served object failed");
        })),
    }
}
