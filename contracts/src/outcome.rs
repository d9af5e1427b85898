//! fflow → uploader: how an encode ended, and how far along it is.
//!
//! An [`EncodeOutcome`] is published on the outcomes queue; the uploader applies it to the flow
//! and video, and applying the same outcome twice changes nothing. [`EncodeProgress`] reports go
//! on the progress queue while ffmpeg runs; they are advisory, a lost one is harmless, and one
//! that arrives after the outcome changes nothing.

use serde::{Deserialize, Serialize};

use crate::{EncodePath, FlowId, SessionId, VideoId};

/// The result of encoding one flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeOutcome {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    pub session_id: SessionId,
    pub result: EncodeResult,
    /// How the encode that produced this result was started; `None` when it never started
    /// (the source was refused before ffmpeg ran).
    #[serde(default)]
    pub started: Option<EncodeStart>,
    /// Lowercase hex SHA-256 of the stitched source, the bytes the encode read.
    #[serde(default)]
    pub source_sha256: Option<String>,
    /// Address of the replica that encoded, as in `ProcessCreated::address`. An outcome from a
    /// replica the upload was moved away from (it was lost, then came back) is ignored.
    #[serde(default)]
    pub replica_address: Option<String>,
}

/// How an encode was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeStart {
    pub path: EncodePath,
    /// Bytes of the upload on the replica when ffmpeg started: the whole upload on the
    /// after-upload path, less on the streaming path.
    pub received_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EncodeResult {
    Ready(Box<MediaFacts>),
    Failed {
        /// A sentence a user can read, e.g. ffmpeg's own error line.
        reason: String,
    },
}

/// What is known of a flow once it is playable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    pub duration_seconds: f64,
    /// Size of the largest rendition; `None` for an audio-only presentation.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Codec of the renditions' picture (`h264`), `None` for an audio-only presentation.
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Path of the HLS master playlist relative to holder's root.
    pub hls_path: String,
    /// Path of the DASH manifest relative to holder's root.
    pub dash_path: String,
    /// What was uploaded.
    pub source: SourceFacts,
    /// The video renditions, tallest first; empty for an audio-only presentation.
    pub renditions: Vec<RenditionFacts>,
    /// The audio renditions, one per sound track of the source, in its order.
    #[serde(default)]
    pub audio_renditions: Vec<AudioRenditionFacts>,
    /// Path of the JPEG poster relative to holder's root; `None` without a picture.
    pub poster_path: Option<String>,
    /// The seek-bar preview; `None` without a picture, or from a replica older than this field.
    #[serde(default)]
    pub storyboard: Option<StoryboardFacts>,
    /// The MP4 downloads made (with `mp4_support` `standard`); empty otherwise.
    #[serde(default)]
    pub downloads: Vec<DownloadFacts>,
    /// Bytes of the presentation fflow sent to holder (every file of it); 0 from a replica
    /// older than this field.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// A storyboard: one image holding a grid of small frames taken at a regular interval, and a
/// WebVTT track whose cues name each frame's rectangle (`storyboard.jpg#xywh=x,y,w,h`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoryboardFacts {
    /// Path of the JPEG grid relative to holder's root.
    pub image_path: String,
    /// Path of the WebVTT track relative to holder's root.
    pub vtt_path: String,
    /// Size of the whole image.
    pub width: u32,
    pub height: u32,
    /// Time between two frames.
    pub interval_ms: u64,
}

/// One MP4 download of a presentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadFacts {
    /// `highest.mp4` or `audio.m4a`.
    pub name: String,
    /// Path relative to holder's root.
    pub path: String,
    pub bytes: u64,
    /// Size of the picture; `None` for `audio.m4a`.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The uploaded source as ffprobe describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceFacts {
    /// Displayed size (rotation and pixel aspect applied); `None` without a picture.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// ffmpeg's codec names, e.g. `h264`, `hevc`, `vp9`, `aac`, `opus`.
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Frames per second of the source (its average rate).
    pub frame_rate: Option<f64>,
    /// The picture was interlaced, and the renditions were deinterlaced.
    #[serde(default)]
    pub interlaced: bool,
    /// The picture was high dynamic range (PQ or HLG), and the renditions were tone-mapped to
    /// BT.709 SDR.
    #[serde(default)]
    pub hdr: bool,
    /// Every sound track, in the source's order.
    #[serde(default)]
    pub audio_tracks: Vec<AudioTrackFacts>,
}

/// One sound track of the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioTrackFacts {
    /// BCP 47 from the container's tag, `und` when it has none.
    pub language: String,
    pub channels: Option<u32>,
    /// ffmpeg's codec name, e.g. `aac`, `ac3`, `opus`.
    pub codec: String,
}

/// One audio rendition: stereo AAC of one sound track.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioRenditionFacts {
    /// BCP 47, `und` when the source did not say.
    pub language: String,
    /// What players show, e.g. `English` or the track's title.
    pub name: String,
    /// Players choose it first.
    pub default: bool,
    /// Peak bits per second of a segment.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// RFC 6381 codecs, `mp4a.40.2`.
    pub codecs: String,
    /// Path of its HLS media playlist relative to holder's root.
    pub playlist_path: String,
}

/// One video rendition of the ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenditionFacts {
    pub width: u32,
    pub height: u32,
    /// Peak bits per second of a segment, audio included, as in the HLS `BANDWIDTH`.
    pub bandwidth: u64,
    /// Mean bits per second, audio included.
    pub average_bandwidth: u64,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Path of the rendition's HLS media playlist relative to holder's root.
    pub playlist_path: String,
}

/// How far an encode is. Sent at most every few seconds per encode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeProgress {
    pub video_id: VideoId,
    pub flow_id: FlowId,
    pub session_id: SessionId,
    pub started: EncodeStart,
    /// 0–99 while ffmpeg runs; a ready flow is 100.
    pub percent: u8,
}
