//! A source that can be read as it arrives is encoded while it uploads; an MP4 with its index at
//! the end waits for its last byte. Both end ready.

use std::time::Duration;

use reqwest::StatusCode;
use vod_contracts::api::VideoView;
use vod_contracts::{EncodePath, FlowStatus, VideoStatus};
use vod_tests::media::{decoded_duration, generate_clip_with, probe};
use vod_tests::tus::{header_u64, Upload};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

const CHUNK: usize = 256 * 1024;

fn options() -> StackOptions {
    StackOptions {
        chunk_size_bytes: CHUNK,
        configure_fflow: |config| {
            config.streaming_probe_bytes = CHUNK as u64;
            config.progress_interval_ms = 100;
        },
        ..StackOptions::default()
    }
}

/// Uploads everything but the last `CHUNK` bytes.
async fn upload_all_but_the_end(stack: &Stack, bytes: &[u8], name: &str) -> (Upload, usize) {
    let upload = stack.create_upload(bytes.len() as u64, name).await;
    let held_back = bytes.len() - CHUNK;
    let response = stack
        .patch(&upload.location, 0, bytes[..held_back].to_vec())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), held_back as u64);
    (upload, held_back)
}

async fn send_the_end(stack: &Stack, upload: &Upload, bytes: &[u8], from: usize) {
    let response = stack
        .patch(&upload.location, from as u64, bytes[from..].to_vec())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

fn assert_plays_for(video: &VideoView, seconds: f64) {
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let playback = video.playback.as_ref().expect("playback URLs");
    let decoded = decoded_duration(&playback.hls);
    assert!(
        (decoded - seconds).abs() <= 0.5,
        "decodes for {decoded} s, the source lasts {seconds} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamable_source_is_encoded_while_uploading_and_moov_at_end_is_not() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, options()).await;
    let mkv = env.dir.path().join("clip.mkv");
    generate_clip_with(&mkv, 8, "640x360", &[]);
    let camera = env.dir.path().join("camera.mp4");
    generate_clip_with(&camera, 8, "640x360", &[]);
    let seconds = probe(mkv.to_str().expect("utf-8 path")).duration_seconds;

    // Matroska is read as it arrives: ffmpeg starts while the last bytes are still held back.
    let mkv_bytes = std::fs::read(&mkv).expect("clip");
    let (streamed, held_back) = upload_all_but_the_end(&stack, &mkv_bytes, "clip.mkv").await;
    let flow = poll_until(
        "the encode to start before the last chunk",
        Duration::from_secs(60),
        || async {
            let video = stack.video(streamed.video_id).await;
            let flow = video.flows[0].clone();
            flow.encode_path.is_some().then_some(flow)
        },
    )
    .await;
    assert_eq!(flow.status, FlowStatus::Uploading, "{flow:#?}");
    assert_eq!(flow.encode_path, Some(EncodePath::Streaming));
    let started_at = flow.encode_started_at_byte.expect("start offset");
    assert!(
        started_at <= held_back as u64,
        "ffmpeg started with {started_at} bytes, before the last chunk"
    );
    send_the_end(&stack, &streamed, &mkv_bytes, held_back).await;

    // An MP4 straight from ffmpeg has its index at the end: it waits for the last byte.
    let camera_bytes = std::fs::read(&camera).expect("clip");
    let (at_end, camera_held_back) =
        upload_all_but_the_end(&stack, &camera_bytes, "camera.mp4").await;
    let flow = stack.video(at_end.video_id).await.flows[0].clone();
    assert_eq!(flow.status, FlowStatus::Uploading);
    assert_eq!(flow.encode_path, None, "{flow:#?}");
    send_the_end(&stack, &at_end, &camera_bytes, camera_held_back).await;

    let streamed = stack.wait_until_settled(streamed.video_id).await;
    assert_plays_for(&streamed, seconds);
    let flow = &streamed.flows[0];
    assert_eq!(flow.encode_path, Some(EncodePath::Streaming));
    assert_eq!(flow.encode_started_at_byte, Some(started_at));
    assert_eq!(flow.renditions.len(), 2, "{flow:#?}");

    let at_end = stack.wait_until_settled(at_end.video_id).await;
    assert_plays_for(&at_end, seconds);
    let flow = &at_end.flows[0];
    assert_eq!(flow.encode_path, Some(EncodePath::AfterUpload));
    assert_eq!(flow.encode_started_at_byte, Some(camera_bytes.len() as u64));

    stack.shutdown().await;
}
