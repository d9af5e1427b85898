//! Every status change of Video, Flow and UploadSession happens here, inside the caller's
//! transaction. The schema enforces the statuses and their invariants; this module decides
//! which change is allowed when, and counts each change it writes in
//! `uploader_state_transitions_total` (a transaction rolled back afterwards, which is rare,
//! has still been counted).
//!
//! Statuses and kinds are bound as typed parameters (`vod_contracts`' `postgres` feature), the
//! one a change writes and the one it requires alike, so each is spelled once, by its enum, and
//! the figure counted is the value written.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use vod_contracts::commands::{Reject, RejectCode};
use vod_contracts::event::EventType;
use vod_contracts::outcome::{EncodeResult, EncodeStart, MediaFacts};
use vod_contracts::{
    FlowId, FlowStatus, PlaybackPolicy, ProjectId, SessionId, SessionStatus, UploadKind, VideoId,
    VideoStatus, WriterId,
};

use crate::events::{Details, Recorder};
use crate::metrics::Entity;
use crate::store::SessionRow;

/// The `from` of an entity just created.
const NEW: &str = "NONE";

/// The status a video shows, from its flows' statuses, newest first. A cancelled flow does not
/// count; a failed re-upload does not hide a video that is still playable.
pub fn video_status_from_flows(flows_newest_first: &[FlowStatus]) -> VideoStatus {
    let mut counted = flows_newest_first
        .iter()
        .filter(|status| **status != FlowStatus::Cancelled);
    match counted.next() {
        None => VideoStatus::Created,
        Some(FlowStatus::Uploading) => VideoStatus::Uploading,
        Some(FlowStatus::Processing) => VideoStatus::Processing,
        Some(FlowStatus::Ready) => VideoStatus::Ready,
        Some(FlowStatus::Failed) | Some(FlowStatus::Cancelled) => {
            if flows_newest_first.contains(&FlowStatus::Ready) {
                VideoStatus::Ready
            } else {
                VideoStatus::Failed
            }
        }
    }
}

/// Recomputes a video's status from its flows.
pub async fn refresh_video_status(
    client: &impl GenericClient,
    video_id: VideoId,
    recorder: &Recorder,
) -> anyhow::Result<VideoStatus> {
    let rows = client
        .query(
            "SELECT status FROM flow WHERE video_id = $1 ORDER BY created_at DESC, id DESC",
            &[&video_id.0],
        )
        .await
        .context("failed to read flow statuses")?;
    let statuses = rows
        .iter()
        .map(|row| row.try_get::<_, FlowStatus>(0))
        .collect::<Result<Vec<_>, _>>()
        .context("failed to read flow statuses")?;
    let status = video_status_from_flows(&statuses);
    let changed = client
        .query_opt(
            "UPDATE video SET status = $2, updated_at = now() \
             FROM (SELECT id, status FROM video WHERE id = $1 FOR UPDATE) AS before \
             WHERE video.id = before.id AND video.status <> $2 \
             RETURNING before.status",
            &[&video_id.0, &status],
        )
        .await
        .context("failed to update video status")?;
    if let Some(row) = changed {
        let before: VideoStatus = row.try_get(0)?;
        recorder.count(Entity::Video, before.as_str(), status.as_str());
    }
    Ok(status)
}

pub async fn create_video(
    client: &impl GenericClient,
    project_id: ProjectId,
    title: &str,
    description: &str,
    playback_policy: PlaybackPolicy,
    recorder: &Recorder,
) -> anyhow::Result<VideoId> {
    let video_id = VideoId::new();
    client
        .execute(
            "INSERT INTO video (id, project_id, title, description, status, playback_policy) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &video_id.0,
                &project_id.0,
                &title,
                &description,
                &VideoStatus::Created,
                &playback_policy.as_str(),
            ],
        )
        .await
        .context("failed to insert video")?;
    recorder.count(Entity::Video, NEW, VideoStatus::Created.as_str());
    recorder
        .video_event(
            client,
            video_id,
            EventType::VideoCreated,
            Details::default(),
        )
        .await?;
    Ok(video_id)
}

/// What a new upload is for.
pub struct NewUpload<'a> {
    pub project_id: ProjectId,
    /// Must be a video of `project_id`.
    pub video_id: Option<VideoId>,
    pub title: &'a str,
    /// The description of the video it makes, if it makes one.
    pub description: &'a str,
    /// The playback policy of the video it makes, if it makes one.
    pub playback_policy: PlaybackPolicy,
    pub filename: Option<&'a str>,
    /// `None` while deferred.
    pub total_bytes: Option<u64>,
    pub metadata: Option<&'a str>,
    /// The upload expires after this long without a chunk.
    pub ttl_secs: u64,
}

