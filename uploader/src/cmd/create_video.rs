use anyhow::Context;
use vod_contracts::commands::{CreateVideo, VideoCreated};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::transitions;

impl Handle for CreateVideo {
    async fn handle(self, handlers: &Handlers) -> Result<VideoCreated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let video_id = transitions::create_video(
            &tx,
            self.project_id,
            &self.title,
            &self.description,
            self.playback_policy,
            handlers.recorder(),
        )
        .await?;
        tx.commit()
            .await
            .context("failed to commit the new video")?;
        tracing::info!(video_id = %video_id, "video created");
        Ok(VideoCreated { video_id })
    }
}
