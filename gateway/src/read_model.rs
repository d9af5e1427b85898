//! What the gateway reads from PostgreSQL. It never writes: the uploader owns these rows.
//! The rendering of a video is `vod_read_model`'s, shared with the uploader's events.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, PoolError};
use uuid::Uuid;
use vod_contracts::api::VideoView;
use vod_contracts::{FlowId, ProjectId, SessionId, SessionStatus, UploadKind, VideoId};
use vod_read_model::{Deleted, ViewError};

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no database connection: {0}")]
    Unavailable(#[from] PoolError),
    #[error("query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("unexpected renditions: {0}")]
    CorruptRenditions(#[from] serde_json::Error),
    #[error("unexpected stored playback policy {0:?}")]
    CorruptPolicy(String),
}

impl From<ViewError> for ReadError {
    fn from(error: ViewError) -> Self {
        match error {
            ViewError::Query(error) => Self::Query(error),
            ViewError::CorruptJson(error) => Self::CorruptRenditions(error),
            ViewError::CorruptPolicy(policy) => Self::CorruptPolicy(policy),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Unavailable(_) => Self::Unavailable(error.to_string()),
            ReadError::Query(ref query) if query.is_closed() => {
                Self::Unavailable(error.to_string())
            }
            other => {
                Self::Internal(anyhow::Error::new(other).context("failed to read the database"))
            }
        }
    }
}

/// An upload session with its flow, as `HEAD` and `PATCH` need it.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub status: SessionStatus,
    pub kind: UploadKind,
    /// `None` for a partial upload.
    pub video_id: Option<VideoId>,
    pub flow_id: Option<FlowId>,
    pub uploaded_bytes: u64,
    /// `None` while the length is deferred.
    pub total_bytes: Option<u64>,
    pub metadata: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Open, and past `expires_at`: it answers 410 even before the uploader expires it.
    pub expired: bool,
    /// The partial uploads of a final upload, in order.
    pub parts: Vec<SessionId>,
}

/// The upload if it is the project's: another project's upload, and one of a deleted video, is
/// as absent as one that does not exist, in the same single query.
pub async fn find_upload(
    pool: &Pool,
    project_id: ProjectId,
    session_id: SessionId,
) -> Result<Option<UploadState>, ReadError> {
    let client = pool.get().await?;
    // Every PATCH and HEAD runs it: prepared once per connection.
    let statement = client
        .prepare_cached(
            "SELECT s.status, s.kind, f.video_id, s.flow_id, \
                    COALESCE(f.uploaded_bytes, s.uploaded_bytes, 0) AS uploaded_bytes, \
                    CASE WHEN s.kind = 'PARTIAL' THEN s.total_bytes ELSE f.total_bytes END \
                        AS total_bytes, \
                    s.metadata, s.expires_at, \
                    (s.status = 'OPEN' AND COALESCE(s.expires_at < now(), false)) AS expired, \
                    COALESCE(s.parts, '{}'::uuid[]) AS parts \
             FROM upload_session s LEFT JOIN flow f ON f.id = s.flow_id \
                  LEFT JOIN video v ON v.id = f.video_id \
             WHERE s.id = $1 AND s.project_id = $2 AND v.deleted_at IS NULL",
        )
        .await?;
    let row = client
        .query_opt(&statement, &[&session_id.0, &project_id.0])
        .await?;
    row.map(|row| {
        let parts: Vec<Uuid> = row.get("parts");
        Ok(UploadState {
            status: row.try_get("status")?,
            kind: row.try_get("kind")?,
            video_id: row.get::<_, Option<Uuid>>("video_id").map(VideoId),
            flow_id: row.get::<_, Option<Uuid>>("flow_id").map(FlowId),
            uploaded_bytes: non_negative(row.get("uploaded_bytes")),
            total_bytes: row.get::<_, Option<i64>>("total_bytes").map(non_negative),
            metadata: row.get("metadata"),
            expires_at: row.get("expires_at"),
            expired: row.get("expired"),
            parts: parts.into_iter().map(SessionId).collect(),
        })
    })
    .transpose()
}

/// Whether the project has the video (not deleted), without reading it.
pub async fn video_exists(
    pool: &Pool,
    project_id: ProjectId,
    video_id: VideoId,
) -> Result<bool, ReadError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM video WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL",
            &[&video_id.0, &project_id.0],
        )
        .await?;
    Ok(row.is_some())
}

/// The video if it is the project's and not deleted.
pub async fn find_video(
    pool: &Pool,
    project_id: ProjectId,
    video_id: VideoId,
    holder_public_url: &str,
) -> Result<Option<VideoView>, ReadError> {
    let client = pool.get().await?;
    Ok(vod_read_model::find_video(
        &client,
        project_id,
        video_id,
        holder_public_url,
        Deleted::Hidden,
    )
    .await?)
}

/// A page of videos, newest first, with their flows loaded in one query.
pub async fn list_videos(
    pool: &Pool,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
    holder_public_url: &str,
) -> Result<Vec<VideoView>, ReadError> {
    let client = pool.get().await?;
    Ok(vod_read_model::list_videos(&client, project_id, limit, offset, holder_public_url).await?)
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
