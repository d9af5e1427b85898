//! The tus request headers as axum extractors, on the parsing of `tus.rs`: a handler names the
//! headers it reads, and a request that sends one malformed (or lacks a required one) is
//! refused with the same `ApiError` the parsing gives.
//!
//! Extractors run in the order of the handler's arguments, so that order is the order of the
//! checks, which decides which error a request with several faults gets. A header checked
//! only after something else (the upload read from the database, or only for some requests)
//! is taken as `Result<Header, ApiError>` and its error returned where it is due.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::tus::{self, Checksum, Concat, DeclaredLength};

/// Makes each header type an extractor through its `parse`.
macro_rules! extract_with_parse {
    ($($header:ty),* $(,)?) => {$(
        impl<S: Send + Sync> FromRequestParts<S> for $header {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
                Self::parse(&parts.headers)
            }
        }
    )*};
}

extract_with_parse!(
    TusResumable,
    OffsetOctetStream,
    UploadOffset,
    UploadLength,
    DeclaredUploadLength,
    UploadChecksum,
    UploadConcat,
    RawUploadMetadata,
    ContentLength,
);

/// The one value of `Tus-Resumable` (and `Tus-Version`) in the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum TusVersion {
    #[schema(rename = "1.0.0")]
    V1_0_0,
}

/// The one value of `Upload-Defer-Length` in the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum DeferLength {
    #[schema(rename = "1")]
    Deferred,
}

/// `Tus-Resumable: 1.0.0`, refused with 412 otherwise. `Option<TusResumable>` lets a request
/// without the header through and still refuses one naming another version.
#[derive(Debug)]
pub struct TusResumable;

impl TusResumable {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::require_tus_resumable(headers).map(|()| Self)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for TusResumable {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        if !parts.headers.contains_key(tus::TUS_RESUMABLE) {
            return Ok(None);
        }
        Self::parse(&parts.headers).map(Some)
    }
}

/// A body of type `application/offset+octet-stream`, refused with 415 otherwise (a `PATCH`).
/// `Option<OffsetOctetStream>` only tells whether the body is one (a creation carrying the
/// first bytes), and refuses nothing.
#[derive(Debug)]
pub struct OffsetOctetStream;

impl OffsetOctetStream {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        if !tus::has_offset_octet_stream_body(headers) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of a PATCH must be {}",
                tus::OFFSET_OCTET_STREAM
            )));
        }
        Ok(Self)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for OffsetOctetStream {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        Ok(tus::has_offset_octet_stream_body(&parts.headers).then_some(Self))
    }
}

/// `Upload-Offset`: required, a non-negative integer.
#[derive(Debug)]
pub struct UploadOffset(pub u64);

impl UploadOffset {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::required_u64(headers, &tus::UPLOAD_OFFSET, "Upload-Offset").map(Self)
    }
}

/// `Upload-Length`, if sent: a non-negative integer (a `PATCH` declaring a deferred length).
#[derive(Debug)]
pub struct UploadLength(pub Option<u64>);

impl UploadLength {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::optional_u64(headers, &tus::UPLOAD_LENGTH, "Upload-Length").map(Self)
    }
}

/// The length a creation declares: `Upload-Length`, or `Upload-Defer-Length: 1`, exactly one.
#[derive(Debug)]
pub struct DeclaredUploadLength(pub DeclaredLength);

impl DeclaredUploadLength {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::declared_length(headers).map(Self)
    }
}

/// `Upload-Checksum`, if sent: a supported algorithm and a digest of its size.
#[derive(Debug)]
pub struct UploadChecksum(pub Option<Checksum>);

impl UploadChecksum {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::checksum(headers).map(Self)
    }
}

/// `Upload-Concat`, if sent: `partial`, or `final;` and the partial uploads' URLs.
#[derive(Debug)]
pub struct UploadConcat(pub Option<Concat>);

impl UploadConcat {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::concat(headers).map(Self)
    }
}

