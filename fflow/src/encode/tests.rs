use std::path::PathBuf;
use std::process::Command;

use tokio_util::sync::CancellationToken;
use vod_contracts::fflow::CreateProcess;

use super::*;
use crate::config::Config;
use crate::join::PartSources;
use crate::metrics::FflowMetrics;
use crate::outcome_sink::MemorySink;
use crate::session::{BeginEncode, ChunkWrite, Created, Sessions};

fn make_clip(path: &Path, seconds: u32, with_audio: bool) {
    let mut command = Command::new("ffmpeg");
    command.args([
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
    ]);
    if with_audio {
        command.args(["-f", "lavfi", "-i", "sine=frequency=440"]);
    }
    command.args([
        "-t",
        &seconds.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mp4",
    ]);
    let status = command.arg(path).status().unwrap();
    assert!(status.success());
}

fn ffprobe_json(dir: &Path, file: &str) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .current_dir(dir)
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
            file,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The whole of the source file, with its probed demuxer.
fn whole_file(facts: &SourceFacts) -> Source<'_> {
    Source {
        input: Input::File(SOURCE_FILE),
        format: &facts.format,
        max_seconds: 3600.0,
    }
}

/// Encodes the source in `dir` as a replica does, without storing it.
async fn encode(dir: &Path, state: &EncodeContext) -> (EncodePlan, MediaFacts) {
    let config = &state.config;
    let source = probe::probe(&state.sandbox, dir, SOURCE_FILE, config.probe_timeout())
        .await
        .unwrap();
    let plan = EncodePlan::for_source(config, &source);
    fresh_dir(&dir.join(OUTPUT_DIR)).await.unwrap();
    let args = plan::encode_args(config, &plan, OUTPUT_DIR);
    ffmpeg::run(
        &state.sandbox,
        dir,
        &whole_file(&source),
        args,
        Supervision::new(config.stall_timeout()),
    )
    .await
    .unwrap();
    let facts = finalize_presentation(state, &dir.join(OUTPUT_DIR), &plan, &source, "v/f")
        .await
        .unwrap();
    (plan, facts)
}

fn test_config() -> Config {
    Config::for_tests(PathBuf::from("/unused"), "r1", "127.0.0.1:1", "pw", "test")
}

/// A replica's encode pipeline, spooling in `spool`, its outcomes in memory.
async fn context(
    config: Config,
    spool: PathBuf,
) -> (Arc<EncodeContext>, Arc<Sessions>, Arc<MemorySink>) {
    let sessions = Arc::new(
        Sessions::load(spool, false, CancellationToken::new())
            .await
            .unwrap(),
    );
    let sink = Arc::new(MemorySink::default());
    let parts = PartSources::new(&config, sessions.clone(), reqwest::Client::new());
    let context = Arc::new(EncodeContext {
        encodes: tokio::sync::Semaphore::new(config.max_concurrent_encodes),
        sandbox: config.sandbox(),
        config: Arc::new(config),
        address: REPLICA_ADDRESS.to_owned(),
        metrics: FflowMetrics::register(&mut vod_infra::metrics::registry("test")),
        sink: sink.clone(),
        stopping: CancellationToken::new(),
        parts,
    });
    (context, sessions, sink)
}

async fn test_context(dir: &Path) -> Arc<EncodeContext> {
    context(test_config(), dir.join("spool")).await.0
}

