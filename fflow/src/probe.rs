//! What ffprobe says of an uploaded source, and the size of the rendition made from it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::language;
use crate::sandbox::{self, Demuxer, Sandbox, SourceFormats};

/// The source as the encode needs to know it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFacts {
    /// The demuxer that reads it, the encode forces it.
    pub format: Demuxer,
    /// 0 when ffprobe could not tell.
    pub duration_seconds: f64,
    pub video: Option<VideoStream>,
    /// Every sound track, in the source's order (the `n` of ffmpeg's `0:a:n`).
    pub audio: Vec<AudioStream>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Sample (pixel) aspect ratio, `(0, 1)` when unknown.
    pub sample_aspect: (u32, u32),
    /// Degrees the player turns the picture; ffmpeg applies it while decoding.
    pub rotation: i32,
    /// Average frames per second, when known.
    pub frame_rate: Option<f64>,
    /// How the pictures are scanned, as the container says.
    pub scan: Scan,
    /// The picture's high dynamic range, `None` for standard dynamic range.
    pub hdr: Option<Hdr>,
}

/// A high-dynamic-range picture: its transfer, and the primaries and matrix its colours are in
/// (as zscale names them; BT.2020 when the stream does not say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hdr {
    /// `smpte2084` (PQ, as HDR10) or `arib-std-b67` (HLG).
    pub transfer: &'static str,
    pub primaries: &'static str,
    pub matrix: &'static str,
}

impl Hdr {
    /// From ffprobe's `color_transfer`, `color_primaries` and `color_space`.
    fn from_colors(
        transfer: Option<&str>,
        primaries: Option<&str>,
        matrix: Option<&str>,
    ) -> Option<Self> {
        let transfer = match transfer? {
            "smpte2084" => "smpte2084",
            "arib-std-b67" => "arib-std-b67",
            _ => return None,
        };
        let primaries = match primaries {
            Some("bt709") => "bt709",
            Some("smpte432") => "smpte432",
            _ => "bt2020",
        };
        let matrix = match matrix {
            Some("bt709") => "bt709",
            Some("bt2020c") => "bt2020c",
            _ => "bt2020nc",
        };
        Some(Self {
            transfer,
            primaries,
            matrix,
        })
    }
}

/// Progressive pictures, or interlaced ones with the field shown first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    Progressive,
    TopFieldFirst,
    BottomFieldFirst,
    /// The container does not say; [`crate::interlace`] looks at the pictures.
    Unknown,
}

impl Scan {
    /// From ffprobe's `field_order`: `tt`/`bt` show the top field first, `bb`/`tb` the bottom.
    fn from_field_order(field_order: Option<&str>) -> Self {
        match field_order {
            Some("progressive") => Self::Progressive,
            Some("tt" | "bt") => Self::TopFieldFirst,
            Some("bb" | "tb") => Self::BottomFieldFirst,
            _ => Self::Unknown,
        }
    }

    pub fn is_interlaced(self) -> bool {
        matches!(self, Self::TopFieldFirst | Self::BottomFieldFirst)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AudioStream {
    pub codec: String,
    /// Channels, when known.
    pub channels: Option<u32>,
    /// BCP 47 (see [`crate::language`]), `und` when the source does not say.
    pub language: String,
    /// The track's own title, when it has one.
    pub title: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// ffprobe refused the file; carries its own error line.
    #[error("the file is not a video or audio file ffmpeg can read: {0}")]
    Unreadable(String),
    /// An MP4 without its index: almost always an upload cut short.
    #[error(
        "the MP4 file is incomplete: its index (the moov box) is missing, so the file was \
         probably cut short"
    )]
    IncompleteMp4,
    #[error("the file has neither picture nor sound")]
    NoMedia,
    /// A format ffmpeg reads but fflow does not take as a source: a playlist or a script that
    /// names other files, or one `FFLOW_SOURCE_FORMATS` leaves out.
    #[error(
        "the file's format{} is not accepted; accepted formats: {accepted}",
        .format.as_ref().map(|name| format!(" ({name})")).unwrap_or_default()
    )]
    FormatRefused {
        format: Option<String>,
        accepted: SourceFormats,
    },
    /// ffprobe only guessed the format, as it does for arbitrary bytes.
    #[error(
        "the file is not a video or audio file ffmpeg can read: its format could only be guessed"
    )]
    Unrecognised,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Runs ffprobe on `file_name` inside `dir` (so that nothing it says names the spool), in the
