//! What the uploader does with a chunk, and what the commands (`cmd/`) share: the replica's
//! pools and clients, the refusals, expiry, and requesting the encode of a complete upload.
//! Every handler is safe to run twice for the same message: the broker redelivers after a lost
//! connection, and a gateway may resend.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use vod_contracts::commands::{Reject, RejectCode, UploadCreated};
use vod_contracts::fflow::{replica_id_of_address, FinishProcess, PartSource};
use vod_contracts::{ProjectId, SessionId, SessionStatus};
use vod_infra::backoff::Backoff;

use crate::fflow_client::{FflowCallError, FflowClient};
use crate::metrics::UploaderMetrics;
use crate::routing::{Routing, RoutingError};
use crate::store::{self, FlowRef, SessionRow};
use crate::transitions;

/// The waits between tries of telling fflow to encode (`finish_attempts` tries in all).
const FINISH_FIRST_RETRY: Duration = Duration::from_millis(400);
const FINISH_MAX_RETRY: Duration = Duration::from_millis(6_400);

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
            RoutingError::Fflow(error) if error.is_insufficient_storage() => no_room(&error).into(),
            RoutingError::Fflow(error) => HandlerError::Rejected(Reject::new(
                RejectCode::Unavailable,
                format!("no encoder could take the upload: {error}"),
            )),
            RoutingError::Store(error) => HandlerError::Internal(error),
        }
    }
}

/// The refusal of a chunk (or of the process it needed) that fflow had no room for: nothing of
/// it was stored, the offset stays, and the client may resend it once space is freed.
pub fn no_room(error: &FflowCallError) -> Reject {
    Reject::new(
        RejectCode::InsufficientStorage,
        format!("the encoder has no room for more bytes: {error}"),
    )
}

impl HandlerError {
    /// What the gateway is told. Faults are logged here and answered generically: unavailable
    /// when a dependency is away (retrying later may work), internal otherwise (it would fail
    /// again the same way).
    pub fn into_reject(self) -> Reject {
        match self {
            HandlerError::Rejected(reject) => reject,
            HandlerError::Internal(error) if crate::outage::is_outage(&error) => {
                tracing::warn!(error = ?error, "command failed, a dependency is unavailable");
                Reject::new(
                    RejectCode::Unavailable,
                    "the upload service is temporarily unavailable",
                )
            }
            HandlerError::Internal(error) => {
                tracing::error!(error = ?error, "command failed");
                Reject::new(RejectCode::Internal, "the upload service failed")
            }
        }
    }
}

pub struct Handlers {
    pub pg: Pool,
    pub routing: Routing,
    pub fflow: Arc<FflowClient>,
    pub finish_attempts: u32,
    pub session_ttl_secs: u64,
    pub writer_lease_secs: u64,
    pub metrics: UploaderMetrics,
    /// How long a session's fflow replica may be unreachable before its upload moves.
    pub fflow_reassign_after: Duration,
    /// How long a chunk that arrived before those its request sent earlier waits for them.
    pub chunk_ahead_wait: Duration,
    /// How long a deleted video's removal from holder may take before it is left to the
    /// scheduler.
    pub deleted_video_remove_timeout: Duration,
    /// The default quotas, and the wait a refusal for open uploads names.
    pub quota: crate::config::QuotaSettings,
    /// What the transitions record beside their rows: counts and events.
    pub recorder: crate::events::Recorder,
}

impl Handlers {
    /// What the transitions record beside the rows they change: counts and events.
    pub fn recorder(&self) -> &crate::events::Recorder {
        &self.recorder
    }

