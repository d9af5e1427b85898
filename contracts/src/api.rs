//! The gateway's public JSON API, as clients see it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{EncodePath, FlowId, FlowStatus, VideoId, VideoStatus};

/// `GET /v1/videos/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoView {
    pub id: VideoId,
    pub title: String,
    pub description: String,
    /// The operator's own reference, at most 255 characters; vod never reads it.
    #[serde(default)]
    pub passthrough: Option<String>,
    pub status: VideoStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Newest first.
    pub flows: Vec<FlowView>,
    /// Absolute URLs of the newest ready flow's presentation on holder.
    pub playback: Option<Playback>,
    /// The seek-bar preview of the presentation that plays (`playback`), when it has one.
    #[serde(default)]
    pub storyboard: Option<StoryboardView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowView {
    pub id: FlowId,
    pub status: FlowStatus,
    pub filename: Option<String>,
    pub uploaded_bytes: u64,
    /// 0 while the upload's length is deferred.
    pub total_bytes: u64,
    pub error: Option<String>,
    pub duration_seconds: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Lowercase hex SHA-256 of the source as it was stitched, once processed.
    #[serde(default)]
    pub source_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How far the encode is, 0–100, from ffmpeg's own progress reports; 100 once ready,
    /// `None` before the encode starts.
    #[serde(default)]
    pub progress_percent: Option<u8>,
    /// Whether the encode started while the upload was arriving (`STREAMING`) or once it was
    /// complete (`AFTER_UPLOAD`); `None` before it starts.
    #[serde(default)]
    pub encode_path: Option<EncodePath>,
    /// Bytes of the upload that had arrived when the encode started.
    #[serde(default)]
    pub encode_started_at_byte: Option<u64>,
    /// The uploaded source, once ready.
    #[serde(default)]
    pub source: Option<SourceView>,
    /// The video renditions, tallest first, once ready; empty for an audio-only presentation.
    #[serde(default)]
    pub renditions: Vec<RenditionView>,
    /// The audio renditions, one per sound track of the source (up to the encoder's limit),
    /// once ready.
    #[serde(default)]
    pub audio_renditions: Vec<AudioRenditionView>,
    /// Absolute URL of the JPEG poster on holder, once ready (none without a picture).
    #[serde(default)]
    pub poster: Option<String>,
    /// The seek-bar preview, once ready (none without a picture).
    #[serde(default)]
    pub storyboard: Option<StoryboardView>,
}

/// A storyboard: one JPEG holding a grid of small frames taken at a regular interval, and a
/// WebVTT track whose cues name each frame's rectangle (`storyboard.jpg#xywh=x,y,w,h`), as
/// players show previews on their seek bar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoryboardView {
    /// Absolute URL of the JPEG grid on holder.
    pub image: String,
    /// Absolute URL of the WebVTT track on holder.
    pub vtt: String,
}

/// The uploaded source as ffprobe read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceView {
    /// Displayed size, rotation applied.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub frame_rate: Option<f64>,
    /// The picture was interlaced (fields, as broadcast captures); every rendition was
    /// deinterlaced.
    #[serde(default)]
    pub interlaced: bool,
    /// The picture was high dynamic range (PQ or HLG transfer); every rendition was tone-mapped
    /// to standard dynamic range, BT.709.
    #[serde(default)]
    pub hdr: bool,
    /// Every sound track, in the source's order.
    #[serde(default)]
    pub audio_tracks: Vec<AudioTrackView>,
}

/// One sound track of the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AudioTrackView {
    /// BCP 47 language tag from the container, `und` when it has none.
    pub language: String,
    pub channels: Option<u32>,
    /// ffmpeg's codec name, e.g. `aac`, `ac3`, `opus`.
    pub codec: String,
}

/// One audio rendition: stereo AAC of one sound track of the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AudioRenditionView {
    /// BCP 47 language tag, `und` when the source did not say.
    pub language: String,
    /// What players show: the track's title, else its language's name.
    pub name: String,
    /// The rendition players choose first.
    pub default: bool,
    /// Peak bits per second of a segment.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
    /// Absolute URL of the rendition's HLS media playlist on holder.
    pub hls: String,
}

/// One rendition of the ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenditionView {
    pub width: u32,
    pub height: u32,
    /// Peak bits per second, audio included.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
    /// Absolute URL of the rendition's HLS media playlist on holder.
    pub hls: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Playback {
    pub hls: String,
    pub dash: String,
}

/// `GET /v1/videos`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoList {
    pub videos: Vec<VideoView>,
}

/// Every error answer of the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, machine-readable.
    pub code: String,
    /// For people.
    pub message: String,
    /// The offending field of a validation error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}