/// sandbox: only the source formats are read.
pub async fn probe(
    sandbox: &Sandbox,
    dir: &Path,
    file_name: &str,
    timeout: Duration,
) -> Result<SourceFacts, ProbeError> {
    let mut command = Command::from(sandbox.ffprobe(
        dir,
        &[
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
        ],
        file_name,
    ));
    let run = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| anyhow::anyhow!("ffprobe did not answer within {timeout:?}"))?
        .map_err(|err| anyhow::anyhow!("failed to run ffprobe: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("moov atom not found") {
            return Err(ProbeError::IncompleteMp4);
        }
        if let Some(format) = sandbox::refused_format(&stderr) {
            return Err(ProbeError::FormatRefused {
                format,
                accepted: sandbox.formats().clone(),
            });
        }
        let line = readable_error_line(&stderr, dir, file_name)
            .unwrap_or_else(|| format!("ffprobe exited with {}", output.status));
        return Err(ProbeError::Unreadable(line));
    }
    let answer: ProbeAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| ProbeError::Unreadable("ffprobe gave no readable description".to_owned()))?;
    answer.facts(sandbox.formats())
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
    codec_name: Option<String>,
    channels: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    field_order: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    color_space: Option<String>,
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
    language: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
    probe_score: Option<u32>,
}

/// ffmpeg's `AVPROBE_SCORE_RETRY`: a format recognised with this score or less is a guess
/// (arbitrary bytes look like some raw audio format at 25).
const GUESSED_FORMAT_SCORE: u32 = 25;

impl ProbeAnswer {
    fn facts(&self, formats: &SourceFormats) -> Result<SourceFacts, ProbeError> {
        let score = self.format.as_ref().and_then(|format| format.probe_score);
        if score.is_some_and(|score| score <= GUESSED_FORMAT_SCORE) {
            return Err(ProbeError::Unrecognised);
        }
        // ffprobe opened only these already; a format found otherwise is still not read.
        let format_name = self
            .format
            .as_ref()
            .and_then(|format| format.format_name.as_deref());
        let format = format_name
            .and_then(|name| formats.accepted(name))
            .ok_or_else(|| ProbeError::FormatRefused {
                format: format_name.map(str::to_owned),
                accepted: formats.clone(),
            })?;
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
            });
        let audio: Vec<&ProbeStream> = self
            .streams
            .iter()
            .filter(|stream| is(stream, "audio"))
            .collect();
        if video.is_none() && audio.is_empty() {
            return Err(ProbeError::NoMedia);
        }
        let duration_seconds = [
            self.format.as_ref().and_then(|f| f.duration.as_deref()),
            video.and_then(|video| video.duration.as_deref()),
            audio.first().and_then(|audio| audio.duration.as_deref()),
        ]
        .into_iter()
        .flatten()
        .filter_map(|text| text.parse::<f64>().ok())
        .find(|seconds| seconds.is_finite() && *seconds > 0.0)
        .unwrap_or(0.0);
        Ok(SourceFacts {
            format,
            duration_seconds,
            video: video.map(ProbeStream::video).transpose()?,
            audio: audio.into_iter().map(ProbeStream::audio).collect(),
        })
    }
}

impl ProbeStream {
    fn audio(&self) -> AudioStream {
        let tags = self.tags.as_ref();
        AudioStream {
            codec: self.codec_name.clone().unwrap_or_default(),
            channels: self.channels.filter(|channels| *channels > 0),
            language: language::bcp47(tags.and_then(|tags| tags.language.as_deref())),
            title: tags
                .and_then(|tags| tags.title.as_deref())
                .map(str::trim)
                .filter(|title| !title.is_empty())
                .map(|title| {
                    title
                        .chars()
                        .filter(|c| !c.is_control() && *c != '"')
                        .collect()
                }),
        }
    }

