use anyhow::Context;
use vod_contracts::commands::{DeclareLength, LengthDeclared, Reject, RejectCode};
use vod_contracts::{SessionId, SessionStatus};

use super::Handle;
use crate::handlers::{closed, lock_named, HandlerError, Handlers};
use crate::transitions;

impl Handle for DeclareLength {
    fn session_id(&self) -> Option<SessionId> {
        Some(self.session_id)
    }

    async fn handle(self, handlers: &Handlers) -> Result<LengthDeclared, HandlerError> {
        let DeclareLength {
            project_id,
            session_id,
            total_bytes,
        } = self;
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let session = lock_named(&tx, project_id, session_id).await?;
        let declared = |uploaded_bytes| LengthDeclared {
            uploaded_bytes,
            total_bytes,
        };
        match session.total_bytes {
            Some(known) if known == total_bytes => return Ok(declared(session.uploaded_bytes)),
            Some(known) => {
                return Err(Reject::new(
                    RejectCode::InvalidLength,
                    format!("the upload's length is {known} and cannot change"),
                )
                .into())
            }
            None => {}
        }
        if session.status == SessionStatus::Open && session.expired {
            drop(tx);
            return Err(handlers.expire_found(client, &session).await);
        }
        if session.status != SessionStatus::Open {
            return Err(closed(&session).into());
        }
        if total_bytes < session.uploaded_bytes {
            return Err(Reject::new(
                RejectCode::InvalidLength,
                format!(
                    "the upload already holds {} bytes, more than {total_bytes}",
                    session.uploaded_bytes
                ),
            )
            .into());
        }
        transitions::declare_length(&tx, &session, total_bytes).await?;
        let complete = total_bytes == session.uploaded_bytes;
        if complete {
            transitions::complete_upload(&tx, &session, handlers.recorder()).await?;
        }
        tx.commit()
            .await
            .context("failed to commit the declared length")?;
        tracing::info!(session_id = %session_id, total_bytes, "upload length declared");
        if complete {
            handlers.after_complete(session_id).await;
        }
        Ok(declared(session.uploaded_bytes))
    }
}
