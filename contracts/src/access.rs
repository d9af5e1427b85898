//! Projects and API keys, as the public JSON API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ApiKeyId, ProjectId};

/// What a key may do: `read` is `GET` and `HEAD`, `write` everything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// `POST /v1/admin/projects`, `PATCH /v1/admin/projects/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectView {
    pub id: ProjectId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The quotas in force: the project's overrides, else the configured defaults.
    pub quotas: Quotas,
}

/// A project's quotas in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quotas {
    /// Bytes its presentations may hold on holder; at or over it, no upload is created (413
    /// `quota_exceeded`).
    pub max_stored_bytes: u64,
    /// Uploads open at once; at it, no upload is created (429 `too_many_open_uploads`).
    pub max_open_uploads: u64,
    /// Uploads created per clock hour; at it, no upload is created until the hour ends (429
    /// `rate_limited`).
    pub max_uploads_per_hour: u64,
}

impl Quotas {
    /// The overrides where set, else `self` (the defaults).
    pub fn overridden_by(self, overrides: &QuotaOverrides) -> Quotas {
        let pick = |value: Option<Option<u64>>, default: u64| value.flatten().unwrap_or(default);
        Quotas {
            max_stored_bytes: pick(overrides.max_stored_bytes, self.max_stored_bytes),
            max_open_uploads: pick(overrides.max_open_uploads, self.max_open_uploads),
            max_uploads_per_hour: pick(overrides.max_uploads_per_hour, self.max_uploads_per_hour),
        }
    }
}

/// A project's own quotas: `Some(Some(n))` overrides the default, `Some(None)` (JSON `null`)
/// is the default; in a change, `None` (the field left out) keeps what is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaOverrides {
    #[serde(default, deserialize_with = "crate::commands::present")]
    pub max_stored_bytes: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::commands::present")]
    pub max_open_uploads: Option<Option<u64>>,
    #[serde(default, deserialize_with = "crate::commands::present")]
    pub max_uploads_per_hour: Option<Option<u64>>,
}

/// `GET /v1/usage`: the project's counters since `since`, and its quotas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageView {
    /// Since when the counters count.
    pub since: DateTime<Utc>,
    /// Bytes received by uploads, open ones included.
    pub bytes_received: u64,
    /// Uploads whose every byte arrived.
    pub uploads_completed: u64,
    /// Seconds of video encoded: source duration x renditions of every presentation made.
    pub encoded_seconds: f64,
    /// Bytes the project's presentations hold on holder now.
    pub stored_bytes: u64,
    /// Uploads open now.
    pub open_uploads: u64,
    pub quotas: Quotas,
}

/// `GET /v1/admin/projects`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

/// A key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    /// When the key was last verified against the database: the gateway remembers a verified
    /// key for a short while, so this is late by at most that while.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `GET /v1/keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// A key just made: the only answer that holds the whole key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyCreated {
    pub id: ApiKeyId,
    /// The whole string to send after `Bearer`. Shown this once: only its hash is kept.
    pub key: String,
    pub scopes: Vec<Scope>,
    pub name: String,
    pub created_at: DateTime<Utc>,
}
