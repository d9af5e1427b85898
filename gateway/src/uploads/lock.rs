//! The write lease a request holds on an upload while it writes: asked for as the request
//! starts (`lock_upload`, polling while another request holds it), waited for before the first
//! piece is sent (`Writing::locked`), given back by the last piece, or, when that could not be
//! told to the uploader, later (`UnlockLater`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vod_contracts::commands::{Ack, Command, RejectCode};
use vod_contracts::{SessionId, WriterId};

use crate::error::ApiError;
use crate::startup::AppState;
use crate::uploader_client::{CallError, UploaderClient};

/// How often a request waiting for an upload's write lock asks again.
pub(super) const LOCK_RETRY: Duration = Duration::from_millis(100);

/// One request's hold on the upload while its pieces are sent.
pub(super) struct Writing {
    /// Slots to publish a piece in, shared by every request.
    pub(super) publishing: Arc<Semaphore>,
    pub(super) lock: tokio::sync::Mutex<Lock>,
    /// The last piece was stored and gave the lock back.
    pub(super) released: AtomicBool,
    /// The upload's expiry, as the last stored piece gave it.
    pub(super) expires_at: Mutex<Option<DateTime<Utc>>>,
}

pub(super) enum Lock {
    Asked(JoinHandle<Result<Option<DateTime<Utc>>, ApiError>>),
    /// Held, with the upload's expiry when it was taken.
    Held(Option<DateTime<Utc>>),
    Refused,
}

impl Writing {
    /// Waits for the write lock asked for at the start of the request. The refusal itself goes
    /// to the first caller, which ends the request; later callers only learn that it came.
    pub(super) async fn locked(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        let mut lock = self.lock.lock().await;
        match &mut *lock {
            Lock::Held(expires_at) => Ok(*expires_at),
            Lock::Refused => Err(ApiError::Internal(anyhow!(
                "the write lock was refused before"
            ))),
            Lock::Asked(asked) => {
                let answer = asked.await.unwrap_or_else(|err| {
                    Err(ApiError::Internal(anyhow!(
                        "asking for the write lock failed: {err}"
                    )))
                });
                *lock = match &answer {
                    Ok(expires_at) => Lock::Held(*expires_at),
                    Err(_) => Lock::Refused,
                };
                answer
            }
        }
    }
}

/// Gives back a write lock the uploader could not be told about (the broker or the database
/// away), with backoff, so that the client's next PATCH is not refused until the lease runs
/// out.
pub(super) struct UnlockLater {
    tasks: TaskTracker,
    stopping: CancellationToken,
    backoff: Duration,
    max_backoff: Duration,
    window: Duration,
}

impl UnlockLater {
    pub(super) fn from_state(state: &AppState) -> Self {
        Self {
            tasks: state.body_tasks.clone(),
            stopping: state.stopping.clone(),
            backoff: Duration::from_millis(state.config.unlock_backoff_ms),
            max_backoff: Duration::from_millis(state.config.unlock_max_backoff_ms),
            window: Duration::from_millis(state.config.unlock_retry_window_ms),
        }
    }

    pub(super) fn spawn(self, uploader: UploaderClient, session_id: SessionId, writer: WriterId) {
        let Self {
            tasks,
            stopping,
            mut backoff,
            max_backoff,
            window,
        } = self;
        let give_back = async move {
            let deadline = tokio::time::Instant::now() + window;
            loop {
                tokio::time::sleep(backoff).await;
                match uploader
                    .call(&Command::UnlockUpload { session_id, writer })
                    .await
                {
                    Ok(_) => {
                        tracing::info!(%session_id, "write lock given back");
                        return;
                    }
                    // The upload is gone or closed: its lock no longer matters.
                    Err(CallError::Rejected(reject)) if reject.code != RejectCode::Unavailable => {
                        tracing::info!(%session_id, reason = %reject, "write lock not given back, no longer needed");
                        return;
                    }
                    Err(error) if tokio::time::Instant::now() + backoff >= deadline => {
                        tracing::warn!(%session_id, error = %error, "write lock not given back, it runs out by itself");
                        return;
                    }
                    Err(_) => backoff = (backoff * 2).min(max_backoff),
                }
            }
        };
        tasks.spawn(async move {
            tokio::select! {
                () = give_back => {}
                () = stopping.cancelled() => {}
            }
        });
    }
}

/// Waits up to `wait` for another request to give the write lock back.
pub(super) async fn lock_upload(
    uploader: UploaderClient,
    session_id: SessionId,
    writer: WriterId,
    offset: u64,
    wait: Duration,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let locked = uploader
            .call(&Command::LockUpload {
                session_id,
                writer,
                offset,
            })
            .await;
        match locked {
            Ok(Ack::UploadLocked { expires_at, .. }) => return Ok(expires_at),
            Ok(other) => return Err(anyhow!("unexpected reply to a lock: {other:?}").into()),
            Err(CallError::Rejected(reject))
                if reject.code == RejectCode::UploadLocked
                    && tokio::time::Instant::now() + LOCK_RETRY < deadline =>
            {
                tokio::time::sleep(LOCK_RETRY).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