/// `Upload-Metadata` as sent, if sent, for the upload to keep and give back; it must be ASCII.
/// Its keys are read by `tus::UploadMetadata::from_header`.
#[derive(Debug)]
pub struct RawUploadMetadata(pub Option<String>);

impl RawUploadMetadata {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        headers
            .get(tus::UPLOAD_METADATA)
            .map(|value| {
                value.to_str().map(str::to_owned).map_err(|_| {
                    ApiError::invalid_header("Upload-Metadata", "Upload-Metadata must be ASCII")
                })
            })
            .transpose()
            .map(Self)
    }
}

/// `Content-Length`, if sent: a non-negative integer.
#[derive(Debug)]
pub struct ContentLength(pub Option<u64>);

impl ContentLength {
    fn parse(headers: &HeaderMap) -> Result<Self, ApiError> {
        tus::content_length(headers).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use axum::http::{HeaderName, HeaderValue, Request};
    use base64::Engine;

    use super::*;
    use crate::tus::ChecksumAlgorithm;

    /// Headers as a request sends them, in order.
    type Sent<'a> = [(HeaderName, &'a [u8])];

    fn parts(headers: &Sent) -> Parts {
        let mut request = Request::new(());
        for (name, value) in headers {
            let value = HeaderValue::from_bytes(value).expect("header value");
            request.headers_mut().append(name.clone(), value);
        }
        request.into_parts().0
    }

    fn extract<T: FromRequestParts<(), Rejection = ApiError>>(
        headers: &Sent,
    ) -> impl Future<Output = Result<T, ApiError>> {
        let mut parts = parts(headers);
        async move { T::from_request_parts(&mut parts, &()).await }
    }

    /// The status, `code`, offending header and message of a refusal.
    fn refusal<T: std::fmt::Debug>(
        extracted: Result<T, ApiError>,
    ) -> (u16, &'static str, Option<&'static str>, String) {
        let error = extracted.expect_err("refused");
        let header = match &error {
            ApiError::InvalidHeader { header, .. } => Some(*header),
            _ => None,
        };
        (
            error.status().as_u16(),
            error.code(),
            header,
            error.to_string(),
        )
    }

    #[tokio::test]
    async fn tus_resumable_must_name_1_0_0() {
        assert!(extract::<TusResumable>(&[(tus::TUS_RESUMABLE, b"1.0.0")])
            .await
            .is_ok());
        for sent in [&[(tus::TUS_RESUMABLE, &b"0.2.2"[..])][..], &[]] {
            assert_eq!(
                refusal(extract::<TusResumable>(sent).await),
                (
                    412,
                    "tus_version_unsupported",
                    None,
                    "only tus 1.0.0 is supported".to_owned()
                )
            );
        }
    }

    #[tokio::test]
    async fn tus_resumable_when_optional_is_checked_only_when_sent() {
        let absent = extract::<Option<TusResumable>>(&[]).await;
        assert!(matches!(absent, Ok(None)));
        let right = extract::<Option<TusResumable>>(&[(tus::TUS_RESUMABLE, b"1.0.0")]).await;
        assert!(matches!(right, Ok(Some(TusResumable))));
        let wrong = extract::<Option<TusResumable>>(&[(tus::TUS_RESUMABLE, b"1.0")]).await;
        assert_eq!(refusal(wrong).1, "tus_version_unsupported");
    }

    #[tokio::test]
    async fn the_body_must_be_offset_octet_stream() {
        for accepted in [
            &b"application/offset+octet-stream"[..],
            b"Application/Offset+Octet-Stream; charset=binary",
        ] {
            assert!(extract::<OffsetOctetStream>(&[(CONTENT_TYPE, accepted)])
                .await
                .is_ok());
            let optional = extract::<Option<OffsetOctetStream>>(&[(CONTENT_TYPE, accepted)]);
            assert!(matches!(optional.await, Ok(Some(_))));
        }
        for refused in [&[(CONTENT_TYPE, &b"application/octet-stream"[..])][..], &[]] {
            assert_eq!(
                refusal(extract::<OffsetOctetStream>(refused).await),
                (
                    415,
                    "unsupported_media_type",
                    None,
                    "the body of a PATCH must be application/offset+octet-stream".to_owned()
                )
            );
            let optional = extract::<Option<OffsetOctetStream>>(refused).await;
            assert!(matches!(optional, Ok(None)));
        }
    }

    #[tokio::test]
    async fn upload_offset_is_a_required_non_negative_integer() {
        let offset = extract::<UploadOffset>(&[(tus::UPLOAD_OFFSET, b"1024")]).await;
        assert!(matches!(offset, Ok(UploadOffset(1024))));
        let invalid = (
            400,
            "invalid_header",
            Some("Upload-Offset"),
            "Upload-Offset must be a non-negative integer".to_owned(),
        );
        for refused in [&b"-1"[..], b"+5", b"1.5", b"", b"99999999999999999999999"] {
            let offset = extract::<UploadOffset>(&[(tus::UPLOAD_OFFSET, refused)]).await;
            assert_eq!(refusal(offset), invalid);
        }
        assert_eq!(
            refusal(extract::<UploadOffset>(&[]).await),
            (
                400,
                "invalid_header",
                Some("Upload-Offset"),
                "Upload-Offset is required".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn upload_length_is_optional_but_an_integer_when_sent() {
        let length = extract::<UploadLength>(&[(tus::UPLOAD_LENGTH, b"5")]).await;
        assert!(matches!(length, Ok(UploadLength(Some(5)))));
        assert!(matches!(
            extract::<UploadLength>(&[]).await,
            Ok(UploadLength(None))
        ));
        assert_eq!(
            refusal(extract::<UploadLength>(&[(tus::UPLOAD_LENGTH, b"five")]).await),
            (
                400,
                "invalid_header",
                Some("Upload-Length"),
                "Upload-Length must be a non-negative integer".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn a_creation_declares_a_length_or_defers_it_but_not_both() {
        let known = extract::<DeclaredUploadLength>(&[(tus::UPLOAD_LENGTH, b"5")]).await;
        assert!(matches!(
            known,
            Ok(DeclaredUploadLength(DeclaredLength::Known(5)))
        ));
        let deferred = extract::<DeclaredUploadLength>(&[(tus::UPLOAD_DEFER_LENGTH, b"1")]).await;
        assert!(matches!(
            deferred,
            Ok(DeclaredUploadLength(DeclaredLength::Deferred))
        ));
        let cases: [(&Sent, &str, &str); 4] = [
            (
                &[(tus::UPLOAD_DEFER_LENGTH, b"yes")],
                "Upload-Defer-Length",
                "Upload-Defer-Length must be 1",
            ),
            (
                &[(tus::UPLOAD_LENGTH, b"5"), (tus::UPLOAD_DEFER_LENGTH, b"1")],
                "Upload-Defer-Length",
                "send either Upload-Length or Upload-Defer-Length, not both",
            ),
            (
                &[
                    (tus::UPLOAD_LENGTH, b"-5"),
                    (tus::UPLOAD_DEFER_LENGTH, b"1"),
                ],
                "Upload-Length",
                "Upload-Length must be a non-negative integer",
            ),
            (
                &[],
                "Upload-Length",
                "Upload-Length is required (or Upload-Defer-Length: 1)",
            ),
        ];
        for (sent, header, message) in cases {
            assert_eq!(
                refusal(extract::<DeclaredUploadLength>(sent).await),
                (400, "invalid_header", Some(header), message.to_owned())
            );
        }
    }

    #[tokio::test]
    async fn upload_checksum_names_a_supported_algorithm_and_a_digest_of_its_size() {
        let digest = ChecksumAlgorithm::Sha256.hasher().finalize();
        let value = format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(&digest)
        );
        let checksum = extract::<UploadChecksum>(&[(tus::UPLOAD_CHECKSUM, value.as_bytes())])
            .await
            .expect("accepted");
        assert_eq!(
            checksum.0,
            Some(Checksum {
                algorithm: ChecksumAlgorithm::Sha256,
                digest
            })
        );
        assert!(matches!(
            extract::<UploadChecksum>(&[]).await,
            Ok(UploadChecksum(None))
        ));
        let unsupported = extract::<UploadChecksum>(&[(tus::UPLOAD_CHECKSUM, b"crc32 AAAAAA==")]);
        assert_eq!(
            refusal(unsupported.await),
            (
                400,
                "checksum_algorithm_unsupported",
                None,
                "checksum algorithm \"crc32\" is not supported; use one of sha1,sha256,sha512,md5"
                    .to_owned()
            )
        );
        for (sent, message) in [
            (
                &b"sha1"[..],
                "Upload-Checksum must be an algorithm and a base64 digest",
            ),
            (b"sha1 !!!", "the Upload-Checksum digest is not base64"),
            (b"sha256 YWJj", "a sha256 digest is 32 bytes, not 3"),
            (b"sha1 \xff", "Upload-Checksum must be ASCII"),
        ] {
            assert_eq!(
                refusal(extract::<UploadChecksum>(&[(tus::UPLOAD_CHECKSUM, sent)]).await),
                (
                    400,
                    "invalid_header",
                    Some("Upload-Checksum"),
                    message.to_owned()
                )
            );
        }
    }

    #[tokio::test]
    async fn upload_concat_is_partial_or_final_with_urls() {
        let partial = extract::<UploadConcat>(&[(tus::UPLOAD_CONCAT, b"partial")]).await;
        assert!(matches!(partial, Ok(UploadConcat(Some(Concat::Partial)))));
        let value = b"final;/v1/uploads/a http://h/v1/uploads/b";
        let UploadConcat(Some(Concat::Final(urls))) =
            extract::<UploadConcat>(&[(tus::UPLOAD_CONCAT, value)])
                .await
                .expect("accepted")
        else {
            panic!("a final upload");
        };
        assert_eq!(urls, ["/v1/uploads/a", "http://h/v1/uploads/b"]);
        assert!(matches!(
            extract::<UploadConcat>(&[]).await,
            Ok(UploadConcat(None))
        ));
        for (sent, message) in [
            (
                &b"whole"[..],
                "Upload-Concat must be \"partial\" or \"final;\" followed by upload URLs",
            ),
            (
                b"final;",
                "a final upload names at least one partial upload",
            ),
        ] {
            assert_eq!(
                refusal(extract::<UploadConcat>(&[(tus::UPLOAD_CONCAT, sent)]).await),
                (
                    400,
                    "invalid_header",
                    Some("Upload-Concat"),
                    message.to_owned()
                )
            );
        }
    }

    #[tokio::test]
    async fn upload_metadata_is_kept_as_sent_when_ascii() {
        let raw = extract::<RawUploadMetadata>(&[(tus::UPLOAD_METADATA, b"filename YS5tcDQ=")]);
        assert_eq!(
            raw.await.expect("ascii").0.as_deref(),
            Some("filename YS5tcDQ=")
        );
        assert!(matches!(
            extract::<RawUploadMetadata>(&[]).await,
            Ok(RawUploadMetadata(None))
        ));
        let not_ascii = extract::<RawUploadMetadata>(&[(tus::UPLOAD_METADATA, b"title \xe9")]);
        assert_eq!(
            refusal(not_ascii.await),
            (
                400,
                "invalid_header",
                Some("Upload-Metadata"),
                "Upload-Metadata must be ASCII".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn content_length_is_optional_but_an_integer_when_sent() {
        let length = extract::<ContentLength>(&[(CONTENT_LENGTH, b"10")]).await;
        assert!(matches!(length, Ok(ContentLength(Some(10)))));
        assert!(matches!(
            extract::<ContentLength>(&[]).await,
            Ok(ContentLength(None))
        ));
        assert_eq!(
            refusal(extract::<ContentLength>(&[(CONTENT_LENGTH, b"ten")]).await).2,
            Some("Content-Length")
        );
    }
}
