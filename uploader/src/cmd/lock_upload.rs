use anyhow::Context;
use vod_contracts::commands::{LockUpload, UploadLocked};
use vod_contracts::{SessionId, SessionStatus};

use super::Handle;
use crate::handlers::{closed, lock_named, locked, offset_mismatch, HandlerError, Handlers};
use crate::store;

impl Handle for LockUpload {
    fn session_id(&self) -> Option<SessionId> {
        Some(self.session_id)
    }

    async fn handle(self, handlers: &Handlers) -> Result<UploadLocked, HandlerError> {
        let LockUpload {
            project_id,
            session_id,
            writer,
            offset,
        } = self;
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let session = lock_named(&tx, project_id, session_id).await?;
        if session.status == SessionStatus::Open && session.expired {
            drop(tx);
            return Err(handlers.expire_found(client, &session).await);
        }
        if session.status != SessionStatus::Open {
            return Err(closed(&session).into());
        }
        if !session.may_write(Some(writer)) {
            return Err(locked(&session).into());
        }
        if offset != session.uploaded_bytes {
            return Err(offset_mismatch(&session, offset).into());
        }
        store::hold_writer(&tx, session_id, writer, handlers.writer_lease_secs).await?;
        tx.commit().await.context("failed to commit the lock")?;
        Ok(UploadLocked {
            uploaded_bytes: session.uploaded_bytes,
            expires_at: session.expires_at,
        })
    }
}
