//! Which fflow replica owns a session. PostgreSQL holds the durable answer; Redis caches it
//! so replicas do not ask the database for every chunk. When Redis is empty or unreachable the
//! answer is rebuilt from PostgreSQL; a process is created only for a session that has none.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::Pool;
use deadpool_redis::redis;
use vod_contracts::fflow::CreateProcess;
use vod_contracts::SessionId;

use crate::fflow_client::{FflowCallError, FflowClient};
use crate::store::{self, SessionRow};

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error(transparent)]
    Fflow(#[from] FflowCallError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What Redis said of a session's route.
#[derive(Debug, PartialEq, Eq)]
pub enum CachedRoute {
    Found(String),
    Missing,
    /// Redis could not be reached or read.
    Unavailable,
}

#[derive(Clone)]
pub struct Routing {
    redis: deadpool_redis::Pool,
    key_prefix: String,
    ttl_secs: u64,
    fflow: Arc<FflowClient>,
}

impl Routing {
    pub fn new(
        redis: deadpool_redis::Pool,
        key_prefix: String,
        ttl_secs: u64,
        fflow: Arc<FflowClient>,
    ) -> Self {
        Self {
            redis,
            key_prefix,
            ttl_secs,
            fflow,
        }
    }

    fn key(&self, session_id: SessionId) -> String {
        format!("{}:session:{session_id}:fflow", self.key_prefix)
    }

    /// The address of the replica that owns the session, creating its process on first use.
    /// A database connection is taken for each statement, never held while fflow is called.
    pub async fn address_for(
        &self,
        pg: &Pool,
        session: &SessionRow,
    ) -> Result<String, RoutingError> {
        let cached = self.cached(session.session_id).await;
        if let CachedRoute::Found(address) = cached {
            return Ok(address);
        }
        // The row may be older than a concurrent claim: read it again.
        let recorded = {
            let client = pg.get().await.context("no database connection")?;
            store::recorded_fflow_address(&client, session.session_id).await?
        };
        let address = match recorded {
            Some(address) => address,
            None => self.create_process(pg, session).await?,
        };
        self.cache_unless_known(session.session_id, &address, &cached)
            .await;
        Ok(address)
    }

    async fn create_process(
        &self,
        pg: &Pool,
        session: &SessionRow,
    ) -> Result<String, RoutingError> {
        let created = self
            .fflow
            .create_process(&CreateProcess {
                session_id: session.session_id,
                target: session.flow.map(|flow| flow.target()),
                total_bytes: session.total_bytes,
            })
            .await?;
        let recorded = {
            let client = pg.get().await.context("no database connection")?;
            store::record_fflow_address(&client, session.session_id, &created.address).await?
        };
        if recorded != created.address {
            tracing::info!(
                session_id = %session.session_id,
                "another replica routed the session first; dropping the extra process"
            );
            if let Err(error) = self
                .fflow
                .delete_session(&created.address, session.session_id)
                .await
            {
                tracing::warn!(session_id = %session.session_id, error = %error, "extra process not removed");
            }
        } else {
            tracing::info!(
                session_id = %session.session_id,
                kind = session.kind.as_str(),
                replica = %created.replica_id,
                address = %created.address,
                "session routed to fflow replica"
            );
        }
        Ok(recorded)
    }

    /// What Redis holds of the session's route.
    pub async fn cached(&self, session_id: SessionId) -> CachedRoute {
        let mut connection = match self.redis.get().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(error = %error, "redis unavailable, routing from postgres");
                return CachedRoute::Unavailable;
            }
        };
        match redis::cmd("GET")
            .arg(self.key(session_id))
            .query_async::<Option<String>>(&mut connection)
            .await
        {
            Ok(Some(address)) => CachedRoute::Found(address),
            Ok(None) => CachedRoute::Missing,
            Err(error) => {
                tracing::warn!(error = %error, "redis read failed, routing from postgres");
                CachedRoute::Unavailable
            }
        }
    }

    /// Caches `address` as the session's route, unless `cached` says Redis already holds it
    /// or could not be reached a moment ago: a chunk then waits for Redis once, not twice.
    pub async fn cache_unless_known(
        &self,
        session_id: SessionId,
        address: &str,
        cached: &CachedRoute,
    ) {
        match cached {
            CachedRoute::Found(known) if known == address => {}
            CachedRoute::Unavailable => {}
            CachedRoute::Found(_) | CachedRoute::Missing => self.cache(session_id, address).await,
        }
    }

    async fn cache(&self, session_id: SessionId, address: &str) {
        let Ok(mut connection) = self.redis.get().await else {
            return;
        };
        let result = redis::cmd("SET")
            .arg(self.key(session_id))
            .arg(address)
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async::<()>(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::warn!(session_id = %session_id, error = %error, "routing not cached");
        }
    }

    /// Drops the cached route of a session that is over.
    pub async fn forget(&self, session_id: SessionId) {
        let Ok(mut connection) = self.redis.get().await else {
            return;
        };
        let result = redis::cmd("DEL")
            .arg(self.key(session_id))
            .query_async::<()>(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::warn!(session_id = %session_id, error = %error, "routing entry not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;
    use vod_infra::config::RedisSettings;
    use vod_infra::testsuite::{FaultProxy, TestWorld};

    use super::*;

    fn routing(settings: &RedisSettings) -> Routing {
        let fflow = FflowClient::new(
            Vec::new(),
            &secrecy::SecretString::from("unused"),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("an fflow client");
        let pool = vod_infra::redis::pool(settings).expect("a redis pool");
        Routing::new(pool, settings.key_prefix.clone(), 60, Arc::new(fflow))
    }

    #[tokio::test]
    async fn a_route_is_cached_when_missing_or_stale_and_not_tried_again_while_redis_is_away() {
        let world = TestWorld::new().await;
        let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::redis_url()).await;
        let routing = routing(&RedisSettings {
            url: SecretString::from(url),
            timeout_ms: 500,
            ..world.redis()
        });
        let session = SessionId::new();
        let found = |address: &str| CachedRoute::Found(address.to_owned());

        let cached = routing.cached(session).await;
        assert_eq!(cached, CachedRoute::Missing);
        routing
            .cache_unless_known(session, "http://r1", &cached)
            .await;
        assert_eq!(routing.cached(session).await, found("http://r1"));
        // The row names another replica now: the cache follows it.
        let cached = routing.cached(session).await;
        routing
            .cache_unless_known(session, "http://r2", &cached)
            .await;
        assert_eq!(routing.cached(session).await, found("http://r2"));

        proxy.cut();
        let cached = routing.cached(session).await;
        assert_eq!(cached, CachedRoute::Unavailable);
        let refused = proxy.refused();
        assert!(refused >= 1, "the read tried to reach Redis");
        routing
            .cache_unless_known(session, "http://r1", &cached)
            .await;
        assert_eq!(
            proxy.refused(),
            refused,
            "a chunk does not try Redis a second time once it found it away"
        );

        proxy.restore();
        assert_eq!(routing.cached(session).await, found("http://r2"));
    }
}
