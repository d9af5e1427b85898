//! Jobs of the replica started with `UPLOADER_SCHEDULER=true`.
//!
//! tokio-cron-scheduler knows nothing of other replicas, so every run takes a transaction-scoped
//! advisory lock first: when two replicas run the same job at once, one does the work and the
//! other finds the lock taken and does nothing.

use std::sync::Arc;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::handlers::Handlers;
use crate::store;
use crate::transitions;

/// Arbitrary but fixed key of the expiry job's advisory lock.
const EXPIRE_SESSIONS_LOCK_KEY: i64 = 0x766f_645f_6578_7069; // "vod_expi"
/// The expiry job's name in metrics.
const EXPIRE_SESSIONS_JOB: &str = "expire_sessions";
/// Sessions expired per transaction; a backlog is worked off over several runs.
const EXPIRE_BATCH: i64 = 100;

#[derive(Clone)]
pub struct Scheduler {
    handlers: Arc<Handlers>,
    session_ttl_secs: u64,
}

impl Scheduler {
    pub(crate) fn new(handlers: Arc<Handlers>, session_ttl_secs: u64) -> Self {
        Self {
            handlers,
            session_ttl_secs,
        }
    }

    /// Expires sessions past their expiry (open ones that received no chunk for longer than the
    /// TTL, and complete partial uploads no final upload joined in time): the session closes,
    /// its flow fails with the reason, its ffmpeg process and route are dropped.
    /// Returns how many sessions it expired (0 when another replica holds the job's lock).
    pub async fn expire_stale_sessions(&self) -> anyhow::Result<usize> {
        let mut client = self
            .handlers
            .pg
            .get()
            .await
            .context("no database connection")?;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1)",
                &[&EXPIRE_SESSIONS_LOCK_KEY],
            )
            .await?
            .try_get(0)?;
        if !locked {
            tracing::debug!("session expiry already running elsewhere");
            return Ok(0);
        }
        let stale = store::lock_expired_sessions(&tx, EXPIRE_BATCH).await?;
        let reason = format!(
            "the upload expired: no data arrived for {} seconds",
            self.session_ttl_secs
        );
        for session in &stale {
            transitions::expire_upload(&tx, session, &reason, self.handlers.counted()).await?;
        }
        tx.commit()
            .await
            .context("failed to commit expired sessions")?;
        self.handlers.metrics.sessions_expired(stale.len());
        for session in &stale {
            tracing::info!(
                session_id = %session.session_id,
                kind = session.kind.as_str(),
                "upload session expired"
            );
            self.handlers.release_process(session).await;
        }
        Ok(stale.len())
    }

    /// Starts the cron jobs; they stop when the returned scheduler is shut down.
    pub async fn start(&self, expire_sessions_cron: &str) -> anyhow::Result<JobScheduler> {
        let scheduler = JobScheduler::new().await?;
        let this = self.clone();
        let job = Job::new_async(expire_sessions_cron, move |_id, _scheduler| {
            let this = this.clone();
            Box::pin(async move {
                let expired = this.expire_stale_sessions().await;
                this.handlers
                    .metrics
                    .scheduler_run(EXPIRE_SESSIONS_JOB, expired.is_ok());
                match expired {
                    Ok(0) => {}
                    Ok(count) => tracing::info!(count, "stale upload sessions expired"),
                    Err(error) => tracing::error!(error = ?error, "session expiry failed"),
                }
            })
        })
        .context("expire_sessions_cron is not a valid six-field cron expression")?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        Ok(scheduler)
    }
}
