use anyhow::Context;
use vod_contracts::commands::{CreateVideo, VideoCreated};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::transitions;

impl Handle for CreateVideo {
    async fn handle(self, handlers: &Handlers) -> Result<VideoCreated, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        let video_id = transitions::create_video(
            &client,
            self.project_id,
            &self.title,
            &self.description,
            handlers.counted(),
        )
        .await?;
        tracing::info!(video_id = %video_id, "video created");
        Ok(VideoCreated { video_id })
    }
}
