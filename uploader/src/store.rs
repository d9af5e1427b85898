//! Reads of upload state, and the one write that is not a status change: recording which fflow
//! replica owns a session.
//!
//! The statuses and kinds these reads select by stay written in their queries: each is what a
//! fixed query is about, and a parameter would only take it away from the query's text.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;
use vod_contracts::fflow::EncodeTarget;
use vod_contracts::{
    FlowId, FlowStatus, ProjectId, SessionId, SessionStatus, UploadKind, VideoId, WriterId,
};

/// The flow an upload session feeds.
#[derive(Clone, Copy, Debug)]
pub struct FlowRef {
    pub flow_id: FlowId,
    pub video_id: VideoId,
    pub status: FlowStatus,
}

impl FlowRef {
    pub fn target(&self) -> EncodeTarget {
        EncodeTarget {
            video_id: self.video_id,
            flow_id: self.flow_id,
            mp4_support: Default::default(),
        }
    }
}

/// An upload session with the flow it feeds, if any.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub session_id: SessionId,
    /// The project the upload belongs to.
    pub project_id: ProjectId,
    pub status: SessionStatus,
    pub kind: UploadKind,
    /// `None` for a partial upload.
    pub flow: Option<FlowRef>,
    pub uploaded_bytes: u64,
    /// `None` while the length is deferred.
    pub total_bytes: Option<u64>,
    pub fflow_address: Option<String>,
    /// The request holding the write lock, and whether its lease still runs.
    pub writer: Option<WriterId>,
    pub writer_active: bool,
    /// The fencing token of the write lock: it goes up each time the lock passes to another
    /// request (see [`claim_writer`]).
    pub writer_epoch: u64,
    pub expires_at: Option<DateTime<Utc>>,
    /// Open, and past `expires_at`.
    pub expired: bool,
    /// The partial uploads of a final upload, in order.
    pub parts: Vec<SessionId>,
    /// How long the recorded fflow replica has been unreachable, if the last call failed so.
    pub fflow_unreachable_for: Option<std::time::Duration>,
}

