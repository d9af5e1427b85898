//! Exact durations for the manifests ffmpeg 5.1's `dash` muxer writes, and the labels and roles
//! of its audio adaptation sets.
//!
//! The muxer writes `mediaPresentationDuration` truncated to a tenth of a second (`PT5.9S` over
//! tracks of 5.96 and 5.99 s, `PT0.0S` for a one-frame source, which dash.js and Shaka refuse).
//! Its `SegmentTimeline`s are exact: every segment's start and length in the track's timescale.
//! The presentation lasts until the end of its longest track, to the millisecond, and each HLS
//! media playlist's `EXTINF`s are the same segments' lengths.

/// One representation's segments as its `SegmentTimeline` gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackTimeline {
    /// The representation id, which is ffmpeg's output stream index.
    pub id: String,
    /// Length of each segment in seconds, in order.
    pub segment_seconds: Vec<f64>,
    /// Where the last segment ends on the presentation timeline, in seconds.
    pub end_seconds: f64,
}

/// Every representation of the MPD with a `SegmentTimeline`.
pub fn track_timelines(mpd: &str) -> Vec<TrackTimeline> {
    mpd.split("<Representation ")
        .skip(1)
        .filter_map(|representation| {
            let representation = representation
                .split("</Representation>")
                .next()
                .unwrap_or(representation);
            let id = attribute(representation, "id")?;
            let template = tag(representation, "SegmentTemplate")?;
            let timescale = attribute(template, "timescale")
                .and_then(|text| text.parse::<u64>().ok())
                .filter(|timescale| *timescale > 0)?;
            let offset = attribute(template, "presentationTimeOffset")
                .and_then(|text| text.parse::<u64>().ok())
                .unwrap_or(0);
            let mut next_start = 0u64;
            let mut end = 0u64;
            let mut segment_seconds = Vec::new();
            for entry in representation.split("<S ").skip(1) {
                let entry = entry.split('>').next().unwrap_or(entry);
                let Some(duration) = attribute(entry, "d").and_then(|d| d.parse::<u64>().ok())
                else {
                    continue;
                };
                let start = attribute(entry, "t")
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(next_start);
                // A static presentation repeats a fixed number of times, never open-ended.
                let repeats = attribute(entry, "r")
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0);
                for _ in 0..=repeats {
                    segment_seconds.push(duration as f64 / timescale as f64);
                }
                next_start = start + duration * (repeats + 1);
                end = next_start;
            }
            if segment_seconds.is_empty() {
                return None;
            }
            Some(TrackTimeline {
                id: id.to_owned(),
                segment_seconds,
                end_seconds: end.saturating_sub(offset) as f64 / timescale as f64,
            })
        })
        .collect()
}

/// Where the longest track ends, in whole milliseconds rounded up (so that no track ends after
/// the presentation); `None` when the MPD has no timeline.
pub fn presentation_milliseconds(tracks: &[TrackTimeline]) -> Option<u64> {
    tracks
        .iter()
        .map(|track| track.end_seconds)
        .max_by(f64::total_cmp)
        // A hair under a millisecond is floating-point noise, not a millisecond more.
        .map(|seconds| ((seconds * 1000.0) - 1e-6).ceil().max(0.0) as u64)
}

/// The MPD with `mediaPresentationDuration` set to `milliseconds`.
pub fn with_presentation_duration(mpd: &str, milliseconds: u64) -> String {
    let value = format!("PT{}.{:03}S", milliseconds / 1000, milliseconds % 1000);
    let needle = "mediaPresentationDuration=\"";
    match mpd.find(needle) {
        Some(at) => {
            let value_start = at + needle.len();
            let value_end = mpd[value_start..]
                .find('"')
                .map_or(mpd.len(), |end| value_start + end);
            format!("{}{value}{}", &mpd[..value_start], &mpd[value_end..])
        }
        None => mpd.replacen(
            "<MPD ",
            &format!("<MPD mediaPresentationDuration=\"{value}\" "),
            1,
        ),
    }
}

