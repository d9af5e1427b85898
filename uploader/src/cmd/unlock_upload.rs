use anyhow::Context;
use vod_contracts::commands::{UnlockUpload, UploadUnlocked};
use vod_contracts::SessionId;

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::store;

impl Handle for UnlockUpload {
    fn session_id(&self) -> Option<SessionId> {
        Some(self.session_id)
    }

    async fn handle(self, handlers: &Handlers) -> Result<UploadUnlocked, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        store::release_writer(&client, self.session_id, self.writer).await?;
        Ok(UploadUnlocked {})
    }
}
