//! What the uploader does with each command and chunk. Every handler is safe to run twice for
//! the same message: lapin redelivers after a lost connection, and a gateway may resend.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use deadpool_postgres::Pool;
use vod_contracts::commands::{Ack, ChunkHeader, Command, Reject, RejectCode};
use vod_contracts::{FlowStatus, SessionId, SessionStatus};

use crate::fflow_client::FflowClient;
use crate::routing::{Routing, RoutingError};
use crate::store::{self, SessionRow};
use crate::transitions::{self, NewUpload};

/// Failures of a handler: a refusal the client must hear, or a fault of ours or of a dependency.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Rejected(#[from] Reject),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<RoutingError> for HandlerError {
    fn from(error: RoutingError) -> Self {
        match error {
            RoutingError::Fflow(error) => HandlerError::Rejected(Reject::new(
                RejectCode::Unavailable,
                format!("no encoder could take the upload: {error}"),
            )),
            RoutingError::Store(error) => HandlerError::Internal(error),
        }
    }
}

impl HandlerError {
    /// What the gateway is told. Internal faults are logged here and answered generically.
    pub fn into_reject(self) -> Reject {
        match self {
            HandlerError::Rejected(reject) => reject,
            HandlerError::Internal(error) => {
                tracing::error!(error = ?error, "command failed");
                Reject::new(
                    RejectCode::Unavailable,
                    "the upload service is temporarily unavailable",
                )
            }
        }
    }
}

pub struct Handlers {
    pub pg: Pool,
    pub routing: Routing,
    pub fflow: Arc<FflowClient>,
    pub finish_attempts: u32,
}

impl Handlers {
    pub async fn command(&self, command: Command) -> Result<Ack, HandlerError> {
        match command {
            Command::CreateVideo { title, description } => {
                let client = self.pg.get().await.context("no database connection")?;
                let video_id = transitions::create_video(&client, &title, &description).await?;
                tracing::info!(video_id = %video_id, "video created");
                Ok(Ack::VideoCreated { video_id })
            }
            Command::CreateUpload {
                video_id,
                title,
                filename,
                total_bytes,
                metadata,
            } => {
                let mut client = self.pg.get().await.context("no database connection")?;
                let tx = client.transaction().await.context("failed to begin")?;
                let upload = NewUpload {
                    video_id,
                    title: &title,
                    filename: filename.as_deref(),
                    total_bytes,
                    metadata: metadata.as_deref(),
                };
                let (video_id, flow_id, session_id) =
                    transitions::create_upload(&tx, upload).await??;
                tx.commit()
                    .await
                    .context("failed to commit the new upload")?;
                tracing::info!(video_id = %video_id, flow_id = %flow_id, session_id = %session_id, total_bytes, "upload created");
                Ok(Ack::UploadCreated {
                    video_id,
                    flow_id,
                    session_id,
                })
            }
            Command::TerminateUpload { session_id } => self.terminate(session_id).await,
        }
    }

    async fn terminate(&self, session_id: SessionId) -> Result<Ack, HandlerError> {
        let mut client = self.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let session = store::lock_session(&tx, session_id)
            .await?
            .ok_or_else(|| not_found(session_id))?;
        match session.status {
            SessionStatus::Terminated => return Ok(Ack::UploadTerminated),
            SessionStatus::Open => {}
            other => {
                return Err(Reject::new(
                    RejectCode::UploadClosed,
                    format!("upload {session_id} is {other} and can no longer be terminated"),
                )
                .into())
            }
        }
        transitions::terminate_upload(&tx, session_id, session.flow_id, session.video_id).await?;
        tx.commit()
            .await
            .context("failed to commit the termination")?;
        tracing::info!(session_id = %session_id, flow_id = %session.flow_id, video_id = %session.video_id, "upload terminated");
        self.release_process(&session).await;
        Ok(Ack::UploadTerminated)
    }

