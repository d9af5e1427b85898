//! The scheduler's jobs, driven directly rather than by cron.

use reqwest::StatusCode;
use vod_contracts::{FlowStatus, VideoStatus};
use vod_tests::tus::TUS_VERSION;
use vod_tests::{Stack, TestEnv};

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
