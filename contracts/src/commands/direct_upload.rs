//! Direct uploads: single-use creation URLs of a project. The gateway makes the token and
//! sends only its SHA-256; the upload created through the URL is a [`super::CreateUpload`]
//! that names the direct upload, and claims it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::json_request;
use crate::{DirectUploadId, PlaybackPolicy, ProjectId};

/// Store a direct upload of a project, waiting for its upload until `timeout_secs` from now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateDirectUpload {
    pub project_id: ProjectId,
    pub direct_upload_id: DirectUploadId,
    /// Lowercase hex SHA-256 of the URL's token.
    pub token_sha256: String,
    pub title: Option<String>,
    pub description: String,
    #[serde(default)]
    pub playback_policy: PlaybackPolicy,
    pub cors_origin: Option<String>,
    pub timeout_secs: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectUploadStored {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Cancel a waiting direct upload of a project (also when it already was cancelled); one
/// that created its upload is `direct_upload_finished`, another project's
/// `direct_upload_not_found`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelDirectUpload {
    pub project_id: ProjectId,
    pub direct_upload_id: DirectUploadId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectUploadCancelled {}

json_request!(CreateDirectUpload, CreateDirectUpload => DirectUploadStored);
json_request!(CancelDirectUpload, CancelDirectUpload => DirectUploadCancelled);