    /// Expires an open session a command found past its expiry, and returns the refusal for
    /// the command. It takes the command's connection, after the command ended its own
    /// transaction: the row is locked and checked again, and the connection goes back to the
    /// pool before fflow is asked to free the session's process.
    pub(crate) async fn expire_found(
        &self,
        mut client: deadpool_postgres::Client,
        found: &SessionRow,
    ) -> HandlerError {
        let reason = format!(
            "the upload expired: no data arrived for {} seconds",
            self.session_ttl_secs
        );
        let expired = async {
            let tx = client.transaction().await.context("failed to begin")?;
            let Some(session) = store::lock_session(&tx, found.session_id).await? else {
                return Ok(Err(not_found(found.session_id)));
            };
            if session.status != SessionStatus::Open {
                return Ok(Err(closed(&session)));
            }
            transitions::expire_upload(&tx, &session, &reason, self.recorder()).await?;
            tx.commit().await.context("failed to commit the expiry")?;
            anyhow::Ok(Ok(session))
        }
        .await;
        drop(client);
        let session = match expired {
            Ok(Ok(session)) => session,
            Ok(Err(reject)) => return reject.into(),
            Err(error) => return HandlerError::Internal(error),
        };
        tracing::info!(session_id = %session.session_id, "upload session expired");
        self.release_process(&session).await;
        Reject::new(
            RejectCode::UploadExpired,
            format!("upload {} expired", session.session_id),
        )
        .into()
    }

    /// A session just completed: a flow's encode is requested; a partial upload waits.
    pub(crate) async fn after_complete(&self, session_id: SessionId) {
        let loaded = match self.pg.get().await {
            Ok(client) => store::load_session(&client, session_id).await,
            Err(error) => Err(anyhow::Error::new(error)),
        };
        match loaded {
            Ok(Some(session)) if session.flow.is_some() => {
                tracing::info!(session_id = %session_id, "upload complete, processing");
                self.ensure_finish_requested(&session).await;
            }
            Ok(Some(_)) => tracing::info!(session_id = %session_id, "partial upload complete"),
            Ok(None) => tracing::error!(session_id = %session_id, "completed session vanished"),
            Err(error) => {
                tracing::error!(session_id = %session_id, error = ?error, "cannot request the encode")
            }
        }
    }