#[tokio::test]
async fn encode_writes_cmaf_with_vod_playlists_that_play() {
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join(SOURCE_FILE), 9, true);
    let (plan, facts) = encode(dir.path(), &*test_context(dir.path()).await).await;
    assert!(plan.has_audio());
    assert_eq!((facts.width, facts.height), (Some(320), Some(240)));
    assert_eq!(facts.renditions.len(), 1);
    assert_eq!(facts.renditions[0].playlist_path, "v/f/media_0.m3u8");
    assert_eq!(facts.poster_path.as_deref(), Some("v/f/poster.jpg"));
    assert_eq!(facts.source.video_codec.as_deref(), Some("h264"));
    assert_eq!(facts.source.audio_codec.as_deref(), Some("aac"));

    let out = dir.path().join(OUTPUT_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chunk-stream0-00001.m4s",
            "chunk-stream0-00002.m4s",
            "chunk-stream0-00003.m4s",
            "chunk-stream1-00001.m4s",
            "chunk-stream1-00002.m4s",
            "chunk-stream1-00003.m4s",
            "init-stream0.m4s",
            "init-stream1.m4s",
            "manifest.mpd",
            "master.m3u8",
            "media_0.m3u8",
            "media_1.m3u8",
            "poster.jpg",
            "storyboard.jpg",
            "storyboard.vtt",
        ]
    );
    for media in ["media_0.m3u8", "media_1.m3u8"] {
        let text = std::fs::read_to_string(out.join(media)).unwrap();
        assert!(!text.contains("PROGRAM-DATE-TIME"), "{text}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:4\n"), "{text}");
    }
    let master = std::fs::read_to_string(out.join(HLS_MASTER)).unwrap();
    let stream_inf = master
        .lines()
        .find(|line| line.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap();
    for attribute in [
        &format!("BANDWIDTH={}", facts.renditions[0].bandwidth),
        "AVERAGE-BANDWIDTH=",
        "RESOLUTION=320x240",
        "CODECS=\"avc1.",
        "mp4a.40.2",
    ] {
        assert!(stream_inf.contains(attribute), "{stream_inf}");
    }

    let played = ffprobe_json(&out, HLS_MASTER);
    let duration: f64 = played["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 9.0).abs() < 0.3, "duration {duration}");
    let kinds: Vec<&str> = played["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stream| stream["codec_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"video") && kinds.contains(&"audio"),
        "{kinds:?}"
    );
}

/// Where the track of output stream `stream` ends as ffprobe reads its segments (start time
/// plus duration: AAC's priming samples lie before zero and are not played).
fn track_end_seconds(out: &Path, stream: &str) -> f64 {
    let track = track_file(out, stream);
    let probed = ffprobe_json(track.parent().unwrap(), track.to_str().unwrap());
    let number =
        |value: &serde_json::Value| -> f64 { value.as_str().unwrap_or("0").parse().unwrap() };
    let track = &probed["streams"][0];
    number(&track["start_time"]) + number(&track["duration"])
}

/// The track of output stream `stream` as one MP4 file (its init and media segments), next
/// to `out`.
fn track_file(out: &Path, stream: &str) -> PathBuf {
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&format!("chunk-stream{stream}-")))
        })
        .collect();
    chunks.sort();
    let mut bytes = std::fs::read(out.join(format!("init-stream{stream}.m4s"))).unwrap();
    for chunk in chunks {
        bytes.extend(std::fs::read(chunk).unwrap());
    }
    let path = out.with_file_name(format!(
        "{}-track-{stream}.mp4",
        out.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}
/// Mean PSNR of `track` against `reference` at `rate` frames per second, scaled to the
/// track's size as the encode scales.
fn psnr(track: &Path, reference: &Path, rate: (u32, u32), size: (u32, u32)) -> f64 {
    let graph = format!(
        "[0:v]setpts=PTS-STARTPTS[a];[1:v]fps={}/{},scale={}:{},format=yuv420p,\
         setpts=PTS-STARTPTS[b];[a][b]psnr",
        rate.0, rate.1, size.0, size.1
    );
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(track)
        .arg("-i")
        .arg(reference)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("PSNR y:"))
        .unwrap_or_else(|| panic!("no PSNR: {stderr}"));
    let average = &line[line.find("average:").unwrap() + "average:".len()..];
    average.split_whitespace().next().unwrap().parse().unwrap()
}

