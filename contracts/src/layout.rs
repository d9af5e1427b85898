//! Where a presentation lives on holder. fflow writes there over FTP, holder serves the same
//! tree over HTTP, and the gateway turns these paths into playback URLs.

use crate::{FlowId, VideoId};

/// File name of the HLS master playlist inside a presentation directory.
pub const HLS_MASTER: &str = "master.m3u8";
/// File name of the DASH manifest inside a presentation directory.
pub const DASH_MANIFEST: &str = "manifest.mpd";
/// File name of the JPEG poster inside a presentation directory.
pub const POSTER: &str = "poster.jpg";
/// File name of the storyboard image (a grid of small frames) inside a presentation directory.
pub const STORYBOARD_IMAGE: &str = "storyboard.jpg";
/// File name of the storyboard's WebVTT track (cues `storyboard.jpg#xywh=x,y,w,h`) inside a
/// presentation directory.
pub const STORYBOARD_VTT: &str = "storyboard.vtt";

/// Directory of one flow's presentation, relative to holder's root, without slashes around it.
pub fn presentation_dir(video_id: VideoId, flow_id: FlowId) -> String {
    format!("videos/{video_id}/{flow_id}")
}

/// Directory of all presentations of a video, relative to holder's root.
pub fn video_dir(video_id: VideoId) -> String {
    format!("videos/{video_id}")
}