    /// Tells the owning fflow replica to encode (joining the parts of a final upload first);
    /// retries, and fails the flow with a reason if the replica never hears it. fflow treats a
    /// repeated finish as a no-op.
    pub(crate) async fn ensure_finish_requested(&self, session: &SessionRow) {
        let Some(flow) = session.flow else {
            return;
        };
        // No connection is held while fflow is called: one is taken for each read or write.
        let client = match self.pg.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(session_id = %session.session_id, error = %error, "cannot request the encode");
                return;
            }
        };
        let request = match self.finish_request(&client, session).await {
            Ok(request) => request,
            Err(reason) => {
                self.fail_flow(&client, session, flow, &reason).await;
                return;
            }
        };
        drop(client);
        let address = match self.routing.address_for(&self.pg, session).await {
            Ok(address) => address,
            Err(error) => {
                tracing::error!(session_id = %session.session_id, error = %error, "no fflow replica for a complete upload");
                return;
            }
        };
        let mut last_error = None;
        let mut waits = Backoff::doubling(FINISH_FIRST_RETRY, FINISH_MAX_RETRY);
        for attempt in 0..self.finish_attempts {
            if attempt > 0 {
                tokio::time::sleep(waits.next_delay()).await;
            }
            match self
                .fflow
                .finish(&address, session.session_id, &request)
                .await
            {
                Ok(()) => {
                    for part in &request.parts {
                        self.routing.forget(part.session_id).await;
                    }
                    return;
                }
                Err(error) => last_error = Some(error),
            }
        }
        let reason = match last_error {
            Some(error) => format!("processing could not start: {error}"),
            None => "processing could not start".to_owned(),
        };
        match self.pg.get().await {
            Ok(client) => self.fail_flow(&client, session, flow, &reason).await,
            Err(error) => {
                tracing::error!(session_id = %session.session_id, error = %error, reason = %reason, "flow not marked failed")
            }
        }
    }

    async fn finish_request(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        session: &SessionRow,
    ) -> Result<FinishProcess, String> {
        let mut parts = Vec::new();
        for part_id in &session.parts {
            let part = store::load_session(client, *part_id)
                .await
                .map_err(|error| format!("processing could not start: {error:#}"))?
                .ok_or_else(|| format!("partial upload {part_id} is gone"))?;
            if part.uploaded_bytes == 0 {
                continue;
            }
            let address = part
                .fflow_address
                .ok_or_else(|| format!("partial upload {part_id} has no stored bytes"))?;
            let replica_id = replica_id_of_address(&address)
                .ok_or_else(|| format!("partial upload {part_id} is at {address}, no replica"))?;
            parts.push(PartSource {
                replica_id: replica_id.to_owned(),
                session_id: *part_id,
                len: part.uploaded_bytes,
            });
        }
        Ok(FinishProcess {
            total_bytes: session.total_bytes.unwrap_or(session.uploaded_bytes),
            parts,
        })
    }

    async fn fail_flow(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        session: &SessionRow,
        flow: FlowRef,
        reason: &str,
    ) {
        tracing::error!(session_id = %session.session_id, flow_id = %flow.flow_id, reason = %reason, "encode never requested");
        if let Err(error) = transitions::fail_processing(
            client,
            flow.flow_id,
            flow.video_id,
            reason,
            self.recorder(),
        )
        .await
        {
            tracing::error!(flow_id = %flow.flow_id, error = ?error, "flow not marked failed");
        }
    }

    /// Purges a deleted video now if nothing of it is in flight (see `crate::deletion`).
    pub(crate) fn purger(&self) -> crate::deletion::Purger<'_> {
        crate::deletion::Purger {
            pg: &self.pg,
            fflow: &self.fflow,
            remove_timeout: self.deleted_video_remove_timeout,
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

/// The reply to a command that created an upload with its flow.
pub(crate) fn created_reply(created: transitions::Created) -> UploadCreated {
    UploadCreated {
        video_id: created.video_id,
        flow_id: created.flow_id,
        session_id: created.session_id,
        expires_at: created.expires_at,
    }
}

/// The session a command names, locked until `client`'s transaction ends, and named on the
/// command's span.
pub(crate) async fn lock_named(
    client: &impl deadpool_postgres::GenericClient,
    project_id: ProjectId,
    session_id: SessionId,
) -> Result<SessionRow, HandlerError> {
    // Another project's upload is answered as one that does not exist.
    let session = store::lock_session(client, session_id)
        .await?
        .filter(|session| session.project_id == project_id)
        .ok_or_else(|| not_found(session_id))?;
    name_upload_in_span(&session);
    Ok(session)
}

/// Names the upload's flow and video on the span the consumer opened for the message, so
/// that every line logged while handling it carries them.
pub(crate) fn name_upload_in_span(session: &SessionRow) {
    if let Some(flow) = &session.flow {
        let span = tracing::Span::current();
        span.record("flow_id", tracing::field::display(flow.flow_id));
        span.record("video_id", tracing::field::display(flow.video_id));
    }
}

pub(crate) fn check_length(session: &SessionRow, end: u64) -> Result<(), Reject> {
    match session.total_bytes {
        Some(total) if end > total => Err(Reject::new(
            RejectCode::LengthExceeded,
            format!("chunk ends at byte {end} but the upload is {total} bytes long"),
        )),
        _ => Ok(()),
    }
}

/// Whether the chunk may be written now: the upload is open, the chunk's writer may write,
/// and it starts where the upload (or its request's staged bytes) stand.
pub(crate) fn not_found(session_id: SessionId) -> Reject {
    Reject::new(
        RejectCode::UploadNotFound,
        format!("upload {session_id} does not exist"),
    )
}

pub(crate) fn closed(session: &SessionRow) -> Reject {
    Reject::new(
        RejectCode::UploadClosed,
        format!(
            "upload {} is {} and takes no more bytes",
            session.session_id, session.status
        ),
    )
}

pub(crate) fn locked(session: &SessionRow) -> Reject {
    Reject::new(
        RejectCode::UploadLocked,
        format!(
            "another request is writing to upload {}; retry once it is done",
            session.session_id
        ),
    )
}

pub(crate) fn offset_mismatch(session: &SessionRow, offset: u64) -> Reject {
    Reject::new(
        RejectCode::OffsetMismatch,
        format!(
            "upload {} is at offset {}, the chunk starts at {offset}",
            session.session_id, session.uploaded_bytes
        ),
    )
}
