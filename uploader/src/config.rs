use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use vod_infra::config::{AmqpSettings, HttpLimits, PostgresSettings, RedisSettings};

/// Configuration of an uploader replica, read from `UPLOADER_*` variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The operators' listener: `/healthz`, `/readyz` and `/metrics`.
    pub listen_addr: String,
    /// How long `/readyz` (and the queue depth of `/metrics`) waits for each dependency.
    pub readiness_timeout_ms: u64,
    /// The operators' listener's header-read timeout and connection limit
    /// (`UPLOADER_HTTP__...`).
    pub http: HttpLimits,
    /// The chunk listener, where the gateway streams chunks' bytes instead of sending them
    /// through the broker (with the limits of `http`). Served only when `chunks_token` is set.
    pub chunks_listen_addr: String,
    /// The secret the gateway presents to the chunk listener (its
    /// `GATEWAY_UPLOADER_CHUNKS__TOKEN`); unset, the replica takes chunks from the broker only.
    pub chunks_token: SecretString,
    pub postgres: PostgresSettings,
    pub redis: RedisSettings,
    pub amqp: AmqpSettings,
    /// Default fflow addresses: a reverse proxy in front of every replica, or the replicas
    /// themselves. A new session's process is created on the first one that answers, starting
    /// from a different one each time (`UPLOADER_FFLOW_URLS=http://a:4050,http://b:4051`).
    pub fflow_urls: Vec<String>,
    /// Required: the secret fflow's internal routes ask for (its `FFLOW_INTERNAL_TOKEN`), sent
    /// as `Authorization: Bearer` on every call to fflow.
    pub fflow_token: SecretString,
    /// Timeout of one HTTP call to fflow, chunk transfer included.
    pub fflow_timeout_ms: u64,
    /// Timeout of opening a connection to fflow: a replica whose host is gone is told from a
    /// slow one by this.
    pub fflow_connect_timeout_ms: u64,
    /// How long a connection to fflow is kept idle for the next call. Below fflow's
    /// `FFLOW_HTTP__HEADER_READ_TIMEOUT_MS` (and any proxy's idle timeout in front of it),
    /// which closes idle connections: a call must not go out on one being closed.
    pub fflow_pool_idle_timeout_ms: u64,
    /// How long the fflow replica holding an open upload may be unreachable (connection
    /// errors, not refusals) before its bytes are given up for lost: the upload's offset drops
    /// to 0 and the client resends to another replica. A replica restarted within this time
    /// keeps its uploads (`UPLOADER_FFLOW_REASSIGN_AFTER_MS`).
    pub fflow_reassign_after_ms: u64,
    /// Attempts to tell fflow that an upload is complete before the flow is marked failed.
    pub finish_attempts: u32,
    /// How long the session → fflow replica entry lives in Redis.
    pub routing_ttl_secs: u64,
    /// Run the scheduler's jobs in this replica (`UPLOADER_SCHEDULER=true`).
    pub scheduler: bool,
    /// An open upload session without a chunk for this long expires (tus `Upload-Expires`);
    /// so does a complete partial upload that no final upload joins in this time.
    pub session_ttl_secs: u64,
    /// How long a request keeps an upload's write lock without sending a chunk.
    pub writer_lease_secs: u64,
    /// A request sends its next chunk while the one before is still being stored, so the next
    /// can arrive first: it waits this long for the upload to reach its offset before it is
    /// refused as at another offset (and the client resumes from the offset reached).
    pub chunk_ahead_wait_ms: u64,
    /// When the expiry job runs: six-field cron (seconds first), UTC.
    pub expire_sessions_cron: String,
    /// When the scheduler looks for processing flows whose fflow replica was lost.
    pub lost_replicas_cron: String,
    /// A video this old with no flow that is ready, uploading or processing is deleted with
    /// what fflow left on holder. Longer than `session_ttl_secs`: a client whose upload expired
    /// still finds its video, to upload it again.
    pub unused_video_ttl_secs: u64,
    /// Videos deleted per run of that job; a backlog is worked off over several runs.
    pub unused_video_batch: u32,
    /// Timeout of fflow's removal of one video from holder (a call per file and directory).
    pub remove_video_timeout_ms: u64,
    /// How long `DELETE /v1/videos/{id}`, and the outcome of an encode of a deleted video, wait
    /// for fflow to remove the video's output from holder; past it the scheduler's unused-video
    /// job removes it. Below the gateway's `GATEWAY_RPC_TIMEOUT_MS`, which the delete waits in.
    pub deleted_video_remove_timeout_ms: u64,
    /// When the unused-video job runs: six-field cron (seconds first), UTC.
    pub delete_unused_videos_cron: String,
    /// Name of this replica in logs and in the broker's connection list.
    pub replica_name: String,
    /// Unacknowledged progress reports held at once; they are small and applied quickly.
    pub progress_prefetch: u16,
    /// An outcome that could not be applied (the database away) goes back to its queue after
    /// this wait, to be applied again.
    pub outcome_retry_ms: u64,
    /// After a stop signal, how long messages in flight may take to finish; what is still
    /// running then is abandoned, and its unacknowledged messages go back to the queue.
    pub shutdown_timeout_ms: u64,
    /// When the broker connection is lost (or the broker ends a consumer for good), the
    /// replica connects again after this wait, doubling up to
    /// `broker_reconnect_max_backoff_ms`.
    pub broker_reconnect_backoff_ms: u64,
    pub broker_reconnect_max_backoff_ms: u64,
    /// How often the replica checks the status of its broker connection. A lost connection is
    /// seen at once by lapin's error event; one closed or errored otherwise is seen at the
    /// next check. Its consumers neither end nor receive again, so nothing else tells.
    pub broker_check_interval_ms: u64,
    /// Every project's quotas unless it has its own (`UPLOADER_QUOTA__...`).
    pub quota: QuotaSettings,
    /// Projects whose usage `/metrics` shows, at most (the most recently created ones).
    pub metrics_max_projects: u32,
    /// Base of the playback URLs in events' videos: the same as the gateway's
    /// `GATEWAY_HOLDER_PUBLIC_URL`, so that an event shows a video as the API does.
    pub holder_public_url: String,
    /// Events older than this are deleted by the scheduler (`GET /v1/events` no longer has
    /// them).
    pub event_retention_secs: u64,
    /// When the event retention job runs: six-field cron (seconds first), UTC.
    pub purge_events_cron: String,
    /// Events deleted per run of that job, at most.
    pub purge_events_batch: u32,
    /// Webhook deliveries (`UPLOADER_WEBHOOKS__*`).
    pub webhooks: WebhookSettings,
}

