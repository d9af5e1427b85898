//! What the uploader does with a chunk, and what the commands (`cmd/`) share: the replica's
//! pools and clients, the refusals, expiry, and requesting the encode of a complete upload.
//! Every handler is safe to run twice for the same message: the broker redelivers after a lost
//! connection, and a gateway may resend.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use deadpool_postgres::Pool;
use vod_contracts::commands::{
    ChunkCommit, ChunkHeader, ChunkReply, Reject, RejectCode, UploadCreated,
};
use vod_contracts::fflow::{FinishProcess, PartSource};
use vod_contracts::{FlowStatus, SessionId, SessionStatus};

use crate::fflow_client::{FflowCallError, FflowClient};
use crate::metrics::UploaderMetrics;
use crate::routing::{Routing, RoutingError};
use crate::store::{self, FlowRef, SessionRow};
use crate::transitions::{self, WriterChange};

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
}

/// What one attempt to store a chunk came to.
enum Attempt {
    Done(ChunkReply),
    /// The chunk's request holds the write lock and sent chunks before this one that are not
    /// stored yet: the upload is short of the chunk's offset.
    Ahead(SessionRow),
}

/// The waits of a chunk that came before its predecessors: none at first, then the first,
/// doubling up to the second. A predecessor being stored holds the session's row lock, which
/// an attempt waits for in PostgreSQL; the row read then still shows the upload's offset from
/// before that commit, so the next attempt, at once, reads it anew. The waits only cover a
/// predecessor still on its way.
const AHEAD_FIRST_PAUSE: Duration = Duration::from_millis(1);
const AHEAD_MAX_PAUSE: Duration = Duration::from_millis(20);

impl Handlers {
    /// Where the transitions count the status changes they write.
    pub fn counted(&self) -> &crate::metrics::StateTransitions {
        &self.metrics.transitions
    }

    /// Expires an open session found past its expiry, frees its process, and returns the
    /// refusal for the request that found it.
    pub(crate) async fn expire_now(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        session: &SessionRow,
    ) -> HandlerError {
        let reason = format!(
            "the upload expired: no data arrived for {} seconds",
            self.session_ttl_secs
        );
        let expired = async {
            transitions::expire_upload(&tx, session, &reason, self.counted()).await?;
            tx.commit().await.context("failed to commit the expiry")
        }
        .await;
        if let Err(error) = expired {
            return HandlerError::Internal(error);
        }
        tracing::info!(session_id = %session.session_id, "upload session expired");
        self.release_process(session).await;
        Reject::new(
            RejectCode::UploadExpired,
            format!("upload {} expired", session.session_id),
        )
        .into()
    }

    /// Stores one chunk: checks it against the database, hands it to the session's fflow
    /// replica, and only then moves the offset, all under the session's row lock, so that two
    /// writers never interleave their bytes. A request sends its next chunk while the one
    /// before is stored; when the next arrives first, it waits for the upload to reach it
    /// (`chunk_ahead_wait`), then is refused as at another offset.
    pub async fn chunk(
        &self,
        header: ChunkHeader,
        payload: Bytes,
    ) -> Result<ChunkReply, HandlerError> {
        let deadline = tokio::time::Instant::now() + self.chunk_ahead_wait;
        let mut pause = Duration::ZERO;
        loop {
            match self.try_chunk(&header, payload.clone()).await? {
                Attempt::Done(ack) => return Ok(ack),
                Attempt::Ahead(session) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(session_id = %session.session_id, offset = header.offset, uploaded = session.uploaded_bytes, "chunk came before those sent ahead of it, waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).clamp(AHEAD_FIRST_PAUSE, AHEAD_MAX_PAUSE);
                }
                Attempt::Ahead(session) => {
                    tracing::info!(session_id = %session.session_id, offset = header.offset, uploaded = session.uploaded_bytes, "the chunks sent before this one never came");
                    return Err(offset_mismatch(&session, header.offset).into());
                }
            }
        }
    }

