use anyhow::Context;
use vod_contracts::commands::{CreatePartialUpload, PartialUploadCreated};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::quotas::{self, Creation};
use crate::transitions;

impl Handle for CreatePartialUpload {
    async fn handle(self, handlers: &Handlers) -> Result<PartialUploadCreated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        quotas::check_creation(&tx, self.project_id, Creation::Open, &handlers.quota).await??;
        let (session_id, expires_at) = transitions::create_partial_upload(
            &tx,
            self.project_id,
            self.total_bytes,
            self.metadata.as_deref(),
            handlers.session_ttl_secs,
            handlers.recorder(),
        )
        .await?;
        tx.commit()
            .await
            .context("failed to commit the partial upload")?;
        tracing::info!(session_id = %session_id, total_bytes = self.total_bytes, "partial upload created");
        Ok(PartialUploadCreated {
            session_id,
            expires_at,
        })
    }
}
