//! Real-world inputs end as the README documents: each plays correctly or fails with a reason
//! a user understands.

use std::path::Path;

use vod_contracts::api::{FlowView, VideoView};
use vod_contracts::{FlowStatus, VideoStatus};
use vod_tests::media::{
    decoded_duration, ffmpeg, first_frame_psnr, hls_attributes, probe, stream_infs,
    video_packet_times, video_stream,
};
use vod_tests::{Stack, TestEnv};

/// Uploads the file at `path` in three PATCHes and waits until its video settles.
async fn upload_and_settle(stack: &Stack, path: &Path) -> VideoView {
    let bytes = std::fs::read(path).expect("test input");
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("input");
    let upload = stack.upload_in_pieces(&bytes, name, 3).await;
    stack.wait_until_settled(upload.video_id).await
}

fn ready_flow(video: &VideoView) -> &FlowView {
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    assert_eq!(video.flows[0].status, FlowStatus::Ready);
    &video.flows[0]
}

fn failure_of(video: &VideoView) -> &str {
    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    assert!(video.playback.is_none());
    video.flows[0].error.as_deref().expect("a failure reason")
}

/// Makes `output` with ffmpeg from `args`, separated by spaces.
fn make(output: &Path, args: &str) {
    let mut all: Vec<&str> = args.split_whitespace().collect();
    all.push(path_str(output));
    ffmpeg(&all);
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn assert_decodes_for(input: &str, seconds: f64) {
    let decoded = decoded_duration(input);
    assert!(
        (decoded - seconds).abs() <= 0.5,
        "{input} decodes for {decoded} s, expected {seconds} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_without_sound_plays_as_picture_only() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("silent.mp4");
    make(
        &path,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libx264 -pix_fmt yuv420p",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    assert_eq!(flow.audio_codec, None);
    assert_eq!(
        flow.source.as_ref().and_then(|s| s.audio_codec.clone()),
        None
    );
    assert_eq!(flow.source.as_ref().map(|s| s.interlaced), Some(false));
    assert_eq!(flow.source.as_ref().map(|s| s.hdr), Some(false));
    let playback = video.playback.as_ref().expect("playback");
    let master = stack.http.get(&playback.hls).send().await.expect("master");
    let master = master.text().await.expect("master text");
    assert!(!master.contains("TYPE=AUDIO"), "{master}");
    assert_eq!(probe(&playback.hls).codec_types, ["video"]);
    assert_decodes_for(&playback.hls, 3.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sound_only_source_becomes_an_audio_only_presentation() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("song.mp3");
    make(
        &path,
        "-f lavfi -i sine=frequency=440:duration=4 -c:a libmp3lame",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    assert!(flow.renditions.is_empty(), "{flow:#?}");
    assert_eq!((flow.width, flow.height), (None, None));
    assert_eq!(flow.video_codec, None);
    assert_eq!(flow.audio_codec.as_deref(), Some("aac"));
    assert_eq!(flow.poster, None);
    let source = flow.source.as_ref().expect("source facts");
    assert_eq!(source.audio_codec.as_deref(), Some("mp3"));
    assert_eq!(source.video_codec, None);

    let playback = video.playback.as_ref().expect("playback");
    let master = stack.http.get(&playback.hls).send().await.expect("master");
    let master = master.text().await.expect("master text");
    let variants = stream_infs(&master);
    assert_eq!(variants.len(), 1, "{master}");
    assert_eq!(variants[0].0["CODECS"], "mp4a.40.2");
    assert!(!variants[0].0.contains_key("RESOLUTION"), "{master}");
    let mpd = stack.http.get(&playback.dash).send().await.expect("mpd");
    let mpd = mpd.text().await.expect("mpd text");
    assert_eq!(mpd.matches("<AdaptationSet ").count(), 1, "{mpd}");
    assert!(mpd.contains("contentType=\"audio\""), "{mpd}");
    assert_eq!(probe(&playback.hls).codec_types, ["audio"]);
    assert_eq!(probe(&playback.dash).codec_types, ["audio"]);
    assert_decodes_for(&playback.hls, 4.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_sized_source_gets_even_renditions_with_its_aspect() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    // 4:4:4 lets H.264 carry an odd size.
    let path = env.dir.path().join("odd.mp4");
    make(&path, "-f lavfi -i testsrc2=size=854x480:rate=25 -t 2 -vf scale=853:479,setsar=1 -c:v libx264 -preset ultrafast -pix_fmt yuv444p");

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert_eq!((source.width, source.height), (Some(853), Some(479)));
    let sizes: Vec<(u32, u32)> = flow
        .renditions
        .iter()
        .map(|r| (r.width, r.height))
        .collect();
    assert_eq!(sizes, [(852, 478), (642, 360), (428, 240)]);
    for rendition in &flow.renditions {
        let stream = video_stream(&rendition.hls);
        assert_eq!(
            (stream.width, stream.height),
            (rendition.width, rendition.height)
        );
        assert_eq!(stream.pix_fmt, "yuv420p");
        assert_decodes_for(&rendition.hls, 2.0);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn phone_video_with_rotation_metadata_plays_upright() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let dir = env.dir.path();
    let upright = dir.join("upright.mp4");
    make(
        &upright,
        "-f lavfi -i testsrc2=size=360x640:rate=25 -t 2 -c:v libx264 -pix_fmt yuv420p",
    );
    // What a phone held upright stores: the picture turned, with a display matrix that turns
    // it back.
    let turned = dir.join("turned.mp4");
    make(
        &turned,
        &format!(
            "-i {upright} -vf transpose=clock -c:v libx264 -pix_fmt yuv420p",
            upright = path_str(&upright)
        ),
    );
    let phone = dir.join("phone.mp4");
    make(
        &phone,
        &format!(
            "-i {turned} -c copy -metadata:s:v:0 rotate=90",
            turned = path_str(&turned)
        ),
    );
    assert_eq!(video_stream(path_str(&phone)).width, 640, "stored sideways");

    let video = upload_and_settle(&stack, &phone).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert_eq!((source.width, source.height), (Some(360), Some(640)));
    let top = &flow.renditions[0];
    assert_eq!((top.width, top.height), (360, 640));
    let stream = video_stream(&top.hls);
    assert_eq!((stream.width, stream.height), (360, 640));
    let psnr = first_frame_psnr(&top.hls, path_str(&upright));
    assert!(
        psnr > 25.0,
        "the rendition is not the upright picture: {psnr} dB"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interlaced_broadcast_capture_is_deinterlaced_at_its_field_rate() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("broadcast.ts");
    // A moving 50p picture woven into 25i fields, top first: MPEG-2 in MPEG-TS, as broadcast.
    make(
        &path,
        "-f lavfi -i testsrc2=size=720x576:rate=50 -f lavfi -i sine=frequency=440 -t 3 \
         -vf tinterlace=mode=interleave_top,setfield=tff -c:v mpeg2video -q:v 2 \
         -flags +ilme+ildct -top 1 -c:a mp2 -f mpegts",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert!(source.interlaced, "{source:?}");
    assert_eq!(source.frame_rate, Some(25.0));
    let top = &flow.renditions[0];
    let times = video_packet_times(&top.hls);
    let gaps: Vec<f64> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(gaps.len() > 100, "{gaps:?}");
    assert!(
        gaps.iter().all(|gap| (gap - 0.02).abs() < 0.001),
        "not one picture per field: {gaps:?}"
    );
    assert_decodes_for(&top.hls, 3.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn woven_capture_exported_as_progressive_is_deinterlaced() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("export.mp4");
    // What an editor exports from a 25i capture: the woven fields in progressive H.264.
    make(
        &path,
        "-f lavfi -i testsrc2=size=720x576:rate=50 -t 3 -vf tinterlace=mode=interleave_top \
         -c:v libx264 -preset ultrafast -pix_fmt yuv420p",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert!(source.interlaced, "{source:?}");
    let times = video_packet_times(&flow.renditions[0].hls);
    let gaps: Vec<f64> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(
        gaps.len() > 100 && gaps.iter().all(|gap| (gap - 0.02).abs() < 0.001),
        "not one picture per field: {gaps:?}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hdr10_source_is_tone_mapped_to_bt709() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("hdr10.mkv");
    make(
        &path,
        "-f lavfi -i testsrc2=size=640x360:rate=25 -t 2 \
         -vf zscale=tin=bt709:min=bt709:pin=bt709:t=smpte2084:m=bt2020nc:p=bt2020:npl=100,\
         format=yuv420p10le -c:v libx265 -x265-params log-level=error -color_primaries bt2020 \
         -color_trc smpte2084 -colorspace bt2020nc -f matroska",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert!(source.hdr, "{source:?}");
    assert!(!source.interlaced, "{source:?}");
    assert_eq!(flow.renditions.len(), 2, "{flow:#?}");
    for rendition in &flow.renditions {
        let output = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=color_transfer,color_primaries,color_space,pix_fmt"])
            .args(["-of", "default=noprint_wrappers=1", &rendition.hls])
            .output()
            .expect("ffprobe runs");
        let colors = String::from_utf8_lossy(&output.stdout);
        for line in [
            "pix_fmt=yuv420p",
            "color_space=bt709",
            "color_transfer=bt709",
            "color_primaries=bt709",
        ] {
            assert!(colors.lines().any(|l| l == line), "{line} not in {colors}");
        }
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sound_track_plays_in_its_language() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("two-languages.mkv");
    // English stereo, then French 5.1.
    make(
        &path,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 \
         -f lavfi -i sine=frequency=660,aformat=channel_layouts=5.1 -t 3 -map 0 -map 1 -map 2 \
         -c:v libx264 -pix_fmt yuv420p -c:a aac -ac:a:0 2 -metadata:s:a:0 language=eng \
         -metadata:s:a:1 language=fre -f matroska",
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    let tracks: Vec<(&str, Option<u32>, &str)> = source
        .audio_tracks
        .iter()
        .map(|track| {
            (
                track.language.as_str(),
                track.channels,
                track.codec.as_str(),
            )
        })
        .collect();
    assert_eq!(tracks, [("en", Some(2), "aac"), ("fr", Some(6), "aac")]);
    let audio: Vec<(&str, &str, bool)> = flow
        .audio_renditions
        .iter()
        .map(|audio| (audio.language.as_str(), audio.name.as_str(), audio.default))
        .collect();
    assert_eq!(audio, [("en", "English", true), ("fr", "French", false)]);

    let playback = video.playback.as_ref().expect("playback");
    let master = stack.http.get(&playback.hls).send().await.expect("master");
    let master = master.text().await.expect("master text");
    let languages: Vec<String> = master
        .lines()
        .filter(|line| line.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .filter_map(|line| line.split_once(':'))
        .map(|(_, list)| hls_attributes(list)["LANGUAGE"].clone())
        .collect();
    assert_eq!(languages, ["en", "fr"], "{master}");
    let mpd = stack.http.get(&playback.dash).send().await.expect("mpd");
    let mpd = mpd.text().await.expect("mpd text");
    let audio_sets: Vec<&str> = mpd
        .lines()
        .filter(|line| line.contains("<AdaptationSet ") && line.contains("contentType=\"audio\""))
        .collect();
    assert_eq!(audio_sets.len(), 2, "{mpd}");
    assert!(audio_sets[0].contains("lang=\"en\""), "{mpd}");
    assert!(audio_sets[1].contains("lang=\"fr\""), "{mpd}");
    for rendition in &flow.audio_renditions {
        assert_eq!(probe(&rendition.hls).codec_types, ["audio"]);
        assert_decodes_for(&rendition.hls, 3.0);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_frame_source_is_ready_with_its_real_duration() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("one-frame.mp4");
    make(
        &path,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -frames:v 1 -c:v libx264 -pix_fmt yuv420p",
    );

    let video = upload_and_settle(&stack, &path).await;
    ready_flow(&video);
    let playback = video.playback.as_ref().expect("playback");
    let mpd = stack.http.get(&playback.dash).send().await.expect("mpd");
    let mpd = mpd.text().await.expect("mpd text");
    assert!(
        mpd.contains("mediaPresentationDuration=\"PT0.040S\""),
        "{mpd}"
    );
    assert_eq!(probe(&playback.dash).codec_types, ["video"]);
    assert_eq!(probe(&playback.hls).codec_types, ["video"]);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn variable_frame_rate_source_becomes_constant() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("vfr.mp4");
    // Keeps frames 0, 3, 6, 7, 9, 12, 14, ... of a 30 fps source: uneven gaps.
    make(&path, "-f lavfi -i testsrc2=size=320x240:rate=30 -t 4 -vf select='not(mod(n\\,3))+not(mod(n\\,7))' -fps_mode vfr -c:v libx264 -pix_fmt yuv420p");
    let gaps =
        |times: &[f64]| -> Vec<f64> { times.windows(2).map(|pair| pair[1] - pair[0]).collect() };
    let source_gaps = gaps(&video_packet_times(path_str(&path)));
    let uneven = |gaps: &[f64]| {
        let (min, max) = gaps.iter().fold((f64::MAX, 0.0f64), |(lo, hi), gap| {
            (lo.min(*gap), hi.max(*gap))
        });
        max - min > 0.002
    };
    assert!(
        uneven(&source_gaps),
        "the source has even gaps: {source_gaps:?}"
    );

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let top = &flow.renditions[0];
    let output_gaps = gaps(&video_packet_times(&top.hls));
    assert!(output_gaps.len() > 10, "{output_gaps:?}");
    assert!(
        !uneven(&output_gaps),
        "the rendition has uneven gaps: {output_gaps:?}"
    );
    assert_decodes_for(&top.hls, 4.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hevc_10_bit_source_is_encoded_to_8_bit_h264() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("hevc10.mp4");
    make(&path, "-f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx265 -x265-params log-level=error -pix_fmt yuv420p10le -tag:v hvc1");
    assert_eq!(video_stream(path_str(&path)).pix_fmt, "yuv420p10le");

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert_eq!(source.video_codec.as_deref(), Some("hevc"));
    let top = &flow.renditions[0];
    assert!(top.codecs.starts_with("avc1."), "{}", top.codecs);
    let stream = video_stream(&top.hls);
    assert_eq!(
        (stream.codec.as_str(), stream.pix_fmt.as_str()),
        ("h264", "yuv420p")
    );
    assert_decodes_for(&top.hls, 2.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vp9_webm_source_is_encoded_to_h264_and_aac() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("clip.webm");
    make(&path, "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 3 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -c:a libopus");

    let video = upload_and_settle(&stack, &path).await;
    let flow = ready_flow(&video);
    let source = flow.source.as_ref().expect("source facts");
    assert_eq!(source.video_codec.as_deref(), Some("vp9"));
    assert_eq!(source.audio_codec.as_deref(), Some("opus"));
    assert_eq!(flow.video_codec.as_deref(), Some("h264"));
    assert_eq!(flow.audio_codec.as_deref(), Some("aac"));
    let playback = video.playback.as_ref().expect("playback");
    let mut kinds = probe(&playback.hls).codec_types;
    kinds.sort();
    assert_eq!(kinds, ["audio", "video"]);
    assert_decodes_for(&playback.hls, 3.0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mp4_cut_short_fails_saying_it_is_incomplete() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let whole = env.dir.path().join("whole.mp4");
    make(
        &whole,
        "-f lavfi -i testsrc2=size=320x240:rate=25 -t 3 -c:v libx264 -pix_fmt yuv420p",
    );
    let bytes = std::fs::read(&whole).expect("clip");
    let cut = env.dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("cut clip");

    let video = upload_and_settle(&stack, &cut).await;
    assert_eq!(
        failure_of(&video),
        "the MP4 file is incomplete: its index (the moov box) is missing, so the file was \
         probably cut short"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_cut_short_plays_what_arrived() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let whole = env.dir.path().join("whole.mkv");
    make(&whole, "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440 -t 6 -c:v libx264 -pix_fmt yuv420p");
    let bytes = std::fs::read(&whole).expect("clip");
    let cut = env.dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("cut clip");

    let video = upload_and_settle(&stack, &cut).await;
    let flow = ready_flow(&video);
    let duration = flow.duration_seconds.expect("duration");
    assert!(
        (1.5..4.5).contains(&duration),
        "half of 6 s arrived, the flow says {duration} s"
    );
    let playback = video.playback.as_ref().expect("playback");
    assert_decodes_for(&playback.hls, duration);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_that_is_not_media_fails_saying_so() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let path = env.dir.path().join("notes.mp4");
    let text = "These are meeting notes, not a video.\n".repeat(2_000);
    std::fs::write(&path, text).expect("text file");

    let video = upload_and_settle(&stack, &path).await;
    assert_eq!(
        failure_of(&video),
        "the file is not a video or audio file ffmpeg can read: Invalid data found when \
         processing input"
    );
    stack.shutdown().await;
}
