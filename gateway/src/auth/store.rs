//! What the gateway reads of projects and keys. The uploader writes them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use vod_contracts::access::{KeyView, ProjectView, Quotas, Scope};
use vod_contracts::{ApiKeyId, ProjectId};

use crate::read_model::ReadError;

/// A key as the database holds it.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub project_id: ProjectId,
    pub scopes: Vec<Scope>,
    pub secret_sha256: Vec<u8>,
    pub revoked: bool,
}

/// Every request whose key is not remembered runs it: prepared once per connection.
pub async fn find_key(pool: &Pool, key_id: ApiKeyId) -> Result<Option<StoredKey>, ReadError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT project_id, scopes, secret_sha256, revoked_at IS NOT NULL \
             FROM api_key WHERE id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&key_id.0]).await? else {
        return Ok(None);
    };
    Ok(Some(StoredKey {
        project_id: ProjectId(row.try_get(0)?),
        scopes: scopes(row.try_get(1)?),
        secret_sha256: row.try_get(2)?,
        revoked: row.try_get(3)?,
    }))
}

pub async fn list_keys(pool: &Pool, project_id: ProjectId) -> Result<Vec<KeyView>, ReadError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_key \
             WHERE project_id = $1 ORDER BY created_at DESC, id DESC",
            &[&project_id.0],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(KeyView {
                id: ApiKeyId(row.try_get(0)?),
                name: row.try_get(1)?,
                scopes: scopes(row.try_get(2)?),
                created_at: row.try_get(3)?,
                last_used_at: row.try_get(4)?,
                revoked_at: row.try_get(5)?,
            })
        })
        .collect()
}

pub async fn list_projects(pool: &Pool) -> Result<Vec<ProjectView>, ReadError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT p.id, p.name, p.created_at, q.max_stored_bytes, q.max_open_uploads, \
                    q.max_uploads_per_hour \
             FROM project p JOIN project_quotas q ON q.project_id = p.id \
             ORDER BY p.created_at, p.id",
            &[],
        )
        .await?;
    rows.iter().map(project_view).collect()
}

pub async fn find_project(
    pool: &Pool,
    project_id: ProjectId,
) -> Result<Option<ProjectView>, ReadError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT p.id, p.name, p.created_at, q.max_stored_bytes, q.max_open_uploads, \
                    q.max_uploads_per_hour \
             FROM project p JOIN project_quotas q ON q.project_id = p.id \
             WHERE p.id = $1",
            &[&project_id.0],
        )
        .await?;
    row.as_ref().map(project_view).transpose()
}

fn project_view(row: &tokio_postgres::Row) -> Result<ProjectView, ReadError> {
    let created_at: DateTime<Utc> = row.try_get(2)?;
    Ok(ProjectView {
        id: ProjectId(row.try_get(0)?),
        name: row.try_get(1)?,
        created_at,
        quotas: quotas_at(row, 3)?,
    })
}

/// The quotas in columns `first..first + 3` (`max_stored_bytes`, `max_open_uploads`,
/// `max_uploads_per_hour`); the schema keeps them non-negative.
pub fn quotas_at(row: &tokio_postgres::Row, first: usize) -> Result<Quotas, ReadError> {
    let count = |index: usize| -> Result<u64, ReadError> {
        let value: i64 = row.try_get(index)?;
        Ok(u64::try_from(value).unwrap_or_default())
    };
    Ok(Quotas {
        max_stored_bytes: count(first)?,
        max_open_uploads: count(first + 1)?,
        max_uploads_per_hour: count(first + 2)?,
    })
}

/// The scopes as stored; the schema allows only known ones.
fn scopes(stored: Vec<String>) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = stored.iter().filter_map(|s| Scope::parse(s)).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}
