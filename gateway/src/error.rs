use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{Reject, RejectCode};

use crate::tus_names;
use crate::uploader_client::CallError;

/// tus `checksum`: the body does not hash to `Upload-Checksum`.
pub const CHECKSUM_MISMATCH: StatusCode = match StatusCode::from_u16(460) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Every error answer of the gateway, with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("only tus 1.0.0 is supported")]
    TusVersionUnsupported,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    InvalidHeader {
        header: &'static str,
        message: String,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{message}")]
    ValidationFailed { field: String, message: String },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    OffsetMismatch(String),
    #[error("no such upload")]
    UploadNotFound,
    #[error("the upload expired")]
    UploadExpired,
    #[error("{0}")]
    UploadClosed(String),
    #[error("uploads are limited to {max} bytes")]
    UploadTooLarge { max: u64 },
    #[error("{0}")]
    LengthExceeded(String),
    #[error("the request body is larger than {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("no such video")]
    VideoNotFound,
    #[error("{0}")]
    ChecksumAlgorithmUnsupported(String),
    #[error("the request body does not match its Upload-Checksum; nothing was stored")]
    ChecksumMismatch,
    #[error("{0}")]
    UploadLocked(String),
    #[error("a final upload is made of its partial uploads and takes no PATCH")]
    FinalUploadNotPatchable,
    #[error("{0}")]
    InvalidConcat(String),
    #[error("{0}")]
    InvalidLength(String),
    #[error("Upload-Metadata is limited to {max} bytes")]
    MetadataTooLarge { max: usize },
    #[error("Upload-Metadata is limited to {max} keys")]
    MetadataTooManyKeys { max: usize },
    #[error("filename is limited to {max} bytes")]
    FilenameTooLong { max: usize },
    #[error("no such route")]
    RouteNotFound,
    /// No credential, or one that is malformed, unknown or revoked.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid key without the scope the request needs.
    #[error("{0}")]
    Forbidden(String),
    #[error("no such project")]
    ProjectNotFound,
    #[error("{0}")]
    ProjectNameTaken(String),
    #[error("no such key")]
    KeyNotFound,
    /// A direct upload's URL that was used already, timed out or was cancelled.
    #[error("this upload URL was used already, timed out or was cancelled")]
    UploadUrlExpired,
    /// A direct upload's URL whose token names no direct upload.
    #[error("no such upload URL")]
    UploadUrlNotFound,
    /// A browser request to a direct upload's URL from another origin than its `cors_origin`.
    #[error("{0}")]
    OriginNotAllowed(String),
    #[error("no such direct upload")]
    DirectUploadNotFound,
    #[error("{0}")]
    DirectUploadFinished(String),
    #[error("{0}")]
    EventNotFound(String),
    #[error("no such webhook endpoint")]
    WebhookNotFound,
    /// The project has as many webhook endpoints as allowed.
    #[error("{0}")]
    WebhookLimitReached(String),
    /// The project stores as much as its quota allows: no upload is created.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The project has as many open uploads as its quota allows.
    #[error("{message}")]
    TooManyOpenUploads {
        message: String,
        retry_after_secs: u64,
    },
    /// The project created as many uploads this hour as its quota allows.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// The encoder's disk is down to its free-space reserve: the piece was not stored, the
    /// upload keeps its offset. The uploader's account is logged, the client told to retry.
    #[error("no room to store more bytes: {0}")]
    InsufficientStorage(String),
    /// The route exists; `Allow` lists the methods it takes.
    #[error("this route does not take this method")]
    MethodNotAllowed,
    /// Too many uploads at once for the memory the gateway may use; the client is told to retry.
    #[error("{0}")]
    Busy(String),
    /// A dependency is down or too slow; the cause is logged, the client is told to retry.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid_header(header: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidHeader {
            header,
            message: message.into(),
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::ValidationFailed {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::TusVersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidHeader { .. }
            | Self::InvalidRequest(_)
            | Self::ValidationFailed { .. }
            | Self::InvalidJson(_)
            | Self::ChecksumAlgorithmUnsupported(_)
            | Self::InvalidConcat(_)
            | Self::InvalidLength(_)
            | Self::MetadataTooLarge { .. }
            | Self::MetadataTooManyKeys { .. }
            | Self::FilenameTooLong { .. } => StatusCode::BAD_REQUEST,
            Self::OffsetMismatch(_) | Self::UploadClosed(_) | Self::UploadLocked(_) => {
                StatusCode::CONFLICT
            }
            Self::FinalUploadNotPatchable | Self::Forbidden(_) | Self::OriginNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::ProjectNameTaken(_)
            | Self::DirectUploadFinished(_)
            | Self::WebhookLimitReached(_) => StatusCode::CONFLICT,
            Self::ChecksumMismatch => CHECKSUM_MISMATCH,
            Self::UploadNotFound
            | Self::VideoNotFound
            | Self::RouteNotFound
            | Self::ProjectNotFound
            | Self::KeyNotFound
            | Self::UploadUrlNotFound
            | Self::DirectUploadNotFound
            | Self::EventNotFound(_)
            | Self::WebhookNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UploadExpired | Self::UploadUrlExpired => StatusCode::GONE,
            Self::UploadTooLarge { .. }
            | Self::LengthExceeded(_)
            | Self::PayloadTooLarge { .. }
            | Self::QuotaExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyOpenUploads { .. } | Self::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Busy(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Every `code` of [`ApiError::code`], in the order of the variants; the OpenAPI document
    /// lists them.
    pub const CODES: &'static [&'static str] = &[
        "tus_version_unsupported",
        "unsupported_media_type",
        "invalid_header",
        "invalid_request",
        "validation_failed",
        "invalid_json",
        "offset_mismatch",
        "upload_not_found",
        "upload_expired",
        "upload_closed",
        "upload_too_large",
        "length_exceeded",
        "payload_too_large",
        "video_not_found",
        "checksum_algorithm_unsupported",
        "checksum_mismatch",
        "upload_locked",
        "upload_is_final",
        "invalid_concat",
        "invalid_length",
        "metadata_too_large",
        "metadata_too_many_keys",
        "filename_too_long",
        "not_found",
        "unauthorized",
        "forbidden",
        "project_not_found",
        "project_name_taken",
        "key_not_found",
        "upload_url_expired",
        "upload_url_not_found",
        "origin_not_allowed",
        "direct_upload_not_found",
        "direct_upload_finished",
        "event_not_found",
        "webhook_not_found",
        "webhook_limit_reached",
        "quota_exceeded",
        "too_many_open_uploads",
        "rate_limited",
        "insufficient_storage",
        "method_not_allowed",
        "server_busy",
        "service_unavailable",
        "internal",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            Self::TusVersionUnsupported => "tus_version_unsupported",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidHeader { .. } => "invalid_header",
            Self::InvalidRequest(_) => "invalid_request",
            Self::ValidationFailed { .. } => "validation_failed",
            Self::InvalidJson(_) => "invalid_json",
            Self::OffsetMismatch(_) => "offset_mismatch",
            Self::UploadNotFound => "upload_not_found",
            Self::UploadExpired => "upload_expired",
            Self::UploadClosed(_) => "upload_closed",
            Self::UploadTooLarge { .. } => "upload_too_large",
            Self::LengthExceeded(_) => "length_exceeded",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::VideoNotFound => "video_not_found",
            Self::ChecksumAlgorithmUnsupported(_) => "checksum_algorithm_unsupported",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::UploadLocked(_) => "upload_locked",
            Self::FinalUploadNotPatchable => "upload_is_final",
            Self::InvalidConcat(_) => "invalid_concat",
            Self::InvalidLength(_) => "invalid_length",
            Self::MetadataTooLarge { .. } => "metadata_too_large",
            Self::MetadataTooManyKeys { .. } => "metadata_too_many_keys",
            Self::FilenameTooLong { .. } => "filename_too_long",
            Self::RouteNotFound => "not_found",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::ProjectNotFound => "project_not_found",
            Self::ProjectNameTaken(_) => "project_name_taken",
            Self::KeyNotFound => "key_not_found",
            Self::UploadUrlExpired => "upload_url_expired",
            Self::UploadUrlNotFound => "upload_url_not_found",
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::DirectUploadNotFound => "direct_upload_not_found",
            Self::DirectUploadFinished(_) => "direct_upload_finished",
            Self::EventNotFound(_) => "event_not_found",
            Self::WebhookNotFound => "webhook_not_found",
            Self::WebhookLimitReached(_) => "webhook_limit_reached",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::TooManyOpenUploads { .. } => "too_many_open_uploads",
            Self::RateLimited { .. } => "rate_limited",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Busy(_) => "server_busy",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Self::Unavailable(_) => {
                "the service is temporarily unavailable, retry later".to_owned()
            }
            Self::InsufficientStorage(_) => "no room to store more bytes now; the upload keeps \
                its offset (HEAD), send the rest again later"
                .to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let field = match self {
            Self::InvalidHeader { header, .. } => Some((*header).to_owned()),
            Self::ValidationFailed { field, .. } => Some(field.clone()),
            Self::MetadataTooLarge { .. } | Self::MetadataTooManyKeys { .. } => {
                Some("Upload-Metadata".to_owned())
            }
            Self::FilenameTooLong { .. } => Some("filename".to_owned()),
            _ => None,
        };
        ErrorBody {
            code: self.code().to_owned(),
            message,
            field,
        }
    }
}

impl From<Reject> for ApiError {
    fn from(reject: Reject) -> Self {
        let Reject {
            code,
            message,
            retry_after_secs,
        } = reject;
        // A refusal without its own wait is retried after a minute.
        let retry_after_secs = retry_after_secs.unwrap_or(60);
        match code {
            RejectCode::UploadNotFound => Self::UploadNotFound,
            RejectCode::UploadClosed => Self::UploadClosed(message),
            RejectCode::OffsetMismatch => Self::OffsetMismatch(message),
            RejectCode::LengthExceeded => Self::LengthExceeded(message),
            RejectCode::UploadExpired => Self::UploadExpired,
            RejectCode::UploadLocked => Self::UploadLocked(message),
            RejectCode::InvalidLength => Self::InvalidLength(message),
            RejectCode::InvalidConcat => Self::InvalidConcat(message),
            RejectCode::VideoNotFound => Self::VideoNotFound,
            RejectCode::ProjectNotFound => Self::ProjectNotFound,
            RejectCode::ProjectNameTaken => Self::ProjectNameTaken(message),
            RejectCode::KeyNotFound => Self::KeyNotFound,
            RejectCode::UploadUrlExpired => Self::UploadUrlExpired,
            RejectCode::DirectUploadNotFound => Self::DirectUploadNotFound,
            RejectCode::DirectUploadFinished => Self::DirectUploadFinished(message),
            RejectCode::WebhookNotFound => Self::WebhookNotFound,
            RejectCode::EventNotFound => Self::EventNotFound(message),
            RejectCode::QuotaExceeded => Self::QuotaExceeded(message),
            RejectCode::TooManyOpenUploads => Self::TooManyOpenUploads {
                message,
                retry_after_secs,
            },
            RejectCode::RateLimited => Self::RateLimited {
                message,
                retry_after_secs,
            },
            RejectCode::InvalidCommand => Self::InvalidRequest(message),
            RejectCode::Unavailable => Self::Unavailable(format!("uploader: {message}")),
            RejectCode::InsufficientStorage => Self::InsufficientStorage(message),
            RejectCode::Internal => Self::Internal(anyhow::anyhow!("uploader: {message}")),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Rejected(reject) => reject.into(),
            CallError::UnexpectedReply(_) => Self::Internal(error.into()),
            CallError::Timeout | CallError::Unavailable(_) => Self::Unavailable(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "request failed, dependency unavailable")
            }
            Self::InsufficientStorage(cause) => {
                tracing::warn!(cause = %cause, "request refused, no room to store the bytes")
            }
            _ => {}
        }
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vod\""),
            );
        }
        if let Self::TooManyOpenUploads {
            retry_after_secs, ..
        }
        | Self::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if matches!(self, Self::TusVersionUnsupported) {
            response.headers_mut().insert(
                tus_names::TUS_VERSION,
                HeaderValue::from_static(tus_names::SUPPORTED_VERSION),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_code_maps_to_its_status_and_code() {
        let cases = [
            (RejectCode::UploadNotFound, 404, "upload_not_found"),
            (RejectCode::UploadClosed, 409, "upload_closed"),
            (RejectCode::OffsetMismatch, 409, "offset_mismatch"),
            (RejectCode::LengthExceeded, 413, "length_exceeded"),
            (RejectCode::UploadExpired, 410, "upload_expired"),
            (RejectCode::UploadLocked, 409, "upload_locked"),
            (RejectCode::InvalidLength, 400, "invalid_length"),
            (RejectCode::InvalidConcat, 400, "invalid_concat"),
            (RejectCode::VideoNotFound, 404, "video_not_found"),
            (RejectCode::ProjectNotFound, 404, "project_not_found"),
            (RejectCode::ProjectNameTaken, 409, "project_name_taken"),
            (RejectCode::KeyNotFound, 404, "key_not_found"),
            (RejectCode::UploadUrlExpired, 410, "upload_url_expired"),
            (
                RejectCode::DirectUploadNotFound,
                404,
                "direct_upload_not_found",
            ),
            (
                RejectCode::DirectUploadFinished,
                409,
                "direct_upload_finished",
            ),
            (RejectCode::WebhookNotFound, 404, "webhook_not_found"),
            (RejectCode::EventNotFound, 404, "event_not_found"),
            (RejectCode::QuotaExceeded, 413, "quota_exceeded"),
            (RejectCode::TooManyOpenUploads, 429, "too_many_open_uploads"),
            (RejectCode::RateLimited, 429, "rate_limited"),
            (RejectCode::InvalidCommand, 400, "invalid_request"),
            (RejectCode::Unavailable, 503, "service_unavailable"),
            (RejectCode::InsufficientStorage, 507, "insufficient_storage"),
            (RejectCode::Internal, 500, "internal"),
        ];
        for (code, status, api_code) in cases {
            let error = ApiError::from(CallError::Rejected(Reject::new(code, "why")));
            assert_eq!(error.status().as_u16(), status, "{code:?}");
            assert_eq!(error.code(), api_code, "{code:?}");
        }
    }

    /// One error of every variant; the match fails to compile when a variant is added and not
    /// listed here.
    fn one_of_every_variant() -> Vec<ApiError> {
        let every = vec![
            ApiError::TusVersionUnsupported,
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::invalid_header("Upload-Offset", ""),
            ApiError::InvalidRequest(String::new()),
            ApiError::validation("title", ""),
            ApiError::InvalidJson(String::new()),
            ApiError::OffsetMismatch(String::new()),
            ApiError::UploadNotFound,
            ApiError::UploadExpired,
            ApiError::UploadClosed(String::new()),
            ApiError::UploadTooLarge { max: 1 },
            ApiError::LengthExceeded(String::new()),
            ApiError::PayloadTooLarge { max: 1 },
            ApiError::VideoNotFound,
            ApiError::ChecksumAlgorithmUnsupported(String::new()),
            ApiError::ChecksumMismatch,
            ApiError::UploadLocked(String::new()),
            ApiError::FinalUploadNotPatchable,
            ApiError::InvalidConcat(String::new()),
            ApiError::InvalidLength(String::new()),
            ApiError::MetadataTooLarge { max: 1 },
            ApiError::MetadataTooManyKeys { max: 1 },
            ApiError::FilenameTooLong { max: 1 },
            ApiError::RouteNotFound,
            ApiError::Unauthorized(""),
            ApiError::Forbidden(String::new()),
            ApiError::ProjectNotFound,
            ApiError::ProjectNameTaken(String::new()),
            ApiError::KeyNotFound,
            ApiError::UploadUrlExpired,
            ApiError::UploadUrlNotFound,
            ApiError::OriginNotAllowed(String::new()),
            ApiError::DirectUploadNotFound,
            ApiError::DirectUploadFinished(String::new()),
            ApiError::EventNotFound(String::new()),
            ApiError::WebhookNotFound,
            ApiError::WebhookLimitReached(String::new()),
            ApiError::QuotaExceeded(String::new()),
            ApiError::TooManyOpenUploads {
                message: String::new(),
                retry_after_secs: 1,
            },
            ApiError::RateLimited {
                message: String::new(),
                retry_after_secs: 1,
            },
            ApiError::InsufficientStorage(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::Busy(String::new()),
            ApiError::Unavailable(String::new()),
            ApiError::Internal(anyhow::anyhow!("")),
        ];
        for error in &every {
            match error {
                ApiError::TusVersionUnsupported
                | ApiError::UnsupportedMediaType(_)
                | ApiError::InvalidHeader { .. }
                | ApiError::InvalidRequest(_)
                | ApiError::ValidationFailed { .. }
                | ApiError::InvalidJson(_)
                | ApiError::OffsetMismatch(_)
                | ApiError::UploadNotFound
                | ApiError::UploadExpired
                | ApiError::UploadClosed(_)
                | ApiError::UploadTooLarge { .. }
                | ApiError::LengthExceeded(_)
                | ApiError::PayloadTooLarge { .. }
                | ApiError::VideoNotFound
                | ApiError::ChecksumAlgorithmUnsupported(_)
                | ApiError::ChecksumMismatch
                | ApiError::UploadLocked(_)
                | ApiError::FinalUploadNotPatchable
                | ApiError::InvalidConcat(_)
                | ApiError::InvalidLength(_)
                | ApiError::MetadataTooLarge { .. }
                | ApiError::MetadataTooManyKeys { .. }
                | ApiError::FilenameTooLong { .. }
                | ApiError::RouteNotFound
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::ProjectNotFound
                | ApiError::ProjectNameTaken(_)
                | ApiError::KeyNotFound
                | ApiError::UploadUrlExpired
                | ApiError::UploadUrlNotFound
                | ApiError::OriginNotAllowed(_)
                | ApiError::DirectUploadNotFound
                | ApiError::DirectUploadFinished(_)
                | ApiError::EventNotFound(_)
                | ApiError::WebhookNotFound
                | ApiError::WebhookLimitReached(_)
                | ApiError::QuotaExceeded(_)
                | ApiError::TooManyOpenUploads { .. }
                | ApiError::RateLimited { .. }
                | ApiError::InsufficientStorage(_)
                | ApiError::MethodNotAllowed
                | ApiError::Busy(_)
                | ApiError::Unavailable(_)
                | ApiError::Internal(_) => {}
            }
        }
        every
    }

    #[test]
    fn codes_lists_the_code_of_every_variant_once() {
        let codes: Vec<&str> = one_of_every_variant().iter().map(ApiError::code).collect();
        assert_eq!(codes, ApiError::CODES);
    }

    #[test]
    fn timeouts_and_broker_failures_are_unavailable() {
        for error in [
            CallError::Timeout,
            CallError::Unavailable("down".to_owned()),
        ] {
            let error = ApiError::from(error);
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(error.code(), "service_unavailable");
        }
    }

    #[test]
    fn a_reply_the_gateway_cannot_read_is_an_internal_error() {
        let error = ApiError::from(CallError::UnexpectedReply("another type".to_owned()));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code(), "internal");
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let body = ApiError::Internal(anyhow::anyhow!("password=hunter2")).body();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("hunter2"));
        let body = ApiError::Unavailable("amqp://secret".to_owned()).body();
        assert!(!body.message.contains("secret"));
        let body = ApiError::InsufficientStorage("/var/spool/r1 is full".to_owned()).body();
        assert_eq!(body.code, "insufficient_storage");
        assert!(!body.message.contains("spool"), "{}", body.message);
    }

    #[test]
    fn an_internal_uploader_failure_is_a_server_error_that_hides_its_cause() {
        let error = ApiError::from(CallError::Rejected(Reject::new(
            RejectCode::Internal,
            "constraint video_title violated",
        )));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let error = ApiError::from(CallError::Rejected(Reject::new(
            RejectCode::Internal,
            "constraint video_title violated",
        )));
        let body = error.body();
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("video_title"), "{}", body.message);
    }

    #[test]
    fn client_errors_name_the_offending_field() {
        let body = ApiError::invalid_header("Upload-Offset", "must be an integer").body();
        assert_eq!(body.field.as_deref(), Some("Upload-Offset"));
        let body = ApiError::validation("title", "is required").body();
        assert_eq!(body.code, "validation_failed");
        assert_eq!(body.field.as_deref(), Some("title"));
    }

    #[test]
    fn a_quota_refusal_says_when_to_retry() {
        let reject = Reject::new(RejectCode::RateLimited, "100 uploads this hour").retry_after(42);
        let response = ApiError::from(CallError::Rejected(reject)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("42")
        );
    }

    #[test]
    fn tus_version_error_announces_the_supported_version() {
        let response = ApiError::TusVersionUnsupported.into_response();
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            response
                .headers()
                .get(tus_names::TUS_VERSION)
                .and_then(|v| v.to_str().ok()),
            Some("1.0.0")
        );
    }
}
