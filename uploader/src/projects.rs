//! Projects and their API keys: the only writes of those rows. A project's videos and uploads
//! are written by `transitions`, always with the project the command names.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use vod_contracts::access::Scope;
use vod_contracts::commands::{Reject, RejectCode};
use vod_contracts::{ApiKeyId, ProjectId};

/// Makes a project, unless another one has the name.
pub async fn create_project(
    client: &impl GenericClient,
    name: &str,
) -> anyhow::Result<Result<(ProjectId, DateTime<Utc>), Reject>> {
    let project_id = ProjectId::new();
    let inserted = client
        .query_one(
            "INSERT INTO project (id, name) VALUES ($1, $2) RETURNING created_at",
            &[&project_id.0, &name],
        )
        .await;
    match inserted {
        Ok(row) => Ok(Ok((project_id, row.try_get(0)?))),
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(Err(Reject::new(
            RejectCode::ProjectNameTaken,
            format!("a project named {name:?} exists already"),
        ))),
        Err(error) => Err(error).context("failed to insert project"),
    }
}

/// What a new key is.
pub struct NewKey<'a> {
    pub project_id: ProjectId,
    pub key_id: ApiKeyId,
    pub name: &'a str,
    pub scopes: &'a [Scope],
    pub secret_sha256: &'a [u8],
}

/// Stores a key of a project. Storing the same key twice (a redelivered command) answers the
/// first one's creation time.
pub async fn create_key(
    client: &impl GenericClient,
    key: NewKey<'_>,
) -> anyhow::Result<Result<DateTime<Utc>, Reject>> {
    let scopes: Vec<&str> = key.scopes.iter().map(|scope| scope.as_str()).collect();
    let inserted = client
        .query_opt(
            "INSERT INTO api_key (id, project_id, name, scopes, secret_sha256) \
             SELECT $1, p.id, $3, $4, $5 FROM project p WHERE p.id = $2 \
             ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id \
                 WHERE api_key.project_id = EXCLUDED.project_id \
                   AND api_key.secret_sha256 = EXCLUDED.secret_sha256 \
             RETURNING created_at",
            &[
                &key.key_id.0,
                &key.project_id.0,
                &key.name,
                &scopes,
                &key.secret_sha256,
            ],
        )
        .await
        .context("failed to insert api key")?;
    match inserted {
        Some(row) => Ok(Ok(row.try_get(0)?)),
        None => Ok(Err(Reject::new(
            RejectCode::ProjectNotFound,
            format!("project {} does not exist", key.project_id),
        ))),
    }
}

/// Revokes a key of the project (a revoked one stays revoked when it was); another project's
/// key is answered as one that does not exist.
pub async fn revoke_key(
    client: &impl GenericClient,
    project_id: ProjectId,
    key_id: ApiKeyId,
) -> anyhow::Result<Result<(), Reject>> {
    let revoked = client
        .execute(
            "UPDATE api_key SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE id = $1 AND project_id = $2",
            &[&key_id.0, &project_id.0],
        )
        .await
        .context("failed to revoke api key")?;
    if revoked == 0 {
        return Ok(Err(Reject::new(
            RejectCode::KeyNotFound,
            format!("key {key_id} does not exist"),
        )));
    }
    Ok(Ok(()))
}

/// Records when keys were last verified; a time never goes back.
pub async fn touch_keys(
    client: &impl GenericClient,
    key_ids: &[ApiKeyId],
    used_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = key_ids.iter().map(|id| id.0).collect();
    client
        .execute(
            "UPDATE api_key SET last_used_at = GREATEST(last_used_at, $2) WHERE id = ANY($1)",
            &[&ids, &used_at],
        )
        .await
        .context("failed to record api key use")?;
    Ok(())
}
