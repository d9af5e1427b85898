//! Typed configuration read from the environment once, in `main`.
//!
//! Each service has a prefix (`GATEWAY`, `UPLOADER`, ...); nested fields are separated by `__`,
//! so `UPLOADER_POSTGRES__URL` sets `postgres.url` of the uploader. Every field has a default
//! that works on a developer machine.

use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads `T` from the environment variables that start with `{prefix}_`.
pub fn from_env<T: DeserializeOwned>(prefix: &str) -> anyhow::Result<T> {
    let source = ::config::Environment::with_prefix(prefix)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("fflow_urls");
    let config = ::config::Config::builder().add_source(source).build()?;
    Ok(config.try_deserialize()?)
}

/// Milliseconds in configuration, a [`Duration`] in code.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct PostgresSettings {
    pub url: SecretString,
    pub max_connections: usize,
    /// How long a caller waits for a pooled connection, and for a new one to open.
    pub timeout_ms: u64,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/vod"),
            max_connections: 16,
            timeout_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    pub url: SecretString,
    /// Every key this deployment writes starts with it.
    pub key_prefix: String,
    pub max_connections: usize,
    pub timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://127.0.0.1:6379"),
            key_prefix: "vod".to_owned(),
            max_connections: 16,
            timeout_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    pub url: SecretString,
    /// Prefix of every queue name, see [`vod_contracts::queues::QueueNames`].
    pub queue_prefix: String,
    /// Unacknowledged deliveries a consumer holds at once. Chunks are several MiB each.
    pub prefetch: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue_prefix: vod_contracts::queues::DEFAULT_QUEUE_PREFIX.to_owned(),
            prefetch: 2,
        }
    }
}