/// A created upload: its ids and when it expires (`None` when it takes no bytes).
pub struct Created {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    pub session_id: SessionId,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The video an upload goes to: the named one of the project, locked, or a new one. Another
/// project's video, and a deleted one, is answered as one that does not exist.
async fn upload_video(
    client: &impl GenericClient,
    project_id: ProjectId,
    video_id: Option<VideoId>,
    (title, description, playback_policy): (&str, &str, PlaybackPolicy),
    recorder: &Recorder,
) -> anyhow::Result<Result<VideoId, Reject>> {
    let Some(video_id) = video_id else {
        return Ok(Ok(create_video(
            client,
            project_id,
            title,
            description,
            playback_policy,
            recorder,
        )
        .await?));
    };
    let exists = client
        .query_opt(
            "SELECT 1 FROM video WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL \
             FOR UPDATE",
            &[&video_id.0, &project_id.0],
        )
        .await
        .context("failed to lock video")?;
    if exists.is_none() {
        return Ok(Err(Reject::new(
            RejectCode::VideoNotFound,
            format!("video {video_id} does not exist"),
        )));
    }
    Ok(Ok(video_id))
}

fn to_i64(bytes: u64) -> anyhow::Result<i64> {
    i64::try_from(bytes).context("byte count overflows")
}

/// Creates a flow and its open session, on the given video or a new one. An empty upload has
/// nothing to encode: its flow fails at once.
pub async fn create_upload(
    client: &impl GenericClient,
    upload: NewUpload<'_>,
    recorder: &Recorder,
) -> anyhow::Result<Result<Created, Reject>> {
    let video_id = match upload_video(
        client,
        upload.project_id,
        upload.video_id,
        (upload.title, upload.description, upload.playback_policy),
        recorder,
    )
    .await?
    {
        Ok(video_id) => video_id,
        Err(reject) => return Ok(Err(reject)),
    };
    let total = upload.total_bytes.map(to_i64).transpose()?;
    let flow_id = FlowId::new();
    let session_id = SessionId::new();
    let empty = upload.total_bytes == Some(0);
    let (flow_status, session_status, error) = if empty {
        (
            FlowStatus::Failed,
            SessionStatus::Failed,
            Some("the upload is empty"),
        )
    } else {
        (FlowStatus::Uploading, SessionStatus::Open, None)
    };
    client
        .execute(
            "INSERT INTO flow (id, video_id, status, filename, total_bytes, error) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &flow_id.0,
                &video_id.0,
                &flow_status,
                &upload.filename,
                &total,
                &error,
            ],
        )
        .await
        .context("failed to insert flow")?;
    let ttl = upload.ttl_secs as f64;
    let row = client
        .query_one(
            "INSERT INTO upload_session (id, flow_id, status, metadata, closed_at, expires_at, \
                                         project_id) \
             VALUES ($1, $2, $3, $4, CASE WHEN $3 = $6 THEN NULL ELSE now() END, \
                     CASE WHEN $3 = $6 THEN now() + make_interval(secs => $5) END, $7) \
             RETURNING expires_at",
            &[
                &session_id.0,
                &flow_id.0,
                &session_status,
                &upload.metadata,
                &ttl,
                &SessionStatus::Open,
                &upload.project_id.0,
            ],
        )
        .await
        .context("failed to insert upload session")?;
    recorder.count(Entity::Flow, NEW, flow_status.as_str());
    recorder.count(Entity::Session, NEW, session_status.as_str());
    refresh_video_status(client, video_id, recorder).await?;
    // An empty upload is created failed: both are said.
    let mut events = vec![(EventType::VideoUploadCreated, None)];
    if empty {
        events.push((EventType::VideoFailed, error));
    }
    record_flow_events(client, video_id, flow_id, &events, recorder).await?;
    Ok(Ok(Created {
        video_id,
        flow_id,
        session_id,
        expires_at: row.try_get(0)?,
    }))
}

/// Creates a partial upload: a session with no flow. An empty one is complete at once.
pub async fn create_partial_upload(
    client: &impl GenericClient,
    project_id: ProjectId,
    total_bytes: Option<u64>,
    metadata: Option<&str>,
    ttl_secs: u64,
    recorder: &Recorder,
) -> anyhow::Result<(SessionId, Option<DateTime<Utc>>)> {
    let session_id = SessionId::new();
    let total = total_bytes.map(to_i64).transpose()?;
    let status = if total_bytes == Some(0) {
        SessionStatus::Completed
    } else {
        SessionStatus::Open
    };
    let ttl = ttl_secs as f64;
    let row = client
        .query_one(
            "INSERT INTO upload_session (id, kind, status, metadata, uploaded_bytes, total_bytes, \
                                         closed_at, expires_at, project_id) \
             VALUES ($1, $6, $2, $3, 0, $4, CASE WHEN $2 = $7 THEN NULL ELSE now() END, \
                     now() + make_interval(secs => $5), $8) \
             RETURNING expires_at",
            &[
                &session_id.0,
                &status,
                &metadata,
                &total,
                &ttl,
                &UploadKind::Partial,
                &SessionStatus::Open,
                &project_id.0,
            ],
        )
        .await
        .context("failed to insert partial upload")?;
    recorder.count(Entity::Session, NEW, status.as_str());
    Ok((session_id, row.try_get(0)?))
}