/// How one audio adaptation set is told apart from the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSetLabel {
    /// The id of the set's representation: ffmpeg's output stream index.
    pub representation_id: String,
    /// What players show: the HLS `NAME` of the same rendition.
    pub label: String,
    /// The track players choose first (HLS `DEFAULT=YES`).
    pub main: bool,
}

/// The MPD with every audio adaptation set in `labels` given a `Label` and a `Role` (`main` or
/// `alternate`), which ffmpeg's muxer cannot write.
///
/// Every sound track keeps an adaptation set of its own, even beside another track of the same
/// language: the representations of one set are interchangeable versions of the same sound,
/// between which a player switches by bandwidth, so a commentary merged into the main track's
/// set could be neither chosen nor kept. The label and the role are what tell such sets apart,
/// as `NAME` and `DEFAULT` do in the HLS audio group.
pub fn with_audio_labels(mpd: &str, labels: &[AudioSetLabel]) -> String {
    let mut out = String::with_capacity(mpd.len() + labels.len() * 128);
    let mut rest = mpd;
    while let Some(at) = rest.find("<AdaptationSet ") {
        let Some(tag_len) = rest[at..].find('>').map(|end| end + 1) else {
            break;
        };
        let opening = &rest[at..at + tag_len];
        let body = &rest[at + tag_len..];
        let body = &body[..body.find("</AdaptationSet>").unwrap_or(body.len())];
        let representation_id = tag(body, "Representation").and_then(|tag| attribute(tag, "id"));
        out.push_str(&rest[..at + tag_len]);
        let label = labels.iter().find(|label| {
            attribute(opening, "contentType") == Some("audio")
                && representation_id == Some(label.representation_id.as_str())
        });
        if let Some(label) = label {
            let indent = rest[..at]
                .rsplit('\n')
                .next()
                .filter(|indent| indent.chars().all(char::is_whitespace))
                .unwrap_or("");
            let role = if label.main { "main" } else { "alternate" };
            out.push_str(&format!(
                "\n{indent}\t<Label>{}</Label>\n{indent}\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" \
                 value=\"{role}\" />",
                xml_escaped(&label.label)
            ));
        }
        rest = &rest[at + tag_len..];
    }
    out.push_str(rest);
    out
}

fn xml_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The first `<{name} ...>` element's attributes.
fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let at = text.find(&format!("<{name} "))?;
    let rest = &text[at..];
    Some(&rest[..rest.find('>').unwrap_or(rest.len())])
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let at = tag
        .match_indices(&needle)
        .map(|(at, _)| at)
        .find(|at| *at == 0 || tag[..*at].ends_with(char::is_whitespace))?;
    let rest = &tag[at + needle.len()..];
    rest.find('"').map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    // What ffmpeg 5.1.x writes for 5.96 s of picture and sound (trimmed).
    const FFMPEG_MPD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"
	type="static"
	mediaPresentationDuration="PT5.9S"
	maxSegmentDuration="PT4.0S"
	minBufferTime="PT8.0S">
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" frameRate="25/1">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.64000d" bandwidth="274413" width="320" height="240" sar="1:1">
				<SegmentTemplate timescale="12800" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="51200" />
						<S d="25088" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio" lang="und">
			<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="44100">
				<SegmentTemplate timescale="44100" initialization="init-stream$RepresentationID$.m4s" media="chunk-stream$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="173056" />
						<S d="91136" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>
