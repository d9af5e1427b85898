//! Videos.

use serde::{Deserialize, Serialize};

use super::json_request;
use crate::{ProjectId, VideoId};

/// Create an empty video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateVideo {
    /// The project the caller acts for: the rows named must belong to it.
    pub project_id: ProjectId,
    pub title: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoCreated {
    pub video_id: VideoId,
}

json_request!(CreateVideo, CreateVideo => VideoCreated);
