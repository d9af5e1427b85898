use anyhow::Context;
use vod_contracts::commands::{DeleteVideo, VideoDeleted};

use super::update_video::video_not_found;
use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::{store, transitions};

impl Handle for DeleteVideo {
    /// Marks the video deleted and terminates its open uploads in one transaction, frees their
    /// fflow processes as a tus termination does, then purges the video unless an encode of it
    /// still runs (its outcome purges it then). A second delete finds no video.
    async fn handle(self, handlers: &Handlers) -> Result<VideoDeleted, HandlerError> {
        let DeleteVideo {
            project_id,
            video_id,
        } = self;
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        // Sessions before the video, in the order chunks take them; an upload attached in
        // between is found again once the video is locked.
        let mut terminated = store::lock_open_sessions_of_video(&tx, video_id).await?;
        if !transitions::mark_video_deleted(&tx, project_id, video_id).await? {
            return Err(video_not_found(&video_id).into());
        }
        for session in store::lock_open_sessions_of_video(&tx, video_id).await? {
            if !terminated
                .iter()
                .any(|s| s.session_id == session.session_id)
            {
                terminated.push(session);
            }
        }
        for session in &terminated {
            transitions::terminate_upload(&tx, session, handlers.recorder()).await?;
        }
        transitions::record_video_deleted(&tx, video_id, handlers.recorder()).await?;
        tx.commit()
            .await
            .context("failed to commit the deleted video")?;
        drop(client);
        tracing::info!(video_id = %video_id, uploads_terminated = terminated.len(), "video deleted");
        for session in &terminated {
            handlers.release_process(session).await;
        }
        if let Err(error) = handlers.purger().purge(video_id).await {
            tracing::warn!(video_id = %video_id, error = ?error, "deleted video not purged now, the scheduler will");
        }
        Ok(VideoDeleted {})
    }
}
