//! Which fflow replica owns a session. PostgreSQL holds the durable answer; Redis caches it
//! so replicas do not ask the database for every chunk. When Redis is empty or unreachable the
//! answer is rebuilt from PostgreSQL; a process is created only for a session that has none.

use std::sync::Arc;

use deadpool_postgres::GenericClient;
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
    pub async fn address_for(
        &self,
        pg: &impl GenericClient,
        session: &SessionRow,
    ) -> Result<String, RoutingError> {
        if let Some(address) = self.cached(session.session_id).await {
            return Ok(address);
        }
        // The row may be older than a concurrent claim: read it again.
        let recorded = store::load_session(pg, session.session_id)
            .await?
            .and_then(|row| row.fflow_address);
        let address = match recorded {
            Some(address) => address,
            None => self.create_process(pg, session).await?,
        };
        self.cache(session.session_id, &address).await;
        Ok(address)
    }

    async fn create_process(
        &self,
        pg: &impl GenericClient,
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
        let recorded =
            store::record_fflow_address(pg, session.session_id, &created.address).await?;
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

    /// The cached address of the session's replica, if Redis has it.
    pub async fn cached(&self, session_id: SessionId) -> Option<String> {
        let mut connection = match self.redis.get().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(error = %error, "redis unavailable, routing from postgres");
                return None;
            }
        };
        redis::cmd("GET")
            .arg(self.key(session_id))
            .query_async::<Option<String>>(&mut connection)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = %error, "redis read failed, routing from postgres");
                None
            })
    }

    pub async fn cache(&self, session_id: SessionId, address: &str) {
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
