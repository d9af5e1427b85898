//! While a flow is processing, the video shows how far its encode is.

use std::time::Duration;

use vod_contracts::{EncodePath, FlowStatus, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processing_flow_shows_growing_progress_then_100_when_ready() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        // A slow preset keeps the encode running for several progress reports.
        configure_fflow: |config| {
            config.x264_preset = "slow".to_owned();
            config.progress_interval_ms = 100;
        },
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 8, "1280x720");
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;

    let seen = std::sync::Mutex::new(Vec::<(FlowStatus, Option<u8>)>::new());
    let video = poll_until(
        "the video to be ready",
        Duration::from_secs(300),
        || async {
            let video = stack.video(upload.video_id).await;
            let flow = &video.flows[0];
            if let Ok(mut seen) = seen.lock() {
                seen.push((flow.status, flow.progress_percent));
            }
            matches!(video.status, VideoStatus::Ready | VideoStatus::Failed).then_some(video)
        },
    )
    .await;
    let seen = seen.into_inner().expect("observations");
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let flow = &video.flows[0];
    assert_eq!(flow.progress_percent, Some(100));
    assert_eq!(flow.encode_path, Some(EncodePath::AfterUpload));
    assert_eq!(flow.encode_started_at_byte, Some(bytes.len() as u64));

    let while_processing: Vec<u8> = seen
        .iter()
        .filter(|(status, _)| *status == FlowStatus::Processing)
        .filter_map(|(_, percent)| *percent)
        .collect();
    assert!(
        while_processing
            .iter()
            .any(|percent| (1..=99).contains(percent)),
        "progress shown while processing: {seen:?}"
    );
    assert!(
        while_processing.windows(2).all(|pair| pair[0] <= pair[1]),
        "progress never goes back: {seen:?}"
    );
    stack.shutdown().await;
}
