//! What ffprobe says of an uploaded source, and the size of the rendition made from it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

/// The source as the encode needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFacts {
    pub duration_seconds: f64,
    pub video: VideoStream,
    pub has_audio: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoStream {
    pub width: u32,
    pub height: u32,
    /// Degrees the player turns the picture; ffmpeg applies it while decoding.
    pub rotation: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// ffprobe refused the file; carries its own error line.
    #[error("the file is not a video ffmpeg can read: {0}")]
    Unreadable(String),
    #[error("the file has no video stream")]
    NoVideo,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Runs ffprobe on `file_name` inside `dir`, so that nothing it says names the spool.
pub async fn probe(
    ffprobe_path: &str,
    dir: &Path,
    file_name: &str,
    timeout: Duration,
) -> Result<SourceFacts, ProbeError> {
    let run = Command::new(ffprobe_path)
        .current_dir(dir)
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file_name)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow::anyhow!("ffprobe did not answer within {timeout:?}"))?
        .map_err(|err| anyhow::anyhow!("failed to run {ffprobe_path}: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = readable_error_line(&stderr, dir, file_name)
            .unwrap_or_else(|| format!("ffprobe exited with {}", output.status));
        return Err(ProbeError::Unreadable(line));
    }
    let answer: ProbeAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| ProbeError::Unreadable("ffprobe gave no readable description".to_owned()))?;
    answer.facts()
}

/// The last line of ffmpeg's or ffprobe's error output a user can read: level and context
/// prefixes dropped, and the spool path replaced by "source", e.g.
/// `Invalid data found when processing input`.
pub fn readable_error_line(stderr: &str, dir: &Path, file_name: &str) -> Option<String> {
    let line = stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())?;
    Some(readable_line(line, dir, file_name))
}

pub fn readable_line(line: &str, dir: &Path, file_name: &str) -> String {
    let dir = dir.to_string_lossy();
    let mut line = line.replace(&format!("{dir}/{file_name}"), "source");
    if !dir.is_empty() {
        line = line.replace(dir.as_ref(), "source");
    }
    let mut rest = line.as_str();
    // "[error] ", then "[mov,mp4 @ 0x55d0c] ".
    while let Some(after) = rest.strip_prefix('[') {
        match after.find("] ") {
            Some(end) => rest = &after[end + 2..],
            None => break,
        }
    }
    let rest = rest
        .strip_prefix(&format!("{file_name}: "))
        .or_else(|| rest.strip_prefix("source: "))
        .unwrap_or(rest);
    rest.trim().to_owned()
}

#[derive(Deserialize)]
struct ProbeAnswer {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    disposition: Option<Disposition>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    tags: Option<StreamTags>,
}

