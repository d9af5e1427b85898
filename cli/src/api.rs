//! The public API of a vod server, as the command line uses it: tus at `/v1/uploads`, the
//! JSON video API, API keys and usage. Every request carries the API key; every failure becomes
//! a sentence a person can act on.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use vod_contracts::access::{KeyCreated, KeyList, Scope};
use vod_contracts::api::{ErrorBody, VideoList, VideoView};
use vod_contracts::direct_upload::{DirectUploadCreated, DirectUploadList};
use vod_contracts::event::EventList;
use vod_contracts::webhook::{
    DeliveryList, DeliveryQueued, SecretRotated, WebhookCreated, WebhookList,
};
use vod_contracts::{ApiKeyId, DirectUploadId, VideoId, WebhookId};

use crate::api_key::{self, ApiKey};

pub const TUS_VERSION: &str = "1.0.0";
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the vod server at {server}: {cause} (is it running? set --server or VOD_SERVER)")]
    Unreachable { server: String, cause: String },
    #[error("{0}")]
    Refused(Refusal),
    #[error("{0}")]
    KeyRefused(KeyRefusal),
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
            (404, "key_not_found") => " (check the key id; `vod keys ls` lists them)",
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

/// The gateway refused the API key (401), or the key may not do what was asked (403). The
/// server's own words are kept; the key itself is never part of it.
#[derive(Debug)]
pub struct KeyRefusal {
    pub status: StatusCode,
    pub code: String,
    /// Whether a key was sent at all.
    pub key_given: bool,
}

impl std::fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.as_u16();
        match (status, self.key_given) {
            (401, false) => write!(
                f,
                "the server requires an API key ({status} {}): set VOD_API_KEY or --api-key",
                self.code
            ),
            (401, true) => write!(
                f,
                "the API key was refused ({status} {}): it is unknown, malformed or revoked; \
                 set VOD_API_KEY or --api-key to a valid key",
                self.code
            ),
            _ => write!(
                f,
                "the API key may not do this ({status} {}): looking needs the read scope, \
                 anything else the write scope (`vod keys create --scope read --scope write`)",
                self.code
            ),
        }
    }
}

impl ApiError {
    /// The refusal's code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused(refusal) => Some(&refusal.code),
            ApiError::KeyRefused(refusal) => Some(&refusal.code),
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
            ApiError::KeyRefused(_) => false,
            ApiError::Unexpected { status } => status.is_server_error(),
        }
    }
}

/// A gateway, and the key every request to it carries (inside `http`'s default headers, marked
/// sensitive: `Debug` does not show it).
#[derive(Clone, Debug)]
pub struct Api {
    pub server: String,
    http: reqwest::Client,
    key_given: bool,
}

/// A created upload.
pub struct Created {
    pub location: String,
    pub video_id: Option<VideoId>,
}

/// Where an upload stands on the server.
#[derive(Debug)]
pub struct UploadStatus {
    pub offset: u64,
}

impl Api {
    pub fn new(server: &str, timeout: Duration, key: Option<&ApiKey>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .default_headers(api_key::default_headers(key)?)
            .build()?;
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            http,
            key_given: key.is_some(),
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
            .send(
                self.http
                    .post(self.url("/v1/uploads"))
                    .header("Tus-Resumable", TUS_VERSION)
                    .header("Upload-Length", length.to_string())
                    .header("Upload-Metadata", metadata),
            )
            .await?;
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
            if let Some(refusal) = self.key_refusal(status, None) {
                return Err(refusal);
            }
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
            .send(
                self.http
                    .patch(location)
                    .header("Tus-Resumable", TUS_VERSION)
                    .header("Content-Type", OFFSET_OCTET_STREAM)
                    .header("Upload-Offset", offset.to_string())
                    .header("Upload-Checksum", checksum)
                    .body(body),
            )
            .await?;
        header(&response, "upload-offset")
            .and_then(|value| value.parse().ok())
            .ok_or(ApiError::Unexpected {
                status: response.status(),
            })
    }

    pub async fn video(&self, video_id: &str) -> Result<VideoView, ApiError> {
        self.json(self.http.get(self.url(&format!("/v1/videos/{video_id}"))))
            .await
    }