/// What a final upload joins.
pub struct FinalUpload<'a> {
    pub project_id: ProjectId,
    /// Must be a video of `project_id`.
    pub video_id: Option<VideoId>,
    pub title: &'a str,
    pub filename: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// Complete partial uploads, locked by the caller, in order.
    pub parts: &'a [SessionRow],
    pub ttl_secs: u64,
    /// The playback policy of the video it makes, if it makes one.
    pub playback_policy: PlaybackPolicy,
}

/// Creates a final upload: its flow has every byte already (they are the parts' bytes), so it
/// goes straight to processing, and its session is complete. The parts are marked as joined
/// and kept until the join is done or they expire.
pub async fn create_final_upload(
    client: &impl GenericClient,
    upload: FinalUpload<'_>,
    recorder: &Recorder,
) -> anyhow::Result<Result<Created, Reject>> {
    let video_id = match upload_video(
        client,
        upload.project_id,
        upload.video_id,
        (upload.title, "", upload.playback_policy),
        recorder,
    )
    .await?
    {
        Ok(video_id) => video_id,
        Err(reject) => return Ok(Err(reject)),
    };
    let total: u64 = upload.parts.iter().map(|part| part.uploaded_bytes).sum();
    let total = to_i64(total)?;
    let flow_id = FlowId::new();
    let session_id = SessionId::new();
    let (flow_status, session_status, error) = if total == 0 {
        (
            FlowStatus::Failed,
            SessionStatus::Failed,
            Some("the upload is empty"),
        )
    } else {
        (FlowStatus::Processing, SessionStatus::Completed, None)
    };
    client
        .execute(
            "INSERT INTO flow (id, video_id, status, filename, uploaded_bytes, total_bytes, error) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
            &[
                &flow_id.0,
                &video_id.0,
                &flow_status,
                &upload.filename,
                &total,
                &error,
            ],
        )
        .await
        .context("failed to insert flow")?;
    let parts: Vec<uuid::Uuid> = upload.parts.iter().map(|part| part.session_id.0).collect();
    client
        .execute(
            "INSERT INTO upload_session (id, flow_id, kind, status, metadata, parts, closed_at, \
                                         project_id) \
             VALUES ($1, $2, $6, $3, $4, $5, now(), $7)",
            &[
                &session_id.0,
                &flow_id.0,
                &session_status,
                &upload.metadata,
                &parts,
                &UploadKind::Final,
                &upload.project_id.0,
            ],
        )
        .await
        .context("failed to insert final upload")?;
    recorder.count(Entity::Flow, NEW, flow_status.as_str());
    recorder.count(Entity::Session, NEW, session_status.as_str());
    let ttl = upload.ttl_secs as f64;
    client
        .execute(
            "UPDATE upload_session SET final_session_id = $2, \
                    expires_at = now() + make_interval(secs => $3) \
             WHERE id = ANY($1)",
            &[&parts, &session_id.0, &ttl],
        )
        .await
        .context("failed to mark the parts joined")?;
    refresh_video_status(client, video_id, recorder).await?;
    // Its bytes are the parts': created complete, and processing unless empty.
    let events: &[(EventType, Option<&str>)] = if total == 0 {
        &[
            (EventType::VideoUploadCreated, None),
            (EventType::VideoFailed, error),
        ]
    } else {
        &[
            (EventType::VideoUploadCreated, None),
            (EventType::VideoUploadCompleted, None),
            (EventType::VideoProcessing, None),
        ]
    };
    record_flow_events(client, video_id, flow_id, events, recorder).await?;
    Ok(Ok(Created {
        video_id,
        flow_id,
        session_id,
        expires_at: None,
    }))
}

/// What a stored chunk does to its upload's write lock.
#[derive(Clone, Copy, Debug)]
pub enum WriterChange {
    /// The chunk's request keeps the lock for `lease_secs` more.
    Hold {
        writer: WriterId,
        lease_secs: u64,
    },
    /// The chunk was its request's last: the lock is given back, if the request holds it.
    Release(WriterId),
    Keep,
}

