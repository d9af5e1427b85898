//! What one encode makes of a source, and the arguments of the single ffmpeg process that makes
//! it: one decode, split once per rendition and scaled, every rendition encoded with keyframes on
//! the same timestamps, one stereo AAC rendition per sound track, CMAF segments with an MPD and
//! HLS playlists, and a JPEG poster.

use vod_contracts::layout::{DASH_MANIFEST, HLS_MASTER, POSTER};

use crate::config::Config;
use crate::ladder::{self, DisplaySize, Rendition};
use crate::language;
use crate::probe::{Hdr, Scan, SourceFacts};
use crate::storyboard::Storyboard;

/// Frame rates a source close to one of them is snapped to, as `(num, den)`.
const COMMON_FRAME_RATES: [(u32, u32); 9] = [
    (24_000, 1001),
    (24, 1),
    (25, 1),
    (30_000, 1001),
    (30, 1),
    (48, 1),
    (50, 1),
    (60_000, 1001),
    (60, 1),
];
/// Frame rate used when the source does not tell.
const FALLBACK_FRAME_RATE: (u32, u32) = (25, 1);

/// The picture side of an encode.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoPlan {
    /// Tallest first.
    pub renditions: Vec<Rendition>,
    /// Output frames per second, `(num, den)`; the same for every rendition.
    pub frame_rate: (u32, u32),
    /// How an interlaced source is deinterlaced; `None` for a progressive one.
    pub deinterlace: Option<Deinterlace>,
    /// A high-dynamic-range source is tone-mapped to BT.709 SDR; `None` for an SDR one.
    pub tone_map: Option<Hdr>,
    /// Seconds into the picture where the poster is taken.
    pub poster_at_seconds: f64,
    /// The seek-bar preview, made after the encode from the smallest rendition; `None` when the
    /// duration is unknown or storyboards are turned off.
    pub storyboard: Option<Storyboard>,
}

/// ffmpeg's `bwdif` over an interlaced source, before anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deinterlace {
    pub top_field_first: bool,
    /// One picture per field (the motion of a 25i capture at 50p), rather than per frame.
    pub per_field: bool,
}

/// One stereo AAC rendition of a sound track of the source.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioRendition {
    /// The `n` of ffmpeg's `0:a:n`.
    pub source_track: usize,
    /// BCP 47, `und` when the source does not say.
    pub language: String,
    /// What players show: the track's title, else its language's name, else its number;
    /// different for every rendition.
    pub name: String,
}

/// What the encode makes of one source.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodePlan {
    /// `None` for a source without picture: an audio-only presentation.
    pub video: Option<VideoPlan>,
    /// One per sound track, up to `FFLOW_MAX_AUDIO_TRACKS`, in the source's order.
    pub audio: Vec<AudioRendition>,
}

impl EncodePlan {
    pub fn for_source(config: &Config, source: &SourceFacts) -> Self {
        let video = source.video.as_ref().map(|video| {
            let display = DisplaySize::new(
                video.width,
                video.height,
                video.sample_aspect,
                video.rotation,
            );
            let poster_at_seconds = if source.duration_seconds > 0.0 {
                config.poster_at_seconds.min(source.duration_seconds / 3.0)
            } else {
                config.poster_at_seconds
            };
            // A field rate the ladder allows keeps all the motion; a higher one (60i at a lower
            // maximum) one picture per frame.
            let field_rate = video
                .frame_rate
                .map(|rate| rate * 2.0)
                .filter(|rate| *rate <= f64::from(config.max_frame_rate) * 1.005);
            let deinterlace = video.scan.is_interlaced().then(|| Deinterlace {
                top_field_first: video.scan == Scan::TopFieldFirst,
                per_field: field_rate.is_some(),
            });
            let rate = match deinterlace {
                Some(Deinterlace {
                    per_field: true, ..
                }) => field_rate,
                _ => video.frame_rate,
            };
            VideoPlan {
                renditions: ladder::renditions(display, &config.ladder),
                frame_rate: output_frame_rate(rate, config.max_frame_rate),
                deinterlace,
                tone_map: video.hdr.clone(),
                poster_at_seconds,
                storyboard: Storyboard::plan(
                    config.storyboard(),
                    source.duration_seconds,
                    display.width,
                    display.height,
                ),
            }
        });
        Self {
            video,
            audio: audio_renditions(source, config.max_audio_tracks),
        }
    }

