//! fflow → uploader: how an encode ended. Published on the outcomes queue; the uploader applies
//! it to the flow and video. Applying the same outcome twice changes nothing.

use serde::{Deserialize, Serialize};

use crate::{FlowId, SessionId, VideoId};

/// The result of encoding one flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeOutcome {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    pub session_id: SessionId,
    pub result: EncodeResult,
    /// Lowercase hex SHA-256 of the stitched source, the bytes the encode read.
    #[serde(default)]
    pub source_sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EncodeResult {
    Ready(MediaFacts),
    Failed {
        /// A sentence a user can read, e.g. ffmpeg's own error line.
        reason: String,
    },
}

/// What is known of a flow once it is playable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    pub duration_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    /// Path of the HLS master playlist relative to holder's root.
    pub hls_path: String,
    /// Path of the DASH manifest relative to holder's root.
    pub dash_path: String,
}
