//! A ready flow records the derivatives fflow made of its presentation, and the video JSON
//! links them.

use vod_contracts::layout;
use vod_contracts::VideoStatus;
use vod_tests::media::generate_clip;
use vod_tests::{Stack, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ready_video_links_its_storyboard_and_makes_no_downloads_by_default() {
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

    // The video JSON links the storyboard of the flow that plays, served by holder.
    let storyboard = video
        .storyboard
        .clone()
        .expect("the video links its storyboard");
    assert_eq!(video.flows[0].storyboard.as_ref(), Some(&storyboard));
    assert!(storyboard
        .image
        .ends_with(&format!("{dir}/{}", layout::STORYBOARD_IMAGE)));
    let (content_type, jpeg) = stack.fetch(&storyboard.image).await;
    assert_eq!(content_type, "image/jpeg");
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "the storyboard is a JPEG");
    let (content_type, vtt) = stack.fetch(&storyboard.vtt).await;
    assert!(content_type.starts_with("text/vtt"), "{content_type}");
    let vtt = String::from_utf8(vtt).expect("the storyboard track is text");
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert!(
        vtt.contains(&format!("{}#xywh=0,0,160,120", layout::STORYBOARD_IMAGE)),
        "{vtt}"
    );

    stack.shutdown().await;
}