    pub fn has_audio(&self) -> bool {
        !self.audio.is_empty()
    }

    pub fn renditions(&self) -> &[Rendition] {
        self.video
            .as_ref()
            .map_or(&[], |video| video.renditions.as_slice())
    }

    /// Output stream index of every audio rendition (after every video rendition), in order.
    pub fn audio_stream_indices(&self) -> std::ops::Range<usize> {
        let first = self.renditions().len();
        first..first + self.audio.len()
    }
}

fn audio_renditions(source: &SourceFacts, max: usize) -> Vec<AudioRendition> {
    let mut renditions: Vec<AudioRendition> = Vec::new();
    for (index, track) in source.audio.iter().take(max.max(1)).enumerate() {
        let mut name = track
            .title
            .clone()
            .or_else(|| language::name(&track.language).map(str::to_owned))
            .unwrap_or_else(|| format!("Audio {}", index + 1));
        if renditions.iter().any(|taken| taken.name == name) {
            name = format!("{name} ({})", index + 1);
        }
        renditions.push(AudioRendition {
            source_track: index,
            language: track.language.clone(),
            name,
        });
    }
    renditions
}

/// The source's rate, snapped to a common one when within 0.5 % of it, otherwise rounded to
/// whole frames; a rate above `max` is divided down (120 → 60).
pub fn output_frame_rate(source: Option<f64>, max: u32) -> (u32, u32) {
    let Some(mut rate) = source.filter(|rate| rate.is_finite() && *rate > 0.0) else {
        return FALLBACK_FRAME_RATE;
    };
    let max = f64::from(max.max(1));
    if rate > max * 1.005 {
        rate /= (rate / max).ceil();
    }
    let distance = |(num, den): (u32, u32)| {
        let candidate = f64::from(num) / f64::from(den);
        (rate - candidate).abs() / candidate
    };
    COMMON_FRAME_RATES
        .into_iter()
        .filter(|common| distance(*common) <= 0.005)
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(((rate.round() as u32).max(1), 1))
}

/// ffmpeg's arguments after its input, which [`crate::sandbox`] gives: it writes into
/// `output_dir`, relative to the session directory, reporting progress on its standard output.
pub fn encode_args(config: &Config, plan: &EncodePlan, output_dir: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|item| (*item).to_owned()));
    // ffmpeg reports at least as often as progress is reported on, and at most every 50 ms.
    let stats_period = (config.progress_interval_ms.clamp(50, 500) as f64) / 1000.0;
    push(&[
        "-nostdin",
        "-y",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        &format!("{stats_period:.3}"),
    ]);
    if let Some(video) = &plan.video {
        push(&["-filter_complex", &filter_graph(video)]);
        for index in 0..video.renditions.len() {
            push(&["-map", &format!("[v{index}]")]);
        }
    }
    for audio in &plan.audio {
        push(&["-map", &format!("0:a:{}", audio.source_track)]);
    }
    push(&["-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]);

    if let Some(video) = &plan.video {
        let (num, den) = video.frame_rate;
        let gop_frames = (f64::from(num) / f64::from(den)
            * f64::from(config.keyframe_interval_seconds))
        .round()
        .max(1.0)
        .to_string();
        push(&[
            "-c:v",
            "libx264",
            "-preset",
            &config.x264_preset,
            "-pix_fmt",
            "yuv420p",
        ]);
        if video.tone_map.is_some() {
            push(&[
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-colorspace",
                "bt709",
            ]);
        }
        for (index, rendition) in video.renditions.iter().enumerate() {
            let rung = rendition.rung;
            push(&[
                &format!("-b:v:{index}"),
                &format!("{}k", rung.bitrate_kbps),
                &format!("-maxrate:v:{index}"),
                &format!("{}k", rung.maxrate_kbps),
                &format!("-bufsize:v:{index}"),
                &format!("{}k", rung.bufsize_kbit),
            ]);
        }
        push(&[
            "-g",
            &gop_frames,
            "-keyint_min",
            &gop_frames,
            "-sc_threshold",
            "0",
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{})", config.keyframe_interval_seconds),
        ]);
    }
    if plan.has_audio() {
        // `-ac 2` downmixes with libswresample's matrix: centre and surrounds at -3 dB, LFE
        // left out, normalized so that the sum cannot clip.
        push(&["-c:a", "aac", "-ac", "2", "-b:a", &config.audio_bitrate]);
    }
    for (index, audio) in plan.audio.iter().enumerate() {
        push(&[
            &format!("-metadata:s:a:{index}"),
            &format!("language={}", audio.language),
        ]);
    }
    // One adaptation set for the picture, one per sound track (with its `lang`).
    let mut sets: Vec<String> = Vec::new();
    if plan.video.is_some() {
        sets.push("id=0,streams=v".to_owned());
    }
    for stream in plan.audio_stream_indices() {
        sets.push(format!("id={},streams={stream}", sets.len()));
    }
    let adaptation_sets = sets.join(" ");
    push(&[
        "-max_muxing_queue_size",
        "4096",
        "-f",
        "dash",
        "-seg_duration",
        &config.segment_seconds.to_string(),
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "-hls_playlist",
        "1",
        "-hls_master_name",
        HLS_MASTER,
        "-adaptation_sets",
        &adaptation_sets,
        &format!("{output_dir}/{DASH_MANIFEST}"),
    ]);
    if plan.video.is_some() {
        push(&[
            "-map",
            "[poster]",
            "-update",
            "1",
            "-q:v",
            "3",
            "-f",
            "image2",
            &format!("{output_dir}/{POSTER}"),
        ]);
    }
    args
}

