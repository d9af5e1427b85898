//! Projects and their API keys. The gateway reads them; the uploader writes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::json_request;
use crate::access::{QuotaOverrides, Scope};
use crate::{ApiKeyId, ProjectId};

/// Create a project; its name is unique.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateProject {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectCreated {
    pub project_id: ProjectId,
    pub created_at: DateTime<Utc>,
}

/// Store a key of a project. The gateway made the secret and sends only its SHA-256, so the
/// secret never reaches the broker or the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateApiKey {
    pub project_id: ProjectId,
    pub key_id: ApiKeyId,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub created_at: DateTime<Utc>,
}

/// Revoke a key of a project (also when it already was); a key of another project is
/// `key_not_found`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevokeApiKey {
    pub project_id: ProjectId,
    pub key_id: ApiKeyId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {}

/// Record that keys were used (verified by the gateway against the database) at `used_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TouchApiKeys {
    pub key_ids: Vec<ApiKeyId>,
    pub used_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeysTouched {}

/// Change a project's quota overrides: each field given replaces the override (`null` goes
/// back to the configured default); a field left out keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetProjectQuotas {
    pub project_id: ProjectId,
    pub quotas: QuotaOverrides,
}

/// The project's overrides after the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectQuotasSet {
    pub overrides: QuotaOverrides,
}

json_request!(SetProjectQuotas, SetProjectQuotas => ProjectQuotasSet);
json_request!(CreateProject, CreateProject => ProjectCreated);
json_request!(CreateApiKey, CreateApiKey => ApiKeyCreated);
json_request!(RevokeApiKey, RevokeApiKey => ApiKeyRevoked);
json_request!(TouchApiKeys, TouchApiKeys => ApiKeysTouched);
