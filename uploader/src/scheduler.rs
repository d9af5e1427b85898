//! Jobs of the replica started with `UPLOADER_SCHEDULER=true`.
//!
//! tokio-cron-scheduler knows nothing of other replicas, so every run takes a transaction-scoped
//! advisory lock first: when two replicas run the same job at once, one does the work and the
//! other finds the lock taken and does nothing.
//!
//! - Session expiry: an upload that received no chunk for the session TTL expires, its flow
//!   fails, its ffmpeg process and spool go.
//! - Lost replicas: a flow left processing on an fflow replica that cannot be reached (or no
//!   longer holds the upload) for longer than the reassignment grace fails with the reason.
//! - Unused videos: a video older than `unused_video_ttl_secs` with no flow that is ready,
//!   uploading or processing (never uploaded, or every upload failed, expired or was
//!   cancelled) is deleted: fflow first removes its directory on holder (whatever a failed
//!   publish left, hidden temporaries included), then its rows go, flows and sessions with it.
//!   While holder cannot be reached the rows stay, so the next run tries again. A video
//!   deleted through the API with nothing uploading or processing goes the same way, whatever
//!   its age: this is what removes it when the delete and the outcome could not.
//! - Event retention: events older than `event_retention_secs` are deleted, oldest first.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::handlers::Handlers;
use crate::store;
use crate::transitions;

/// Arbitrary but fixed key of the expiry job's advisory lock.
const EXPIRE_SESSIONS_LOCK_KEY: i64 = 0x766f_645f_6578_7069; // "vod_expi"
/// Sessions expired per transaction; a backlog is worked off over several runs.
const EXPIRE_BATCH: i64 = 100;
/// Arbitrary but fixed key of the unused-video job's advisory lock.
const DELETE_UNUSED_VIDEOS_LOCK_KEY: i64 = 0x766f_645f_756e_7573; // "vod_unus"
/// Arbitrary but fixed key of the lost-replica job's advisory lock.
const LOST_REPLICAS_LOCK_KEY: i64 = 0x766f_645f_6c6f_7374; // "vod_lost"
/// Processing flows whose replica is checked per run.
const LOST_REPLICAS_BATCH: i64 = 20;
/// Arbitrary but fixed key of the event retention job's advisory lock.
const PURGE_EVENTS_LOCK_KEY: i64 = 0x766f_645f_6576_6e74; // "vod_evnt"

/// The scheduler's jobs.
#[derive(Clone, Copy, Debug)]
enum Task {
    ExpireSessions,
    FailFlowsOnLostReplicas,
    DeleteUnusedVideos,
    PurgeEvents,
}

impl Task {
    /// The job's name in metrics and logs.
    fn name(self) -> &'static str {
        match self {
            Task::ExpireSessions => "expire_sessions",
            Task::FailFlowsOnLostReplicas => "fail_flows_on_lost_replicas",
            Task::DeleteUnusedVideos => "delete_unused_videos",
            Task::PurgeEvents => "purge_events",
        }
    }
}

/// When a video counts as unused, and how the job deletes such videos.
#[derive(Clone, Copy, Debug)]
pub struct UnusedVideos {
    pub ttl_secs: u64,
    pub batch: u32,
    pub remove_timeout: Duration,
}

/// How long events are kept, and how many one run deletes at most.
#[derive(Clone, Copy, Debug)]
pub struct EventRetention {
    pub retention_secs: u64,
    pub batch: u32,
}

/// When each job runs: six-field cron expressions (seconds first), UTC.
pub struct Crons<'a> {
    pub expire_sessions: &'a str,
    pub lost_replicas: &'a str,
    pub delete_unused_videos: &'a str,
    pub purge_events: &'a str,
}

#[derive(Clone)]
pub struct Scheduler {
    handlers: Arc<Handlers>,
    session_ttl_secs: u64,
    unused_videos: UnusedVideos,
    event_retention: EventRetention,
}

impl Scheduler {
    pub(crate) fn new(
        handlers: Arc<Handlers>,
        session_ttl_secs: u64,
        unused_videos: UnusedVideos,
        event_retention: EventRetention,
    ) -> Self {
        Self {
            handlers,
            session_ttl_secs,
            unused_videos,
            event_retention,
        }
    }

