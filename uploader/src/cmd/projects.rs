//! The commands about projects and their keys; what they write is in `crate::projects`.

use anyhow::Context;
use vod_contracts::commands::{
    ApiKeyCreated, ApiKeyRevoked, ApiKeysTouched, CreateApiKey, CreateProject, ProjectCreated,
    ProjectQuotasSet, Reject, RejectCode, RevokeApiKey, SetProjectQuotas, TouchApiKeys,
};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::projects::{self, NewKey};
use crate::quotas;

/// Keys touched in one command, at most: the gateway batches what it verified.
const MAX_TOUCHED_KEYS: usize = 1_000;

impl Handle for CreateProject {
    async fn handle(self, handlers: &Handlers) -> Result<ProjectCreated, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        let (project_id, created_at) = projects::create_project(&client, &self.name).await??;
        tracing::info!(%project_id, "project created");
        Ok(ProjectCreated {
            project_id,
            created_at,
        })
    }
}

impl Handle for CreateApiKey {
    async fn handle(self, handlers: &Handlers) -> Result<ApiKeyCreated, HandlerError> {
        let secret_sha256 = decode_sha256(&self.secret_sha256)?;
        if self.scopes.is_empty() {
            return Err(invalid("a key has at least one scope").into());
        }
        let client = handlers.pg.get().await.context("no database connection")?;
        let key = NewKey {
            project_id: self.project_id,
            key_id: self.key_id,
            name: &self.name,
            scopes: &self.scopes,
            secret_sha256: &secret_sha256,
        };
        let created_at = projects::create_key(&client, key).await??;
        tracing::info!(project_id = %self.project_id, key_id = %self.key_id, "api key created");
        Ok(ApiKeyCreated { created_at })
    }
}

impl Handle for RevokeApiKey {
    async fn handle(self, handlers: &Handlers) -> Result<ApiKeyRevoked, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        projects::revoke_key(&client, self.project_id, self.key_id).await??;
        tracing::info!(project_id = %self.project_id, key_id = %self.key_id, "api key revoked");
        Ok(ApiKeyRevoked {})
    }
}

impl Handle for SetProjectQuotas {
    async fn handle(self, handlers: &Handlers) -> Result<ProjectQuotasSet, HandlerError> {
        let out_of_range = [
            self.quotas.max_stored_bytes,
            self.quotas.max_open_uploads,
            self.quotas.max_uploads_per_hour,
        ]
        .into_iter()
        .flatten()
        .flatten()
        .any(|value| i64::try_from(value).is_err());
        if out_of_range {
            return Err(invalid("a quota is at most 2^63 - 1").into());
        }
        let client = handlers.pg.get().await.context("no database connection")?;
        let overrides = quotas::set_overrides(&client, self.project_id, &self.quotas).await??;
        tracing::info!(project_id = %self.project_id, ?overrides, "project quotas changed");
        Ok(ProjectQuotasSet { overrides })
    }
}

impl Handle for TouchApiKeys {
    async fn handle(self, handlers: &Handlers) -> Result<ApiKeysTouched, HandlerError> {
        if self.key_ids.len() > MAX_TOUCHED_KEYS {
            return Err(invalid(format!("at most {MAX_TOUCHED_KEYS} keys at once")).into());
        }
        let client = handlers.pg.get().await.context("no database connection")?;
        projects::touch_keys(&client, &self.key_ids, self.used_at).await?;
        Ok(ApiKeysTouched {})
    }
}

fn decode_sha256(hex: &str) -> Result<Vec<u8>, Reject> {
    let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(invalid("secret_sha256 is not 64 hex digits"));
    }
    (0..64)
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid("secret_sha256 is not 64 hex digits"))
}

fn invalid(message: impl Into<String>) -> Reject {
    Reject::new(RejectCode::InvalidCommand, message)
}
