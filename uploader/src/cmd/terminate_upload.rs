use anyhow::Context;
use vod_contracts::commands::{Reject, RejectCode, TerminateUpload, UploadTerminated};
use vod_contracts::{SessionId, SessionStatus};

use super::Handle;
use crate::handlers::{lock_named, HandlerError, Handlers};
use crate::transitions;

impl Handle for TerminateUpload {
    fn session_id(&self) -> Option<SessionId> {
        Some(self.session_id)
    }

    async fn handle(self, handlers: &Handlers) -> Result<UploadTerminated, HandlerError> {
        let TerminateUpload {
            project_id,
            session_id,
        } = self;
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let session = lock_named(&tx, project_id, session_id).await?;
        match session.status {
            SessionStatus::Terminated => return Ok(UploadTerminated {}),
            SessionStatus::Open => {}
            other => {
                return Err(Reject::new(
                    RejectCode::UploadClosed,
                    format!("upload {session_id} is {other} and can no longer be terminated"),
                )
                .into())
            }
        }
        transitions::terminate_upload(&tx, &session, handlers.recorder()).await?;
        tx.commit()
            .await
            .context("failed to commit the termination")?;
        tracing::info!(session_id = %session_id, kind = session.kind.as_str(), "upload terminated");
        drop(client);
        handlers.release_process(&session).await;
        Ok(UploadTerminated {})
    }
}