    /// One attempt, under the session's row lock. A chunk refused here creates no process: the
    /// session's fflow replica is chosen (and its process created) only once the checks pass.
    async fn try_chunk(
        &self,
        header: &ChunkHeader,
        payload: Bytes,
    ) -> Result<Attempt, HandlerError> {
        let end = header.offset.checked_add(header.len).ok_or_else(|| {
            Reject::new(
                RejectCode::InvalidCommand,
                "chunk offset and length overflow",
            )
        })?;
        let mut client = self.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        // The cached route is read while the row lock is taken.
        let (cached, session) = tokio::join!(
            self.routing.cached(header.session_id),
            store::lock_session(&tx, header.session_id)
        );
        let session = session?.ok_or_else(|| not_found(header.session_id))?;
        name_upload_in_span(&session);
        check_length(&session, end)?;
        if let Some(ack) = self.already_stored(&session, header, end).await {
            return Ok(Attempt::Done(ack));
        }
        if session.status == SessionStatus::Open && session.expired {
            return Err(self.expire_now(tx, &session).await);
        }
        if is_ahead(&session, header) {
            // The transaction ends with `tx` dropped, and the row lock with it.
            return Ok(Attempt::Ahead(session));
        }
        check_writable(&session, header)?;
        // The locked row is the truth: a cached route may name a replica the upload was moved
        // away from since, or be gone with a restarted Redis; it is written again then.
        let address = match &session.fflow_address {
            Some(recorded) => {
                self.routing
                    .cache_unless_known(session.session_id, recorded, &cached)
                    .await;
                recorded.clone()
            }
            None => {
                self.routing.forget(session.session_id).await;
                self.routing.address_for(&tx, &session).await?
            }
        };
        let written = match self
            .fflow
            .put_chunk(&address, session.session_id, header.offset, payload)
            .await
        {
            Ok(written) => written,
            Err(error) => return Err(self.chunk_not_taken(tx, &session, &address, error).await),
        };
        if session.fflow_unreachable_for.is_some() {
            store::note_fflow_reachable(&tx, session.session_id).await?;
        }
        if written.received_bytes != end {
            tracing::warn!(session_id = %session.session_id, received = written.received_bytes, expected = end, "fflow holds an unexpected length");
        }
        let writer_change = match header.writer {
            Some(writer) if header.release => WriterChange::Release(writer),
            Some(writer) => WriterChange::Hold {
                writer,
                lease_secs: self.writer_lease_secs,
            },
            None => WriterChange::Keep,
        };
        let from = match header.commit {
            ChunkCommit::Stage { .. } => {
                match writer_change {
                    WriterChange::Release(writer) => {
                        store::release_writer(&tx, session.session_id, writer).await?;
                    }
                    WriterChange::Hold { writer, lease_secs } => {
                        store::hold_writer(&tx, session.session_id, writer, lease_secs).await?;
                    }
                    WriterChange::Keep => {}
                }
                tx.commit()
                    .await
                    .context("failed to commit the staged chunk")?;
                return Ok(Attempt::Done(ChunkReply::Staged { staged_to: end }));
            }
            ChunkCommit::Immediate => header.offset,
            ChunkCommit::CommitStaged { base } => base,
        };
        let Some((uploaded, expires_at)) = transitions::advance_offset(
            &tx,
            &session,
            from,
            end,
            self.session_ttl_secs,
            writer_change,
        )
        .await?
        else {
            return Err(offset_mismatch(&session, from).into());
        };
        let complete = session.total_bytes == Some(uploaded);
        if complete {
            transitions::complete_upload(&tx, &session, self.counted()).await?;
        }
        tx.commit().await.context("failed to commit the chunk")?;
        tracing::debug!(session_id = %session.session_id, uploaded, total = session.total_bytes, "chunk stored");
        if complete {
            self.after_complete(session.session_id).await;
        }
        Ok(Attempt::Done(ChunkReply::Stored {
            uploaded_bytes: uploaded,
            total_bytes: session.total_bytes,
            expires_at: (!complete).then_some(expires_at).flatten(),
        }))
    }