/// How an uploader delivers webhooks.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Whether this replica publishes deliveries and attempts them. Off, it still records
    /// them (every event's transaction does), for the replicas that deliver.
    pub deliver: bool,
    /// `http` URLs are delivered to, beside `https` (the gateway's
    /// `GATEWAY_WEBHOOKS__ALLOW_HTTP` decides which are accepted).
    pub allow_http: bool,
    /// Loopback, private and link-local addresses are connected to (a local stack). Never
    /// metadata, unspecified or multicast addresses.
    pub allow_private: bool,
    /// An attempt's whole budget: connecting, sending and the receiver's status line.
    pub timeout_ms: u64,
    /// The delay after the first failed attempt, doubled after each one up to `retry_max_ms`,
    /// each stretched by a random one of `retry_jitter_steps` steps of an eighth.
    pub retry_first_ms: u64,
    pub retry_max_ms: u64,
    pub retry_jitter_steps: u32,
    /// How long after its first attempt a delivery is tried again; then it is failed.
    pub retry_period_secs: u64,
    /// An endpoint whose attempts failed for this long without a success is disabled.
    pub disable_after_secs: u64,
    /// How often the relay looks for deliveries to publish, and how many it takes at once.
    pub relay_interval_ms: u64,
    pub relay_batch: u32,
    /// Attempts made at once by a replica (each a consumer of its own, so that a slow receiver
    /// holds up only one).
    pub concurrency: u16,
    /// The longest error kept in the delivery log, in bytes.
    pub max_error_bytes: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            deliver: true,
            allow_http: false,
            allow_private: false,
            timeout_ms: 10_000,
            retry_first_ms: 30_000,
            retry_max_ms: 3_600_000,
            retry_jitter_steps: 4,
            retry_period_secs: 24 * 3600,
            disable_after_secs: 3 * 24 * 3600,
            relay_interval_ms: 200,
            relay_batch: 100,
            concurrency: 8,
            max_error_bytes: 500,
        }
    }
}

