//! The scheduler's jobs, driven directly rather than by cron.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use vod_contracts::{layout, FlowStatus, VideoId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::TUS_VERSION;
use vod_tests::{HolderStore, Stack, StackOptions, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_session_is_expired_once_even_by_two_schedulers_at_once() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let stale = stack.create_upload(1_000, "stale.mp4").await;
    let response = stack.patch(&stale.location, 0, vec![7u8; 400]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let fresh = stack.create_upload(1_000, "fresh.mp4").await;

    let replica = Stack::recorded_replica(&env, stale.session_id)
        .await
        .expect("the stale session has a replica");
    let spool = std::fs::read_dir(env.dir.path().join("fflow"))
        .expect("fflow spool root")
        .filter_map(Result::ok)
        .map(|replica_dir| replica_dir.path().join(stale.session_id.to_string()))
        .find(|dir| dir.exists())
        .expect("the session's spool exists while it is open");

    // Let the stale session's expiry (a TTL after its last chunk, one day by default) pass.
    env.db()
        .await
        .execute(
            "UPDATE upload_session SET last_chunk_at = now() - interval '2 days', \
             expires_at = now() - interval '1 day' WHERE id = $1",
            &[&stale.session_id.0],
        )
        .await
        .expect("session aged");

    let (first, second) = tokio::join!(
        stack.schedulers[0].expire_stale_sessions(),
        stack.schedulers[1].expire_stale_sessions()
    );
    let expired = first.expect("expiry runs") + second.expect("expiry runs");
    assert_eq!(expired, 1, "only the stale session, and only once");

    let head = stack
        .http
        .head(&stale.location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(head.status(), StatusCode::GONE);
    let video = stack.video(stale.video_id).await;
    assert_eq!(video.status, VideoStatus::Failed);
    assert_eq!(video.flows[0].status, FlowStatus::Failed);
    let reason = video.flows[0].error.as_deref().expect("a reason");
    assert!(reason.contains("expired"), "{reason}");
    assert!(
        !spool.exists(),
        "the process on {replica} and its spool are gone"
    );

    // The fresh upload is untouched and still takes bytes.
    assert_eq!(
        stack.video(fresh.video_id).await.status,
        VideoStatus::Uploading
    );
    let response = stack.patch(&fresh.location, 0, vec![1u8; 10]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = stack.schedulers[0]
        .expire_stale_sessions()
        .await
        .expect("runs");
    assert_eq!(again, 0, "nothing left to expire");
    stack.shutdown().await;
}

/// Makes videos look created `days` ago.
async fn age_videos(env: &TestEnv, videos: &[VideoId], days: i32) {
    let ids: Vec<uuid::Uuid> = videos.iter().map(|video| video.0).collect();
    let aged = env
        .db()
        .await
        .execute(
            "UPDATE video SET created_at = now() - make_interval(days => $2) WHERE id = ANY($1)",
            &[&ids, &days],
        )
        .await
        .expect("videos aged");
    assert_eq!(aged, ids.len() as u64);
}

/// What an interrupted publish leaves in a flow's directory on holder: a published segment and
/// hidden temporaries, one of them in a nested directory. Returns the files.
fn place_leftovers(holder_root: &Path, video_id: VideoId) -> Vec<PathBuf> {
    let flow_dir = holder_root.join(layout::presentation_dir(
        video_id,
        vod_contracts::FlowId::new(),
    ));
    std::fs::create_dir_all(flow_dir.join("nested")).expect("flow directory");
    let files = vec![
        flow_dir.join("init-stream0.m4s"),
        flow_dir.join(".chunk-stream0-00001.m4s.part"),
        flow_dir.join("nested/.media_0.m3u8.part"),
    ];
    for file in &files {
        std::fs::write(file, b"left over").expect("leftover written");
    }
    files
}

async fn create_video_without_upload(stack: &Stack) -> VideoId {
    let created = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&serde_json::json!({ "title": "never uploaded", "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(created.status(), StatusCode::CREATED);
    let video: serde_json::Value = created.json().await.expect("JSON");
    video["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a video id")
}

async fn video_status_code(stack: &Stack, video_id: VideoId) -> StatusCode {
    stack
        .http
        .get(stack.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("gateway answers")
        .status()
}

async fn rows_of_video(env: &TestEnv, video_id: VideoId) -> (i64, i64) {
    let row = env
        .db()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM flow WHERE video_id = $1), \
                    (SELECT count(*) FROM upload_session s JOIN flow f ON f.id = s.flow_id \
                     WHERE f.video_id = $1)",
            &[&video_id.0],
        )
        .await
        .expect("row counts");
    (row.get(0), row.get(1))
}

/// The files under `dir`, at any depth (none when it is gone).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unused_videos_are_deleted_once_with_their_holder_files_and_used_ones_are_kept() {
    unused_videos_are_deleted_from(HolderStore::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unused_videos_are_deleted_once_with_their_objects_in_the_bucket() {
    unused_videos_are_deleted_from(HolderStore::S3).await;
}

async fn unused_videos_are_deleted_from(holder_store: HolderStore) {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;

    // Ready: a real clip, encoded and published.
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "160x120");
    let clip = std::fs::read(&clip).expect("clip");
    let ready = stack.upload_in_pieces(&clip, "ready.mp4", 1).await;
    stack.assert_ready_with_source(ready.video_id, &clip).await;
    let ready_flow = stack.video(ready.video_id).await.flows[0].id;
    let ready_master = stack
        .holder_root
        .join(layout::presentation_dir(ready.video_id, ready_flow))
        .join(layout::HLS_MASTER);
    assert!(ready_master.is_file(), "{}", ready_master.display());

    // Failed: bytes that are not a video; its publish left files behind.
    let garbage: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let failed = stack.upload_in_pieces(&garbage, "failed.mp4", 1).await;
    assert_eq!(
        stack.wait_until_settled(failed.video_id).await.status,
        VideoStatus::Failed
    );
    let failed_files = place_leftovers(&stack.holder_root, failed.video_id);
    let (failed_flows, failed_sessions) = rows_of_video(&env, failed.video_id).await;
    assert_eq!((failed_flows, failed_sessions), (1, 1));

    // Never uploaded at all.
    let empty = create_video_without_upload(&stack).await;

    // Still uploading: its session is open, whatever is on holder for it stays.
    let open = stack.create_upload(1_000, "open.mp4").await;
    let response = stack.patch(&open.location, 0, vec![3u8; 100]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let open_files = place_leftovers(&stack.holder_root, open.video_id);

    // Failed too, but recently: the user may still upload again.
    let recent = stack.upload_in_pieces(&garbage, "recent.mp4", 1).await;
    assert_eq!(
        stack.wait_until_settled(recent.video_id).await.status,
        VideoStatus::Failed
    );
    let recent_files = place_leftovers(&stack.holder_root, recent.video_id);

    age_videos(
        &env,
        &[ready.video_id, failed.video_id, empty, open.video_id],
        30,
    )
    .await;

    let (first, second) = tokio::join!(
        stack.schedulers[0].delete_unused_videos(),
        stack.schedulers[1].delete_unused_videos()
    );
    let deleted = first.expect("the job runs") + second.expect("the job runs");
    assert_eq!(deleted, 2, "the failed and the empty video, each once");

    for gone in [failed.video_id, empty] {
        assert_eq!(video_status_code(&stack, gone).await, StatusCode::NOT_FOUND);
        assert_eq!(rows_of_video(&env, gone).await, (0, 0));
        let dir = stack.holder_root.join(layout::video_dir(gone));
        assert_eq!(
            files_under(&dir),
            Vec::<PathBuf>::new(),
            "nothing of {gone} is stored"
        );
        if holder_store == HolderStore::Fs {
            assert!(!dir.exists(), "the holder directory of {gone} is gone");
        }
    }
    for file in &failed_files {
        assert!(!file.exists(), "{}", file.display());
    }

    let kept = stack.video(ready.video_id).await;
    assert_eq!(kept.status, VideoStatus::Ready);
    let playback = kept.playback.expect("still playable");
    let (_, master) = stack.fetch(&playback.hls).await;
    assert!(!master.is_empty());
    assert!(ready_master.is_file());
    assert_eq!(
        stack.video(open.video_id).await.status,
        VideoStatus::Uploading
    );
    assert_eq!(
        stack.video(recent.video_id).await.status,
        VideoStatus::Failed
    );
    for file in open_files.iter().chain(&recent_files) {
        assert!(file.is_file(), "{} kept", file.display());
    }
    // The open upload still takes bytes.
    let response = stack.patch(&open.location, 100, vec![3u8; 100]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let again = stack.schedulers[0]
        .delete_unused_videos()
        .await
        .expect("the job runs");
    assert_eq!(again, 0, "nothing left to delete");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unused_video_is_kept_while_holder_cannot_be_reached() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            // Nothing listens on port 1: every FTP connection is refused.
            configure_fflow: |config| config.holder.addr = "127.0.0.1:1".to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let video_id = create_video_without_upload(&stack).await;
    let files = place_leftovers(&stack.holder_root, video_id);
    age_videos(&env, &[video_id], 30).await;

    for _ in 0..2 {
        let deleted = stack.schedulers[0]
            .delete_unused_videos()
            .await
            .expect("the job runs");
        assert_eq!(deleted, 0);
        assert_eq!(
            stack.video(video_id).await.status,
            VideoStatus::Created,
            "kept for the next run"
        );
    }
    for file in &files {
        assert!(file.is_file(), "{}", file.display());
    }
    stack.shutdown().await;
}
