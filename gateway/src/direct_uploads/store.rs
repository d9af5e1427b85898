//! What the gateway reads of direct uploads. The uploader writes them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use vod_contracts::direct_upload::{
    DirectUploadStatus, DirectUploadView, NewVideoView, PlaybackPolicy,
};
use vod_contracts::{DirectUploadId, ProjectId, SessionId, VideoId};

use crate::read_model::ReadError;

/// What a direct upload's URL lets a request do, as found by its token. Whether the URL may
/// still make its upload is the uploader's to decide, when it claims the direct upload.
#[derive(Clone, Debug)]
pub struct DirectGrant {
    pub direct_upload_id: DirectUploadId,
    pub project_id: ProjectId,
    pub cors_origin: Option<String>,
    /// The upload the URL created, the only one it reaches.
    pub upload_id: Option<SessionId>,
}

/// Every request to a direct upload's URL runs it: prepared once per connection.
pub async fn find_grant(
    pool: &Pool,
    token_sha256: &[u8],
) -> Result<Option<DirectGrant>, ReadError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT id, project_id, cors_origin, upload_id FROM direct_upload \
             WHERE token_sha256 = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&token_sha256]).await? else {
        return Ok(None);
    };
    let upload_id: Option<uuid::Uuid> = row.try_get(3)?;
    Ok(Some(DirectGrant {
        direct_upload_id: DirectUploadId(row.try_get(0)?),
        project_id: ProjectId(row.try_get(1)?),
        cors_origin: row.try_get(2)?,
        upload_id: upload_id.map(SessionId),
    }))
}

const VIEW_COLUMNS: &str = "id, status, cors_origin, title, description, playback_policy, \
                            expires_at, created_at, video_id, cancelled_at, now()";

pub async fn find(
    pool: &Pool,
    project_id: ProjectId,
    direct_upload_id: DirectUploadId,
) -> Result<Option<DirectUploadView>, ReadError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {VIEW_COLUMNS} FROM direct_upload WHERE id = $1 AND project_id = $2"),
            &[&direct_upload_id.0, &project_id.0],
        )
        .await?;
    row.as_ref().map(view).transpose()
}

/// Newest first.
pub async fn list(
    pool: &Pool,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
) -> Result<Vec<DirectUploadView>, ReadError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {VIEW_COLUMNS} FROM direct_upload WHERE project_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            &[&project_id.0, &limit, &offset],
        )
        .await?;
    rows.iter().map(view).collect()
}

fn view(row: &tokio_postgres::Row) -> Result<DirectUploadView, ReadError> {
    let status: String = row.try_get(1)?;
    let expires_at: DateTime<Utc> = row.try_get(6)?;
    let now: DateTime<Utc> = row.try_get(10)?;
    let video_id: Option<uuid::Uuid> = row.try_get(8)?;
    Ok(DirectUploadView {
        id: DirectUploadId(row.try_get(0)?),
        status: DirectUploadStatus::shown(&status, expires_at, now)
            .unwrap_or(DirectUploadStatus::Cancelled),
        cors_origin: row.try_get(2)?,
        new_video: NewVideoView {
            title: row.try_get(3)?,
            description: row.try_get(4)?,
            // The schema allows no other policy yet.
            playback_policy: PlaybackPolicy::Public,
        },
        expires_at,
        created_at: row.try_get(7)?,
        video_id: video_id.map(VideoId),
        cancelled_at: row.try_get(9)?,
    })
}
