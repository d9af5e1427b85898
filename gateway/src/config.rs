use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::ensure;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use vod_infra::config::{AmqpSettings, HttpLimits, PostgresSettings};

use crate::body_pace::{MinRate, Pace};
use crate::chunk_client::ChunkClientOptions;
use crate::metrics::BrokerMetrics;
use crate::tus::MetadataLimits;
use crate::uploader_client::ClientOptions;

const MIB: usize = 1024 * 1024;
/// The shortest admin token accepted.
const MIN_ADMIN_TOKEN_BYTES: usize = 16;
/// RabbitMQ 4 refuses messages over 16 MiB; a chunk message is its payload plus a small header.
pub const MAX_CHUNK_SIZE_BYTES: usize = 15 * MIB;

/// The gateway's settings, read from `GATEWAY_*` variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    pub listen_addr: String,
    /// Base of the `Location` URLs of uploads. When unset, `http://` and the address the
    /// gateway listens on (`127.0.0.1` for an unspecified IP); never the request's `Host`.
    pub public_url: Option<String>,
    /// Base of playback URLs: `{holder_public_url}/{flow.hls_path}`.
    pub holder_public_url: String,
    /// Largest piece of an upload body sent to the uploader in one message.
    pub chunk_size_bytes: usize,
    /// How many pieces of one request body are on their way to the uploader at once: with more
    /// than one, the next is sent while those before it are stored, so the hops of a body
    /// larger than a piece overlap (BENCHMARKS.md measures 2 against 1). Each holds up to
    /// `chunk_size_bytes` of memory until it is answered.
    pub chunks_in_flight: usize,
    /// Largest `Upload-Length` accepted; announced as `Tus-Max-Size`.
    pub max_upload_bytes: u64,
    /// How many chunks are published to the broker at once; the others wait with their frame
    /// ready. The connection writes one message at a time whatever this is, and while a chunk
    /// is published the broker client holds a second copy of it: more slots only cost memory.
    pub publishing_chunks_max: usize,
    /// Memory for request bodies, shared by every request: each PATCH (or creation with an
    /// upload) holds its pieces in flight, at most `chunks_in_flight` × `chunk_size_bytes`,
    /// until it is answered.
    pub max_buffered_bytes: usize,
    /// How long a request waits for that memory before it is answered 503 with `Retry-After`.
    pub buffer_wait_ms: u64,
    /// How long a request body may send nothing before the gateway stops reading it: what it
    /// sent is stored, and the memory and the write lock it held are given back, so a client
    /// whose connection died unseen can resume at once from another.
    pub body_idle_timeout_ms: u64,
    /// A request body that, after `body_rate_grace_ms` of waiting for it, sends fewer than this
    /// many bytes per second over a window of `body_rate_window_ms` is ended as an interrupted
    /// one: what it sent is stored, its memory and write lock are given back. Only the time
    /// spent waiting for the client counts, not the time its pieces take to be stored. 0 turns
    /// the floor off.
    pub body_min_bytes_per_sec: u64,
    pub body_rate_window_ms: u64,
    pub body_rate_grace_ms: u64,
    /// Largest `Upload-Metadata` header, in bytes, as sent.
    pub max_metadata_bytes: usize,
    /// Most keys in `Upload-Metadata`.
    pub max_metadata_keys: usize,
    /// Longest `filename` in `Upload-Metadata`, in bytes once decoded.
    pub max_filename_bytes: usize,
    /// How long a request to the uploader may take, publish to reply.
    pub rpc_timeout_ms: u64,
    pub max_json_bytes: usize,
    /// `Retry-After` of a 503.
    pub retry_after_secs: u64,
    /// How long a request waits for an upload another request is writing to before it is
    /// answered 409.
    pub lock_wait_ms: u64,
    /// How long `/readyz` waits for each dependency.
    pub readiness_timeout_ms: u64,
    /// After a stop signal, how long requests in flight may take to finish; the rest are cut
    /// off (a client resumes from the offset HEAD reports).
    pub shutdown_timeout_ms: u64,
    /// A write lock that could not be given back (the broker or the database away) is given
    /// back again, first after this wait, which doubles up to `unlock_max_backoff_ms`: until
    /// then the upload's next PATCH is answered 409.
    pub unlock_backoff_ms: u64,
    pub unlock_max_backoff_ms: u64,
    /// How long a lock is given back again; past the uploader's writer lease
    /// (`UPLOADER_WRITER_LEASE_SECS`) it has run out by itself.
    pub unlock_retry_window_ms: u64,
    /// When the broker connection is lost (or the broker ended the reply consumer), the
    /// gateway connects again after this wait, doubling up to `broker_reconnect_max_backoff_ms`;
    /// requests are answered 503 until it is back.
    pub broker_reconnect_backoff_ms: u64,
    pub broker_reconnect_max_backoff_ms: u64,
    /// The operator's token for `/v1/admin/...` (`GATEWAY_ADMIN_TOKEN`): required, at least
    /// 16 bytes, never logged.
    pub admin_token: SecretString,
    /// How long a key verified against the database is believed without reading it again:
    /// a revoked key keeps working on a gateway for at most this long.
    pub api_key_cache_ms: u64,
    /// Most keys remembered at once.
    pub api_key_cache_max: usize,
    /// The listener's header-read timeout and connection limit (`GATEWAY_HTTP__...`).
    pub http: HttpLimits,
    pub postgres: PostgresSettings,
    pub amqp: AmqpSettings,
    /// The uploaders' chunk listeners (their `UPLOADER_CHUNKS_LISTEN_ADDR`), or a balancer in
    /// front of them: a body's bytes are streamed there, piece after piece, and pass on to
    /// fflow as they arrive (`GATEWAY_UPLOADER_CHUNKS_URLS=http://a:8072,http://b:8072`).
    /// Empty: they go through the broker, a piece per message. Commands go through the broker
    /// either way.
    pub uploader_chunks_urls: Vec<String>,
    /// The uploaders' `UPLOADER_CHUNKS_TOKEN`; required with `uploader_chunks_urls`.
    pub uploader_chunks_token: SecretString,
    /// Timeout of opening a connection to a chunk listener.
    pub uploader_chunks_connect_timeout_ms: u64,
    /// How long a chunk listener that could not be reached is passed over.
    pub uploader_chunks_retry_after_ms: u64,
    /// Webhook endpoints (`GATEWAY_WEBHOOKS__*`).
    pub webhooks: WebhookSettings,
}

