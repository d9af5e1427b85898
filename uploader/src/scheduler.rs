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
/// Arbitrary but fixed key of the lost-replica job's advisory lock.
const LOST_REPLICAS_LOCK_KEY: i64 = 0x766f_645f_6c6f_7374; // "vod_lost"
/// Processing flows whose replica is checked per run.
const LOST_REPLICAS_BATCH: i64 = 20;

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

    /// Fails flows left processing on an fflow replica that lost them: one that cannot be
    /// reached, or that no longer holds the session, for longer than the reassignment grace
    /// (a replica restarted with its spool resumes the encode, and a short outage changes
    /// nothing). Without this such a flow would stay processing forever: no outcome is coming.
    /// Returns how many flows it failed (0 when another replica holds the job's lock).
    pub async fn fail_flows_on_lost_replicas(&self) -> anyhow::Result<usize> {
        let grace = self.handlers.fflow_reassign_after;
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
                &[&LOST_REPLICAS_LOCK_KEY],
            )
            .await?
            .try_get(0)?;
        if !locked {
            tracing::debug!("lost replica check already running elsewhere");
            return Ok(0);
        }
        let processing =
            store::processing_sessions(&tx, grace.as_secs(), LOST_REPLICAS_BATCH).await?;
        let mut failed = Vec::new();
        for session in &processing {
            let (Some(address), Some(flow)) = (&session.fflow_address, &session.flow) else {
                continue;
            };
            let checked = self
                .handlers
                .fflow
                .check_session(address, session.session_id)
                .await;
            match checked {
                Ok(()) if session.fflow_unreachable_for.is_some() => {
                    store::note_fflow_reachable(&tx, session.session_id).await?;
                }
                Ok(()) => {}
                Err(error) if error.may_be_lost() => match session.fflow_unreachable_for {
                    Some(lost_for) if lost_for >= grace => {
                        let reason = format!(
                            "the encoder holding the upload was lost: fflow replica {address} \
                             failed for {} s ({error})",
                            lost_for.as_secs()
                        );
                        if transitions::fail_processing_on_lost_replica(
                            &tx,
                            session,
                            flow,
                            &reason,
                            self.handlers.counted(),
                        )
                        .await?
                        {
                            failed.push((session.session_id, flow.flow_id, reason));
                        }
                    }
                    _ => store::note_fflow_unreachable(&tx, session.session_id).await?,
                },
                Err(error) => {
                    tracing::debug!(session_id = %session.session_id, error = %error, "replica answered the check");
                }
            }
        }
        tx.commit()
            .await
            .context("failed to commit the lost replica check")?;
        for (session_id, flow_id, reason) in &failed {
            tracing::warn!(session_id = %session_id, flow_id = %flow_id, reason = %reason, "processing flow failed: its fflow replica was lost");
            self.handlers.routing.forget(*session_id).await;
        }
        Ok(failed.len())
    }

    /// Starts the cron jobs; they stop when the returned scheduler is shut down.
    pub async fn start(
        &self,
        expire_sessions_cron: &str,
        lost_replicas_cron: &str,
    ) -> anyhow::Result<JobScheduler> {
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
        let this = self.clone();
        let job = Job::new_async(lost_replicas_cron, move |_id, _scheduler| {
            let this = this.clone();
            Box::pin(async move {
                match this.fail_flows_on_lost_replicas().await {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(count, "flows failed on lost fflow replicas"),
                    Err(error) => tracing::error!(error = ?error, "lost replica check failed"),
                }
            })
        })
        .context("lost_replicas_cron is not a valid six-field cron expression")?;
        scheduler.add(job).await?;
        scheduler.start().await?;
        Ok(scheduler)
    }
}