/// Mean luma (0–255) of every frame of `input`'s picture.
fn mean_luma(input: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(input)
        .args([
            "-vf",
            "format=yuv420p,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let values: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("lavfi.signalstats.YAVG="))
        .map(|value| value.trim().parse().unwrap())
        .collect();
    assert!(
        !values.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    values.iter().sum::<f64>() / values.len() as f64
}

#[tokio::test]
async fn an_hdr10_source_becomes_sdr_tagged_bt709_at_its_brightness() {
    let dir = tempfile::tempdir().unwrap();
    let make = |args: &str, output: &Path| {
        let mut command = Command::new("ffmpeg");
        command
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace());
        assert!(command.arg(output).status().unwrap().success(), "{args}");
    };
    let pattern = "-f lavfi -i testsrc2=size=640x360:rate=25 -t 2";
    // The pattern as HDR10: PQ transfer, BT.2020, 10-bit HEVC; and as SDR for reference.
    make(
        &format!(
            "{pattern} -vf zscale=tin=bt709:min=bt709:pin=bt709:t=smpte2084:m=bt2020nc:\
             p=bt2020:npl=100,format=yuv420p10le -c:v libx265 \
             -x265-params log-level=error -color_primaries bt2020 -color_trc smpte2084 \
             -colorspace bt2020nc -tag:v hvc1 -f mp4"
        ),
        &dir.path().join(SOURCE_FILE),
    );
    let reference = dir.path().join("sdr.mp4");
    make(
        &format!("{pattern} -c:v libx264 -qp 0 -pix_fmt yuv420p"),
        &reference,
    );

    let (plan, facts) = encode(dir.path(), &*test_context(dir.path()).await).await;
    assert!(plan.video.as_ref().unwrap().tone_map.is_some());
    assert!(facts.source.hdr);
    assert_eq!(facts.renditions.len(), 2);
    let out = dir.path().join(OUTPUT_DIR);
    let expected = mean_luma(&reference);
    for stream in 0..facts.renditions.len() {
        let track = track_file(&out, &stream.to_string());
        let probed = ffprobe_json(track.parent().unwrap(), track.to_str().unwrap());
        let video = &probed["streams"][0];
        for key in ["color_transfer", "color_primaries", "color_space"] {
            assert_eq!(video[key], "bt709", "stream {stream}: {video}");
        }
        // Measured: 110.8 tone-mapped against 125.3; PQ passed through reads 97.9.
        let luma = mean_luma(&track);
        assert!(
            (luma - expected).abs() / expected < 0.15,
            "stream {stream}: mean luma {luma}, the SDR pattern's {expected}"
        );
    }
}

#[tokio::test]
async fn every_sound_track_is_a_stereo_rendition_with_its_language() {
    let dir = tempfile::tempdir().unwrap();
    // English mono, then French 5.1 with a title.
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-f", "lavfi", "-i"])
        .arg("sine=frequency=660,volume=0.9,aformat=channel_layouts=5.1")
        .args(["-t", "3", "-map", "0", "-map", "1", "-map", "2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .args([
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fre",
        ])
        .args([
            "-metadata:s:a:1",
            "title=Version française",
            "-f",
            "matroska",
        ])
        .arg(dir.path().join(SOURCE_FILE))
        .status()
        .unwrap();
    assert!(status.success());
    let (plan, facts) = encode(dir.path(), &*test_context(dir.path()).await).await;
    assert_eq!(plan.audio.len(), 2);
    let languages: Vec<(&str, Option<u32>)> = facts
        .source
        .audio_tracks
        .iter()
        .map(|track| (track.language.as_str(), track.channels))
        .collect();
    assert_eq!(languages, [("en", Some(1)), ("fr", Some(6))]);
    let renditions: Vec<(&str, &str, bool, &str)> = facts
        .audio_renditions
        .iter()
        .map(|audio| {
            (
                audio.language.as_str(),
                audio.name.as_str(),
                audio.default,
                audio.playlist_path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        renditions,
        [
            ("en", "English", true, "v/f/media_1.m3u8"),
            ("fr", "Version française", false, "v/f/media_2.m3u8")
        ]
    );

    let out = dir.path().join(OUTPUT_DIR);
    let master = std::fs::read_to_string(out.join(HLS_MASTER)).unwrap();
    let media: Vec<&str> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .collect();
    assert_eq!(media.len(), 2, "{master}");
    assert!(media[0].contains("LANGUAGE=\"en\",NAME=\"English\",DEFAULT=YES,AUTOSELECT=YES"));
    assert!(
        media[1].contains("LANGUAGE=\"fr\",NAME=\"Version française\",DEFAULT=NO,AUTOSELECT=YES")
    );
    let mpd = std::fs::read_to_string(out.join(DASH_MANIFEST)).unwrap();
    let audio_sets: Vec<&str> = mpd
        .lines()
        .filter(|line| line.contains("<AdaptationSet ") && line.contains("contentType=\"audio\""))
        .collect();
    assert_eq!(audio_sets.len(), 2, "{mpd}");
    assert!(audio_sets[0].contains("lang=\"en\""), "{mpd}");
    assert!(audio_sets[1].contains("lang=\"fr\""), "{mpd}");
    let labels: Vec<&str> = mpd
        .lines()
        .filter_map(|line| line.trim().strip_prefix("<Label>"))
        .filter_map(|label| label.strip_suffix("</Label>"))
        .collect();
    assert_eq!(labels, ["English", "Version française"], "{mpd}");
    let roles: Vec<&str> = mpd
        .lines()
        .filter(|line| line.contains("<Role schemeIdUri=\"urn:mpeg:dash:role:2011\""))
        .filter_map(|line| line.split("value=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(roles, ["main", "alternate"], "{mpd}");

    for stream in ["1", "2"] {
        let track = track_file(&out, stream);
        let probed = ffprobe_json(track.parent().unwrap(), track.to_str().unwrap());
        assert_eq!(probed["streams"][0]["channels"], 2, "stream {stream}");
        // Decodes to its end, and the downmix of 5.1 does not clip.
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-i"])
            .arg(&track)
            .args(["-af", "volumedetect", "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(output.status.success(), "stream {stream}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let max_volume: f64 = stderr
            .lines()
            .find_map(|line| line.split_once("max_volume: ")?.1.strip_suffix(" dB"))
            .unwrap_or_else(|| panic!("{stderr}"))
            .trim()
            .parse()
            .unwrap();
        assert!(max_volume < 0.0, "stream {stream} peaks at {max_volume} dB");
    }
}

#[tokio::test]
async fn woven_fields_are_found_where_the_container_says_progressive() {
    let dir = tempfile::tempdir().unwrap();
    let state = test_context(dir.path()).await;
    let make = |args: &str| {
        let mut command = Command::new("ffmpeg");
        command
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace());
        let status = command.arg(dir.path().join(SOURCE_FILE)).status().unwrap();
        assert!(status.success(), "{args}");
    };
    // A moving 50p picture woven into 25i fields, encoded as progressive H.264 in MP4.
    make(
        "-f lavfi -i testsrc2=size=720x576:rate=50 -t 3 -vf tinterlace=mode=interleave_top          -c:v libx264 -preset ultrafast -pix_fmt yuv420p -f mp4",
    );
    let probed = ffprobe_json(dir.path(), SOURCE_FILE);
    assert_eq!(probed["streams"][0]["field_order"], "progressive");
    let facts = probe_source(&state, dir.path()).await.unwrap();
    assert_eq!(facts.video.unwrap().scan, Scan::TopFieldFirst);

    // The same picture at 25p, really progressive, stays so: its sharp edges make idet see
    // both field orders.
    make(
        "-f lavfi -i testsrc2=size=720x576:rate=25 -t 3 -c:v libx264 -preset ultrafast          -pix_fmt yuv420p -f mp4",
    );
    let facts = probe_source(&state, dir.path()).await.unwrap();
    assert_eq!(facts.video.unwrap().scan, Scan::Progressive);
}

#[tokio::test]
async fn an_interlaced_source_is_deinterlaced_closer_to_its_original_than_woven() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.mkv");
    let make = |args: &str, output: &Path| {
        let mut command = Command::new("ffmpeg");
        command
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace());
        assert!(command.arg(output).status().unwrap().success(), "{args}");
    };
    // A moving 50p picture, then its fields woven into 25i, top field first, as broadcast.
    make(
        "-f lavfi -i testsrc2=size=720x576:rate=50 -t 4 -c:v libx264 -qp 0 -pix_fmt yuv420p",
        &original,
    );
    make(
        &format!(
            "-i {} -vf tinterlace=mode=interleave_top,setfield=tff -c:v mpeg2video -q:v 2 \
             -flags +ilme+ildct -top 1 -f mpegts",
            original.display()
        ),
        &dir.path().join(SOURCE_FILE),
    );
    let state = test_context(dir.path()).await;
    let (plan, _) = encode(dir.path(), &state).await;
    let video = plan.video.clone().unwrap();
    assert_eq!(
        video.deinterlace,
        Some(plan::Deinterlace {
            top_field_first: true,
            per_field: true
        })
    );
    assert_eq!(video.frame_rate, (50, 1));
    let top = video.renditions[0];
    let size = (top.width, top.height);
    let deinterlaced = psnr(
        &track_file(&dir.path().join(OUTPUT_DIR), "0"),
        &original,
        video.frame_rate,
        size,
    );

    // The same source encoded as if progressive: both fields in every picture.
    let woven = EncodePlan {
        video: Some(plan::VideoPlan {
            deinterlace: None,
            frame_rate: (25, 1),
            ..video
        }),
        audio: Vec::new(),
    };
    fresh_dir(&dir.path().join("woven")).await.unwrap();
    let source = probe::probe(
        &state.sandbox,
        dir.path(),
        SOURCE_FILE,
        state.config.probe_timeout(),
    )
    .await
    .unwrap();
    ffmpeg::run(
        &state.sandbox,
        dir.path(),
        &whole_file(&source),
        plan::encode_args(&state.config, &woven, "woven"),
        Supervision::new(state.config.stall_timeout()),
    )
    .await
    .unwrap();
    let woven = psnr(
        &track_file(&dir.path().join("woven"), "0"),
        &original,
        (25, 1),
        size,
    );
    // Measured: 36.7 dB deinterlaced, 31.2 dB woven.
    assert!(
        deinterlaced > woven + 4.0,
        "deinterlaced {deinterlaced} dB, woven {woven} dB"
    );
}

fn mpd_duration_seconds(mpd: &str) -> f64 {
    let at = mpd.find("mediaPresentationDuration=\"PT").unwrap();
    let rest = &mpd[at + "mediaPresentationDuration=\"PT".len()..];
    rest[..rest.find("S\"").unwrap()].parse().unwrap()
}

#[tokio::test]
async fn manifest_durations_are_the_tracks_to_the_millisecond() {
    let sources = [
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 5.97 \
         -c:v libx264 -pix_fmt yuv420p -c:a aac -f mp4",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 1 -c:v libx264 -pix_fmt yuv420p \
         -f mp4",
        "-f lavfi -i sine=frequency=440:duration=1.3 -c:a aac -f mp4",
        "-f lavfi -i testsrc2=size=320x240:rate=30000/1001 -f lavfi -i sine=frequency=440 \
         -t 4.3 -c:v libx264 -pix_fmt yuv420p -c:a libopus -f matroska",
    ];
    for source in sources {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("ffmpeg");
        command.args(["-v", "error", "-y"]);
        command.args(source.split_whitespace());
        let status = command.arg(dir.path().join(SOURCE_FILE)).status().unwrap();
        assert!(status.success(), "{source}");
        let (plan, facts) = encode(dir.path(), &*test_context(dir.path()).await).await;
        let out = dir.path().join(OUTPUT_DIR);
        // Even a single frame gets its storyboard.
        assert_eq!(facts.storyboard.is_some(), plan.video.is_some(), "{source}");
        assert_eq!(
            out.join("storyboard.jpg").exists(),
            plan.video.is_some(),
            "{source}"
        );
        let mpd = std::fs::read_to_string(out.join(DASH_MANIFEST)).unwrap();
        let streams = plan.renditions().len() + plan.audio.len();
        let mut longest = 0.0f64;
        for stream in 0..streams {
            let end = track_end_seconds(&out, &stream.to_string());
            let playlist = std::fs::read_to_string(out.join(media_playlist_name(stream))).unwrap();
            let listed: f64 = playlists::media_segments(&playlist)
                .iter()
                .map(|(seconds, _)| seconds)
                .sum();
            assert!(
                (listed - end).abs() <= 0.001,
                "{source}: stream {stream} lists {listed} s, its track ends at {end} s"
            );
            longest = longest.max(end);
        }
        let declared = mpd_duration_seconds(&mpd);
        assert!(declared > 0.0, "{source}: {mpd}");
        assert!(
            (declared - longest).abs() <= 0.001,
            "{source}: the MPD says {declared} s, the longest track ends at {longest} s"
        );
    }
}

/// A replica's encode pipeline without its broker: a real holder, outcomes in memory.
struct Pipeline {
    dir: tempfile::TempDir,
    sessions: Arc<Sessions>,
    context: Arc<EncodeContext>,
    sink: Arc<MemorySink>,
    holder_stop: CancellationToken,
    holder: tokio::task::JoinHandle<anyhow::Result<()>>,
}

const REPLICA_ADDRESS: &str = "http://fflow.test/r1/";

impl Pipeline {
    async fn start() -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let holder = holder::App::build(holder::Config::for_tests(
            dir.path().join("holder"),
            "test-password",
        ))
        .await
        .unwrap();
        let config = Config::for_tests(
            dir.path().join("spool"),
            "r1",
            &holder.ftp_addr().to_string(),
            "test-password",
            "unused",
        );
        let holder_stop = CancellationToken::new();
        let holder = tokio::spawn(holder.run_until_stopped(holder_stop.clone()));
        let (context, sessions, sink) = context(config, dir.path().join("spool/r1")).await;
        Pipeline {
            dir,
            sessions,
            context,
            sink,
            holder_stop,
            holder,
        }
    }

    /// A session holding the whole of `source`, its encode asked for.
    async fn uploaded(&self, source: Vec<u8>) -> (Arc<Session>, EncodeTarget) {
        let target = EncodeTarget {
            video_id: vod_contracts::VideoId::new(),
            flow_id: vod_contracts::FlowId::new(),
            mp4_support: Default::default(),
        };
        let request = CreateProcess {
            session_id: vod_contracts::SessionId::new(),
            target: Some(target),
            total_bytes: Some(source.len() as u64),
        };
        let Ok(Created::New(session)) = self.sessions.create(&request).await else {
            panic!("session not created");
        };
        let chunk = ChunkWrite {
            offset: 0,
            epoch: 0,
            declared_len: None,
            max_chunk_bytes: u64::MAX,
        };
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
            bytes::Bytes::from(source),
        )]);
        session.write_chunk(chunk, body).await.unwrap();
        assert_eq!(session.begin_encode().await.unwrap(), BeginEncode::Start);
        (session, target)
    }

    async fn stop(self) {
        self.holder_stop.cancel();
        self.holder.await.unwrap().unwrap();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn an_encode_stores_its_presentation_and_hands_its_outcome_to_the_sink() {
    let pipeline = Pipeline::start().await;
    let clip = pipeline.dir.path().join("clip.mp4");
    make_clip(&clip, 2, true);
    let source = std::fs::read(&clip).unwrap();
    let (session, target) = pipeline.uploaded(source.clone()).await;

    run(pipeline.context.clone(), session.clone()).await;

    let outcomes = pipeline.sink.outcomes();
    assert_eq!(outcomes.len(), 1);
    let outcome = &outcomes[0];
    assert_eq!(
        (outcome.video_id, outcome.flow_id, outcome.session_id),
        (target.video_id, target.flow_id, session.session_id)
    );
    let EncodeResult::Ready(facts) = &outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    let holder_root = pipeline.dir.path().join("holder");
    for stored in [&facts.hls_path, &facts.dash_path] {
        assert!(holder_root.join(stored).is_file(), "{stored} on holder");
    }
    assert_eq!(outcome.source_sha256, Some(sha256_hex(&source)));
    assert_eq!(outcome.replica_address.as_deref(), Some(REPLICA_ADDRESS));
    assert_eq!(
        outcome.started.map(|started| started.path),
        Some(EncodePath::AfterUpload)
    );
    let progress = pipeline.sink.progress();
    assert_eq!(progress.first().map(|report| report.percent), Some(0));
    assert_eq!(session.phase().await, Phase::Done);
    assert!(!session.dir.exists(), "spool removed");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_source_ffmpeg_cannot_read_fails_with_a_readable_reason_in_the_sink() {
    let pipeline = Pipeline::start().await;
    let garbage = b"not a video at all".to_vec();
    let (session, _) = pipeline.uploaded(garbage.clone()).await;

    run(pipeline.context.clone(), session).await;

    let outcomes = pipeline.sink.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        outcomes[0].result,
        EncodeResult::Failed {
            reason: "the file is not a video or audio file ffmpeg can read: Invalid data found when processing input".to_owned()
        }
    );
    assert_eq!(outcomes[0].source_sha256, Some(sha256_hex(&garbage)));
    pipeline.stop().await;
}

#[test]
fn a_stream_cut_short_lasts_what_was_encoded() {
    assert_eq!(encoded_duration(8.0, Duration::from_millis(7_960)), 8.0);
    assert_eq!(encoded_duration(8.0, Duration::from_secs(4)), 4.0);
    assert_eq!(encoded_duration(0.0, Duration::from_secs(3)), 3.0);
    assert_eq!(encoded_duration(5.0, Duration::ZERO), 5.0);
}

#[tokio::test]
async fn a_picture_shorter_than_the_poster_time_gets_its_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join(SOURCE_FILE), 2, false);
    let state = test_context(dir.path()).await;
    let config = &state.config;
    let source = probe::probe(
        &state.sandbox,
        dir.path(),
        SOURCE_FILE,
        config.probe_timeout(),
    )
    .await
    .unwrap();
    // As for a stream whose length was unknown when its encode started.
    let mut plan = EncodePlan::for_source(config, &source);
    if let Some(video) = plan.video.as_mut() {
        video.poster_at_seconds = 60.0;
    }
    let out = dir.path().join(OUTPUT_DIR);
    fresh_dir(&out).await.unwrap();
    let args = plan::encode_args(config, &plan, OUTPUT_DIR);
    ffmpeg::run(
        &state.sandbox,
        dir.path(),
        &whole_file(&source),
        args,
        Supervision::new(config.stall_timeout()),
    )
    .await
    .unwrap();
    assert!(!out.join(POSTER).exists(), "no frame at 60 s");
    let facts = finalize_presentation(&state, &out, &plan, &source, "v/f")
        .await
        .unwrap();
    assert_eq!(facts.poster_path.as_deref(), Some("v/f/poster.jpg"));
    let jpeg = std::fs::read(out.join(POSTER)).unwrap();
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "a JPEG");
}

