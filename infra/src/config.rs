//! Typed configuration read from the environment once, in `main`.
//!
//! Each service has a prefix (`GATEWAY`, `UPLOADER`, ...); nested fields are separated by `__`,
//! so `UPLOADER_POSTGRES__URL` sets `postgres.url` of the uploader. Every field has a default
//! that works on a developer machine.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads `T` from the environment variables that start with `{prefix}_`. A variable with the
/// prefix that names no setting is most likely a typo: it is logged, not fatal, because
/// orchestrators add variables of their own (`GATEWAY_PORT` for a service named gateway).
pub fn from_env<T: DeserializeOwned>(prefix: &str) -> anyhow::Result<T> {
    let (config, unknown) = from_vars(prefix, None)?;
    warn_unknown(&unknown);
    Ok(config)
}

/// Logs the variables [`from_vars`] found naming no setting; for a service that reads its
/// configuration before logging starts.
pub fn warn_unknown(unknown: &[String]) {
    for variable in unknown {
        tracing::warn!(%variable, "environment variable names no setting, ignored");
    }
}

/// Reads `T` from `vars` (the process environment when `None`), and returns with it the
/// variables that named no setting.
pub fn from_vars<T: DeserializeOwned>(
    prefix: &str,
    vars: Option<HashMap<String, String>>,
) -> anyhow::Result<(T, Vec<String>)> {
    let source = ::config::Environment::with_prefix(prefix)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("fflow_urls")
        .with_list_parse_key("uploader_chunks_urls")
        .source(vars.map(|vars| vars.into_iter().collect()));
    let config = ::config::Config::builder().add_source(source).build()?;
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(config, |path| {
        let name = path.to_string().replace('.', "__").to_uppercase();
        unknown.push(format!("{prefix}_{name}"));
    })?;
    Ok((value, unknown))
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
    /// How long one connect keeps trying to reach the broker: `connect_attempts` more times
    /// after the first, waiting `connect_backoff_ms` first and doubling up to
    /// `connect_max_backoff_ms` (with the defaults, about half a minute; with 0 attempts, one
    /// try), each attempt given `connect_timeout_ms`. A service that loses its connection
    /// connects again this way, in a loop with a backoff of its own, so it never needs a
    /// restart.
    pub connect_attempts: usize,
    pub connect_backoff_ms: u64,
    pub connect_max_backoff_ms: u64,
    pub connect_timeout_ms: u64,
}

impl AmqpSettings {
    /// Checks what no service can run with; `prefix` names the service's variables.
    pub fn validate(&self, prefix: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.connect_timeout_ms > 0,
            "{prefix}_AMQP__CONNECT_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.connect_max_backoff_ms >= self.connect_backoff_ms,
            "{prefix}_AMQP__CONNECT_MAX_BACKOFF_MS must be at least {prefix}_AMQP__CONNECT_BACKOFF_MS"
        );
        Ok(())
    }
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue_prefix: vod_contracts::queues::DEFAULT_QUEUE_PREFIX.to_owned(),
            prefetch: 2,
            connect_attempts: 8,
            connect_backoff_ms: 500,
            connect_max_backoff_ms: 5_000,
            connect_timeout_ms: 10_000,
        }
    }
}

/// What one HTTP listener lets its clients hold (`{PREFIX}_HTTP__HEADER_READ_TIMEOUT_MS`,
/// `{PREFIX}_HTTP__MAX_CONNECTIONS`), applied by [`crate::http::serve`].
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct HttpLimits {
    /// A connection that has not sent the whole header of a request this long after it opened,
    /// or after its previous answer (an idle keep-alive connection), is closed unanswered.
    /// HTTP clients of our own listeners keep idle connections for less than this.
    pub header_read_timeout_ms: u64,
    /// Connections served at once. One accepted beyond it is closed at once, unanswered, so a
    /// flood of idle connections cannot take every file descriptor or hold clients in the
    /// backlog; a well-behaved client retries.
    pub max_connections: usize,
}

impl HttpLimits {
    /// Checks what no listener can serve with; `prefix` names the service's variables.
    pub fn validate(&self, prefix: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.header_read_timeout_ms > 0,
            "{prefix}_HTTP__HEADER_READ_TIMEOUT_MS must be positive"
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "{prefix}_HTTP__MAX_CONNECTIONS must be positive"
        );
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        millis(self.header_read_timeout_ms)
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
        }
    }
}

/// The default of how long an HTTP client of one of our listeners keeps an idle pooled
/// connection: well below the default [`HttpLimits::header_read_timeout_ms`], after which the
/// server closes it, so a request never goes out on a connection the server is closing.
pub const DEFAULT_CLIENT_POOL_IDLE_TIMEOUT_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Example {
        port: u16,
        nested: Nested,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Nested {
        name: String,
    }

    fn vars(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        )
    }

    #[test]
    fn nested_settings_use_double_underscores() {
        let (example, unknown) = from_vars::<Example>(
            "SVC",
            vars(&[
                ("SVC_PORT", "8080"),
                ("SVC_NESTED__NAME", "r1"),
                ("OTHER_PORT", "1"),
            ]),
        )
        .expect("valid configuration");
        assert_eq!(example.port, 8080);
        assert_eq!(example.nested.name, "r1");
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn variables_naming_no_setting_are_reported() {
        let (_, unknown) = from_vars::<Example>(
            "SVC",
            vars(&[("SVC_PROT", "8080"), ("SVC_NESTED__NAEM", "r1")]),
        )
        .expect("valid configuration");
        let mut unknown = unknown;
        unknown.sort();
        assert_eq!(unknown, vec!["SVC_NESTED__NAEM", "SVC_PROT"]);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        assert!(from_vars::<Example>("SVC", vars(&[("SVC_PORT", "eighty")])).is_err());
    }
}
