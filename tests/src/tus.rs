//! A minimal tus client for the tests, speaking the protocol by hand so tests can also speak it
//! wrongly on purpose.

use base64::Engine;
use reqwest::{Response, StatusCode};
use vod_contracts::{SessionId, VideoId};

use crate::Stack;

pub const TUS_VERSION: &str = "1.0.0";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// `Upload-Metadata` from key/value pairs.
pub fn metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{key} {}",
                base64::engine::general_purpose::STANDARD.encode(value)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A created upload.
#[derive(Clone, Debug)]
pub struct Upload {
    pub location: String,
    pub video_id: VideoId,
    pub session_id: SessionId,
}

impl Stack {
    /// tus creation; panics unless the gateway answers 201.
    pub async fn create_upload(&self, length: u64, filename: &str) -> Upload {
        let response = self
            .http
            .post(self.url("/v1/uploads"))
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Length", length.to_string())
            .header(
                "Upload-Metadata",
                metadata(&[("filename", filename), ("title", filename)]),
            )
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        upload_from_creation(&response)
    }

    pub async fn patch(&self, location: &str, offset: u64, body: Vec<u8>) -> Response {
        self.http
            .patch(location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", offset.to_string())
            .body(body)
            .send()
            .await
            .expect("gateway answers")
    }

    /// The server's offset of an upload, from `HEAD`.
    pub async fn offset(&self, location: &str) -> u64 {
        let response = self
            .http
            .head(location)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), StatusCode::OK, "HEAD {location}");
        header_u64(&response, "upload-offset")
    }

    /// Uploads `bytes` in `pieces` PATCH requests and returns the upload.
    pub async fn upload_in_pieces(&self, bytes: &[u8], filename: &str, pieces: usize) -> Upload {
        let upload = self.create_upload(bytes.len() as u64, filename).await;
        let piece_len = bytes.len().div_ceil(pieces.max(1));
        let mut offset = 0usize;
        for piece in bytes.chunks(piece_len.max(1)) {
            let response = self
                .patch(&upload.location, offset as u64, piece.to_vec())
                .await;
            assert_eq!(
                response.status(),
                StatusCode::NO_CONTENT,
                "PATCH at {offset}"
            );
            offset += piece.len();
            assert_eq!(header_u64(&response, "upload-offset"), offset as u64);
        }
        upload
    }
}

fn upload_from_creation(response: &Response) -> Upload {
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("Location header")
        .to_owned();
    let video_id = response
        .headers()
        .get("video-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Video-Id header");
    let session_id = location
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("upload id at the end of Location");
    Upload {
        location,
        video_id,
        session_id,
    }
}

/// A `PATCH` of `body` at `offset` whose body is trickled in frames of `frame_bytes`, a pause
/// before each, so that the request is in flight most of the time (what a fault test needs to
/// cut one in the middle).
pub async fn trickled_patch(
    http: &reqwest::Client,
    location: &str,
    offset: u64,
    body: bytes::Bytes,
    frame_bytes: usize,
) -> reqwest::Result<Response> {
    let length = body.len();
    let frames = futures_util::stream::unfold(body, move |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let frame = rest.split_to(frame_bytes.min(rest.len()));
        Some((Ok::<_, std::io::Error>(frame), rest))
    });
    http.patch(location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", offset.to_string())
        .header("Content-Length", length.to_string())
        .body(reqwest::Body::wrap_stream(frames))
        .send()
        .await
}

pub fn header_u64(response: &Response, name: &str) -> u64 {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} header missing or not a number"))
}