    /// Stores one chunk: checks it against the database, hands it to the session's fflow
    /// replica, and only then advances the offset.
    pub async fn chunk(&self, header: ChunkHeader, payload: Bytes) -> Result<Ack, HandlerError> {
        let client = self.pg.get().await.context("no database connection")?;
        let session = store::load_session(&client, header.session_id)
            .await?
            .ok_or_else(|| not_found(header.session_id))?;
        let end = header.offset.checked_add(header.len).ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidCommand,
                "chunk offset and length overflow",
            )
        })?;
        if end > session.total_bytes {
            return Err(Reject::new(
                RejectCode::LengthExceeded,
                format!(
                    "chunk ends at byte {end} but the upload is {} bytes long",
                    session.total_bytes
                ),
            )
            .into());
        }
        if header.offset < session.uploaded_bytes && end <= session.uploaded_bytes {
            // Already stored by an earlier delivery of the same bytes.
            if session.flow_status == FlowStatus::Processing {
                self.ensure_finish_requested(&session).await;
            }
            return Ok(stored(&session, session.uploaded_bytes));
        }
        if header.len == 0 && header.offset == session.uploaded_bytes {
            return Ok(stored(&session, session.uploaded_bytes));
        }
        if session.status != SessionStatus::Open {
            return Err(Reject::new(
                RejectCode::UploadClosed,
                format!(
                    "upload {} is {} and takes no more bytes",
                    session.session_id, session.status
                ),
            )
            .into());
        }
        if header.offset != session.uploaded_bytes {
            return Err(offset_mismatch(&session, header.offset).into());
        }

        let address = self.routing.address_for(&client, &session).await?;
        let written = self
            .fflow
            .put_chunk(&address, session.session_id, header.offset, payload)
            .await
            .map_err(|error| {
                tracing::warn!(session_id = %session.session_id, address = %address, error = %error, "fflow did not take the chunk");
                Reject::new(
                    RejectCode::Unavailable,
                    "the encoder did not take the chunk; retry from the reported offset",
                )
            })?;
        if written.received_bytes != end {
            tracing::warn!(session_id = %session.session_id, received = written.received_bytes, expected = end, "fflow holds an unexpected length");
        }
        drop(client);
        self.commit_chunk(&session, header.offset, header.len).await
    }

    async fn commit_chunk(
        &self,
        session: &SessionRow,
        offset: u64,
        len: u64,
    ) -> Result<Ack, HandlerError> {
        let mut client = self.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let Some(uploaded) =
            transitions::advance_offset(&tx, session.session_id, session.flow_id, offset, len)
                .await?
        else {
            drop(tx);
            // Another delivery moved the offset first: answer from what is stored now.
            let current = store::load_session(&client, session.session_id)
                .await?
                .ok_or_else(|| not_found(session.session_id))?;
            if current.uploaded_bytes >= offset + len {
                return Ok(stored(&current, current.uploaded_bytes));
            }
            return Err(offset_mismatch(&current, offset).into());
        };
        let complete = uploaded == session.total_bytes;
        if complete {
            transitions::complete_upload(
                &tx,
                session.session_id,
                session.flow_id,
                session.video_id,
            )
            .await?;
        }
        tx.commit().await.context("failed to commit the chunk")?;
        tracing::debug!(session_id = %session.session_id, uploaded, total = session.total_bytes, "chunk stored");
        if complete {
            tracing::info!(session_id = %session.session_id, flow_id = %session.flow_id, video_id = %session.video_id, "upload complete, processing");
            self.ensure_finish_requested(session).await;
        }
        Ok(stored(session, uploaded))
    }

    /// Tells the owning fflow replica to encode; retries, and fails the flow with a reason if
    /// the replica never hears it. fflow treats a repeated finish as a no-op.
    async fn ensure_finish_requested(&self, session: &SessionRow) {
        let client = match self.pg.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(session_id = %session.session_id, error = %error, "cannot request the encode");
                return;
            }
        };
        let address = match self.routing.address_for(&client, session).await {
            Ok(address) => address,
            Err(error) => {
                tracing::error!(session_id = %session.session_id, error = %error, "no fflow replica for a complete upload");
                return;
            }
        };
        let mut last_error = None;
        for attempt in 0..self.finish_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            match self.fflow.finish(&address, session.session_id).await {
                Ok(()) => return,
                Err(error) => last_error = Some(error),
            }
        }
        let reason = match last_error {
            Some(error) => format!("processing could not start: {error}"),
            None => "processing could not start".to_owned(),
        };
        tracing::error!(session_id = %session.session_id, flow_id = %session.flow_id, reason = %reason, "encode never requested");
        if let Err(error) =
            transitions::fail_processing(&client, session.flow_id, session.video_id, &reason).await
        {
            tracing::error!(flow_id = %session.flow_id, error = ?error, "flow not marked failed");
        }
    }

    /// Stops the session's ffmpeg process and forgets its route; best effort.
    pub async fn release_process(&self, session: &SessionRow) {
        if let Some(address) = &session.fflow_address {
            if let Err(error) = self.fflow.delete_session(address, session.session_id).await {
                tracing::warn!(session_id = %session.session_id, error = %error, "fflow process not stopped");
            }
        }
        self.routing.forget(session.session_id).await;
    }
}

fn stored(session: &SessionRow, uploaded_bytes: u64) -> Ack {
    Ack::ChunkStored {
        uploaded_bytes,
        total_bytes: session.total_bytes,
    }
}

fn not_found(session_id: SessionId) -> Reject {
    Reject::new(
        RejectCode::UploadNotFound,
        format!("upload {session_id} does not exist"),
    )
}

fn offset_mismatch(session: &SessionRow, offset: u64) -> Reject {
    Reject::new(
        RejectCode::OffsetMismatch,
        format!(
            "upload {} is at offset {}, the chunk starts at {offset}",
            session.session_id, session.uploaded_bytes
        ),
    )
}