impl WebhookSettings {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.timeout_ms > 0
                && self.retry_first_ms > 0
                && self.retry_max_ms >= self.retry_first_ms
                && self.retry_jitter_steps > 0
                && self.retry_jitter_steps <= 8
                && self.relay_interval_ms > 0
                && self.relay_batch > 0
                && self.concurrency > 0,
            "UPLOADER_WEBHOOKS__* must be positive, RETRY_MAX_MS at least RETRY_FIRST_MS and \
             RETRY_JITTER_STEPS at most 8"
        );
        Ok(())
    }
}

/// The default quotas of a project, checked where an upload is created.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct QuotaSettings {
    /// Bytes a project's presentations may hold on holder (`MAX_STORED_BYTES`, 1 TiB).
    pub max_stored_bytes: u64,
    /// Uploads a project may have open at once (`MAX_OPEN_UPLOADS`).
    pub max_open_uploads: u64,
    /// Uploads a project may create per clock hour (`MAX_UPLOADS_PER_HOUR`).
    pub max_uploads_per_hour: u64,
    /// The `Retry-After` of a refusal for too many open uploads (`OPEN_UPLOADS_RETRY_AFTER_SECS`).
    pub open_uploads_retry_after_secs: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            max_stored_bytes: 1 << 40,
            max_open_uploads: 1_000,
            max_uploads_per_hour: 10_000,
            open_uploads_retry_after_secs: 60,
        }
    }
}

