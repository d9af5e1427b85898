//! The commands about direct uploads; what they write is in `crate::direct_uploads`. The
//! upload created through a direct upload's URL is a `CreateUpload` (`create_upload.rs`).

use anyhow::Context;
use vod_contracts::commands::{
    CancelDirectUpload, CreateDirectUpload, DirectUploadCancelled, DirectUploadStored, Reject,
    RejectCode,
};

use super::Handle;
use crate::direct_uploads::{self, NewDirectUpload};
use crate::handlers::{HandlerError, Handlers};

impl Handle for CreateDirectUpload {
    async fn handle(self, handlers: &Handlers) -> Result<DirectUploadStored, HandlerError> {
        let token_sha256 = decode_sha256(&self.token_sha256)?;
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let direct = NewDirectUpload {
            project_id: self.project_id,
            direct_upload_id: self.direct_upload_id,
            token_sha256: &token_sha256,
            title: self.title.as_deref(),
            description: &self.description,
            playback_policy: self.playback_policy,
            cors_origin: self.cors_origin.as_deref(),
            timeout_secs: self.timeout_secs,
        };
        let (created_at, expires_at) =
            direct_uploads::create(&tx, direct, handlers.recorder()).await??;
        tx.commit()
            .await
            .context("failed to commit the direct upload")?;
        tracing::info!(project_id = %self.project_id, direct_upload_id = %self.direct_upload_id, "direct upload created");
        Ok(DirectUploadStored {
            created_at,
            expires_at,
        })
    }
}

impl Handle for CancelDirectUpload {
    async fn handle(self, handlers: &Handlers) -> Result<DirectUploadCancelled, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        direct_uploads::cancel(
            &tx,
            self.project_id,
            self.direct_upload_id,
            handlers.recorder(),
        )
        .await??;
        tx.commit()
            .await
            .context("failed to commit the cancelled direct upload")?;
        tracing::info!(project_id = %self.project_id, direct_upload_id = %self.direct_upload_id, "direct upload cancelled");
        Ok(DirectUploadCancelled {})
    }
}

fn decode_sha256(hex: &str) -> Result<Vec<u8>, Reject> {
    let invalid = || {
        Reject::new(
            RejectCode::InvalidCommand,
            "token_sha256 is not 64 hex digits",
        )
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    (0..64)
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())
}