"#;

    #[test]
    fn timelines_give_every_segment_and_the_track_end() {
        let tracks = track_timelines(FFMPEG_MPD);
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].id, "0");
        assert_eq!(tracks[0].segment_seconds, [4.0, 1.96]);
        assert!((tracks[0].end_seconds - 5.96).abs() < 1e-9);
        assert_eq!(tracks[1].id, "1");
        assert!((tracks[1].end_seconds - 264_192.0 / 44_100.0).abs() < 1e-9);
        assert_eq!(presentation_milliseconds(&tracks), Some(5991));
    }

    #[test]
    fn the_duration_is_rewritten_to_the_millisecond() {
        let mpd = with_presentation_duration(FFMPEG_MPD, 5991);
        assert!(
            mpd.contains("\tmediaPresentationDuration=\"PT5.991S\"\n"),
            "{mpd}"
        );
        assert_eq!(mpd.matches("mediaPresentationDuration").count(), 1);
        assert_eq!(
            with_presentation_duration(&mpd, 40),
            mpd.replace("PT5.991S", "PT0.040S")
        );
        assert!(with_presentation_duration("<MPD type=\"static\">", 61_500)
            .starts_with("<MPD mediaPresentationDuration=\"PT61.500S\" type"));
    }

    #[test]
    fn one_frame_is_forty_milliseconds_not_zero() {
        let mpd = r#"<MPD mediaPresentationDuration="PT0.0S"><Representation id="0">
            <SegmentTemplate timescale="12800" startNumber="1"><SegmentTimeline>
            <S t="0" d="512" /></SegmentTimeline></SegmentTemplate></Representation></MPD>"#;
        let tracks = track_timelines(mpd);
        assert_eq!(presentation_milliseconds(&tracks), Some(40));
    }

    #[test]
    fn every_audio_set_is_labelled_and_one_is_main() {
        // Two sound tracks in the same language: a set each, told apart by label and role.
        let two_english = FFMPEG_MPD.replace(
            "\t</Period>",
            "\t\t<AdaptationSet id=\"2\" contentType=\"audio\" lang=\"en\">\n\
             \t\t\t<Representation id=\"2\" mimeType=\"audio/mp4\" codecs=\"mp4a.40.2\">\n\
             \t\t\t</Representation>\n\t\t</AdaptationSet>\n\t</Period>",
        );
        let labels = [
            AudioSetLabel {
                representation_id: "1".to_owned(),
                label: "English".to_owned(),
                main: true,
            },
            AudioSetLabel {
                representation_id: "2".to_owned(),
                label: "Director's <commentary> & \"notes\"".to_owned(),
                main: false,
            },
        ];
        let mpd = with_audio_labels(&two_english, &labels);
        assert_eq!(mpd.matches("<AdaptationSet ").count(), 3, "{mpd}");
        assert!(
            mpd.contains(
                "\t\t<AdaptationSet id=\"1\" contentType=\"audio\" lang=\"und\">\n\
                 \t\t\t<Label>English</Label>\n\
                 \t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"main\" />\n\
                 \t\t\t<Representation id=\"1\""
            ),
            "{mpd}"
        );
        assert!(
            mpd.contains(
                "<AdaptationSet id=\"2\" contentType=\"audio\" lang=\"en\">\n\
                 \t\t\t<Label>Director&apos;s &lt;commentary&gt; &amp; &quot;notes&quot;</Label>\n\
                 \t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"alternate\" />\n"
            ),
            "{mpd}"
        );
        assert_eq!(
            mpd.matches("<Label>").count(),
            2,
            "the picture has none: {mpd}"
        );
        assert_eq!(
            mpd.replace(
                "\n\t\t\t<Label>English</Label>\n\t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"main\" />",
                ""
            )
            .replace(
                "\n\t\t\t<Label>Director&apos;s &lt;commentary&gt; &amp; &quot;notes&quot;</Label>\n\t\t\t<Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"alternate\" />",
                ""
            ),
            two_english,
            "nothing else changes"
        );
        assert_eq!(with_audio_labels(FFMPEG_MPD, &[]), FFMPEG_MPD);
    }

    #[test]
    fn repeats_and_offsets_are_counted() {
        let mpd = r#"<Representation id="3"><SegmentTemplate timescale="1000"
            presentationTimeOffset="500"><SegmentTimeline><S t="500" d="2000" r="2" />
            <S d="700" /></SegmentTimeline></SegmentTemplate></Representation>"#;
        let tracks = track_timelines(mpd);
        assert_eq!(tracks[0].segment_seconds, [2.0, 2.0, 2.0, 0.7]);
        assert!((tracks[0].end_seconds - 6.7).abs() < 1e-9);
        assert_eq!(track_timelines("<MPD></MPD>"), []);
        assert_eq!(presentation_milliseconds(&[]), None);
    }
}
