use anyhow::Context;
use vod_contracts::commands::{CreateUpload, UploadCreated};

use super::Handle;
use crate::direct_uploads;
use crate::handlers::{created_reply, HandlerError, Handlers};
use crate::quotas::{self, Creation};
use crate::transitions::{self, NewUpload};

impl Handle for CreateUpload {
    async fn handle(self, handlers: &Handlers) -> Result<UploadCreated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        quotas::check_creation(&tx, self.project_id, Creation::Open, &handlers.quota).await??;
        // Through a direct upload's URL: the direct upload is claimed in this transaction, and
        // always makes a new video with its title and description.
        let claimed = match self.direct_upload_id {
            Some(direct_upload_id) => {
                Some(direct_uploads::lock_waiting(&tx, self.project_id, direct_upload_id).await??)
            }
            None => None,
        };
        let title = claimed
            .as_ref()
            .and_then(|claimed| claimed.title.as_deref())
            .unwrap_or(&self.title);
        let upload = NewUpload {
            project_id: self.project_id,
            video_id: self.video_id.filter(|_| claimed.is_none()),
            title,
            description: claimed
                .as_ref()
                .map_or("", |claimed| claimed.description.as_str()),
            playback_policy: claimed
                .as_ref()
                .map_or(self.playback_policy, |claimed| claimed.playback_policy),
            filename: self.filename.as_deref(),
            total_bytes: self.total_bytes,
            metadata: self.metadata.as_deref(),
            ttl_secs: handlers.session_ttl_secs,
        };
        let created = transitions::create_upload(&tx, upload, handlers.recorder()).await??;
        if let (Some(_), Some(direct_upload_id)) = (&claimed, self.direct_upload_id) {
            let claim = direct_uploads::Claim {
                direct_upload_id,
                video_id: created.video_id,
                session_id: created.session_id,
            };
            direct_uploads::record_claim(&tx, self.project_id, claim, handlers.recorder())
                .await??;
        }
        tx.commit()
            .await
            .context("failed to commit the new upload")?;
        tracing::info!(video_id = %created.video_id, flow_id = %created.flow_id, session_id = %created.session_id, total_bytes = self.total_bytes, direct_upload_id = ?self.direct_upload_id, "upload created");
        Ok(created_reply(created))
    }
}
