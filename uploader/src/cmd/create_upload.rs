use anyhow::Context;
use vod_contracts::commands::{CreateUpload, UploadCreated};

use super::Handle;
use crate::handlers::{created_reply, HandlerError, Handlers};
use crate::quotas::{self, Creation};
use crate::transitions::{self, NewUpload};

impl Handle for CreateUpload {
    async fn handle(self, handlers: &Handlers) -> Result<UploadCreated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        quotas::check_creation(&tx, self.project_id, Creation::Open, &handlers.quota).await??;
        let upload = NewUpload {
            project_id: self.project_id,
            video_id: self.video_id,
            title: &self.title,
            filename: self.filename.as_deref(),
            total_bytes: self.total_bytes,
            metadata: self.metadata.as_deref(),
            ttl_secs: handlers.session_ttl_secs,
        };
        let created = transitions::create_upload(&tx, upload, handlers.counted()).await??;
        tx.commit()
            .await
            .context("failed to commit the new upload")?;
        tracing::info!(video_id = %created.video_id, flow_id = %created.flow_id, session_id = %created.session_id, total_bytes = self.total_bytes, "upload created");
        Ok(created_reply(created))
    }
}
