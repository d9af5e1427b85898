//! The Redis pool. Redis here is a cache of what PostgreSQL knows; nothing lives only there.

use std::time::Duration;

use anyhow::Context;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

pub fn pool(settings: &RedisSettings) -> anyhow::Result<Pool> {
    let mut config = Config::from_url(settings.url.expose_secret());
    let timeout = Some(Duration::from_millis(settings.timeout_ms));
    let mut pool_config = PoolConfig::new(settings.max_connections);
    pool_config.timeouts = Timeouts {
        wait: timeout,
        create: timeout,
        recycle: timeout,
    };
    config.pool = Some(pool_config);
    config
        .create_pool(Some(Runtime::Tokio1))
        .context("failed to build the redis pool")
}

/// True when Redis answers `PING` within the pool's timeouts.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(mut connection) => deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    }
}
