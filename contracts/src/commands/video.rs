//! Videos.

use serde::{Deserialize, Serialize};

use super::json_request;
use crate::VideoId;

/// Create an empty video.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateVideo {
    pub title: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoCreated {
    pub video_id: VideoId,
}

json_request!(CreateVideo, CreateVideo => VideoCreated);
