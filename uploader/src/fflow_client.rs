//! HTTP calls to fflow replicas (see `vod_contracts::fflow`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use vod_contracts::fflow::{
    chunks_path, finish_path, session_path, video_path, ChunkWritten, CreateProcess, FflowError,
    FflowErrorCode, FinishProcess, ProcessCreated, PROCESSES_PATH,
};
use vod_contracts::{SessionId, VideoId};

#[derive(Debug, thiserror::Error)]
pub enum FflowCallError {
    #[error("fflow at {url} could not be reached: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("fflow at {url} answered {status} {code}: {message}")]
    Refused {
        url: String,
        status: u16,
        code: FflowErrorCode,
        message: String,
    },
}

impl FflowCallError {
    /// True when the error says the replica may have lost the session's bytes: no connection
    /// to it can be opened, or it answers that it holds no such session (restarted without its
    /// spool). A replica that is slow, or that answers anything else, still has the session.
    pub fn may_be_lost(&self) -> bool {
        match self {
            FflowCallError::Unreachable { source, .. } => source.is_connect(),
            FflowCallError::Refused { status, code, .. } => {
                *status == 404 && *code == FflowErrorCode::SessionNotFound
            }
        }
    }

    /// fflow saw a write under a later fencing token than this one's: the write lock passed to
    /// another request while the chunk was on its way.
    pub fn is_stale_writer(&self) -> bool {
        matches!(
            self,
            FflowCallError::Refused {
                status: 409,
                code: FflowErrorCode::StaleWriter,
                ..
            }
        )
    }

    /// The replica's spool is down to its free-space reserve: it took nothing of the chunk (or
    /// created no session), and may take it once space is freed.
    pub fn is_insufficient_storage(&self) -> bool {
        matches!(
            self,
            FflowCallError::Refused {
                code: FflowErrorCode::InsufficientStorage,
                ..
            }
        )
    }

    /// fflow, or holder behind it, could not do the work now (503 from fflow, 504 from a
    /// reverse proxy in front of it); asking again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Refused { status, .. } => matches!(status, 503 | 504),
        }
    }
}

/// The bytes of a chunk sent to fflow.
pub enum ChunkPayload {
    /// Held whole: the call has the client's timeout.
    Whole(Bytes),
    /// Passed on as it arrives, at the pace of whoever sends it, so the call may take up to
    /// `timeout`.
    Streamed {
        body: reqwest::Body,
        timeout: Duration,
    },
}

pub struct FflowClient {
    http: reqwest::Client,
    default_urls: Vec<String>,
    next_default: AtomicUsize,
}

impl FflowClient {
    /// Every call carries `token`, which fflow's internal routes ask for.
    pub fn new(
        default_urls: Vec<String>,
        token: &SecretString,
        timeout: Duration,
        connect_timeout: Duration,
        pool_idle_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .context("UPLOADER_FFLOW_TOKEN is not a valid header value")?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .default_headers(HeaderMap::from_iter([(
                reqwest::header::AUTHORIZATION,
                authorization,
            )]))
            // fflow never redirects; the token goes to no other address.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(pool_idle_timeout)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            default_urls,
            next_default: AtomicUsize::new(0),
        })
    }

    /// Asks the default addresses, starting from a different one each call, until one replica
    /// creates the process; returns that replica's own address.
    pub async fn create_process(
        &self,
        request: &CreateProcess,
    ) -> Result<ProcessCreated, FflowCallError> {
        let start = self.next_default.fetch_add(1, Ordering::Relaxed);
        let count = self.default_urls.len();
        let mut last_error = None;
        for index in 0..count {
            let base = &self.default_urls[(start + index) % count];
            let url = format!("{}/{PROCESSES_PATH}", base.trim_end_matches('/'));
            let result = self.http.post(&url).json(request).send().await;
            match read_json::<ProcessCreated>(&url, result).await {
                Ok(created) => return Ok(created),
                Err(error) => {
                    tracing::warn!(url = %url, error = %error, "fflow did not create a process");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| FflowCallError::Refused {
            url: String::new(),
            status: 0,
            code: FflowErrorCode::Other("no_fflow_configured".to_owned()),
            message: "no fflow address is configured".to_owned(),
        }))
    }

    /// Asks the default addresses in turn until one replica has removed everything published
    /// for the video from holder. fflow answers success when nothing was there.
    pub async fn remove_video(
        &self,
        video_id: VideoId,
        timeout: Duration,
    ) -> Result<(), FflowCallError> {
        let mut last_error = None;
        for base in &self.default_urls {
            let url = format!("{}/{}", base.trim_end_matches('/'), video_path(video_id));
            let result = self.http.delete(&url).timeout(timeout).send().await;
            match check_status(&url, result).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(url = %url, error = %error, "fflow did not remove a video");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| FflowCallError::Refused {
            url: String::new(),
            status: 0,
            code: FflowErrorCode::Other("no_fflow_configured".to_owned()),
            message: "no fflow address is configured".to_owned(),
        }))
    }

    pub async fn put_chunk(
        &self,
        address: &str,
        session_id: SessionId,
        offset: u64,
        epoch: u64,
        payload: ChunkPayload,
    ) -> Result<ChunkWritten, FflowCallError> {
        let url = format!("{address}{}", chunks_path(session_id));
        let mut request = self
            .http
            .put(&url)
            .query(&[("offset", offset), ("epoch", epoch)])
            .header("content-type", "application/octet-stream");
        request = match payload {
            ChunkPayload::Whole(bytes) => request.body(bytes),
            ChunkPayload::Streamed { body, timeout } => request.body(body).timeout(timeout),
        };
        let result = request.send().await;
        read_json(&url, result).await
    }

    pub async fn finish(
        &self,
        address: &str,
        session_id: SessionId,
        request: &FinishProcess,
    ) -> Result<(), FflowCallError> {
        let url = format!("{address}{}", finish_path(session_id));
        let result = self.http.post(&url).json(request).send().await;
        check_status(&url, result).await
    }

    /// Whether the replica at `address` still holds the session: `Ok` when it does.
    pub async fn check_session(
        &self,
        address: &str,
        session_id: SessionId,
    ) -> Result<(), FflowCallError> {
        let url = format!("{address}{}", session_path(session_id));
        let result = self.http.get(&url).send().await;
        check_status(&url, result).await
    }

    pub async fn delete_session(
        &self,
        address: &str,
        session_id: SessionId,
    ) -> Result<(), FflowCallError> {
        let url = format!("{address}{}", session_path(session_id));
        let result = self.http.delete(&url).send().await;
        check_status(&url, result).await
    }
}

async fn check_status(
    url: &str,
    result: reqwest::Result<reqwest::Response>,
) -> Result<(), FflowCallError> {
    let response = result.map_err(|source| FflowCallError::Unreachable {
        url: url.to_owned(),
        source,
    })?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(refused(url, response).await)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    url: &str,
    result: reqwest::Result<reqwest::Response>,
) -> Result<T, FflowCallError> {
    let unreachable = |source| FflowCallError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let response = result.map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(refused(url, response).await);
    }
    response.json::<T>().await.map_err(unreachable)
}

async fn refused(url: &str, response: reqwest::Response) -> FflowCallError {
    let status = response.status().as_u16();
    let body = response.json::<FflowError>().await.unwrap_or(FflowError {
        code: FflowErrorCode::Other("unexpected_response".to_owned()),
        message: "fflow answered without an error body".to_owned(),
    });
    FflowCallError::Refused {
        url: url.to_owned(),
        status,
        code: body.code,
        message: body.message,
    }
}
