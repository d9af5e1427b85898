//! Turns what ffmpeg 5.1's `dash` muxer writes with `-hls_playlist 1` into proper VoD HLS.
//!
//! Its media playlists carry wall-clock `EXT-X-PROGRAM-DATE-TIME` tags (meaningless for VoD,
//! and they make some players treat the stream as live) and no `EXT-X-PLAYLIST-TYPE`. Its master
//! playlist announces target bitrates rather than peaks and no average, so the master is written
//! here from what was really encoded.

/// One `EXT-X-STREAM-INF` of the master playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Media playlist file name.
    pub playlist: String,
    /// Peak bits per second, as HLS defines `BANDWIDTH`.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// `None` for an audio-only variant.
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
}

/// One `EXT-X-MEDIA:TYPE=AUDIO` of the master playlist's audio group.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioMedia {
    /// Media playlist file name.
    pub playlist: String,
    /// BCP 47; `und` is left out, as HLS has no tag for it.
    pub language: String,
    /// Unique within the group, without `"`.
    pub name: String,
    pub default: bool,
}

/// The HLS master playlist: every variant, referring to the audio group when there is one.
pub fn master_playlist(variants: &[Variant], audio_group: &[AudioMedia]) -> String {
    let mut lines = vec![
        "#EXTM3U".to_owned(),
        "#EXT-X-VERSION:7".to_owned(),
        "#EXT-X-INDEPENDENT-SEGMENTS".to_owned(),
    ];
    for audio in audio_group {
        let language = if audio.language == "und" {
            String::new()
        } else {
            format!("LANGUAGE=\"{}\",", audio.language)
        };
        lines.push(format!(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",{language}NAME=\"{}\",DEFAULT={},\
             AUTOSELECT=YES,CHANNELS=\"2\",URI=\"{}\"",
            audio.name.replace('"', ""),
            if audio.default { "YES" } else { "NO" },
            audio.playlist
        ));
    }
    for variant in variants {
        let mut attributes = vec![
            format!("BANDWIDTH={}", variant.bandwidth.max(1)),
            format!("AVERAGE-BANDWIDTH={}", variant.average_bandwidth.max(1)),
        ];
        if let Some((width, height)) = variant.resolution {
            attributes.push(format!("RESOLUTION={width}x{height}"));
        }
        if let Some(rate) = variant.frame_rate {
            attributes.push(format!("FRAME-RATE={rate:.3}"));
        }
        if !variant.codecs.is_empty() {
            attributes.push(format!("CODECS=\"{}\"", variant.codecs));
        }
        if !audio_group.is_empty() {
            attributes.push("AUDIO=\"audio\"".to_owned());
        }
        lines.push(format!("#EXT-X-STREAM-INF:{}", attributes.join(",")));
        lines.push(variant.playlist.clone());
    }
    join_lines(&lines)
}

/// The segments of a media playlist: `(duration in seconds, URI)`.
pub fn media_segments(text: &str) -> Vec<(f64, String)> {
    let mut segments = Vec::new();
    let mut duration = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(seconds) = duration.take() {
                segments.push((seconds, line.to_owned()));
            }
        }
    }
    segments
}

/// The initialization segment a media playlist names (`EXT-X-MAP`).
pub fn init_segment(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("#EXT-X-MAP:"))
        .and_then(|tag| attribute_value(tag, "URI"))
        .map(str::to_owned)
}

