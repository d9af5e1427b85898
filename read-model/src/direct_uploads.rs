//! Direct uploads as `GET /v1/direct-uploads/{id}` shows them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use vod_contracts::direct_upload::{DirectUploadStatus, DirectUploadView, NewVideoView};
use vod_contracts::{DirectUploadId, ProjectId, VideoId};

use crate::{stored_policy, ViewError};

const VIEW_COLUMNS: &str = "id, status, cors_origin, title, description, playback_policy, \
                            expires_at, created_at, video_id, cancelled_at, now()";

/// The direct upload if it is the project's.
pub async fn find_direct_upload(
    client: &impl GenericClient,
    project_id: ProjectId,
    direct_upload_id: DirectUploadId,
) -> Result<Option<DirectUploadView>, ViewError> {
    let row = client
        .query_opt(
            &format!("SELECT {VIEW_COLUMNS} FROM direct_upload WHERE id = $1 AND project_id = $2"),
            &[&direct_upload_id.0, &project_id.0],
        )
        .await?;
    row.as_ref().map(view).transpose()
}

/// Newest first.
pub async fn list_direct_uploads(
    client: &impl GenericClient,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
) -> Result<Vec<DirectUploadView>, ViewError> {
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

fn view(row: &tokio_postgres::Row) -> Result<DirectUploadView, ViewError> {
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
            playback_policy: stored_policy(row.try_get(5)?)?,
        },
        expires_at,
        created_at: row.try_get(7)?,
        video_id: video_id.map(VideoId),
        cancelled_at: row.try_get(9)?,
    })
}
