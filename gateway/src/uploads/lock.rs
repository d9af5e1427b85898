//! The write lease a request holds on an upload while it writes: for a body sent through the
//! broker, asked for as the request starts (`lock_upload`, polling while another request holds
//! it) and waited for before the first piece is sent (`Writing::locked`); a streamed body's
//! first piece takes it in its own request instead. Given back by the last piece, or, when
//! that could not be told to the uploader, later (`UnlockLater`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vod_contracts::commands::{LockUpload, RejectCode, UnlockUpload, UploadLocked};
use vod_contracts::{ProjectId, SessionId, WriterId};
use vod_infra::backoff::Backoff;

use crate::error::ApiError;
use crate::state::AppState;
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
    backoff: Backoff,
    window: Duration,
}

impl UnlockLater {
    pub(super) fn from_state(state: &AppState) -> Self {
        Self {
            tasks: state.body_tasks.clone(),
            stopping: state.stopping.clone(),
            backoff: Backoff::doubling(
                Duration::from_millis(state.config.unlock_backoff_ms),
                Duration::from_millis(state.config.unlock_max_backoff_ms),
            ),
            window: Duration::from_millis(state.config.unlock_retry_window_ms),
        }
    }

    pub(super) fn spawn(self, uploader: UploaderClient, session_id: SessionId, writer: WriterId) {
        let Self {
            tasks,
            stopping,
            mut backoff,
            window,
        } = self;
        let give_back = async move {
            let deadline = tokio::time::Instant::now() + window;
            loop {
                let waited = backoff.next_delay();
                tokio::time::sleep(waited).await;
                match uploader.call(&UnlockUpload { session_id, writer }).await {
                    Ok(_) => {
                        tracing::info!(%session_id, "write lock given back");
                        return;
                    }
                    // The upload is gone or closed: its lock no longer matters.
                    Err(CallError::Rejected(reject)) if reject.code != RejectCode::Unavailable => {
                        tracing::info!(%session_id, reason = %reject, "write lock not given back, no longer needed");
                        return;
                    }
                    Err(error) if tokio::time::Instant::now() + waited >= deadline => {
                        tracing::warn!(%session_id, error = %error, "write lock not given back, it runs out by itself");
                        return;
                    }
                    Err(_) => {}
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
    project_id: ProjectId,
    session_id: SessionId,
    writer: WriterId,
    offset: u64,
    wait: Duration,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let locked = uploader
            .call(&LockUpload {
                project_id,
                session_id,
                writer,
                offset,
            })
            .await;
        match locked {
            Ok(UploadLocked { expires_at, .. }) => return Ok(expires_at),
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

#[cfg(test)]
mod tests {
    use std::future::Future;

    use chrono::TimeZone;
    use tokio::sync::oneshot;

    use super::*;

    fn asking(
        answer: impl Future<Output = Result<Option<DateTime<Utc>>, ApiError>> + Send + 'static,
    ) -> Writing {
        Writing {
            publishing: Arc::new(Semaphore::new(1)),
            lock: tokio::sync::Mutex::new(Lock::Asked(tokio::spawn(answer))),
            released: AtomicBool::new(false),
            expires_at: Mutex::new(None),
        }
    }

    fn expiry() -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).single()
    }

    #[tokio::test]
    async fn a_granted_lock_is_held_for_every_piece_with_its_expiry() {
        let writing = asking(async { Ok(expiry()) });
        for _ in 0..3 {
            assert_eq!(writing.locked().await.ok(), Some(expiry()));
        }
    }

    #[tokio::test]
    async fn a_refusal_goes_to_the_first_caller_and_later_ones_only_learn_it_came() {
        let writing = asking(async { Err(ApiError::UploadLocked("another writer".to_owned())) });
        let first = writing.locked().await.expect_err("refused");
        assert_eq!(first.code(), "upload_locked");
        assert_eq!(first.to_string(), "another writer");
        for _ in 0..2 {
            let later = writing.locked().await.expect_err("refused before");
            assert_eq!(later.code(), "internal");
            assert_eq!(later.to_string(), "the write lock was refused before");
        }
    }

    #[tokio::test]
    async fn pieces_waiting_together_all_learn_the_one_answer() {
        let (grant, granted) = oneshot::channel();
        let writing = asking(async move { granted.await.unwrap_or(Ok(None)) });
        let waiting = futures_util::future::join3(writing.locked(), writing.locked(), async {
            tokio::task::yield_now().await;
            let _ = grant.send(Ok(expiry()));
        });
        let (first, second, ()) = waiting.await;
        assert_eq!(first.ok(), Some(expiry()));
        assert_eq!(second.ok(), Some(expiry()));
    }

    #[tokio::test]
    async fn an_asking_task_that_ended_without_an_answer_is_an_internal_refusal() {
        let writing = asking(std::future::pending());
        if let Lock::Asked(asked) = &*writing.lock.lock().await {
            asked.abort();
        }
        let error = writing.locked().await.expect_err("no answer");
        assert_eq!(error.code(), "internal");
        assert!(error
            .to_string()
            .starts_with("asking for the write lock failed"));
        let later = writing.locked().await.expect_err("refused before");
        assert_eq!(later.to_string(), "the write lock was refused before");
    }
}