/// One decode: an interlaced source deinterlaced, frame rate made constant and pixels 8-bit 4:2:0 once, then split into every
/// rendition (scaled, with the pixel aspect that keeps the source's exact display aspect) and
/// the poster (the first frame at its time).
fn filter_graph(video: &VideoPlan) -> String {
    let (num, den) = video.frame_rate;
    let count = video.renditions.len();
    let deinterlace = video.deinterlace.map_or(String::new(), |deinterlace| {
        format!(
            "bwdif=mode={}:parity={}:deint=all,",
            if deinterlace.per_field {
                "send_field"
            } else {
                "send_frame"
            },
            if deinterlace.top_field_first {
                "tff"
            } else {
                "bff"
            },
        )
    });
    let tone_map = video
        .tone_map
        .as_ref()
        .map_or(String::new(), tone_map_filters);
    let mut graph = format!(
        "[0:v:0]{deinterlace}{tone_map}fps={num}/{den},format=yuv420p,split={}",
        count + 1
    );
    for index in 0..count {
        graph.push_str(&format!("[s{index}]"));
    }
    graph.push_str("[p]");
    for (index, rendition) in video.renditions.iter().enumerate() {
        let (sar_num, sar_den) = rendition.sample_aspect;
        graph.push_str(&format!(
            ";[s{index}]scale={}:{},setsar=sar={sar_num}/{sar_den}:max=2147483647[v{index}]",
            rendition.width, rendition.height
        ));
    }
    let (width, height) = video
        .renditions
        .first()
        .map_or((2, 2), |top| (top.width, top.height));
    graph.push_str(&format!(
        ";[p]select='isnan(prev_selected_t)*gte(t\\,{:.3})',scale={width}:{height},setsar=1[poster]",
        video.poster_at_seconds
    ));
    graph
}

