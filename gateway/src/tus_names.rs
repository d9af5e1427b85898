//! The tus 1.0.0 version, extensions and header names: a leaf, so that the error answers can
//! name them without depending on the parsing in `tus.rs`, which answers with those errors.

use axum::http::header::HeaderName;

pub const SUPPORTED_VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,\
     expiration,checksum,concatenation";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,sha512,md5";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
pub const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
pub const X_HTTP_METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");
pub const VIDEO_ID: HeaderName = HeaderName::from_static("video-id");

/// The request headers a browser tus client sends, allowed across origins.
pub const CORS_REQUEST_HEADERS: [HeaderName; 12] = [
    TUS_RESUMABLE,
    UPLOAD_OFFSET,
    UPLOAD_LENGTH,
    UPLOAD_DEFER_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_CHECKSUM,
    UPLOAD_CONCAT,
    axum::http::header::CONTENT_TYPE,
    axum::http::header::CONTENT_LENGTH,
    X_HTTP_METHOD_OVERRIDE,
    HeaderName::from_static("x-requested-with"),
    axum::http::header::AUTHORIZATION,
];

/// The response headers a browser tus client reads, exposed across origins.
pub const CORS_EXPOSED_HEADERS: [HeaderName; 13] = [
    axum::http::header::LOCATION,
    UPLOAD_OFFSET,
    UPLOAD_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_DEFER_LENGTH,
    UPLOAD_EXPIRES,
    UPLOAD_CONCAT,
    TUS_RESUMABLE,
    TUS_VERSION,
    TUS_EXTENSION,
    TUS_MAX_SIZE,
    TUS_CHECKSUM_ALGORITHM,
    VIDEO_ID,
];