impl SessionRow {
    /// True when `writer` may write now: it holds the lock, or nobody holds a live one.
    pub fn may_write(&self, writer: Option<WriterId>) -> bool {
        match (self.writer, writer) {
            (Some(holder), Some(writer)) if holder == writer => true,
            _ => !self.writer_active,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.total_bytes == Some(self.uploaded_bytes)
    }
}

const SESSION_COLUMNS: &str = "s.id, s.status, s.kind, f.id, f.video_id, f.status, \
     COALESCE(f.uploaded_bytes, s.uploaded_bytes, 0), \
     CASE WHEN s.kind = 'PARTIAL' THEN s.total_bytes ELSE f.total_bytes END, \
     s.fflow_address, s.writer, COALESCE(s.writer_expires_at > now(), false), s.expires_at, \
     (s.status = 'OPEN' AND COALESCE(s.expires_at < now(), false)), \
     COALESCE(s.parts, '{}'::uuid[]), \
     (EXTRACT(EPOCH FROM now() - s.fflow_unreachable_since) * 1000)::bigint, \
     s.writer_epoch, s.project_id";

const SESSION_FROM: &str = "upload_session s LEFT JOIN flow f ON f.id = s.flow_id";

fn session_from_row(row: &tokio_postgres::Row) -> anyhow::Result<SessionRow> {
    let flow = match row.try_get::<_, Option<Uuid>>(3)? {
        Some(flow_id) => Some(FlowRef {
            flow_id: FlowId(flow_id),
            video_id: VideoId(row.try_get(4)?),
            status: row.try_get(5)?,
        }),
        None => None,
    };
    let parts: Vec<Uuid> = row.try_get(13)?;
    Ok(SessionRow {
        session_id: SessionId(row.try_get(0)?),
        status: row.try_get(1)?,
        kind: row.try_get(2)?,
        flow,
        uploaded_bytes: u64::try_from(row.try_get::<_, i64>(6)?)?,
        total_bytes: row
            .try_get::<_, Option<i64>>(7)?
            .map(u64::try_from)
            .transpose()?,
        fflow_address: row.try_get(8)?,
        writer: row.try_get::<_, Option<Uuid>>(9)?.map(WriterId),
        writer_active: row.try_get(10)?,
        expires_at: row.try_get(11)?,
        expired: row.try_get(12)?,
        parts: parts.into_iter().map(SessionId).collect(),
        fflow_unreachable_for: row
            .try_get::<_, Option<i64>>(14)?
            .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        writer_epoch: u64::try_from(row.try_get::<_, i64>(15)?)?,
        project_id: ProjectId(row.try_get(16)?),
    })
}

pub async fn load_session(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<Option<SessionRow>> {
    let query = format!("SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE s.id = $1");
    // Every chunk runs it: prepared once per connection.
    let statement = client
        .prepare_cached(&query)
        .await
        .context("failed to prepare reading an upload session")?;
    let row = client
        .query_opt(&statement, &[&session_id.0])
        .await
        .context("failed to load upload session")?;
    row.as_ref().map(session_from_row).transpose()
}

/// Same as [`load_session`], locking the session row until the transaction ends. Every write
/// to an upload's bytes or state happens under this lock.
pub async fn lock_session(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<Option<SessionRow>> {
    let query =
        format!("SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} WHERE s.id = $1 FOR UPDATE OF s");
    // Every chunk runs it: prepared once per connection.
    let statement = client
        .prepare_cached(&query)
        .await
        .context("failed to prepare the session lock")?;
    let row = client
        .query_opt(&statement, &[&session_id.0])
        .await
        .context("failed to lock upload session")?;
    row.as_ref().map(session_from_row).transpose()
}

/// Records `address` as the owner of the session unless one is recorded already; returns the
/// address that is recorded afterwards (ours, or the one that won).
pub async fn record_fflow_address(
    client: &impl GenericClient,
    session_id: SessionId,
    address: &str,
) -> anyhow::Result<String> {
    let claimed = client
        .query_opt(
            "UPDATE upload_session SET fflow_address = $2 \
             WHERE id = $1 AND fflow_address IS NULL RETURNING fflow_address",
            &[&session_id.0, &address],
        )
        .await
        .context("failed to record the session's fflow replica")?;
    if claimed.is_some() {
        return Ok(address.to_owned());
    }
    // Another replica recorded one first; a new statement sees its commit.
    let row = client
        .query_one(
            "SELECT fflow_address FROM upload_session WHERE id = $1",
            &[&session_id.0],
        )
        .await
        .context("failed to read the session's fflow replica")?;
    let recorded: Option<String> = row.try_get(0)?;
    recorded.context("session has no fflow replica after recording one")
}

/// Notes that the session's recorded fflow replica could not be reached, unless an earlier
/// failure is noted already: the grace before the upload moves counts from the first one.
pub async fn note_fflow_unreachable(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE upload_session SET fflow_unreachable_since = now() \
             WHERE id = $1 AND fflow_unreachable_since IS NULL",
            &[&session_id.0],
        )
        .await
        .context("failed to note the unreachable fflow replica")?;
    Ok(())
}

/// The session's recorded fflow replica answered again.
pub async fn note_fflow_reachable(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE upload_session SET fflow_unreachable_since = NULL \
             WHERE id = $1 AND fflow_unreachable_since IS NOT NULL",
            &[&session_id.0],
        )
        .await
        .context("failed to note the reachable fflow replica")?;
    Ok(())
}

/// The fflow replica recorded for a session; `None` when it has none or does not exist.
pub async fn recorded_fflow_address(
    client: &impl GenericClient,
    session_id: SessionId,
) -> anyhow::Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT fflow_address FROM upload_session WHERE id = $1",
            &[&session_id.0],
        )
        .await
        .context("failed to read the session's fflow replica")?;
    Ok(row.map(|row| row.try_get(0)).transpose()?.flatten())
}

/// Sessions past their expiry, at most `limit`, skipping rows another transaction holds: open
/// ones, and complete partial uploads that no final upload joined in time.
pub async fn lock_expired_sessions(
    client: &impl GenericClient,
    limit: i64,
) -> anyhow::Result<Vec<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} \
         WHERE (s.status = 'OPEN' OR (s.kind = 'PARTIAL' AND s.status = 'COMPLETED')) \
           AND s.expires_at < now() \
         ORDER BY s.expires_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED"
    );
    let rows = client
        .query(&query, &[&limit])
        .await
        .context("failed to find expired sessions")?;
    rows.iter().map(session_from_row).collect()
}