    fn video(&self) -> Result<VideoStream, ProbeError> {
        let no_size = || ProbeError::Unreadable("the video stream has no picture size".to_owned());
        let (Some(width), Some(height)) = (self.width, self.height) else {
            return Err(no_size());
        };
        if width == 0 || height == 0 {
            return Err(no_size());
        }
        let frame_rate = [self.avg_frame_rate.as_deref(), self.r_frame_rate.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|text| ratio(text, '/'))
            .map(|(num, den)| f64::from(num) / f64::from(den))
            .find(|rate| rate.is_finite() && *rate > 0.0);
        Ok(VideoStream {
            codec: self.codec_name.clone().unwrap_or_default(),
            width,
            height,
            sample_aspect: self
                .sample_aspect_ratio
                .as_deref()
                .and_then(|text| ratio(text, ':'))
                .unwrap_or((0, 1)),
            rotation: self.rotation(),
            frame_rate,
            scan: Scan::from_field_order(self.field_order.as_deref()),
            hdr: Hdr::from_colors(
                self.color_transfer.as_deref(),
                self.color_primaries.as_deref(),
                self.color_space.as_deref(),
            ),
        })
    }

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

/// `num{separator}den` with both positive.
fn ratio(text: &str, separator: char) -> Option<(u32, u32)> {
    let (num, den) = text.split_once(separator)?;
    let num = num.trim().parse::<u32>().ok()?;
    let den = den.trim().parse::<u32>().ok()?;
    (num > 0 && den > 0).then_some((num, den))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                {"codec_type": "video", "codec_name": "hevc", "width": 640, "height": 360,
                 "duration": "2.5", "sample_aspect_ratio": "1:1", "avg_frame_rate": "30000/1001",
                 "r_frame_rate": "30000/1001", "side_data_list": [{"rotation": -90}]},
                {"codec_type": "audio", "codec_name": "opus"}
            ], "format": {"format_name": "matroska,webm", "duration": "3.000000"}}"#,
        )
        .unwrap();
        let facts = answer.facts(&SourceFormats::default()).unwrap();
        assert_eq!(facts.format.name(), "matroska");
        assert_eq!(facts.duration_seconds, 3.0);
        let video = facts.video.unwrap();
        assert_eq!((video.width, video.height, video.rotation), (640, 360, -90));
        assert_eq!(video.codec, "hevc");
        assert_eq!(video.sample_aspect, (1, 1));
        assert!((video.frame_rate.unwrap() - 29.97).abs() < 0.01);
        assert_eq!(video.scan, Scan::Unknown);
        assert_eq!(video.hdr, None);
        assert_eq!(facts.audio[0].codec, "opus");
        assert_eq!(facts.audio[0].language, "und");
    }

    #[test]
    fn field_order_says_how_pictures_are_scanned() {
        for (field_order, scan) in [
            ("progressive", Scan::Progressive),
            ("tt", Scan::TopFieldFirst),
            ("bt", Scan::TopFieldFirst),
            ("bb", Scan::BottomFieldFirst),
            ("tb", Scan::BottomFieldFirst),
            ("unknown", Scan::Unknown),
        ] {
            let answer: ProbeAnswer = serde_json::from_str(&format!(
                r#"{{"streams": [{{"codec_type": "video", "width": 720, "height": 576,
                    "field_order": "{field_order}"}}], "format": {{"format_name": "mpegts"}}}}"#
            ))
            .unwrap();
            let video = answer
                .facts(&SourceFormats::default())
                .unwrap()
                .video
                .unwrap();
            assert_eq!(video.scan, scan, "{field_order}");
            assert_eq!(
                scan.is_interlaced(),
                field_order.len() == 2,
                "{field_order}"
            );
        }
    }

    #[test]
    fn pq_and_hlg_transfers_are_hdr() {
        let video = |colors: &str| {
            let answer: ProbeAnswer = serde_json::from_str(&format!(
                r#"{{"streams": [{{"codec_type": "video", "width": 64, "height": 48, {colors}}}],
                    "format": {{"format_name": "matroska,webm"}}}}"#
            ))
            .unwrap();
            answer
                .facts(&SourceFormats::default())
                .unwrap()
                .video
                .unwrap()
        };
        let hdr10 = video(
            r#""color_transfer": "smpte2084", "color_primaries": "bt2020",
               "color_space": "bt2020nc""#,
        );
        assert_eq!(
            hdr10.hdr,
            Some(Hdr {
                transfer: "smpte2084",
                primaries: "bt2020",
                matrix: "bt2020nc"
            })
        );
        let hlg = video(r#""color_transfer": "arib-std-b67""#).hdr.unwrap();
        assert_eq!((hlg.transfer, hlg.primaries), ("arib-std-b67", "bt2020"));
        assert_eq!(video(r#""color_transfer": "bt709""#).hdr, None);
        assert_eq!(video(r#""color_primaries": "bt2020""#).hdr, None);
    }

    #[test]
    fn unknown_rates_and_aspects_are_none() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [
                {"codec_type": "video", "width": 64, "height": 48, "sample_aspect_ratio": "0:1",
                 "avg_frame_rate": "0/0", "r_frame_rate": "0/0"}
            ], "format": {"format_name": "mpegts"}}"#,
        )
        .unwrap();
        let facts = answer.facts(&SourceFormats::default()).unwrap();
        let video = facts.video.unwrap();
        assert_eq!(video.sample_aspect, (0, 1));
        assert_eq!(video.frame_rate, None);
        assert_eq!(facts.duration_seconds, 0.0);
        assert!(facts.audio.is_empty());
    }

    #[test]
    fn every_sound_track_is_read_with_its_language() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [
                {"codec_type": "video", "width": 64, "height": 48},
                {"codec_type": "audio", "codec_name": "aac", "channels": 2,
                 "tags": {"language": "eng"}},
                {"codec_type": "audio", "codec_name": "ac3", "channels": 6,
                 "tags": {"language": "fre", "title": "Version \"française\""}}
            ], "format": {"format_name": "matroska,webm"}}"#,
        )
        .unwrap();
        let facts = answer.facts(&SourceFormats::default()).unwrap();
        assert_eq!(
            facts.audio,
            [
                AudioStream {
                    codec: "aac".to_owned(),
                    channels: Some(2),
                    language: "en".to_owned(),
                    title: None,
                },
                AudioStream {
                    codec: "ac3".to_owned(),
                    channels: Some(6),
                    language: "fr".to_owned(),
                    title: Some("Version française".to_owned()),
                }
            ]
        );
    }

    #[test]
    fn cover_art_is_not_a_video() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [
                {"codec_type": "audio", "codec_name": "mp3"},
                {"codec_type": "video", "width": 500, "height": 500,
                 "disposition": {"attached_pic": 1}}
            ], "format": {"format_name": "mp3", "duration": "180.0"}}"#,
        )
        .unwrap();
        let facts = answer.facts(&SourceFormats::default()).unwrap();
        assert!(facts.video.is_none());
        assert_eq!(facts.audio[0].codec, "mp3");
    }

    #[test]
    fn guessed_format_is_not_media() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [{"codec_type": "audio", "codec_name": "adpcm_dtk"}],
                "format": {"duration": "458.75", "probe_score": 25}}"#,
        )
        .unwrap();
        assert!(matches!(
            answer.facts(&SourceFormats::default()),
            Err(ProbeError::Unrecognised)
        ));
    }

    #[test]
    fn data_only_file_has_no_media() {
        let answer: ProbeAnswer =
            serde_json::from_str(r#"{"streams": [{"codec_type": "data"}], "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2"}}"#).unwrap();
        assert!(matches!(
            answer.facts(&SourceFormats::default()),
            Err(ProbeError::NoMedia)
        ));
    }

    #[test]
    fn a_format_left_out_of_the_source_formats_is_refused_by_name() {
        let answer: ProbeAnswer = serde_json::from_str(
            r#"{"streams": [{"codec_type": "video", "width": 64, "height": 48}],
                "format": {"format_name": "hls", "duration": "2.0", "probe_score": 100}}"#,
        )
        .unwrap();
        let formats: SourceFormats = "mov,matroska".parse().unwrap();
        let refused = answer.facts(&formats).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the file's format (hls) is not accepted; accepted formats: mov, matroska"
        );
        let unnamed = ProbeError::FormatRefused {
            format: None,
            accepted: formats,
        };
        assert_eq!(
            unnamed.to_string(),
            "the file's format is not accepted; accepted formats: mov, matroska"
        );
    }
}
