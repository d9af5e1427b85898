//! Turns what ffmpeg 5.1's `dash` muxer writes with `-hls_playlist 1` into proper VoD HLS.
//!
//! Its media playlists carry wall-clock `EXT-X-PROGRAM-DATE-TIME` tags (meaningless for VoD,
//! and they make some players treat the stream as live) and no `EXT-X-PLAYLIST-TYPE`. Its master
//! playlist may leave out attributes players use to choose a variant.

/// What the master playlist must say of the single variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantFacts {
    pub bandwidth: u64,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
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

/// The master playlist with `BANDWIDTH`, `RESOLUTION` and `CODECS` on every variant, taken from
/// `facts` where ffmpeg left one out.
pub fn finalize_master_playlist(text: &str, facts: &VariantFacts) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .map(|line| match line.strip_prefix("#EXT-X-STREAM-INF:") {
            Some(attributes) => complete_stream_inf(attributes, facts),
            None => line.to_owned(),
        })
        .collect();
    trim_trailing_blank_lines(&mut lines);
    join_lines(&lines)
}

fn trim_trailing_blank_lines(lines: &mut Vec<String>) {
    while lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
}

fn complete_stream_inf(attributes: &str, facts: &VariantFacts) -> String {
    let mut attributes = split_attributes(attributes);
    let has = |list: &[String], name: &str| {
        list.iter()
            .any(|attribute| attribute.split('=').next() == Some(name))
    };
    if !has(&attributes, "BANDWIDTH") {
        attributes.insert(0, format!("BANDWIDTH={}", facts.bandwidth.max(1)));
    }
    if !has(&attributes, "RESOLUTION") {
        attributes.push(format!("RESOLUTION={}x{}", facts.width, facts.height));
    }
    if !has(&attributes, "CODECS") && !facts.codecs.is_empty() {
        attributes.push(format!("CODECS=\"{}\"", facts.codecs));
    }
    format!("#EXT-X-STREAM-INF:{}", attributes.join(","))
}

/// Splits an HLS attribute list at the commas outside quoted strings.
fn split_attributes(list: &str) -> Vec<String> {
    let mut attributes = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => attributes.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        attributes.push(current);
    }
    attributes
}

/// The distinct `codecs` of the MPD's representations, in order, comma-separated.
pub fn mpd_codecs(mpd: &str) -> String {
    let mut codecs: Vec<&str> = Vec::new();
    for value in attribute_values(mpd, "codecs") {
        if !codecs.contains(&value) {
            codecs.push(value);
        }
    }
    codecs.join(",")
}

/// The sum of the MPD's representation bandwidths, in bits per second.
pub fn mpd_bandwidth(mpd: &str) -> u64 {
    attribute_values(mpd, "bandwidth")
        .into_iter()
        .filter_map(|value| value.parse::<u64>().ok())
        .sum()
}

fn attribute_values<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    xml.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &xml[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
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

    const FFMPEG_MASTER: &str = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"group_A1\",NAME=\"audio_1\",DEFAULT=YES,URI=\"media_1.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=394120,RESOLUTION=320x240,CODECS=\"avc1.64000d,mp4a.40.2\",AUDIO=\"group_A1\"
media_0.m3u8

";

    fn facts() -> VariantFacts {
        VariantFacts {
            bandwidth: 400_000,
            width: 320,
            height: 240,
            codecs: "avc1.64000d,mp4a.40.2".to_owned(),
        }
    }

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
    fn finalizing_twice_changes_nothing() {
        let once = finalize_media_playlist(FFMPEG_MEDIA);
        assert_eq!(finalize_media_playlist(&once), once);
        let master = finalize_master_playlist(FFMPEG_MASTER, &facts());
        assert_eq!(finalize_master_playlist(&master, &facts()), master);
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

    #[test]
    fn complete_master_is_kept() {
        let finalized = finalize_master_playlist(FFMPEG_MASTER, &facts());
        assert_eq!(finalized, FFMPEG_MASTER.trim_end().to_owned() + "\n");
    }

    #[test]
    fn master_gets_missing_attributes() {
        let text = "#EXTM3U\n#EXT-X-STREAM-INF:AUDIO=\"a,b\"\nmedia_0.m3u8\n";
        let finalized = finalize_master_playlist(text, &facts());
        assert_eq!(
            finalized,
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,AUDIO=\"a,b\",RESOLUTION=320x240,\
             CODECS=\"avc1.64000d,mp4a.40.2\"\nmedia_0.m3u8\n"
        );
    }

    #[test]
    fn codecs_and_bandwidth_come_from_the_mpd() {
        let mpd = r#"<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="261365" width="320">
<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="44100">"#;
        assert_eq!(mpd_codecs(mpd), "avc1.64000d,mp4a.40.2");
        assert_eq!(mpd_bandwidth(mpd), 389_365);
    }
}