/// Which webhook URLs are accepted. The uploaders check every address again as they connect
/// (`UPLOADER_WEBHOOKS__ALLOW_HTTP`, `UPLOADER_WEBHOOKS__ALLOW_PRIVATE`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// `http` URLs beside `https`.
    pub allow_http: bool,
    /// URLs resolving to loopback, private or link-local addresses (a local stack); never
    /// metadata, unspecified or multicast ones.
    pub allow_private: bool,
    pub max_url_bytes: usize,
    /// How long a URL's name may take to resolve as it is checked.
    pub resolve_timeout_ms: u64,
    /// How long a rotated secret keeps signing beside the new one, unless the rotation says.
    pub rotation_overlap_secs: u64,
    /// Endpoints a project may have.
    pub max_per_project: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            max_url_bytes: 2048,
            resolve_timeout_ms: 5_000,
            rotation_overlap_secs: 24 * 3600,
            max_per_project: 20,
        }
    }
}

impl WebhookSettings {
    /// The policy a URL is checked against.
    pub fn policy(&self) -> vod_infra::public_target::TargetPolicy {
        vod_infra::public_target::TargetPolicy {
            allow_http: self.allow_http,
            allow_private: self.allow_private,
            max_url_bytes: self.max_url_bytes,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:8080".to_owned(),
            public_url: None,
            holder_public_url: "http://127.0.0.1:8090".to_owned(),
            chunk_size_bytes: 8 * MIB,
            chunks_in_flight: 2,
            max_upload_bytes: 20 * 1024 * 1024 * 1024,
            publishing_chunks_max: 2,
            max_buffered_bytes: 128 * MIB,
            buffer_wait_ms: 30_000,
            body_idle_timeout_ms: 60_000,
            body_min_bytes_per_sec: 1024,
            body_rate_window_ms: 20_000,
            body_rate_grace_ms: 10_000,
            max_metadata_bytes: 4 * 1024,
            max_metadata_keys: 32,
            max_filename_bytes: 255,
            rpc_timeout_ms: 60_000,
            max_json_bytes: 64 * 1024,
            retry_after_secs: 5,
            lock_wait_ms: 3_000,
            readiness_timeout_ms: 2_000,
            shutdown_timeout_ms: 8_000,
            unlock_backoff_ms: 250,
            unlock_max_backoff_ms: 5_000,
            unlock_retry_window_ms: 120_000,
            broker_reconnect_backoff_ms: 1_000,
            broker_reconnect_max_backoff_ms: 30_000,
            admin_token: SecretString::from(""),
            api_key_cache_ms: 5_000,
            api_key_cache_max: 100_000,
            http: HttpLimits::default(),
            postgres: PostgresSettings::default(),
            amqp: AmqpSettings::default(),
            uploader_chunks_urls: Vec::new(),
            // Empty means unset; required only with `uploader_chunks_urls`.
            uploader_chunks_token: SecretString::from(""),
            uploader_chunks_connect_timeout_ms: 2_000,
            uploader_chunks_retry_after_ms: 5_000,
            webhooks: WebhookSettings::default(),
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        vod_infra::config::from_env("GATEWAY")
    }

    /// Local defaults on a free port, with the given database and queue prefix.
    pub fn for_tests(postgres_url: &str, queue_prefix: &str) -> Self {
        let mut config = Self {
            listen_addr: "127.0.0.1:0".to_owned(),
            admin_token: SecretString::from(format!("admin-{}", uuid::Uuid::new_v4().simple())),
            ..Self::default()
        };
        config.postgres.url = SecretString::from(postgres_url.to_owned());
        config.amqp.queue_prefix = queue_prefix.to_owned();
        config
    }

    /// The most memory one request body holds at once.
    pub fn body_buffer_bytes(&self) -> usize {
        self.chunk_size_bytes.saturating_mul(self.chunks_in_flight)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.amqp.validate("GATEWAY")?;
        self.http.validate("GATEWAY")?;
        ensure!(
            self.admin_token.expose_secret().len() >= MIN_ADMIN_TOKEN_BYTES,
            "GATEWAY_ADMIN_TOKEN is required, at least {MIN_ADMIN_TOKEN_BYTES} bytes"
        );
        ensure!(
            (1..=MAX_CHUNK_SIZE_BYTES).contains(&self.chunk_size_bytes),
            "chunk_size_bytes must be between 1 and {MAX_CHUNK_SIZE_BYTES}, got {}",
            self.chunk_size_bytes
        );
        ensure!(self.rpc_timeout_ms > 0, "rpc_timeout_ms must be positive");
        ensure!(
            self.publishing_chunks_max > 0,
            "publishing_chunks_max must be positive"
        );
        ensure!(
            self.chunks_in_flight > 0,
            "chunks_in_flight must be positive"
        );
        ensure!(
            self.max_buffered_bytes >= self.body_buffer_bytes(),
            "max_buffered_bytes must hold at least chunks_in_flight chunks of chunk_size_bytes"
        );
        ensure!(
            self.max_buffered_bytes <= tokio::sync::Semaphore::MAX_PERMITS,
            "max_buffered_bytes is too large"
        );
        ensure!(self.max_json_bytes > 0, "max_json_bytes must be positive");
        ensure!(
            self.body_idle_timeout_ms > 0,
            "body_idle_timeout_ms must be positive"
        );
        ensure!(
            self.body_min_bytes_per_sec == 0 || self.body_rate_window_ms > 0,
            "body_rate_window_ms must be positive when body_min_bytes_per_sec is set"
        );
        ensure!(
            self.max_metadata_bytes > 0 && self.max_metadata_keys > 0,
            "max_metadata_bytes and max_metadata_keys must be positive"
        );
        ensure!(
            self.broker_reconnect_backoff_ms > 0
                && self.broker_reconnect_max_backoff_ms >= self.broker_reconnect_backoff_ms,
            "broker_reconnect_backoff_ms must be positive and at most broker_reconnect_max_backoff_ms"
        );
        Ok(())
    }

    /// The base of the URLs the gateway gives out: `public_url`, else the address it listens
    /// on (`local_addr`, the port it was given), with `127.0.0.1` for an unspecified IP.
    pub fn public_base(&self, local_addr: SocketAddr) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let mut addr = local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    pub fn metadata_limits(&self) -> MetadataLimits {
        MetadataLimits {
            max_bytes: self.max_metadata_bytes,
            max_keys: self.max_metadata_keys,
            max_filename_bytes: self.max_filename_bytes,
        }
    }

    /// How slowly a request body may come before it is ended.
    pub fn body_pace(&self) -> Pace {
        let millis = vod_infra::config::millis;
        Pace {
            idle: millis(self.body_idle_timeout_ms),
            min_rate: (self.body_min_bytes_per_sec > 0).then(|| MinRate {
                bytes_per_sec: self.body_min_bytes_per_sec,
                window: millis(self.body_rate_window_ms),
                grace: millis(self.body_rate_grace_ms),
            }),
        }
    }

    pub fn rpc_timeout(&self) -> Duration {
        vod_infra::config::millis(self.rpc_timeout_ms)
    }

    /// How the uploaders' chunk listeners are reached.
    pub fn chunk_client(&self) -> ChunkClientOptions {
        let millis = vod_infra::config::millis;
        ChunkClientOptions {
            urls: self.uploader_chunks_urls.clone(),
            token: self.uploader_chunks_token.clone(),
            connect_timeout: millis(self.uploader_chunks_connect_timeout_ms),
            retry_after: millis(self.uploader_chunks_retry_after_ms),
            pool_idle_timeout: millis(vod_infra::config::DEFAULT_CLIENT_POOL_IDLE_TIMEOUT_MS),
        }
    }

    /// How the connection to the uploaders behaves, counting into `metrics`.
    pub fn uploader_client(&self, metrics: BrokerMetrics) -> ClientOptions {
        ClientOptions {
            rpc_timeout: self.rpc_timeout(),
            reconnect_backoff: vod_infra::config::millis(self.broker_reconnect_backoff_ms),
            reconnect_max_backoff: vod_infra::config::millis(self.broker_reconnect_max_backoff_ms),
            metrics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_is_bounded_below_the_broker_message_limit() {
        let mut config = Config::for_tests("postgres://localhost/vod", "vod");
        assert!(config.validate().is_ok());
        config.chunk_size_bytes = 0;
        assert!(config.validate().is_err());
        config.chunk_size_bytes = MAX_CHUNK_SIZE_BYTES;
        assert!(config.validate().is_ok());
        config.chunk_size_bytes = MAX_CHUNK_SIZE_BYTES + 1;
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_admin_token_is_required_and_never_printed() {
        let mut config = Config::for_tests("postgres://localhost/vod", "vod");
        config.admin_token = SecretString::from("");
        assert!(config.validate().is_err(), "no admin token");
        config.admin_token = SecretString::from("short");
        assert!(config.validate().is_err(), "a short admin token");
        config.admin_token = SecretString::from("a-long-enough-admin-token");
        assert!(config.validate().is_ok());
        assert!(!format!("{config:?}").contains("a-long-enough-admin-token"));
    }

    #[test]
    fn the_public_base_comes_from_configuration_only() {
        let mut config = Config::default();
        let listening = |addr: &str| addr.parse::<SocketAddr>().expect("address");
        assert_eq!(
            config.public_base(listening("127.0.0.1:8080")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            config.public_base(listening("0.0.0.0:9000")),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            config.public_base(listening("[::]:80")),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            config.public_base(listening("[::1]:8080")),
            "http://[::1]:8080"
        );
        config.public_url = Some("https://upload.example/".to_owned());
        assert_eq!(
            config.public_base(listening("0.0.0.0:8080")),
            "https://upload.example"
        );
    }
}
