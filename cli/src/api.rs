//! The public API of a vod server, as the command line uses it: tus at `/v1/uploads` and the
//! JSON video API. Every failure becomes a sentence a person can act on.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use vod_contracts::api::{ErrorBody, VideoList, VideoView};
use vod_contracts::VideoId;

pub const TUS_VERSION: &str = "1.0.0";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the vod server at {server}: {cause} (is it running? set --server or VOD_SERVER)")]
    Unreachable { server: String, cause: String },
    #[error("{0}")]
    Refused(Refusal),
    #[error("the server answered {status} without saying why")]
    Unexpected { status: StatusCode },
}

/// An error answer of the server, with its stable code.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match (self.status.as_u16(), self.code.as_str()) {
            (404, "video_not_found") => " (check the video id; `vod ls` lists them)",
            (404, "upload_not_found") | (410, _) => " (run the upload again to start over)",
            (413, _) => " (the file is larger than the server accepts)",
            (503, _) => " (the server is busy or one of its services is down; try again soon)",
            _ => "",
        };
        write!(f, "the server refused: {}", self.message)?;
        if let Some(field) = &self.field {
            write!(f, " [{field}]")?;
        }
        write!(f, " ({} {}){hint}", self.status.as_u16(), self.code)
    }
}

impl ApiError {
    /// The refusal's code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused(refusal) => Some(&refusal.code),
            _ => None,
        }
    }

    /// Worth trying again: the network or the server had a passing problem.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Refused(refusal) => {
                refusal.status.is_server_error() || refusal.code == "upload_locked"
            }
            ApiError::Unexpected { status } => status.is_server_error(),
        }
    }
}

#[derive(Clone)]
pub struct Api {
    pub server: String,
    http: reqwest::Client,
}

/// A created upload.
pub struct Created {
    pub location: String,
    pub video_id: Option<VideoId>,
}

/// Where an upload stands on the server.
pub struct UploadStatus {
    pub offset: u64,
}

impl Api {
    pub fn new(server: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()?;
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn unreachable(&self, error: reqwest::Error) -> ApiError {
        ApiError::Unreachable {
            server: self.server.clone(),
            cause: error.to_string(),
        }
    }

    pub async fn create_upload(&self, length: u64, metadata: &str) -> Result<Created, ApiError> {
        let response = self
            .http
            .post(self.url("/v1/uploads"))
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .map_err(|err| self.unreachable(err))?;
        let response = checked(response).await?;
        let location = header(&response, "location").ok_or(ApiError::Unexpected {
            status: response.status(),
        })?;
        Ok(Created {
            location: self.absolute(&location),
            video_id: header(&response, "video-id").and_then(|id| id.parse().ok()),
        })
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    pub async fn upload_status(&self, location: &str) -> Result<UploadStatus, ApiError> {
        let response = self
            .http
            .head(location)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .map_err(|err| self.unreachable(err))?;
        if !response.status().is_success() {
            // A HEAD answer has no body: name the usual cases.
            let status = response.status();
            let (code, message) = match status {
                StatusCode::NOT_FOUND => ("upload_not_found", "the upload no longer exists"),
                StatusCode::GONE => ("upload_expired", "the upload expired"),
                _ => return Err(ApiError::Unexpected { status }),
            };
            return Err(ApiError::Refused(Refusal {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
                field: None,
            }));
        }
        let offset = header(&response, "upload-offset")
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or(ApiError::Unexpected {
                status: response.status(),
            })?;
        Ok(UploadStatus { offset })
    }

    /// Sends `body` at `offset`; returns the server's new offset.
    pub async fn patch(
        &self,
        location: &str,
        offset: u64,
        checksum: &str,
        body: reqwest::Body,
    ) -> Result<u64, ApiError> {
        let response = self
            .http
            .patch(location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", offset.to_string())
            .header("Upload-Checksum", checksum)
            .body(body)
            .send()
            .await
            .map_err(|err| self.unreachable(err))?;
        let response = checked(response).await?;
        header(&response, "upload-offset")
            .and_then(|value| value.parse().ok())
            .ok_or(ApiError::Unexpected {
                status: response.status(),
            })
    }

    pub async fn video(&self, video_id: &str) -> Result<VideoView, ApiError> {
        let response = self
            .http
            .get(self.url(&format!("/v1/videos/{video_id}")))
            .send()
            .await
            .map_err(|err| self.unreachable(err))?;
        let response = checked(response).await?;
        let status = response.status();
        response
            .json()
            .await
            .map_err(|_| ApiError::Unexpected { status })
    }

    pub async fn videos(&self, limit: u32) -> Result<VideoList, ApiError> {
        let response = self
            .http
            .get(self.url(&format!("/v1/videos?limit={limit}")))
            .send()
            .await
            .map_err(|err| self.unreachable(err))?;
        let response = checked(response).await?;
        let status = response.status();
        response
            .json()
            .await
            .map_err(|_| ApiError::Unexpected { status })
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn checked(response: Response) -> Result<Response, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    match response.json::<ErrorBody>().await {
        Ok(body) => Err(ApiError::Refused(Refusal {
            status,
            code: body.code,
            message: body.message,
            field: body.field,
        })),
        Err(_) => Err(ApiError::Unexpected { status }),
    }
}
