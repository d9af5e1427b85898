//! `DELETE /videos/{video_id}`: removing a video's directory from holder.

#![allow(clippy::unwrap_used)]

mod common;

use common::{error_of, holder_ftp, TestEnv};
use reqwest::StatusCode;
use suppaftp::tokio::AsyncFtpStream;
use vod_contracts::fflow::video_path;
use vod_contracts::{layout, FlowId, VideoId};

async fn put(ftp: &mut AsyncFtpStream, path: &str, contents: &[u8]) {
    ftp.put_file(path, &mut &contents[..]).await.unwrap();
}

/// Creates every level of `path`, ignoring the ones already there.
async fn mkdir_all(ftp: &mut AsyncFtpStream, path: &str) {
    let mut level = String::new();
    for part in path.split('/') {
        if !level.is_empty() {
            level.push('/');
        }
        level.push_str(part);
        let _ = ftp.mkdir(&level).await;
    }
}

/// What a published flow and an interrupted publish of another flow leave on holder, with a
/// nested directory and a hidden one for good measure.
async fn place_leftovers(ftp: &mut AsyncFtpStream, video_id: VideoId) -> Vec<String> {
    let published = layout::presentation_dir(video_id, FlowId::new());
    let interrupted = layout::presentation_dir(video_id, FlowId::new());
    mkdir_all(ftp, &published).await;
    mkdir_all(ftp, &format!("{interrupted}/nested/deeper")).await;
    mkdir_all(ftp, &format!("{interrupted}/.hidden-dir")).await;
    let files = vec![
        format!("{published}/{}", layout::HLS_MASTER),
        format!("{published}/chunk-stream0-00001.m4s"),
        format!("{interrupted}/.chunk-stream0-00002.m4s.part"),
        format!("{interrupted}/init-stream0.m4s"),
        format!("{interrupted}/nested/deeper/.x.part"),
        format!("{interrupted}/.hidden-dir/file"),
    ];
    for file in &files {
        put(ftp, file, b"leftover bytes").await;
    }
    files
}

#[tokio::test]
async fn deleting_a_video_removes_its_whole_tree_from_holder_and_is_idempotent() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let gone = VideoId::new();
    let kept = VideoId::new();
    let mut ftp = holder_ftp(&env).await;
    let files = place_leftovers(&mut ftp, gone).await;
    let kept_files = place_leftovers(&mut ftp, kept).await;
    ftp.quit().await.unwrap();
    for file in &files {
        assert!(env.holder_root.join(file).is_file(), "{file} placed");
    }

    let url = format!("{}/{}", replica.base, video_path(gone));
    let response = env.http.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        !env.holder_root.join(layout::video_dir(gone)).exists(),
        "the video's directory is gone"
    );
    assert!(env.holder_root.join("videos").is_dir(), "videos/ stays");
    for file in &kept_files {
        assert!(
            env.holder_root.join(file).is_file(),
            "{file} of another video kept"
        );
    }

    // Again, and for a video that never had anything on holder: nothing to do is success.
    let again = env.http.delete(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let never = format!("{}/{}", replica.base, video_path(VideoId::new()));
    let response = env.http.delete(&never).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn two_replicas_deleting_one_video_at_once_both_succeed() {
    let env = TestEnv::start().await;
    let first = env.start_replica("r1").await;
    let second = env.start_replica("r2").await;
    let video_id = VideoId::new();
    let mut ftp = holder_ftp(&env).await;
    for _ in 0..5 {
        place_leftovers(&mut ftp, video_id).await;
    }
    ftp.quit().await.unwrap();

    let path = video_path(video_id);
    let (a, b) = tokio::join!(
        env.http.delete(format!("{}/{path}", first.base)).send(),
        env.http.delete(format!("{}/{path}", second.base)).send()
    );
    assert_eq!(a.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(b.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(!env.holder_root.join(layout::video_dir(video_id)).exists());

    first.stop().await;
    second.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn a_malformed_video_id_is_refused_with_400() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    for bad in ["not-a-uuid", "1234", "a%20b", "..."] {
        let response = env
            .http
            .delete(format!("{}/videos/{bad}", replica.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_of(response).await,
            (StatusCode::BAD_REQUEST, "invalid_video_id".to_owned()),
            "{bad}"
        );
    }
    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn holder_unreachable_is_answered_503() {
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    // A port nothing listens on: connecting is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.holder.addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let replica = env.start_replica_with(config).await;
    let response = env
        .http
        .delete(format!("{}/{}", replica.base, video_path(VideoId::new())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "holder_unavailable".to_owned()
        )
    );
    replica.stop().await;
    env.stop().await;
}
