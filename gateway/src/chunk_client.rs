//! Chunks sent to the uploaders' chunk listeners over HTTP instead of through the broker
//! (`GATEWAY_UPLOADER_CHUNKS_URLS`): a piece of a body goes out as a `PUT` whose body streams
//! while the client's bytes arrive, and the uploader passes it on to fflow as it comes, so the
//! broker carries no bytes and the hops of a piece overlap. Any replica takes any chunk (the
//! upload's state is in PostgreSQL, and the write lock fences other requests), so pieces go to
//! the listeners in turn; one that cannot be reached is passed over for a while. Commands,
//! the write lock among them, still go through the broker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use vod_contracts::commands::{ChunkHeader, ChunkReply, Reply, CHUNKS_PATH, CHUNK_HEADER};

use crate::uploader_client::CallError;

/// How the chunk listeners are reached; `Config::chunk_client` reads it from the settings.
#[derive(Clone, Debug)]
pub struct ChunkClientOptions {
    pub urls: Vec<String>,
    pub token: SecretString,
    pub connect_timeout: Duration,
    /// How long a listener that could not be reached is passed over.
    pub retry_after: Duration,
    /// Idle connections are closed before the listener's header-read timeout closes them.
    pub pool_idle_timeout: Duration,
}

pub struct ChunkClient {
    http: reqwest::Client,
    listeners: Vec<Listener>,
    next: AtomicUsize,
    retry_after: Duration,
}

struct Listener {
    url: String,
    /// Until when it is passed over, after it could not be reached.
    down_until: Mutex<Option<Instant>>,
}

impl ChunkClient {
    /// `None` when no listener is configured: chunks then go through the broker.
    pub fn new(options: ChunkClientOptions) -> anyhow::Result<Option<Self>> {
        if options.urls.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            !options.token.expose_secret().is_empty(),
            "GATEWAY_UPLOADER_CHUNKS_TOKEN is required with GATEWAY_UPLOADER_CHUNKS_URLS"
        );
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", options.token.expose_secret()))
                .context("GATEWAY_UPLOADER_CHUNKS_TOKEN is not a valid header value")?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .default_headers(HeaderMap::from_iter([(AUTHORIZATION, authorization)]))
            // The listeners never redirect; the token goes to no other address.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(options.pool_idle_timeout)
            .tcp_nodelay(true)
            .build()?;
        let listeners = options
            .urls
            .iter()
            .map(|url| Listener {
                url: format!("{}{CHUNKS_PATH}", url.trim_end_matches('/')),
                down_until: Mutex::new(None),
            })
            .collect();
        Ok(Some(Self {
            http,
            listeners,
            next: AtomicUsize::new(0),
            retry_after: options.retry_after,
        }))
    }

    /// Sends one chunk; its body may still be arriving. The reply comes once the uploader has
    /// stored what the body carried: the caller bounds the wait once the body has ended.
    pub async fn send(
        &self,
        header: &ChunkHeader,
        body: reqwest::Body,
    ) -> Result<ChunkReply, CallError> {
        let listener = self.pick();
        let header_json = serde_json::to_string(header)
            .map_err(|error| CallError::Unavailable(format!("chunk header: {error}")))?;
        let sent = self
            .http
            .put(&listener.url)
            .header(CHUNK_HEADER, header_json)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if error.is_connect() {
                    *lock(&listener.down_until) = Some(Instant::now() + self.retry_after);
                }
                return Err(CallError::Unavailable(format!(
                    "the uploader's chunk listener at {} did not take the chunk: {error}",
                    listener.url
                )));
            }
        };
        let status = response.status();
        let body = response.bytes().await.map_err(|error| {
            CallError::Unavailable(format!(
                "the uploader's chunk listener at {} broke off its answer: {error}",
                listener.url
            ))
        })?;
        if !status.is_success() {
            // 401 is a token the two sides disagree on: a defect of the deployment, not an
            // outage.
            return Err(CallError::UnexpectedReply(format!(
                "the chunk listener at {} answered {status}: {}",
                listener.url,
                String::from_utf8_lossy(&body)
            )));
        }
        let reply = serde_json::from_slice::<Reply<ChunkReply>>(&body).map_err(|error| {
            CallError::UnexpectedReply(format!("malformed reply to a chunk: {error}"))
        })?;
        Result::from(reply).map_err(CallError::Rejected)
    }

    /// The next listener in turn that is not passed over (or the next in turn, when all are).
    fn pick(&self) -> &Listener {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.listeners.len();
        let now = Instant::now();
        (0..count)
            .map(|index| &self.listeners[(start + index) % count])
            .find(|listener| lock(&listener.down_until).is_none_or(|until| until <= now))
            .unwrap_or(&self.listeners[start % count])
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(urls: &[&str]) -> ChunkClient {
        ChunkClient::new(ChunkClientOptions {
            urls: urls.iter().map(|url| (*url).to_owned()).collect(),
            token: SecretString::from("token"),
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(1),
        })
        .expect("valid options")
        .expect("listeners configured")
    }

    #[test]
    fn no_url_means_no_client_and_urls_need_the_token() {
        let mut options = ChunkClientOptions {
            urls: Vec::new(),
            token: SecretString::from(""),
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
        };
        assert!(ChunkClient::new(options.clone()).expect("valid").is_none());
        options.urls = vec!["http://127.0.0.1:1".to_owned()];
        assert!(ChunkClient::new(options).is_err());
    }

    #[test]
    fn listeners_take_turns_and_one_down_is_passed_over() {
        let client = client(&["http://a", "http://b/"]);
        let picked: Vec<&str> = (0..4).map(|_| client.pick().url.as_str()).collect();
        assert_eq!(
            picked,
            [
                "http://a/v1/chunks",
                "http://b/v1/chunks",
                "http://a/v1/chunks",
                "http://b/v1/chunks"
            ]
        );
        *lock(&client.listeners[0].down_until) = Some(Instant::now() + Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(client.pick().url, "http://b/v1/chunks");
        }
        *lock(&client.listeners[1].down_until) = Some(Instant::now() + Duration::from_secs(60));
        // Every one down: they are still tried in turn rather than none.
        let picked: Vec<&str> = (0..2).map(|_| client.pick().url.as_str()).collect();
        assert!(picked.contains(&"http://a/v1/chunks") && picked.contains(&"http://b/v1/chunks"));
    }
}