    /// The answer to a chunk the session's fflow replica did not take. A refusal is passed on.
    /// A replica that cannot be reached (or that no longer knows the session) may be
    /// restarting, and it reloads its sessions from its spool, so the first failure is only
    /// noted; once that has lasted longer than the grace, its bytes are given up for lost and
    /// the upload moves: the offset drops to 0 and the next chunk goes to another replica.
    async fn chunk_not_taken(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        session: &SessionRow,
        address: &str,
        error: FflowCallError,
    ) -> HandlerError {
        tracing::warn!(session_id = %session.session_id, address = %address, error = %error, "fflow did not take the chunk");
        let unavailable = Reject::new(
            RejectCode::Unavailable,
            "the encoder did not take the chunk; retry from the reported offset",
        );
        if !error.may_be_lost() {
            return unavailable.into();
        }
        let noted = async {
            let lowered = match session.fflow_unreachable_for {
                Some(unreachable_for) if unreachable_for >= self.fflow_reassign_after => {
                    let reason = format!(
                        "fflow replica {address} lost the upload {} s ago: {error}",
                        unreachable_for.as_secs()
                    );
                    transitions::reassign_lost_replica(&tx, session, &reason)
                        .await?
                        .map(|from| (from, reason))
                }
                _ => {
                    store::note_fflow_unreachable(&tx, session.session_id).await?;
                    None
                }
            };
            tx.commit()
                .await
                .context("failed to commit the unreachable replica")?;
            anyhow::Ok(lowered)
        }
        .await;
        match noted {
            Err(error) => HandlerError::Internal(error),
            Ok(None) => unavailable.into(),
            Ok(Some((from, reason))) => {
                self.routing.forget(session.session_id).await;
                tracing::warn!(
                    session_id = %session.session_id,
                    kind = session.kind.as_str(),
                    address = %address,
                    lost_bytes = from,
                    reason = %reason,
                    "fflow replica lost, upload moved: its offset drops to 0"
                );
                Reject::new(
                    RejectCode::OffsetMismatch,
                    format!(
                        "the encoder holding upload {} was lost; the upload is at offset 0 \
                         again, resend from there",
                        session.session_id
                    ),
                )
                .into()
            }
        }
    }

    /// The answer to a chunk whose bytes are all stored already (a redelivery), if it is one.
    async fn already_stored(
        &self,
        session: &SessionRow,
        header: &ChunkHeader,
        end: u64,
    ) -> Option<ChunkReply> {
        let start = match header.commit {
            ChunkCommit::Immediate => header.offset,
            ChunkCommit::CommitStaged { base } => base,
            ChunkCommit::Stage { .. } => return None,
        };
        let stored_before = start < session.uploaded_bytes && end <= session.uploaded_bytes;
        let empty_at_offset = header.len == 0
            && header.commit == ChunkCommit::Immediate
            && header.offset == session.uploaded_bytes;
        if !(stored_before || empty_at_offset) {
            return None;
        }
        if session
            .flow
            .is_some_and(|flow| flow.status == FlowStatus::Processing)
        {
            self.ensure_finish_requested(session).await;
        }
        Some(ChunkReply::Stored {
            uploaded_bytes: session.uploaded_bytes,
            total_bytes: session.total_bytes,
            expires_at: session
                .expires_at
                .filter(|_| session.status == SessionStatus::Open),
        })
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
        self.fail_flow(&client, session, flow, &reason).await;
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
            parts.push(PartSource {
                address,
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
            self.counted(),
        )
        .await
        {
            tracing::error!(flow_id = %flow.flow_id, error = ?error, "flow not marked failed");
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

/// Names the upload's flow and video on the span the consumer opened for the message, so
/// that every line logged while handling it carries them.
pub(crate) fn name_upload_in_span(session: &SessionRow) {
    if let Some(flow) = &session.flow {
        let span = tracing::Span::current();
        span.record("flow_id", tracing::field::display(flow.flow_id));
        span.record("video_id", tracing::field::display(flow.video_id));
    }
}

fn check_length(session: &SessionRow, end: u64) -> Result<(), Reject> {
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
/// Whether the chunk is one its request sent while chunks before it are still on their way:
/// the request holds the write lock of the open upload, and the upload is short of the chunk.
fn is_ahead(session: &SessionRow, header: &ChunkHeader) -> bool {
    session.status == SessionStatus::Open
        && !session.expired
        && header.commit == ChunkCommit::Immediate
        && header.writer.is_some()
        && session.writer == header.writer
        && session.writer_active
        && header.offset > session.uploaded_bytes
}

fn check_writable(session: &SessionRow, header: &ChunkHeader) -> Result<(), Reject> {
    if session.status != SessionStatus::Open {
        return Err(closed(session));
    }
    if !session.may_write(header.writer) {
        return Err(locked(session));
    }
    match header.commit {
        ChunkCommit::Immediate if header.offset != session.uploaded_bytes => {
            Err(offset_mismatch(session, header.offset))
        }
        ChunkCommit::Immediate => Ok(()),
        ChunkCommit::Stage { base } | ChunkCommit::CommitStaged { base } => {
            if header.writer.is_none() {
                return Err(Reject::new(
                    RejectCode::InvalidCommand,
                    "a staged chunk needs the upload's write lock",
                ));
            }
            if base != session.uploaded_bytes {
                return Err(offset_mismatch(session, base));
            }
            if header.offset < base {
                return Err(Reject::new(
                    RejectCode::InvalidCommand,
                    "a staged chunk starts before its request's offset",
                ));
            }
            Ok(())
        }
    }
}

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
