//! Direct uploads, as the public JSON API shows them: single-use tus creation URLs that need
//! no key, for browsers and apps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DirectUploadId, VideoId};

/// Where a direct upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DirectUploadStatus {
    /// The URL takes one upload until `expires_at`.
    Waiting,
    /// An upload was created through the URL: `video_id` is its video.
    AssetCreated,
    /// Cancelled by `DELETE` before any upload.
    Cancelled,
    /// Nobody used the URL before `expires_at`.
    TimedOut,
}

impl DirectUploadStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DirectUploadStatus::Waiting => "waiting",
            DirectUploadStatus::AssetCreated => "asset_created",
            DirectUploadStatus::Cancelled => "cancelled",
            DirectUploadStatus::TimedOut => "timed_out",
        }
    }

    /// The status a stored row shows at `now`: a waiting one past its expiry timed out.
    pub fn shown(stored: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Self> {
        match stored {
            "waiting" if expires_at <= now => Some(DirectUploadStatus::TimedOut),
            "waiting" => Some(DirectUploadStatus::Waiting),
            "asset_created" => Some(DirectUploadStatus::AssetCreated),
            "cancelled" => Some(DirectUploadStatus::Cancelled),
            _ => None,
        }
    }
}

pub use crate::playback::PlaybackPolicy;

/// What the video made by a direct upload gets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewVideoView {
    /// `null`: the title comes from the upload (`title`, else `filename` in `Upload-Metadata`).
    pub title: Option<String>,
    pub description: String,
    pub playback_policy: PlaybackPolicy,
}

/// `GET /v1/direct-uploads/{id}`. `url` is given only when the direct upload is made: only
/// the SHA-256 of its token is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectUploadView {
    pub id: DirectUploadId,
    pub status: DirectUploadStatus,
    /// The only origin browsers may use the URL from; `null`: no browser may.
    pub cors_origin: Option<String>,
    pub new_video: NewVideoView,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The video the upload created, once `asset_created` (`null` again if it was deleted).
    pub video_id: Option<VideoId>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// `POST /v1/direct-uploads`: the only answer that holds the URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectUploadCreated {
    pub id: DirectUploadId,
    /// The tus creation endpoint, for one upload, without a key. Shown this once.
    pub url: String,
    pub status: DirectUploadStatus,
    pub expires_at: DateTime<Utc>,
    pub cors_origin: Option<String>,
    pub new_video: NewVideoView,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/direct-uploads`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectUploadList {
    pub direct_uploads: Vec<DirectUploadView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_direct_upload_past_its_expiry_shows_timed_out() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(1);
        let shown = |stored, expires_at| DirectUploadStatus::shown(stored, expires_at, now);
        assert_eq!(shown("waiting", later), Some(DirectUploadStatus::Waiting));
        assert_eq!(shown("waiting", now), Some(DirectUploadStatus::TimedOut));
        assert_eq!(
            shown("asset_created", now),
            Some(DirectUploadStatus::AssetCreated)
        );
        assert_eq!(
            shown("cancelled", later),
            Some(DirectUploadStatus::Cancelled)
        );
        assert_eq!(shown("timed_out", later), None);
    }
}