/// Sessions whose flow has been processing for longer than `min_secs` on a recorded fflow
/// replica, oldest first, at most `limit`.
pub async fn processing_sessions(
    client: &impl GenericClient,
    min_secs: u64,
    limit: i64,
) -> anyhow::Result<Vec<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} \
         WHERE f.status = 'PROCESSING' AND s.fflow_address IS NOT NULL \
           AND f.updated_at < now() - make_interval(secs => $1) \
         ORDER BY f.updated_at LIMIT $2"
    );
    let rows = client
        .query(&query, &[&(min_secs as f64), &limit])
        .await
        .context("failed to find processing sessions")?;
    rows.iter().map(session_from_row).collect()
}

/// The partial uploads named by a final upload, locked, in the order given; `None` for a name
/// that is no upload.
pub async fn lock_parts(
    client: &impl GenericClient,
    parts: &[SessionId],
) -> anyhow::Result<Vec<Option<SessionRow>>> {
    let mut rows = Vec::with_capacity(parts.len());
    for part in parts {
        rows.push(lock_session(client, *part).await?);
    }
    Ok(rows)
}

/// True when a final upload already joined this partial upload.
pub async fn is_joined(client: &impl GenericClient, session_id: SessionId) -> anyhow::Result<bool> {
    let row = client
        .query_one(
            "SELECT final_session_id IS NOT NULL FROM upload_session WHERE id = $1",
            &[&session_id.0],
        )
        .await
        .context("failed to read the final upload of a part")?;
    Ok(row.try_get(0)?)
}

/// Gives the write lock to `writer` for `lease_secs`, or extends its lease, unless another
/// request holds a live lease. Returns the lock's fencing token, or `None` when another request
/// holds it. The token goes up when the lock passes to a request other than the one recorded,
/// so that every write checked under an older token is refused by fflow and cannot move the
/// offset; a request extending its own lease keeps its token.
pub async fn claim_writer(
    client: &impl GenericClient,
    session_id: SessionId,
    writer: WriterId,
    lease_secs: u64,
) -> anyhow::Result<Option<u64>> {
    let lease = lease_secs as f64;
    // Every PATCH runs it: prepared once per connection.
    let statement = client
        .prepare_cached(
            "UPDATE upload_session SET \
                    writer_epoch = writer_epoch + \
                        CASE WHEN writer IS DISTINCT FROM $2 THEN 1 ELSE 0 END, \
                    writer = $2, \
                    writer_expires_at = now() + make_interval(secs => $3) \
             WHERE id = $1 \
               AND (writer = $2 OR writer IS NULL OR NOT COALESCE(writer_expires_at > now(), false)) \
             RETURNING writer_epoch",
        )
        .await
        .context("failed to prepare claiming the write lock")?;
    let claimed = client
        .query_opt(&statement, &[&session_id.0, &writer.0, &lease])
        .await
        .context("failed to claim the write lock")?;
    claimed
        .map(|row| Ok(u64::try_from(row.try_get::<_, i64>(0)?)?))
        .transpose()
}

/// Gives the write lock to `writer` for `lease_secs`, or extends its lease, for a caller that
/// checked under the session's row lock that nobody else holds it.
pub async fn hold_writer(
    client: &impl GenericClient,
    session_id: SessionId,
    writer: WriterId,
    lease_secs: u64,
) -> anyhow::Result<()> {
    claim_writer(client, session_id, writer, lease_secs)
        .await?
        .context("the write lock is held by another request")?;
    Ok(())
}

/// Extends the lease of `writer` while the lock's fencing token is still `epoch`; false when
/// the lock passed to another request meanwhile.
pub async fn extend_writer(
    client: &impl GenericClient,
    session_id: SessionId,
    writer: WriterId,
    epoch: u64,
    lease_secs: u64,
) -> anyhow::Result<bool> {
    let lease = lease_secs as f64;
    let epoch = i64::try_from(epoch)?;
    let extended = client
        .execute(
            "UPDATE upload_session SET writer_expires_at = now() + make_interval(secs => $4) \
             WHERE id = $1 AND writer = $2 AND writer_epoch = $3",
            &[&session_id.0, &writer.0, &epoch, &lease],
        )
        .await
        .context("failed to extend the write lock")?;
    Ok(extended > 0)
}