/// Moves an upload's offset from `from` to `to` for a chunk written under the write lock's
/// fencing token `epoch`, in one statement: only if the upload is still open, still at `from`,
/// no longer than `to`, and its lock has not passed to another request since (the token is
/// unchanged; the statement locks the session row first, so a lock taken concurrently is
/// either seen or waits). It pushes the expiry back and changes the write lock. Returns the new
/// offset, the expiry and the upload's length, or `None` (and changes nothing) when the chunk
/// may not move the offset; the caller reads the session again to say why.
pub async fn advance_offset(
    client: &impl GenericClient,
    session: &SessionRow,
    advance: Advance,
    ttl_secs: u64,
    writer: WriterChange,
) -> anyhow::Result<Option<Advanced>> {
    let (from, to) = (to_i64(advance.from)?, to_i64(advance.to)?);
    let epoch = to_i64(advance.epoch)?;
    let ttl = ttl_secs as f64;
    // $4 is the writer concerned; $5 whether it holds (true) or gives back (false) the lock,
    // NULL to keep it as it is; $6 the lease.
    let (writer_id, hold, lease) = match writer {
        WriterChange::Hold { writer, lease_secs } => {
            (Some(writer.0), Some(true), lease_secs as f64)
        }
        WriterChange::Release(writer) => (Some(writer.0), Some(false), 0.0),
        WriterChange::Keep => (None, None, 0.0),
    };
    const CHANGES: &str = "last_chunk_at = now(), \
         expires_at = now() + make_interval(secs => $3), \
         writer = CASE WHEN $5::boolean THEN $4 \
                       WHEN NOT $5::boolean AND writer = $4 THEN NULL \
                       ELSE writer END, \
         writer_expires_at = CASE WHEN $5::boolean THEN now() + make_interval(secs => $6) \
                                  WHEN NOT $5::boolean AND writer = $4 THEN NULL \
                                  ELSE writer_expires_at END";
    // FOR UPDATE makes the token check see the last committed lock, not the statement's
    // snapshot, and keeps the row until the statement's transaction ends. The statuses it
    // requires stay written here, unlike elsewhere in this module: the statement has two
    // shapes, and a parameter that one of them does not use could not be typed.
    // `status_literals_are_the_enums_spelling` checks them.
    const FENCED: &str = "fenced AS ( \
         SELECT id FROM upload_session \
         WHERE id = $1 AND status = 'OPEN' AND writer_epoch = $9 FOR UPDATE)";
    // A flow counts its bytes on the flow ($2), a partial upload on its session ($2 NULL).
    let (query, flow_id) = match &session.flow {
        Some(flow) => (
            format!(
                "WITH {FENCED}, moved AS ( \
                     UPDATE flow SET uploaded_bytes = $8, updated_at = now() \
                     WHERE id = $2 AND uploaded_bytes = $7 AND status = 'UPLOADING' \
                       AND (total_bytes IS NULL OR total_bytes >= $8) \
                       AND EXISTS (SELECT 1 FROM fenced) \
                     RETURNING uploaded_bytes, total_bytes) \
                 UPDATE upload_session SET {CHANGES} \
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM moved) \
                 RETURNING (SELECT uploaded_bytes FROM moved), expires_at, \
                           (SELECT total_bytes FROM moved)"
            ),
            Some(flow.flow_id.0),
        ),
        None => (
            format!(
                "WITH {FENCED} \
                 UPDATE upload_session SET uploaded_bytes = $8, {CHANGES} \
                 WHERE id = $1 AND $2::uuid IS NULL AND uploaded_bytes = $7 \
                   AND (total_bytes IS NULL OR total_bytes >= $8) \
                   AND EXISTS (SELECT 1 FROM fenced) \
                 RETURNING uploaded_bytes, expires_at, total_bytes"
            ),
            None,
        ),
    };
    // Every chunk runs it: prepared once per connection.
    let statement = client
        .prepare_cached(&query)
        .await
        .context("failed to prepare advancing the offset")?;
    let moved = client
        .query_opt(
            &statement,
            &[
                &session.session_id.0,
                &flow_id,
                &ttl,
                &writer_id,
                &hold,
                &lease,
                &from,
                &to,
                &epoch,
            ],
        )
        .await
        .context("failed to advance the offset")?;
    let Some(row) = moved else {
        return Ok(None);
    };
    Ok(Some(Advanced {
        uploaded_bytes: u64::try_from(row.try_get::<_, i64>(0)?)?,
        expires_at: row.try_get(1)?,
        total_bytes: row
            .try_get::<_, Option<i64>>(2)?
            .map(u64::try_from)
            .transpose()?,
    }))
}

/// A chunk's move of its upload's offset.
#[derive(Clone, Copy, Debug)]
pub struct Advance {
    pub from: u64,
    pub to: u64,
    /// The write lock's fencing token the chunk was written under.
    pub epoch: u64,
}

