//! A ready flow records the derivatives fflow made of its presentation.

use vod_contracts::layout;
use vod_contracts::VideoStatus;
use vod_tests::media::generate_clip;
use vod_tests::{Stack, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ready_flow_records_its_storyboard_and_no_downloads_by_default() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 4, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 2).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let flow_id = video.flows[0].id;

    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT storyboard, downloads FROM flow WHERE id = $1",
            &[&flow_id.0],
        )
        .await
        .expect("flow row");
    let storyboard: serde_json::Value = row.get(0);
    let downloads: serde_json::Value = row.get(1);
    let dir = layout::presentation_dir(upload.video_id, flow_id);
    assert_eq!(
        storyboard["image_path"],
        format!("{dir}/{}", layout::STORYBOARD_IMAGE)
    );
    assert_eq!(
        storyboard["vtt_path"],
        format!("{dir}/{}", layout::STORYBOARD_VTT)
    );
    // 4 s at a tile every 2 s: two 160x120 tiles in a row.
    assert_eq!(
        (storyboard["width"].as_u64(), storyboard["height"].as_u64()),
        (Some(320), Some(120))
    );
    assert_eq!(storyboard["interval_ms"], 2000);
    assert!(stack
        .holder_root
        .join(&dir)
        .join(layout::STORYBOARD_VTT)
        .exists());
    assert_eq!(downloads, serde_json::json!([]));

    stack.shutdown().await;
}