/// Gives the write lock back if `writer` holds it.
pub async fn release_writer(
    client: &impl GenericClient,
    session_id: SessionId,
    writer: WriterId,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE upload_session SET writer = NULL, writer_expires_at = NULL \
             WHERE id = $1 AND writer = $2",
            &[&session_id.0, &writer.0],
        )
        .await
        .context("failed to release the write lock")?;
    Ok(())
}

/// A video nobody can use yet, nor will: no flow is ready, and none is uploading or processing.
const UNUSED_VIDEO: &str = "NOT EXISTS (SELECT 1 FROM flow f WHERE f.video_id = v.id \
                            AND f.status IN ('UPLOADING', 'PROCESSING', 'READY'))";

/// A deleted video whose rows and output may go: no flow of it is uploading or processing, so
/// no encode of it publishes anything any more.
const PURGEABLE_DELETED_VIDEO: &str =
    "v.deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM flow f \
     WHERE f.video_id = v.id AND f.status IN ('UPLOADING', 'PROCESSING'))";

/// Locks up to `limit` videos to delete, oldest first: those older than `ttl_secs` that are
/// unused, and deleted ones nothing of which is in flight. A video locked elsewhere is in use
/// (a new upload is being attached to it, or it is being deleted) and is skipped.
///
/// Attaching an upload locks the video first, so once locked here no flow can join a video;
/// the second statement sees every flow committed before the lock was taken.
pub async fn lock_unused_videos(
    client: &impl GenericClient,
    ttl_secs: u64,
    limit: i64,
) -> anyhow::Result<Vec<VideoId>> {
    let ttl_secs = ttl_secs as f64;
    let to_delete = format!(
        "((v.created_at < now() - make_interval(secs => $1) AND {UNUSED_VIDEO}) \
          OR ({PURGEABLE_DELETED_VIDEO}))"
    );
    let locked: Vec<Uuid> = client
        .query(
            &format!(
                "SELECT v.id FROM video v WHERE {to_delete} \
                 ORDER BY v.created_at LIMIT $2 FOR UPDATE OF v SKIP LOCKED"
            ),
            &[&ttl_secs, &limit],
        )
        .await
        .context("failed to find unused videos")?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let still_unused = client
        .query(
            &format!(
                "SELECT v.id FROM video v WHERE v.id = ANY($2) AND {to_delete} \
                 ORDER BY v.created_at"
            ),
            &[&ttl_secs, &locked],
        )
        .await
        .context("failed to check unused videos")?;
    still_unused
        .iter()
        .map(|row| Ok(VideoId(row.try_get(0)?)))
        .collect()
}

/// Locks a deleted video whose rows and output may go now (see [`lock_unused_videos`]); false
/// when it is not deleted, something of it is still in flight, or another replica holds it.
pub async fn lock_purgeable_video(
    client: &impl GenericClient,
    video_id: VideoId,
) -> anyhow::Result<bool> {
    let locked = client
        .query_opt(
            &format!(
                "SELECT 1 FROM video v WHERE v.id = $1 AND {PURGEABLE_DELETED_VIDEO} \
                 FOR UPDATE OF v SKIP LOCKED"
            ),
            &[&video_id.0],
        )
        .await
        .context("failed to lock a deleted video")?;
    Ok(locked.is_some())
}

/// The open upload sessions of a video, locked in id order, without locking the video: a
/// chunk locks its session before the video, and so does whoever terminates it.
pub async fn lock_open_sessions_of_video(
    client: &impl GenericClient,
    video_id: VideoId,
) -> anyhow::Result<Vec<SessionRow>> {
    let query = format!(
        "SELECT {SESSION_COLUMNS} FROM {SESSION_FROM} \
         WHERE f.video_id = $1 AND s.status = 'OPEN' ORDER BY s.id FOR UPDATE OF s"
    );
    let rows = client
        .query(&query, &[&video_id.0])
        .await
        .context("failed to lock the video's open uploads")?;
    rows.iter().map(session_from_row).collect()
}