/// A media playlist as a complete VoD playlist: no program date-times, `PLAYLIST-TYPE:VOD`, a
/// target duration no segment exceeds, and `EXT-X-ENDLIST`.
pub fn finalize_media_playlist(text: &str) -> String {
    let longest_segment = text
        .lines()
        .filter_map(|line| line.strip_prefix("#EXTINF:"))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<f64>().ok())
        .map(|seconds| seconds.round() as u64)
        .max();

    let mut lines: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.starts_with("#EXT-X-PROGRAM-DATE-TIME") || line.starts_with("#EXT-X-PLAYLIST-TYPE")
        {
            continue;
        }
        if let Some(declared) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            let declared = declared.trim().parse::<u64>().unwrap_or(0);
            let target = declared.max(longest_segment.unwrap_or(0)).max(1);
            lines.push(format!("#EXT-X-TARGETDURATION:{target}"));
            lines.push("#EXT-X-PLAYLIST-TYPE:VOD".to_owned());
            continue;
        }
        lines.push(line.to_owned());
    }
    trim_trailing_blank_lines(&mut lines);
    if !lines.iter().any(|line| line == "#EXT-X-PLAYLIST-TYPE:VOD") {
        let after_header = usize::from(lines.first().is_some_and(|line| line == "#EXTM3U"));
        lines.insert(after_header, "#EXT-X-PLAYLIST-TYPE:VOD".to_owned());
    }
    if lines.last().map(String::as_str) != Some("#EXT-X-ENDLIST") {
        lines.push("#EXT-X-ENDLIST".to_owned());
    }
    join_lines(&lines)
}

/// The media playlist with its `EXTINF`s set to `durations`, the segments' exact lengths in
/// order; unchanged when it does not list as many segments.
pub fn with_segment_durations(text: &str, durations: &[f64]) -> String {
    let listed = text
        .lines()
        .filter(|line| line.starts_with("#EXTINF:"))
        .count();
    if listed != durations.len() {
        return text.to_owned();
    }
    let mut durations = durations.iter();
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("#EXTINF:") {
            Some(rest) => {
                let title = rest.split_once(',').map_or("", |(_, title)| title);
                let seconds = durations.next().copied().unwrap_or_default();
                format!("#EXTINF:{seconds:.6},{title}")
            }
            None => line.to_owned(),
        })
        .collect();
    join_lines(&lines)
}

fn trim_trailing_blank_lines(lines: &mut Vec<String>) {
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
}

/// The `codecs` of every MPD representation, by representation id.
pub fn mpd_codecs(mpd: &str) -> Vec<(String, String)> {
    mpd.split("<Representation ")
        .skip(1)
        .filter_map(|representation| {
            let tag = &representation[..representation.find('>').unwrap_or(representation.len())];
            let id = attribute_value(tag, "id")?;
            let codecs = attribute_value(tag, "codecs")?;
            Some((id.to_owned(), codecs.to_owned()))
        })
        .collect()
}

fn attribute_value<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let at = tag
        .match_indices(&needle)
        .map(|(at, _)| at)
        .find(|at| *at == 0 || tag[..*at].ends_with(char::is_whitespace))?;
    let rest = &tag[at + needle.len()..];
    rest.find('"').map(|end| &rest[..end])
}