#[tokio::test]
async fn encode_without_audio_has_video_only() {
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join(SOURCE_FILE), 2, false);
    let (plan, facts) = encode(dir.path(), &*test_context(dir.path()).await).await;
    assert!(!plan.has_audio());
    assert_eq!(facts.audio_codec, None);
    let out = dir.path().join(OUTPUT_DIR);
    assert!(!out.join("media_1.m3u8").exists());
    let master = std::fs::read_to_string(out.join(HLS_MASTER)).unwrap();
    assert!(!master.contains("TYPE=AUDIO"), "{master}");
    let played = ffprobe_json(&out, HLS_MASTER);
    assert_eq!(played["streams"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ffmpeg_failure_gives_its_error_line_without_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SOURCE_FILE), b"not a video at all").unwrap();
    let config = test_config();
    let source = SourceFacts {
        format: config.source_formats.accepted("mov,mp4").unwrap(),
        duration_seconds: 1.0,
        video: Some(probe::VideoStream {
            codec: "h264".to_owned(),
            width: 320,
            height: 240,
            sample_aspect: (1, 1),
            rotation: 0,
            frame_rate: Some(25.0),
            scan: crate::probe::Scan::Progressive,
            hdr: None,
        }),
        audio: Vec::new(),
    };
    let plan = EncodePlan::for_source(&config, &source);
    fresh_dir(&dir.path().join(OUTPUT_DIR)).await.unwrap();
    let args = plan::encode_args(&config, &plan, OUTPUT_DIR);
    let supervision = Supervision::new(config.stall_timeout());
    let sandbox = config.sandbox();
    let Err(FfmpegError::Failed(line)) = ffmpeg::run(
        &sandbox,
        dir.path(),
        &whole_file(&source),
        args,
        supervision,
    )
    .await
    else {
        panic!("ffmpeg accepted garbage");
    };
    assert_eq!(line, "Invalid data found when processing input");
}