#[derive(Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize)]
struct StreamTags {
    rotate: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

impl ProbeAnswer {
    fn facts(&self) -> Result<SourceFacts, ProbeError> {
        let is = |stream: &&ProbeStream, kind: &str| stream.codec_type.as_deref() == Some(kind);
        // A cover picture of an audio file is a "video" stream of one frame.
        let video = self
            .streams
            .iter()
            .filter(|stream| is(stream, "video"))
            .find(|stream| {
                stream
                    .disposition
                    .as_ref()
                    .is_none_or(|d| d.attached_pic == 0)
            })
            .ok_or(ProbeError::NoVideo)?;
        let (Some(width), Some(height)) = (video.width, video.height) else {
            return Err(ProbeError::Unreadable(
                "the video stream has no picture size".to_owned(),
            ));
        };
        if width == 0 || height == 0 {
            return Err(ProbeError::Unreadable(
                "the video stream has no picture size".to_owned(),
            ));
        }
        let duration_seconds = [
            self.format.as_ref().and_then(|f| f.duration.as_deref()),
            video.duration.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|text| text.parse::<f64>().ok())
        .find(|seconds| seconds.is_finite() && *seconds > 0.0)
        .unwrap_or(0.0);
        Ok(SourceFacts {
            duration_seconds,
            video: VideoStream {
                width,
                height,
                rotation: video.rotation(),
            },
            has_audio: self.streams.iter().any(|stream| is(&stream, "audio")),
        })
    }
}

impl ProbeStream {
    fn rotation(&self) -> i32 {
        let from_side_data = self.side_data_list.iter().find_map(|data| data.rotation);
        let from_tag = || {
            self.tags
                .as_ref()
                .and_then(|tags| tags.rotate.as_deref())
                .and_then(|text| text.parse::<f64>().ok())
        };
        from_side_data.or_else(from_tag).unwrap_or(0.0).round() as i32
    }
}

/// The size of the single rendition: the displayed source size, never upscaled, at most
/// `max_height` tall, aspect kept, both dimensions even (yuv420p needs them so).
pub fn rendition_size(video: VideoStream, max_height: u32) -> (u32, u32) {
    let (width, height) = if video.rotation.rem_euclid(180) == 90 {
        (video.height, video.width)
    } else {
        (video.width, video.height)
    };
    let target_height = height.min(max_height);
    let target_width = if target_height == height {
        width
    } else {
        (f64::from(width) * f64::from(target_height) / f64::from(height)).round() as u32
    };
    (even(target_width), even(target_height))
}

fn even(size: u32) -> u32 {
    (size & !1).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(width: u32, height: u32, rotation: i32) -> VideoStream {
        VideoStream {
            width,
            height,
            rotation,
        }
    }

    #[test]
    fn small_source_keeps_its_size() {
        assert_eq!(rendition_size(video(320, 240, 0), 1080), (320, 240));
    }

    #[test]
    fn odd_sizes_become_even() {
        assert_eq!(rendition_size(video(321, 241, 0), 1080), (320, 240));
    }

    #[test]
    fn tall_source_is_capped_with_aspect_kept() {
        assert_eq!(rendition_size(video(3840, 2160, 0), 1080), (1920, 1080));
        assert_eq!(rendition_size(video(1440, 1080, 0), 720), (960, 720));
    }

    #[test]
    fn rotated_source_is_sized_as_displayed() {
        assert_eq!(rendition_size(video(1920, 1080, -90), 1080), (608, 1080));
        assert_eq!(rendition_size(video(1920, 1080, 90), 4000), (1080, 1920));
        assert_eq!(rendition_size(video(1920, 1080, 180), 4000), (1920, 1080));
    }

    #[test]
    fn error_lines_lose_prefixes_and_paths() {
        let dir = Path::new("/var/spool/fflow/r1/abc");
        let stderr = "[mov,mp4,m4a @ 0x55d0] moov atom not found\n\
                      source: Invalid data found when processing input\n";
        assert_eq!(
            readable_error_line(stderr, dir, "source").as_deref(),
            Some("Invalid data found when processing input")
        );
        let line =
            "[error] /var/spool/fflow/r1/abc/source: Invalid data found when processing input";
        assert_eq!(
            readable_line(line, dir, "source"),
            "Invalid data found when processing input"
        );
        let line =
            "[fatal] Could not write header for output file #0 (/var/spool/fflow/r1/abc/out/x)";
        assert_eq!(
            readable_line(line, dir, "source"),
            "Could not write header for output file #0 (source/out/x)"
        );
        assert_eq!(readable_error_line("\n  \n", dir, "source"), None);
    }

    #[test]
    fn probe_answer_gives_facts() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [
                {"codec_type": "video", "width": 640, "height": 360, "duration": "2.5",
                 "side_data_list": [{"rotation": -90}]},
                {"codec_type": "audio"}
            ], "format": {"duration": "3.000000"}}"#,
        )
        .unwrap();
        let facts = answer.facts().unwrap();
        assert_eq!(facts.duration_seconds, 3.0);
        assert_eq!(facts.video, video(640, 360, -90));
        assert!(facts.has_audio);
    }

    #[test]
    fn cover_art_is_not_a_video() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [
                {"codec_type": "audio"},
                {"codec_type": "video", "width": 500, "height": 500,
                 "disposition": {"attached_pic": 1}}
            ], "format": {"duration": "180.0"}}"#,
        )
        .unwrap();
        assert!(matches!(answer.facts(), Err(ProbeError::NoVideo)));
    }
}