fn join_lines(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // What ffmpeg 5.1.x writes for a 3-second clip (video playlist).
    const FFMPEG_MEDIA: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-MAP:URI=\"init-stream0.m4s\"
#EXTINF:3.018594,
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T05:43:35.000+0000
chunk-stream0-00001.m4s
#EXT-X-ENDLIST
";

    #[test]
    fn media_playlist_becomes_vod() {
        let finalized = finalize_media_playlist(FFMPEG_MEDIA);
        assert_eq!(
            finalized,
            "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:3
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-MAP:URI=\"init-stream0.m4s\"
#EXTINF:3.018594,
chunk-stream0-00001.m4s
#EXT-X-ENDLIST
"
        );
    }

    #[test]
    fn the_init_segment_and_the_segments_are_read() {
        assert_eq!(
            init_segment(FFMPEG_MEDIA).as_deref(),
            Some("init-stream0.m4s")
        );
        assert_eq!(
            media_segments(FFMPEG_MEDIA),
            [(3.018594, "chunk-stream0-00001.m4s".to_owned())]
        );
        assert_eq!(init_segment("#EXTM3U\n#EXTINF:4.0,\na.m4s\n"), None);
    }

    #[test]
    fn segment_durations_are_set_when_the_segments_match() {
        let exact = with_segment_durations(FFMPEG_MEDIA, &[3.0186]);
        assert!(exact.contains("#EXTINF:3.018600,\n"), "{exact}");
        assert_eq!(exact.replace("3.018600", "3.018594"), FFMPEG_MEDIA);
        assert_eq!(
            with_segment_durations(FFMPEG_MEDIA, &[1.0, 2.0]),
            FFMPEG_MEDIA
        );
    }

    #[test]
    fn finalizing_twice_changes_nothing() {
        let once = finalize_media_playlist(FFMPEG_MEDIA);
        assert_eq!(finalize_media_playlist(&once), once);
    }

    #[test]
    fn missing_endlist_is_added_and_event_type_replaced() {
        let text =
            "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\na.m4s\n";
        let finalized = finalize_media_playlist(text);
        assert!(
            finalized.ends_with("a.m4s\n#EXT-X-ENDLIST\n"),
            "{finalized}"
        );
        assert_eq!(finalized.matches("#EXT-X-PLAYLIST-TYPE").count(), 1);
        assert!(finalized.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(!finalized.contains("EVENT"));
    }

    #[test]
    fn target_duration_covers_the_longest_segment() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\na.m4s\n#EXTINF:5.6,\nb.m4s\n";
        let finalized = finalize_media_playlist(text);
        assert!(
            finalized.contains("#EXT-X-TARGETDURATION:6\n"),
            "{finalized}"
        );
    }

    #[test]
    fn playlist_type_is_added_without_target_duration() {
        let finalized = finalize_media_playlist("#EXTM3U\n#EXTINF:2.0,\na.m4s\n");
        assert!(
            finalized.starts_with("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n"),
            "{finalized}"
        );
    }

    fn variant(height: u32) -> Variant {
        Variant {
            playlist: format!("media_{height}.m3u8"),
            bandwidth: u64::from(height) * 1000,
            average_bandwidth: u64::from(height) * 900,
            resolution: Some((height * 16 / 9, height)),
            frame_rate: Some(25.0),
            codecs: "avc1.64001f,mp4a.40.2".to_owned(),
        }
    }

    #[test]
    fn master_lists_every_variant_with_the_audio_group() {
        let audio = |playlist: &str, language: &str, name: &str, default: bool| AudioMedia {
            playlist: playlist.to_owned(),
            language: language.to_owned(),
            name: name.to_owned(),
            default,
        };
        let two = master_playlist(
            &[variant(360)],
            &[
                audio("media_1.m3u8", "en", "English", true),
                audio("media_2.m3u8", "fr", "Fran\"çais", false),
            ],
        );
        assert!(two.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",LANGUAGE=\"en\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"media_1.m3u8\"\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",LANGUAGE=\"fr\",NAME=\"Français\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"media_2.m3u8\"\n"
        ), "{two}");
        let master = master_playlist(
            &[variant(720), variant(360)],
            &[audio("media_2.m3u8", "und", "audio", true)],
        );
        assert_eq!(
            master,
            "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"media_2.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=720000,AVERAGE-BANDWIDTH=648000,RESOLUTION=1280x720,FRAME-RATE=25.000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"audio\"
media_720.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=360000,AVERAGE-BANDWIDTH=324000,RESOLUTION=640x360,FRAME-RATE=25.000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"audio\"
media_360.m3u8
"
        );
    }

    #[test]
    fn audio_only_master_has_one_variant_without_picture() {
        let audio = Variant {
            playlist: "media_0.m3u8".to_owned(),
            bandwidth: 130_000,
            average_bandwidth: 128_000,
            resolution: None,
            frame_rate: None,
            codecs: "mp4a.40.2".to_owned(),
        };
        let master = master_playlist(&[audio], &[]);
        assert!(!master.contains("EXT-X-MEDIA:"), "{master}");
        assert!(master.ends_with(
            "#EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\nmedia_0.m3u8\n"
        ), "{master}");
    }

    #[test]
    fn segments_are_read_with_their_durations() {
        let finalized = finalize_media_playlist(FFMPEG_MEDIA);
        assert_eq!(
            media_segments(&finalized),
            [(3.018594, "chunk-stream0-00001.m4s".to_owned())]
        );
    }

    #[test]
    fn codecs_come_from_the_mpd_by_representation() {
        let mpd = r#"<AdaptationSet id="0" contentType="video">
<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="261365" width="320">
<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="44100">"#;
        assert_eq!(
            mpd_codecs(mpd),
            [
                ("0".to_owned(), "avc1.64001f".to_owned()),
                ("1".to_owned(), "mp4a.40.2".to_owned())
            ]
        );
    }
}
