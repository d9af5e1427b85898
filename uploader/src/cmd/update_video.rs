use anyhow::Context;
use vod_contracts::commands::{Reject, RejectCode, UpdateVideo, VideoUpdated};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::transitions;

impl Handle for UpdateVideo {
    async fn handle(self, handlers: &Handlers) -> Result<VideoUpdated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        if !transitions::update_video(&tx, &self, handlers.recorder()).await? {
            return Err(video_not_found(&self.video_id).into());
        }
        tx.commit()
            .await
            .context("failed to commit the updated video")?;
        tracing::info!(video_id = %self.video_id, "video updated");
        Ok(VideoUpdated {})
    }
}

/// Another project's video, and a deleted one, is answered as one that does not exist.
pub(super) fn video_not_found(video_id: &vod_contracts::VideoId) -> Reject {
    Reject::new(
        RejectCode::VideoNotFound,
        format!("video {video_id} does not exist"),
    )
}