/// Where an upload stands after a chunk moved its offset.
#[derive(Clone, Copy, Debug)]
pub struct Advanced {
    pub uploaded_bytes: u64,
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` while the length is deferred.
    pub total_bytes: Option<u64>,
}

/// The fflow replica holding an open upload's bytes was lost: the bytes it held are gone, so
/// the offset drops to 0, the only offset that is still true, and the upload starts again on
/// another replica. The one exception to "a reported offset never goes back"; the client finds
/// the lowered offset with HEAD and resends. Staged bytes and the write lock go too, as does
/// what a streaming encode on the lost replica reported. Returns the offset before the loss, or
/// `None` when the upload is no longer open.
pub async fn reassign_lost_replica(
    client: &impl GenericClient,
    session: &SessionRow,
    reason: &str,
) -> anyhow::Result<Option<u64>> {
    let lowered = match &session.flow {
        Some(flow) => client
            .execute(
                "UPDATE flow SET uploaded_bytes = 0, progress_percent = NULL, encode_path = NULL, \
                        encode_started_at_byte = NULL, updated_at = now() \
                 WHERE id = $1 AND status = $2",
                &[&flow.flow_id.0, &FlowStatus::Uploading],
            )
            .await
            .context("failed to lower the offset")?,
        None => client
            .execute(
                "UPDATE upload_session SET uploaded_bytes = 0 WHERE id = $1 AND status = $2",
                &[&session.session_id.0, &SessionStatus::Open],
            )
            .await
            .context("failed to lower the offset")?,
    };
    if lowered == 0 {
        return Ok(None);
    }
    client
        .execute(
            "UPDATE upload_session SET fflow_address = NULL, fflow_unreachable_since = NULL, \
                    fflow_reassignments = fflow_reassignments + 1, fflow_lost_reason = $2, \
                    writer = NULL, writer_expires_at = NULL, writer_epoch = writer_epoch + 1 \
             WHERE id = $1",
            &[&session.session_id.0, &reason],
        )
        .await
        .context("failed to forget the lost replica")?;
    Ok(Some(session.uploaded_bytes))
}

/// Sets the length of an upload whose length was deferred. Returns false when it was already
/// set (the caller compares).
pub async fn declare_length(
    client: &impl GenericClient,
    session: &SessionRow,
    total_bytes: u64,
) -> anyhow::Result<bool> {
    let total = to_i64(total_bytes)?;
    let changed = match &session.flow {
        Some(flow) => client
            .execute(
                "UPDATE flow SET total_bytes = $2, updated_at = now() \
                 WHERE id = $1 AND total_bytes IS NULL AND uploaded_bytes <= $2",
                &[&flow.flow_id.0, &total],
            )
            .await
            .context("failed to declare the length")?,
        None => client
            .execute(
                "UPDATE upload_session SET total_bytes = $2 \
                 WHERE id = $1 AND total_bytes IS NULL AND uploaded_bytes <= $2",
                &[&session.session_id.0, &total],
            )
            .await
            .context("failed to declare the length")?,
    };
    Ok(changed > 0)
}

/// The last byte arrived: the session completes and its flow, if any, starts processing. A
/// partial upload waits for a final upload to join it.
pub async fn complete_upload(
    client: &impl GenericClient,
    session: &SessionRow,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let completed = client
        .execute(
            "UPDATE upload_session SET status = $2, closed_at = now(), writer = NULL, \
                    writer_expires_at = NULL \
             WHERE id = $1 AND status = $3",
            &[
                &session.session_id.0,
                &SessionStatus::Completed,
                &SessionStatus::Open,
            ],
        )
        .await
        .context("failed to complete the session")?;
    if completed > 0 {
        recorder.count(
            Entity::Session,
            SessionStatus::Open.as_str(),
            SessionStatus::Completed.as_str(),
        );
    }
    if let Some(flow) = &session.flow {
        let processing = client
            .execute(
                "UPDATE flow SET status = $2, updated_at = now() WHERE id = $1 AND status = $3",
                &[
                    &flow.flow_id.0,
                    &FlowStatus::Processing,
                    &FlowStatus::Uploading,
                ],
            )
            .await
            .context("failed to start processing the flow")?;
        if processing > 0 {
            recorder.count(
                Entity::Flow,
                FlowStatus::Uploading.as_str(),
                FlowStatus::Processing.as_str(),
            );
        }
        refresh_video_status(client, flow.video_id, recorder).await?;
        if processing > 0 {
            let events = [
                (EventType::VideoUploadCompleted, None),
                (EventType::VideoProcessing, None),
            ];
            record_flow_events(client, flow.video_id, flow.flow_id, &events, recorder).await?;
        }
    }
    Ok(())
}

/// The client terminated the upload: the session closes and the flow is cancelled.
pub async fn terminate_upload(
    client: &impl GenericClient,
    session: &SessionRow,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let closing = Closing {
        session_status: SessionStatus::Terminated,
        flow_status: FlowStatus::Cancelled,
        error: None,
    };
    close_session_and_flow(client, session, closing, recorder).await
}

/// No chunk came in time: the session expires and its flow fails with `reason`. A complete
/// partial upload that no final upload joined in time expires the same way.
pub async fn expire_upload(
    client: &impl GenericClient,
    session: &SessionRow,
    reason: &str,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let expired = client
        .execute(
            "UPDATE upload_session SET status = $2 WHERE id = $1 AND kind = $3 AND status = $4",
            &[
                &session.session_id.0,
                &SessionStatus::Expired,
                &UploadKind::Partial,
                &SessionStatus::Completed,
            ],
        )
        .await
        .context("failed to expire the partial upload")?;
    if expired > 0 {
        recorder.count(
            Entity::Session,
            SessionStatus::Completed.as_str(),
            SessionStatus::Expired.as_str(),
        );
    }
    let closing = Closing {
        session_status: SessionStatus::Expired,
        flow_status: FlowStatus::Failed,
        error: Some(reason),
    };
    close_session_and_flow(client, session, closing, recorder).await
}

/// Where an open upload ends.
struct Closing<'a> {
    session_status: SessionStatus,
    flow_status: FlowStatus,
    error: Option<&'a str>,
}

async fn close_session_and_flow(
    client: &impl GenericClient,
    session: &SessionRow,
    closing: Closing<'_>,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let Closing {
        session_status,
        flow_status,
        error,
    } = closing;
    let closed = client
        .execute(
            "UPDATE upload_session SET status = $2, closed_at = now(), writer = NULL, \
                    writer_expires_at = NULL \
             WHERE id = $1 AND status = $3",
            &[&session.session_id.0, &session_status, &SessionStatus::Open],
        )
        .await
        .context("failed to close the session")?;
    if closed > 0 {
        recorder.count(
            Entity::Session,
            SessionStatus::Open.as_str(),
            session_status.as_str(),
        );
    }
    if let Some(flow) = &session.flow {
        let closed = client
            .execute(
                "UPDATE flow SET status = $2, error = $3, updated_at = now() \
                 WHERE id = $1 AND status = $4",
                &[
                    &flow.flow_id.0,
                    &flow_status,
                    &error,
                    &FlowStatus::Uploading,
                ],
            )
            .await
            .context("failed to close the flow")?;
        if closed > 0 {
            recorder.count(
                Entity::Flow,
                FlowStatus::Uploading.as_str(),
                flow_status.as_str(),
            );
        }
        refresh_video_status(client, flow.video_id, recorder).await?;
        if closed > 0 {
            let event = match session_status {
                SessionStatus::Expired => EventType::VideoUploadExpired,
                _ => EventType::VideoUploadCancelled,
            };
            record_flow_events(
                client,
                flow.video_id,
                flow.flow_id,
                &[(event, error)],
                recorder,
            )
            .await?;
        }
    }
    Ok(())
}

/// A processing flow failed before or outside the encode (for example fflow never heard that
/// the upload was complete).
pub async fn fail_processing(
    client: &impl GenericClient,
    flow_id: FlowId,
    video_id: VideoId,
    reason: &str,
    recorder: &Recorder,
) -> anyhow::Result<bool> {
    let changed = client
        .execute(
            "UPDATE flow SET status = $3, error = $2, updated_at = now() \
             WHERE id = $1 AND status = $4",
            &[
                &flow_id.0,
                &reason,
                &FlowStatus::Failed,
                &FlowStatus::Processing,
            ],
        )
        .await
        .context("failed to fail the flow")?;
    if changed > 0 {
        recorder.count(
            Entity::Flow,
            FlowStatus::Processing.as_str(),
            FlowStatus::Failed.as_str(),
        );
    }
    refresh_video_status(client, video_id, recorder).await?;
    if changed > 0 {
        let events = [(EventType::VideoFailed, Some(reason))];
        record_flow_events(client, video_id, flow_id, &events, recorder).await?;
    }
    Ok(changed > 0)
}

/// The fflow replica encoding a flow lost it (gone for longer than the grace, or restarted
/// without the upload): nothing will ever report the encode's end, so the flow fails with
/// `reason`, which the session records too. Returns false when the flow was no longer
/// processing (its outcome came first).
pub async fn fail_processing_on_lost_replica(
    client: &impl GenericClient,
    session: &SessionRow,
    flow: &crate::store::FlowRef,
    reason: &str,
    recorder: &Recorder,
) -> anyhow::Result<bool> {
    if !fail_processing(client, flow.flow_id, flow.video_id, reason, recorder).await? {
        return Ok(false);
    }
    client
        .execute(
            "UPDATE upload_session SET fflow_lost_reason = $2, fflow_unreachable_since = NULL \
             WHERE id = $1",
            &[&session.session_id.0, &reason],
        )
        .await
        .context("failed to record the lost replica")?;
    Ok(true)
}

/// Applies fflow's outcome to a processing flow. Returns false when the flow was not
/// processing (a repeated or late outcome), which changes nothing.
pub async fn apply_outcome(
    client: &impl GenericClient,
    flow_id: FlowId,
    video_id: VideoId,
    result: &EncodeResult,
    started: Option<EncodeStart>,
    source_sha256: Option<&str>,
    recorder: &Recorder,
) -> anyhow::Result<bool> {
    let source_sha256 = source_sha256.filter(|digest| is_sha256_hex(digest));
    client
        .execute(
            "UPDATE flow SET source_sha256 = $2 WHERE id = $1 AND status = $3",
            &[&flow_id.0, &source_sha256, &FlowStatus::Processing],
        )
        .await
        .context("failed to record the source checksum")?;
    let changed = match result {
        EncodeResult::Ready(facts) => mark_ready(client, flow_id, facts).await?,
        EncodeResult::Failed { reason } => client
            .execute(
                "UPDATE flow SET status = $3, error = $2, progress_percent = NULL, \
                 updated_at = now() \
                 WHERE id = $1 AND status = $4",
                &[
                    &flow_id.0,
                    reason,
                    &FlowStatus::Failed,
                    &FlowStatus::Processing,
                ],
            )
            .await
            .context("failed to mark the flow failed")?,
    };
    if changed > 0 {
        let to = match result {
            EncodeResult::Ready(_) => FlowStatus::Ready,
            EncodeResult::Failed { .. } => FlowStatus::Failed,
        };
        recorder.count(Entity::Flow, FlowStatus::Processing.as_str(), to.as_str());
        if let Some(started) = started {
            record_encode_start(client, flow_id, started).await?;
        }
    }
    refresh_video_status(client, video_id, recorder).await?;
    if changed > 0 {
        let event = match result {
            EncodeResult::Ready(_) => (EventType::VideoReady, None),
            EncodeResult::Failed { reason } => (EventType::VideoFailed, Some(reason.as_str())),
        };
        record_flow_events(client, video_id, flow_id, &[event], recorder).await?;
    }
    Ok(changed > 0)
}

/// Records how far an encode is, and how it started, on a flow that is still uploading or
/// processing; a late or repeated report changes nothing. Progress never goes backwards,
/// unless the encode started again another way (a streaming encode given up for an encode of
/// the complete upload). Not a status change.
pub async fn record_progress(
    client: &impl GenericClient,
    flow_id: FlowId,
    started: EncodeStart,
    percent: u8,
) -> anyhow::Result<bool> {
    let percent = i16::from(percent.min(99));
    let received = i64::try_from(started.received_bytes)?;
    let changed = client
        .execute(
            "UPDATE flow SET progress_percent = CASE WHEN encode_path IS DISTINCT FROM $3 \
             THEN $2::smallint ELSE GREATEST(progress_percent, $2::smallint) END, \
             encode_path = $3, encode_started_at_byte = LEAST($4, total_bytes) \
             WHERE id = $1 AND status IN ($5, $6)",
            &[
                &flow_id.0,
                &percent,
                &started.path,
                &received,
                &FlowStatus::Uploading,
                &FlowStatus::Processing,
            ],
        )
        .await
        .context("failed to record the encode progress")?;
    Ok(changed > 0)
}

async fn record_encode_start(
    client: &impl GenericClient,
    flow_id: FlowId,
    started: EncodeStart,
) -> anyhow::Result<()> {
    let received = i64::try_from(started.received_bytes)?;
    client
        .execute(
            "UPDATE flow SET encode_path = $2, encode_started_at_byte = LEAST($3, total_bytes) \
             WHERE id = $1",
            &[&flow_id.0, &started.path, &received],
        )
        .await
        .context("failed to record how the encode started")?;
    Ok(())
}

fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

async fn mark_ready(
    client: &impl GenericClient,
    flow_id: FlowId,
    facts: &MediaFacts,
) -> anyhow::Result<u64> {
    let to_i32 = |value: Option<u32>| value.map(i32::try_from).transpose();
    let renditions = serde_json::to_value(&facts.renditions)?;
    let audio_tracks = serde_json::to_value(&facts.source.audio_tracks)?;
    let audio_renditions = serde_json::to_value(&facts.audio_renditions)?;
    client
        .execute(
            "UPDATE flow SET status = $16, error = NULL, duration_seconds = $2, width = $3, \
             height = $4, video_codec = $5, audio_codec = $6, hls_path = $7, dash_path = $8, \
             source_width = $9, source_height = $10, source_video_codec = $11, \
             source_audio_codec = $12, source_frame_rate = $13, renditions = $14, \
             poster_path = $15, source_interlaced = $18, source_hdr = $19, \
             source_audio_tracks = $20, audio_renditions = $21, stored_bytes = $22, \
             progress_percent = 100, updated_at = now() WHERE id = $1 AND status = $17",
            &[
                &flow_id.0,
                &facts.duration_seconds,
                &to_i32(facts.width)?,
                &to_i32(facts.height)?,
                &facts.video_codec,
                &facts.audio_codec,
                &facts.hls_path,
                &facts.dash_path,
                &to_i32(facts.source.width)?,
                &to_i32(facts.source.height)?,
                &facts.source.video_codec,
                &facts.source.audio_codec,
                &facts.source.frame_rate,
                &renditions,
                &facts.poster_path,
                &FlowStatus::Ready,
                &FlowStatus::Processing,
                &facts.source.interlaced,
                &facts.source.hdr,
                &audio_tracks,
                &audio_renditions,
                &i64::try_from(facts.stored_bytes)?,
            ],
        )
        .await
        .context("failed to mark the flow ready")
}

/// Changes a video's own fields (`None` keeps one, `passthrough: Some(None)` clears it), if
/// the video is the project's and not deleted. Not a status change. Returns false when there
/// is no such video.
pub async fn update_video(
    client: &impl GenericClient,
    update: &vod_contracts::commands::UpdateVideo,
    recorder: &Recorder,
) -> anyhow::Result<bool> {
    let (set_passthrough, passthrough) = match &update.passthrough {
        Some(value) => (true, value.as_deref()),
        None => (false, None),
    };
    let playback_policy = update.playback_policy.map(PlaybackPolicy::as_str);
    let updated = client
        .execute(
            "UPDATE video SET title = COALESCE($3, title), \
                    description = COALESCE($4, description), \
                    passthrough = CASE WHEN $5 THEN $6 ELSE passthrough END, \
                    playback_policy = COALESCE($7, playback_policy), \
                    updated_at = now() \
             WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
            &[
                &update.video_id.0,
                &update.project_id.0,
                &update.title,
                &update.description,
                &set_passthrough,
                &passthrough,
                &playback_policy,
            ],
        )
        .await
        .context("failed to update the video")?;
    if updated == 1 {
        recorder
            .video_event(
                client,
                update.video_id,
                EventType::VideoUpdated,
                Details::default(),
            )
            .await?;
    }
    Ok(updated == 1)
}

/// Deletes a video for its project (`DELETE /v1/videos/{id}`): from now on nothing shows it and
/// no upload attaches to it. The caller terminated its open uploads under the same
/// transaction; its rows and its output on holder go once nothing of it is in flight
/// (`crate::deletion`). Returns false when the project has no such video (deleted included).
pub async fn mark_video_deleted(
    client: &impl GenericClient,
    project_id: ProjectId,
    video_id: VideoId,
) -> anyhow::Result<bool> {
    let marked = client
        .execute(
            "UPDATE video SET deleted_at = now(), updated_at = now() \
             WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
            &[&video_id.0, &project_id.0],
        )
        .await
        .context("failed to mark the video deleted")?;
    Ok(marked == 1)
}

/// Records that a video was deleted, with the video as it was: called by the deletion, in
/// the transaction that marked it, once its uploads were terminated (their events come first).
pub async fn record_video_deleted(
    client: &impl GenericClient,
    video_id: VideoId,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    recorder
        .video_event(
            client,
            video_id,
            EventType::VideoDeleted,
            Details::default(),
        )
        .await
}

/// Records a flow's events, in order, each with the video as it is now.
async fn record_flow_events(
    client: &impl GenericClient,
    video_id: VideoId,
    flow_id: FlowId,
    events: &[(EventType, Option<&str>)],
    recorder: &Recorder,
) -> anyhow::Result<()> {
    for (event, reason) in events {
        let details = Details {
            flow_id: Some(flow_id),
            reason: *reason,
        };
        recorder
            .video_event(client, video_id, *event, details)
            .await?;
    }
    Ok(())
}

/// Deletes a video with its flows and their upload sessions (the foreign keys cascade). Only
/// for a video `store::lock_unused_videos` or `store::lock_purgeable_video` returned, once
/// fflow removed its files from holder.
pub async fn delete_video(client: &impl GenericClient, video_id: VideoId) -> anyhow::Result<bool> {
    let deleted = client
        .execute("DELETE FROM video WHERE id = $1", &[&video_id.0])
        .await
        .context("failed to delete the video")?;
    Ok(deleted == 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_literals_are_the_enums_spelling() {
        assert_eq!(SessionStatus::Open.as_str(), "OPEN");
        assert_eq!(FlowStatus::Uploading.as_str(), "UPLOADING");
    }

    use super::*;
    use FlowStatus::*;

    #[test]
    fn video_without_flows_is_created() {
        assert_eq!(video_status_from_flows(&[]), VideoStatus::Created);
        assert_eq!(video_status_from_flows(&[Cancelled]), VideoStatus::Created);
    }

    #[test]
    fn video_follows_its_newest_counted_flow() {
        assert_eq!(
            video_status_from_flows(&[Uploading, Ready]),
            VideoStatus::Uploading
        );
        assert_eq!(
            video_status_from_flows(&[Cancelled, Processing]),
            VideoStatus::Processing
        );
        assert_eq!(
            video_status_from_flows(&[Ready, Failed]),
            VideoStatus::Ready
        );
        assert_eq!(video_status_from_flows(&[Failed]), VideoStatus::Failed);
    }

    #[test]
    fn failed_reupload_keeps_a_playable_video_ready() {
        assert_eq!(
            video_status_from_flows(&[Failed, Ready]),
            VideoStatus::Ready
        );
    }
}
