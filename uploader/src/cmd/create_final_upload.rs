use anyhow::Context;
use vod_contracts::commands::{CreateFinalUpload, Reject, RejectCode, UploadCreated};
use vod_contracts::{FlowStatus, SessionStatus, UploadKind};

use super::Handle;
use crate::handlers::{created_reply, not_found, HandlerError, Handlers};
use crate::quotas::{self, Creation};
use crate::store;
use crate::transitions::{self, FinalUpload};

impl Handle for CreateFinalUpload {
    async fn handle(self, handlers: &Handlers) -> Result<UploadCreated, HandlerError> {
        if self.parts.is_empty() {
            return Err(invalid_concat("a final upload names at least one partial upload").into());
        }
        for (index, part) in self.parts.iter().enumerate() {
            if self.parts[..index].contains(part) {
                return Err(invalid_concat(format!("partial upload {part} is named twice")).into());
            }
        }
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        quotas::check_creation(&tx, self.project_id, Creation::Final, &handlers.quota).await??;
        let mut parts = Vec::with_capacity(self.parts.len());
        for (id, row) in self
            .parts
            .iter()
            .zip(store::lock_parts(&tx, &self.parts).await?)
        {
            // An upload that does not exist is not found, as tus servers answer and the
            // OpenAPI document says; one that cannot be joined is an invalid concatenation.
            let row = row
                .filter(|row| row.project_id == self.project_id)
                .ok_or_else(|| not_found(*id))?;
            if row.kind != UploadKind::Partial {
                return Err(invalid_concat(format!("upload {id} is not a partial upload")).into());
            }
            if row.status != SessionStatus::Completed || !row.is_complete() {
                let state = if row.status == SessionStatus::Open {
                    "not complete".to_owned()
                } else {
                    row.status.to_string()
                };
                return Err(invalid_concat(format!("partial upload {id} is {state}")).into());
            }
            if store::is_joined(&tx, *id).await? {
                return Err(invalid_concat(format!(
                    "partial upload {id} is already part of a final upload"
                ))
                .into());
            }
            parts.push(row);
        }
        let created = transitions::create_final_upload(
            &tx,
            FinalUpload {
                project_id: self.project_id,
                video_id: self.video_id,
                title: &self.title,
                filename: self.filename.as_deref(),
                metadata: self.metadata.as_deref(),
                parts: &parts,
                ttl_secs: handlers.session_ttl_secs,
                playback_policy: self.playback_policy,
            },
            handlers.recorder(),
        )
        .await??;
        tx.commit()
            .await
            .context("failed to commit the final upload")?;
        tracing::info!(video_id = %created.video_id, flow_id = %created.flow_id, session_id = %created.session_id, parts = parts.len(), "final upload created, joining its parts");
        let session = store::load_session(&client, created.session_id)
            .await?
            .ok_or_else(|| not_found(created.session_id))?;
        drop(client);
        if session
            .flow
            .is_some_and(|flow| flow.status == FlowStatus::Processing)
        {
            handlers.ensure_finish_requested(&session).await;
        }
        Ok(created_reply(created))
    }
}

fn invalid_concat(message: impl Into<String>) -> Reject {
    Reject::new(RejectCode::InvalidConcat, message)
}