/// PQ or HLG to BT.709 SDR: to linear light (100 nits as SDR white), BT.709 primaries, then
/// `mobius` tone mapping, which keeps what SDR can show as it is and compresses only the
/// highlights above it, then the BT.709 transfer and matrix in limited range.
fn tone_map_filters(hdr: &Hdr) -> String {
    format!(
        "zscale=tin={}:pin={}:min={}:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,\
         tonemap=tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=tv,",
        hdr.transfer, hdr.primaries, hdr.matrix
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::probe::{AudioStream, VideoStream};
    use crate::sandbox::SourceFormats;

    fn config() -> Config {
        Config::for_tests(
            PathBuf::from("/tmp/spool"),
            "r1",
            "127.0.0.1:2121",
            "pw",
            "test",
        )
    }

    fn source(width: u32, height: u32, audio: bool) -> SourceFacts {
        SourceFacts {
            format: SourceFormats::default().accepted("mov,mp4").unwrap(),
            duration_seconds: 12.0,
            video: Some(VideoStream {
                codec: "h264".to_owned(),
                width,
                height,
                sample_aspect: (1, 1),
                rotation: 0,
                frame_rate: Some(25.0),
                scan: Scan::Progressive,
                hdr: None,
            }),
            audio: if audio {
                vec![AudioStream {
                    codec: "aac".to_owned(),
                    channels: Some(2),
                    language: "und".to_owned(),
                    title: None,
                }]
            } else {
                Vec::new()
            },
        }
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|pair| pair[0] == flag)
            .map(|pair| pair[1].as_str())
            .collect()
    }

    #[test]
    fn one_process_makes_every_rendition_from_one_decode() {
        let config = config();
        let plan = EncodePlan::for_source(&config, &source(1280, 720, true));
        let args = encode_args(&config, &plan, "out");
        assert!(
            !args.iter().any(|arg| arg == "-i"),
            "the sandbox gives the input"
        );
        let graph = value_of(&args, "-filter_complex").unwrap();
        assert_eq!(graph.matches("split=").count(), 1, "{graph}");
        assert!(
            graph.starts_with("[0:v:0]fps=25/1,format=yuv420p,split=5[s0][s1][s2][s3][p];"),
            "{graph}"
        );
        assert!(
            graph.contains("[s0]scale=1280:720,setsar=sar=1/1"),
            "{graph}"
        );
        assert!(
            graph.contains("[s1]scale=854:480,setsar=sar=1280/1281"),
            "{graph}"
        );
        assert!(
            graph.contains("[s3]scale=426:240,setsar=sar=640/639"),
            "{graph}"
        );
        assert!(graph.contains("gte(t\\,4.000)"), "{graph}");
        assert_eq!(
            values_of(&args, "-map"),
            ["[v0]", "[v1]", "[v2]", "[v3]", "0:a:0", "[poster]"]
        );
        assert_eq!(value_of(&args, "-b:v:0"), Some("2800k"));
        assert_eq!(value_of(&args, "-maxrate:v:0"), Some("2996k"));
        assert_eq!(value_of(&args, "-bufsize:v:0"), Some("4200k"));
        assert_eq!(value_of(&args, "-b:v:3"), Some("400k"));
        assert_eq!(value_of(&args, "-g"), Some("50"));
        assert_eq!(value_of(&args, "-keyint_min"), Some("50"));
        assert_eq!(value_of(&args, "-sc_threshold"), Some("0"));
        assert_eq!(
            value_of(&args, "-force_key_frames"),
            Some("expr:gte(t,n_forced*2)")
        );
        assert_eq!(value_of(&args, "-c:a"), Some("aac"));
        assert_eq!(value_of(&args, "-ac"), Some("2"));
        assert_eq!(value_of(&args, "-seg_duration"), Some("4"));
        assert_eq!(value_of(&args, "-hls_playlist"), Some("1"));
        assert_eq!(
            value_of(&args, "-adaptation_sets"),
            Some("id=0,streams=v id=1,streams=4")
        );
        assert_eq!(value_of(&args, "-progress"), Some("pipe:1"));
        assert_eq!(value_of(&args, "-stats_period"), Some("0.500"));
        assert_eq!(args.last().map(String::as_str), Some("out/poster.jpg"));
        assert!(args.iter().any(|arg| arg == "out/manifest.mpd"));
        assert_eq!(plan.audio_stream_indices(), 4..5);
    }

    #[test]
    fn every_sound_track_becomes_a_rendition_with_its_language() {
        let config = Config {
            max_audio_tracks: 3,
            ..config()
        };
        let mut facts = source(640, 360, false);
        let track = |language: &str, title: Option<&str>| AudioStream {
            codec: "ac3".to_owned(),
            channels: Some(6),
            language: language.to_owned(),
            title: title.map(str::to_owned),
        };
        facts.audio = vec![
            track("en", None),
            track("fr", Some("Commentaire")),
            track("und", None),
            track("de", None),
        ];
        let plan = EncodePlan::for_source(&config, &facts);
        let names: Vec<(&str, &str)> = plan
            .audio
            .iter()
            .map(|audio| (audio.language.as_str(), audio.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [("en", "English"), ("fr", "Commentaire"), ("und", "Audio 3")]
        );
        let args = encode_args(&config, &plan, "out");
        assert_eq!(
            values_of(&args, "-map"),
            ["[v0]", "[v1]", "0:a:0", "0:a:1", "0:a:2", "[poster]"]
        );
        assert_eq!(value_of(&args, "-metadata:s:a:0"), Some("language=en"));
        assert_eq!(value_of(&args, "-metadata:s:a:1"), Some("language=fr"));
        assert_eq!(value_of(&args, "-metadata:s:a:2"), Some("language=und"));
        assert_eq!(value_of(&args, "-ac"), Some("2"));
        assert_eq!(
            value_of(&args, "-adaptation_sets"),
            Some("id=0,streams=v id=1,streams=2 id=2,streams=3 id=3,streams=4")
        );
        assert_eq!(plan.audio_stream_indices(), 2..5);

        facts.audio = vec![track("en", None), track("en", None)];
        let plan = EncodePlan::for_source(&config, &facts);
        assert_eq!(plan.audio[1].name, "English (2)");
    }

    #[test]
    fn picture_without_sound_maps_no_audio() {
        let config = config();
        let plan = EncodePlan::for_source(&config, &source(320, 240, false));
        let args = encode_args(&config, &plan, "out");
        assert_eq!(values_of(&args, "-map"), ["[v0]", "[poster]"]);
        assert_eq!(value_of(&args, "-adaptation_sets"), Some("id=0,streams=v"));
        assert_eq!(value_of(&args, "-c:a"), None);
        assert_eq!(plan.audio_stream_indices(), 1..1);
    }

    #[test]
    fn audio_only_source_makes_an_audio_presentation() {
        let config = config();
        let mut facts = source(2, 2, true);
        facts.video = None;
        let plan = EncodePlan::for_source(&config, &facts);
        let args = encode_args(&config, &plan, "out");
        assert_eq!(value_of(&args, "-filter_complex"), None);
        assert_eq!(values_of(&args, "-map"), ["0:a:0"]);
        assert_eq!(value_of(&args, "-adaptation_sets"), Some("id=0,streams=0"));
        assert_eq!(value_of(&args, "-c:v"), None);
        assert_eq!(plan.audio_stream_indices(), 0..1);
        assert!(!args.iter().any(|arg| arg.ends_with("poster.jpg")));
        assert_eq!(plan.video, None);
    }

    #[test]
    fn storyboards_can_be_turned_off_and_need_a_duration() {
        let plan = EncodePlan::for_source(&config(), &source(640, 360, true));
        let storyboard = plan.video.unwrap().storyboard.unwrap();
        assert_eq!((storyboard.tile_width, storyboard.tile_height), (160, 90));
        let off = Config {
            storyboard_max_tiles: 0,
            ..config()
        };
        let plan = EncodePlan::for_source(&off, &source(640, 360, true));
        assert_eq!(plan.video.unwrap().storyboard, None);

        let mut unknown = source(640, 360, true);
        unknown.duration_seconds = 0.0;
        let plan = EncodePlan::for_source(&config(), &unknown);
        assert_eq!(plan.video.unwrap().storyboard, None);
    }

    #[test]
    fn keyframe_interval_and_segment_come_from_config() {
        let config = Config {
            segment_seconds: 6,
            keyframe_interval_seconds: 3,
            ..config()
        };
        let plan = EncodePlan::for_source(&config, &source(320, 240, false));
        let args = encode_args(&config, &plan, "out");
        assert_eq!(
            value_of(&args, "-force_key_frames"),
            Some("expr:gte(t,n_forced*3)")
        );
        assert_eq!(value_of(&args, "-g"), Some("75"));
        assert_eq!(value_of(&args, "-seg_duration"), Some("6"));
    }

    #[test]
    fn poster_is_taken_within_short_clips() {
        let config = config();
        let mut facts = source(320, 240, false);
        facts.duration_seconds = 3.0;
        let plan = EncodePlan::for_source(&config, &facts);
        assert_eq!(plan.video.unwrap().poster_at_seconds, 1.0);
    }

    #[test]
    fn an_interlaced_source_is_deinterlaced_first_at_its_field_rate() {
        let config = config();
        let mut facts = source(720, 576, false);
        if let Some(video) = facts.video.as_mut() {
            video.scan = Scan::TopFieldFirst;
        }
        let plan = EncodePlan::for_source(&config, &facts);
        let args = encode_args(&config, &plan, "out");
        let graph = value_of(&args, "-filter_complex").unwrap();
        assert!(
            graph.starts_with(
                "[0:v:0]bwdif=mode=send_field:parity=tff:deint=all,fps=50/1,format=yuv420p,"
            ),
            "{graph}"
        );
        assert_eq!(value_of(&args, "-g"), Some("100"));

        // 60i at a maximum of 30 frames per second: one picture per frame.
        let config = Config {
            max_frame_rate: 30,
            ..config
        };
        if let Some(video) = facts.video.as_mut() {
            video.scan = Scan::BottomFieldFirst;
            video.frame_rate = Some(29.97);
        }
        let plan = EncodePlan::for_source(&config, &facts);
        let video = plan.video.as_ref().unwrap();
        assert_eq!(video.frame_rate, (30_000, 1001));
        let graph = value_of(&encode_args(&config, &plan, "out"), "-filter_complex")
            .unwrap()
            .to_owned();
        assert!(
            graph.starts_with("[0:v:0]bwdif=mode=send_frame:parity=bff:deint=all,fps=30000/1001,"),
            "{graph}"
        );
    }

    #[test]
    fn an_hdr_source_is_tone_mapped_and_tagged_bt709() {
        let config = config();
        let mut facts = source(1280, 720, false);
        if let Some(video) = facts.video.as_mut() {
            video.hdr = Some(Hdr {
                transfer: "smpte2084",
                primaries: "bt2020",
                matrix: "bt2020nc",
            });
        }
        let plan = EncodePlan::for_source(&config, &facts);
        let args = encode_args(&config, &plan, "out");
        let graph = value_of(&args, "-filter_complex").unwrap();
        assert!(
            graph.starts_with(
                "[0:v:0]zscale=tin=smpte2084:pin=bt2020:min=bt2020nc:t=linear:npl=100,\
                 format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=mobius:desat=0,\
                 zscale=t=bt709:m=bt709:r=tv,fps=25/1,format=yuv420p,split="
            ),
            "{graph}"
        );
        assert_eq!(value_of(&args, "-color_primaries"), Some("bt709"));
        assert_eq!(value_of(&args, "-color_trc"), Some("bt709"));
        assert_eq!(value_of(&args, "-colorspace"), Some("bt709"));

        let sdr = EncodePlan::for_source(&config, &source(1280, 720, false));
        let args = encode_args(&config, &sdr, "out");
        assert!(!value_of(&args, "-filter_complex")
            .unwrap()
            .contains("zscale"));
        assert_eq!(value_of(&args, "-color_trc"), None);
    }

    #[test]
    fn a_progressive_source_is_not_deinterlaced() {
        let config = config();
        for scan in [Scan::Progressive, Scan::Unknown] {
            let mut facts = source(720, 576, false);
            if let Some(video) = facts.video.as_mut() {
                video.scan = scan;
            }
            let plan = EncodePlan::for_source(&config, &facts);
            assert_eq!(plan.video.as_ref().unwrap().deinterlace, None);
            let args = encode_args(&config, &plan, "out");
            assert!(!value_of(&args, "-filter_complex")
                .unwrap()
                .contains("bwdif"));
        }
    }

    #[test]
    fn frame_rates_are_snapped_rounded_and_capped() {
        assert_eq!(output_frame_rate(Some(25.0), 60), (25, 1));
        assert_eq!(output_frame_rate(Some(29.97), 60), (30_000, 1001));
        assert_eq!(output_frame_rate(Some(29.87), 60), (30_000, 1001));
        assert_eq!(output_frame_rate(Some(27.3), 60), (27, 1));
        assert_eq!(output_frame_rate(Some(120.0), 60), (60, 1));
        assert_eq!(output_frame_rate(Some(100.0), 60), (50, 1));
        assert_eq!(output_frame_rate(Some(59.94), 30), (30_000, 1001));
        assert_eq!(output_frame_rate(None, 60), (25, 1));
        assert_eq!(output_frame_rate(Some(f64::NAN), 60), (25, 1));
    }
}
