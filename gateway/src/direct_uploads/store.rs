//! What the gateway reads of direct uploads. The uploader writes them.

use deadpool_postgres::Pool;
use vod_contracts::direct_upload::DirectUploadView;
use vod_contracts::{DirectUploadId, ProjectId, SessionId};

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

/// As the API shows it; another project's is absent.
pub async fn find(
    pool: &Pool,
    project_id: ProjectId,
    direct_upload_id: DirectUploadId,
) -> Result<Option<DirectUploadView>, ReadError> {
    let client = pool.get().await?;
    Ok(vod_read_model::find_direct_upload(&client, project_id, direct_upload_id).await?)
}

/// Newest first.
pub async fn list(
    pool: &Pool,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
) -> Result<Vec<DirectUploadView>, ReadError> {
    let client = pool.get().await?;
    Ok(vod_read_model::list_direct_uploads(&client, project_id, limit, offset).await?)
}