impl QuotaSettings {
    pub fn defaults(&self) -> vod_contracts::access::Quotas {
        vod_contracts::access::Quotas {
            max_stored_bytes: self.max_stored_bytes,
            max_open_uploads: self.max_open_uploads,
            max_uploads_per_hour: self.max_uploads_per_hour,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:8070".to_owned(),
            readiness_timeout_ms: 2_000,
            http: HttpLimits::default(),
            chunks_listen_addr: "127.0.0.1:8072".to_owned(),
            // Empty means unset: no chunk listener, there is no default token.
            chunks_token: SecretString::from(""),
            postgres: PostgresSettings::default(),
            redis: RedisSettings::default(),
            amqp: AmqpSettings::default(),
            fflow_urls: vec!["http://127.0.0.1:4050".to_owned()],
            // Empty means unset: `validate` refuses it, there is no default token.
            fflow_token: SecretString::from(""),
            fflow_timeout_ms: 30_000,
            fflow_connect_timeout_ms: 5_000,
            fflow_pool_idle_timeout_ms: vod_infra::config::DEFAULT_CLIENT_POOL_IDLE_TIMEOUT_MS,
            fflow_reassign_after_ms: 120_000,
            finish_attempts: 5,
            routing_ttl_secs: 7 * 24 * 3600,
            scheduler: false,
            session_ttl_secs: 24 * 3600,
            writer_lease_secs: 120,
            chunk_ahead_wait_ms: 10_000,
            expire_sessions_cron: "0 */5 * * * *".to_owned(),
            lost_replicas_cron: "*/30 * * * * *".to_owned(),
            unused_video_ttl_secs: 7 * 24 * 3600,
            unused_video_batch: 50,
            remove_video_timeout_ms: 300_000,
            deleted_video_remove_timeout_ms: 20_000,
            delete_unused_videos_cron: "0 30 * * * *".to_owned(),
            replica_name: "uploader".to_owned(),
            progress_prefetch: 16,
            outcome_retry_ms: 1_000,
            shutdown_timeout_ms: 8_000,
            broker_reconnect_backoff_ms: 1_000,
            broker_reconnect_max_backoff_ms: 30_000,
            broker_check_interval_ms: 1_000,
            quota: QuotaSettings::default(),
            metrics_max_projects: 1_000,
            holder_public_url: "http://127.0.0.1:8090".to_owned(),
            event_retention_secs: 30 * 24 * 3600,
            purge_events_cron: "0 15 * * * *".to_owned(),
            purge_events_batch: 10_000,
            webhooks: WebhookSettings::default(),
        }
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let config: Self = vod_infra::config::from_env("UPLOADER")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.amqp.validate("UPLOADER")?;
        self.http.validate("UPLOADER")?;
        self.webhooks.validate()?;
        anyhow::ensure!(
            !self.fflow_urls.is_empty(),
            "UPLOADER_FFLOW_URLS names no fflow address"
        );
        anyhow::ensure!(
            !self.fflow_token.expose_secret().is_empty(),
            "UPLOADER_FFLOW_TOKEN is required"
        );
        anyhow::ensure!(
            self.session_ttl_secs > 0 && self.writer_lease_secs > 0,
            "UPLOADER_SESSION_TTL_SECS and UPLOADER_WRITER_LEASE_SECS must be positive"
        );
        anyhow::ensure!(
            self.event_retention_secs > 0 && self.purge_events_batch > 0,
            "UPLOADER_EVENT_RETENTION_SECS and UPLOADER_PURGE_EVENTS_BATCH must be positive"
        );
        anyhow::ensure!(
            self.unused_video_ttl_secs > self.session_ttl_secs,
            "UPLOADER_UNUSED_VIDEO_TTL_SECS must be longer than UPLOADER_SESSION_TTL_SECS"
        );
        anyhow::ensure!(
            self.unused_video_batch > 0
                && self.remove_video_timeout_ms > 0
                && self.deleted_video_remove_timeout_ms > 0,
            "UPLOADER_UNUSED_VIDEO_BATCH, UPLOADER_REMOVE_VIDEO_TIMEOUT_MS and \
             UPLOADER_DELETED_VIDEO_REMOVE_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.finish_attempts > 0,
            "UPLOADER_FINISH_ATTEMPTS must be positive"
        );
        anyhow::ensure!(
            self.broker_reconnect_backoff_ms > 0,
            "UPLOADER_BROKER_RECONNECT_BACKOFF_MS must be positive"
        );
        anyhow::ensure!(
            self.broker_check_interval_ms > 0,
            "UPLOADER_BROKER_CHECK_INTERVAL_MS must be positive"
        );
        anyhow::ensure!(
            self.progress_prefetch > 0,
            "UPLOADER_PROGRESS_PREFETCH must be positive"
        );
        anyhow::ensure!(
            self.outcome_retry_ms > 0,
            "UPLOADER_OUTCOME_RETRY_MS must be positive"
        );
        let in_bigint = |value: u64| i64::try_from(value).is_ok();
        anyhow::ensure!(
            in_bigint(self.quota.max_stored_bytes)
                && in_bigint(self.quota.max_open_uploads)
                && in_bigint(self.quota.max_uploads_per_hour),
            "UPLOADER_QUOTA__MAX_* must be below 2^63"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, with the one setting that has none.
    fn with_token() -> Config {
        Config {
            fflow_token: SecretString::from("token"),
            ..Config::default()
        }
    }

    #[test]
    fn defaults_with_a_token_are_valid() {
        assert!(with_token().validate().is_ok());
    }

    #[test]
    fn missing_fflow_token_is_refused() {
        let error = Config::default()
            .validate()
            .expect_err("refused")
            .to_string();
        assert!(error.contains("UPLOADER_FFLOW_TOKEN"), "{error}");
    }

    #[test]
    fn unused_videos_outlive_expired_uploads() {
        let config = Config {
            session_ttl_secs: 7 * 24 * 3600,
            ..with_token()
        };
        let error = config.validate().expect_err("refused").to_string();
        assert!(error.contains("UPLOADER_UNUSED_VIDEO_TTL_SECS"), "{error}");
        let config = Config {
            unused_video_batch: 0,
            ..with_token()
        };
        assert!(config.validate().is_err());
    }
}