    /// Deletes the events older than the retention, at most a batch of them, and the webhook
    /// deliveries that finished as long ago. Returns how many events (0 when another replica
    /// holds the job's lock).
    pub async fn purge_expired_events(&self) -> anyhow::Result<usize> {
        let mut client = self
            .handlers
            .pg
            .get()
            .await
            .context("no database connection")?;
        let tx = client.transaction().await?;
        if !try_job_lock(&tx, PURGE_EVENTS_LOCK_KEY).await? {
            tracing::debug!("event retention already running elsewhere");
            return Ok(0);
        }
        let deleted = crate::events::purge_expired(
            &tx,
            self.event_retention.retention_secs,
            i64::from(self.event_retention.batch),
        )
        .await?;
        crate::webhooks::deliveries::purge_finished(
            &tx,
            self.event_retention.retention_secs,
            i64::from(self.event_retention.batch),
        )
        .await?;
        tx.commit()
            .await
            .context("failed to commit the expired events' deletion")?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
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
        if !try_job_lock(&tx, EXPIRE_SESSIONS_LOCK_KEY).await? {
            tracing::debug!("session expiry already running elsewhere");
            return Ok(0);
        }
        let stale = store::lock_expired_sessions(&tx, EXPIRE_BATCH).await?;
        let reason = format!(
            "the upload expired: no data arrived for {} seconds",
            self.session_ttl_secs
        );
        for session in &stale {
            transitions::expire_upload(&tx, session, &reason, self.handlers.recorder()).await?;
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

    /// Deletes up to a batch of unused videos (see the module's documentation), each once fflow
    /// removed its directory on holder. Returns how many it deleted (0 when another replica
    /// holds the job's lock). When holder or fflow cannot be reached it stops and keeps the
    /// remaining videos for the next run; a video holder refuses to clear is kept and the
    /// others go on.
    pub async fn delete_unused_videos(&self) -> anyhow::Result<usize> {
        let mut client = self
            .handlers
            .pg
            .get()
            .await
            .context("no database connection")?;
        let tx = client.transaction().await?;
        if !try_job_lock(&tx, DELETE_UNUSED_VIDEOS_LOCK_KEY).await? {
            tracing::debug!("unused-video deletion already running elsewhere");
            return Ok(0);
        }
        let unused = store::lock_unused_videos(
            &tx,
            self.unused_videos.ttl_secs,
            i64::from(self.unused_videos.batch),
        )
        .await?;
        let mut deleted = Vec::with_capacity(unused.len());
        for video_id in unused {
            // Files first: a video whose files could not be removed keeps its rows, so it is
            // found again next run.
            let removed = self
                .handlers
                .fflow
                .remove_video(video_id, self.unused_videos.remove_timeout)
                .await;
            match removed {
                Ok(()) => {
                    if transitions::delete_video(&tx, video_id).await? {
                        deleted.push(video_id);
                    }
                }
                Err(error) if error.is_unavailable() => {
                    self.handlers.metrics.unused_videos("kept", 1);
                    tracing::warn!(
                        video_id = %video_id,
                        error = %error,
                        "unused video kept: its files on holder could not be removed now"
                    );
                    break;
                }
                Err(error) => {
                    self.handlers.metrics.unused_videos("kept", 1);
                    tracing::error!(
                        video_id = %video_id,
                        error = %error,
                        "unused video kept: fflow refused to remove its files on holder"
                    );
                }
            }
        }
        tx.commit()
            .await
            .context("failed to commit deleted videos")?;
        self.handlers
            .metrics
            .unused_videos("deleted", deleted.len());
        for video_id in &deleted {
            tracing::info!(video_id = %video_id, "unused video deleted");
        }
        Ok(deleted.len())
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
        if !try_job_lock(&tx, LOST_REPLICAS_LOCK_KEY).await? {
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
                            self.handlers.recorder(),
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

    /// Starts the cron jobs (six-field cron expressions, seconds first, UTC); they stop when
    /// the returned scheduler is shut down.
    pub async fn start(&self, crons: Crons<'_>) -> anyhow::Result<JobScheduler> {
        let scheduler = JobScheduler::new().await?;
        let jobs = [
            (
                Task::ExpireSessions,
                crons.expire_sessions,
                "expire_sessions_cron",
            ),
            (
                Task::FailFlowsOnLostReplicas,
                crons.lost_replicas,
                "lost_replicas_cron",
            ),
            (
                Task::DeleteUnusedVideos,
                crons.delete_unused_videos,
                "delete_unused_videos_cron",
            ),
            (Task::PurgeEvents, crons.purge_events, "purge_events_cron"),
        ];
        for (task, cron, setting) in jobs {
            let this = self.clone();
            let job = Job::new_async(cron, move |_id, _scheduler| {
                let this = this.clone();
                Box::pin(async move { this.run_counted(task).await })
            })
            .with_context(|| format!("{setting} is not a valid six-field cron expression"))?;
            scheduler.add(job).await?;
        }
        scheduler.start().await?;
        Ok(scheduler)
    }

    /// Runs one job, counts the run and logs what it did.
    async fn run_counted(&self, task: Task) {
        let done = match task {
            Task::ExpireSessions => self.expire_stale_sessions().await,
            Task::FailFlowsOnLostReplicas => self.fail_flows_on_lost_replicas().await,
            Task::DeleteUnusedVideos => self.delete_unused_videos().await,
            Task::PurgeEvents => self.purge_expired_events().await,
        };
        let name = task.name();
        self.handlers.metrics.scheduler_run(name, done.is_ok());
        match done {
            Ok(0) => {}
            Ok(count) => tracing::info!(job = name, count, "scheduler job done"),
            Err(error) => tracing::error!(job = name, error = ?error, "scheduler job failed"),
        }
    }
}

/// Takes a job's transaction-scoped advisory lock; false when another replica holds it, that
/// is, runs the same job right now.
async fn try_job_lock(tx: &deadpool_postgres::Transaction<'_>, key: i64) -> anyhow::Result<bool> {
    let row = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .await
        .context("failed to ask for the job's lock")?;
    Ok(row.try_get(0)?)
}