#[tokio::test]
async fn probe_of_garbage_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SOURCE_FILE), b"not a video at all").unwrap();
    let sandbox = test_config().sandbox();
    let err = probe::probe(&sandbox, dir.path(), SOURCE_FILE, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the file is not a video or audio file ffmpeg can read: Invalid data found when processing input"
    );
}

/// The ffmpeg processes working in `dir`.
fn ffmpeg_processes_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (comm.trim() == "ffmpeg" && cwd == dir).then_some(pid)
        })
        .collect()
}

#[tokio::test]
async fn dropping_a_run_kills_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let clip = dir.path().join("clip.mkv");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args(["-t", "2", "-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let head = std::fs::read(&clip).unwrap()[..4096].to_vec();
    let matroska = config.source_formats.accepted("matroska,webm").unwrap();
    let source = Source {
        input: Input::Stdin,
        format: &matroska,
        max_seconds: 600.0,
    };
    // Fed the first bytes and then nothing, ffmpeg waits for more until it is killed.
    let supervision = Supervision {
        feeder: Some(Box::new(move |mut stdin, _| {
            Box::pin(async move {
                let _ = stdin.write_all(&head).await;
                std::future::pending::<()>().await;
            })
        })),
        ..Supervision::new(Duration::from_secs(600))
    };
    let args = ["-y", "-f", "null", "-"].map(str::to_owned).into();
    let sandbox = config.sandbox();
    let mut run = Box::pin(ffmpeg::run(
        &sandbox,
        dir.path(),
        &source,
        args,
        supervision,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::select! {
            result = &mut run => panic!("ffmpeg ended by itself: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if !ffmpeg_processes_in(dir.path()).is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ffmpeg never started"
        );
    }
    drop(run);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !ffmpeg_processes_in(dir.path()).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "ffmpeg still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