    pub async fn videos(&self, limit: u32) -> Result<VideoList, ApiError> {
        self.json(
            self.http
                .get(self.url(&format!("/v1/videos?limit={limit}"))),
        )
        .await
    }

    /// `DELETE /v1/videos/{id}`: the video, its uploads and its presentation.
    pub async fn delete_video(&self, video_id: VideoId) -> Result<(), ApiError> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/videos/{video_id}"))),
        )
        .await
        .map(drop)
    }

    pub async fn create_key(&self, name: &str, scopes: &[Scope]) -> Result<KeyCreated, ApiError> {
        let body = serde_json::json!({ "name": name, "scopes": scopes });
        self.json(self.http.post(self.url("/v1/keys")).json(&body))
            .await
    }

    pub async fn keys(&self) -> Result<KeyList, ApiError> {
        self.json(self.http.get(self.url("/v1/keys"))).await
    }

    pub async fn revoke_key(&self, key_id: ApiKeyId) -> Result<(), ApiError> {
        self.send(self.http.delete(self.url(&format!("/v1/keys/{key_id}"))))
            .await
            .map(drop)
    }

    pub async fn create_direct_upload(
        &self,
        request: &serde_json::Value,
    ) -> Result<DirectUploadCreated, ApiError> {
        self.json(self.http.post(self.url("/v1/direct-uploads")).json(request))
            .await
    }

    pub async fn direct_uploads(&self) -> Result<DirectUploadList, ApiError> {
        self.json(self.http.get(self.url("/v1/direct-uploads?limit=100")))
            .await
    }

    pub async fn cancel_direct_upload(&self, id: DirectUploadId) -> Result<(), ApiError> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/direct-uploads/{id}"))),
        )
        .await
        .map(drop)
    }

    /// `GET /v1/events`: a page of events after `after` (from the oldest kept without it),
    /// of the types in `types` (every type when empty).
    pub async fn events(
        &self,
        after: Option<&str>,
        types: &[String],
        limit: u32,
    ) -> Result<EventList, ApiError> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if !types.is_empty() {
            query.push(("type", types.join(",")));
        }
        self.json(self.http.get(self.url("/v1/events")).query(&query))
            .await
    }

    pub async fn create_webhook(
        &self,
        request: &serde_json::Value,
    ) -> Result<WebhookCreated, ApiError> {
        self.json(self.http.post(self.url("/v1/webhooks")).json(request))
            .await
    }

    pub async fn webhooks(&self) -> Result<WebhookList, ApiError> {
        self.json(self.http.get(self.url("/v1/webhooks"))).await
    }

    pub async fn delete_webhook(&self, id: WebhookId) -> Result<(), ApiError> {
        self.send(self.http.delete(self.url(&format!("/v1/webhooks/{id}"))))
            .await
            .map(drop)
    }

    /// `POST /v1/webhooks/{id}/test`: a ping, queued.
    pub async fn test_webhook(&self, id: WebhookId) -> Result<DeliveryQueued, ApiError> {
        self.json(self.http.post(self.url(&format!("/v1/webhooks/{id}/test"))))
            .await
    }

    pub async fn rotate_webhook_secret(
        &self,
        id: WebhookId,
        overlap_seconds: Option<u64>,
    ) -> Result<SecretRotated, ApiError> {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/webhooks/{id}/rotate-secret")));
        if let Some(overlap) = overlap_seconds {
            request = request.query(&[("overlap_seconds", overlap)]);
        }
        self.json(request).await
    }

    /// The newest `limit` deliveries to the endpoint, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: WebhookId,
        limit: u32,
    ) -> Result<DeliveryList, ApiError> {
        self.json(
            self.http
                .get(self.url(&format!("/v1/webhooks/{id}/deliveries")))
                .query(&[("limit", limit)]),
        )
        .await
    }

    /// `GET /v1/usage`, as the server wrote it: the command prints every counter it gives.
    pub async fn usage(&self) -> Result<serde_json::Value, ApiError> {
        self.json(self.http.get(self.url("/v1/usage"))).await
    }

    /// Sends the request; an answer other than a success is an error.
    async fn send(&self, request: RequestBuilder) -> Result<Response, ApiError> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.json::<ErrorBody>().await.ok();
        if let Some(refusal) = self.key_refusal(status, body.as_ref()) {
            return Err(refusal);
        }
        match body {
            Some(body) => Err(ApiError::Refused(Refusal {
                status,
                code: body.code,
                message: body.message,
                field: body.field,
            })),
            None => Err(ApiError::Unexpected { status }),
        }
    }

    /// Sends the request and reads its JSON answer.
    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ApiError> {
        let response = self.send(request).await?;
        let status = response.status();
        response
            .json()
            .await
            .map_err(|_| ApiError::Unexpected { status })
    }

    /// A 401, or a 403 for want of a scope (not tus's 403 for a final upload), refuses the key.
    fn key_refusal(&self, status: StatusCode, body: Option<&ErrorBody>) -> Option<ApiError> {
        let code = match (status, body) {
            (StatusCode::UNAUTHORIZED, Some(body)) => body.code.clone(),
            (StatusCode::UNAUTHORIZED, None) => "unauthorized".to_owned(),
            (StatusCode::FORBIDDEN, Some(body)) if body.code == "forbidden" => body.code.clone(),
            (StatusCode::FORBIDDEN, None) => "forbidden".to_owned(),
            _ => return None,
        };
        Some(ApiError::KeyRefused(KeyRefusal {
            status,
            code,
            key_given: self.key_given,
        }))
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const KEY: &str =
        "vod_0123456789abcdef0123456789abcdef_secretsecretsecretsecretsecretsecretsec";

    /// An HTTP/1.1 server on a real socket that records each request's head and answers from
    /// a table: enough to see what the client sends, and how it tells the answers.
    async fn recording_server() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let head_end = loop {
                        let read = socket.read(&mut buffer).await.expect("read");
                        assert!(read > 0, "the request ended early");
                        received.extend_from_slice(&buffer[..read]);
                        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while received.len() < head_end + length {
                        let read = socket.read(&mut buffer).await.expect("read body");
                        assert!(read > 0, "the body ended early");
                        received.extend_from_slice(&buffer[..read]);
                    }
                    let answer = answer(head.lines().next().unwrap_or_default());
                    recorded.lock().expect("heads").push(head);
                    socket.write_all(answer.as_bytes()).await.expect("answer");
                    let _ = socket.shutdown().await;
                });
            }
        });
        (address, heads)
    }

    fn answer(request_line: &str) -> String {
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let json = |status: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let bare = |status: &str, headers: &str| {
            format!("HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n")
        };
        let key_created = format!(
            r#"{{"id":"{}","key":"vod_new","scopes":["read"],"name":"ci","created_at":"2024-05-01T10:00:00Z"}}"#,
            ApiKeyId::new()
        );
        match (method, path) {
            ("POST", "/v1/uploads") => bare(
                "201 Created",
                &format!(
                    "location: /v1/uploads/one\r\nvideo-id: {}\r\n",
                    VideoId::new()
                ),
            ),
            ("HEAD", "/v1/uploads/one") => bare("200 OK", "upload-offset: 0\r\n"),
            ("HEAD", "/v1/uploads/refused") => bare("401 Unauthorized", ""),
            ("PATCH", "/v1/uploads/one") => bare("204 No Content", "upload-offset: 5\r\n"),
            ("GET", "/v1/videos?limit=3") => json("200 OK", r#"{"videos":[]}"#),
            ("GET", "/v1/keys") => json("200 OK", r#"{"keys":[]}"#),
            ("POST", "/v1/keys") => json("201 Created", &key_created),
            ("GET", "/v1/usage") => json("200 OK", r#"{"bytes_received":3}"#),
            ("DELETE", path) if path.starts_with("/v1/keys/") => bare("204 No Content", ""),
            ("DELETE", path) if path.starts_with("/v1/videos/") => json(
                "403 Forbidden",
                r#"{"code":"forbidden","message":"this key lacks the write scope"}"#,
            ),
            _ => json(
                "401 Unauthorized",
                r#"{"code":"unauthorized","message":"a valid API key is required"}"#,
            ),
        }
    }

    fn key() -> ApiKey {
        ApiKey::parse(KEY).unwrap_or_else(|never| match never {})
    }

    #[tokio::test]
    async fn every_request_carries_the_key_tus_ones_included() {
        let (server, heads) = recording_server().await;
        let api = Api::new(&server, Duration::from_secs(5), Some(&key())).expect("client");

        let created = api
            .create_upload(5, "filename YQ==")
            .await
            .expect("created");
        assert_eq!(created.location, format!("{server}/v1/uploads/one"));
        assert_eq!(
            api.upload_status(&created.location)
                .await
                .expect("head")
                .offset,
            0
        );
        let offset = api
            .patch(
                &created.location,
                0,
                "sha256 x",
                reqwest::Body::from("abcde"),
            )
            .await
            .expect("patch");
        assert_eq!(offset, 5);
        assert!(api.videos(3).await.expect("videos").videos.is_empty());
        assert!(api.keys().await.expect("keys").keys.is_empty());
        let made = api
            .create_key("ci", &[Scope::Read])
            .await
            .expect("key made");
        assert_eq!(made.scopes, [Scope::Read]);
        api.revoke_key(ApiKeyId::new()).await.expect("revoked");
        assert_eq!(api.usage().await.expect("usage")["bytes_received"], 3);

        let heads = heads.lock().expect("heads").clone();
        assert_eq!(heads.len(), 8, "{heads:#?}");
        for head in &heads {
            let authorization = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                .map(|(_, value)| value.trim())
                .collect::<Vec<_>>();
            assert_eq!(authorization, [format!("Bearer {KEY}")], "{head}");
        }
        let create_key = heads
            .iter()
            .find(|head| head.starts_with("POST /v1/keys"))
            .expect("POST /v1/keys");
        assert!(create_key.contains("application/json"), "{create_key}");
    }

    #[tokio::test]
    async fn a_refused_key_is_told_plainly_and_never_quoted() {
        let (server, _) = recording_server().await;
        let api = Api::new(&server, Duration::from_secs(5), Some(&key())).expect("client");

        let refused = api
            .video(&VideoId::new().to_string())
            .await
            .expect_err("401");
        assert_eq!(refused.code(), Some("unauthorized"));
        assert!(!refused.is_transient());
        let said = refused.to_string();
        assert!(
            said.starts_with("the API key was refused (401 unauthorized)")
                && said.contains("VOD_API_KEY"),
            "{said}"
        );

        let head = api
            .upload_status(&format!("{server}/v1/uploads/refused"))
            .await
            .expect_err("401 without a body");
        assert!(head
            .to_string()
            .starts_with("the API key was refused (401 unauthorized)"));

        let scope = api.delete_video(VideoId::new()).await.expect_err("403");
        let said = scope.to_string();
        assert!(
            said.contains("(403 forbidden)") && said.contains("write scope"),
            "{said}"
        );

        for said in [
            refused.to_string(),
            head.to_string(),
            said,
            format!("{scope:?}"),
        ] {
            assert!(!said.contains("secretsecret"), "{said}");
        }

        let keyless = Api::new(&server, Duration::from_secs(5), None).expect("client");
        let said = keyless.videos(1).await.expect_err("401").to_string();
        assert!(
            said.starts_with("the server requires an API key (401 unauthorized)"),
            "{said}"
        );
    }

    #[tokio::test]
    async fn a_tus_403_is_not_taken_for_a_refused_key() {
        let api =
            Api::new("http://127.0.0.1:9", Duration::from_secs(1), Some(&key())).expect("client");
        let body = ErrorBody {
            code: "final_upload_not_patchable".to_owned(),
            message: "a final upload cannot be patched".to_owned(),
            field: None,
        };
        assert!(api
            .key_refusal(StatusCode::FORBIDDEN, Some(&body))
            .is_none());
        assert!(api.key_refusal(StatusCode::NOT_FOUND, None).is_none());
        assert!(api.key_refusal(StatusCode::FORBIDDEN, None).is_some());
    }
}
