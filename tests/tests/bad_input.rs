//! Bad input gets a clear error and leaves state untouched; the stack keeps serving.

use reqwest::StatusCode;
use serde_json::{json, Value};
use vod_contracts::{FlowStatus, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::{header_u64, metadata, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{Stack, StackOptions, TestEnv};

async fn error_code(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_or_wrong_tus_resumable_is_refused_with_412() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(100, "a.mp4").await;

    let missing = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Upload-Length", "100")
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(missing.headers()["tus-version"], "1.0.0");
    let (status, body) = error_code(missing).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["code"], "tus_version_unsupported");

    let wrong = stack
        .http
        .patch(&upload.location)
        .header("Tus-Resumable", "0.2.2")
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", "0")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(wrong.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        stack.offset(&upload.location).await,
        0,
        "nothing was written"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_with_wrong_content_type_is_refused_with_415() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(100, "a.mp4").await;
    let response = stack
        .http
        .patch(&upload.location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "0")
        .body(vec![0u8; 10])
        .send()
        .await
        .expect("gateway answers");
    let (status, body) = error_code(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["code"], "unsupported_media_type");
    assert_eq!(
        stack.offset(&upload.location).await,
        0,
        "nothing was written"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_at_a_stale_offset_is_refused_with_409_and_writes_nothing() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(100, "a.mp4").await;
    let first = stack.patch(&upload.location, 0, vec![1u8; 40]).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&first, "upload-offset"), 40);

    for stale in [0, 20, 60] {
        let response = stack.patch(&upload.location, stale, vec![2u8; 10]).await;
        let (status, body) = error_code(response).await;
        assert_eq!(status, StatusCode::CONFLICT, "offset {stale}");
        assert_eq!(body["code"], "offset_mismatch");
    }
    assert_eq!(stack.offset(&upload.location).await, 40, "offset unchanged");
    let video = stack.video(upload.video_id).await;
    assert_eq!(video.flows[0].uploaded_bytes, 40);
    assert_eq!(video.flows[0].status, FlowStatus::Uploading);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_upload_is_answered_with_404() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let unknown = stack.url(&format!("/v1/uploads/{}", uuid::Uuid::new_v4()));

    let head = stack
        .http
        .head(&unknown)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    let (status, body) = error_code(stack.patch(&unknown, 0, vec![0u8; 10]).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "upload_not_found");

    let not_an_id = stack
        .patch(&stack.url("/v1/uploads/not-an-id"), 0, vec![0u8; 1])
        .await;
    assert_eq!(not_an_id.status(), StatusCode::NOT_FOUND);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_longer_than_the_maximum_is_refused_with_413() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        max_upload_bytes: 1024 * 1024,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let response = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", (1024 * 1024 + 1).to_string())
        .header("Upload-Metadata", metadata(&[("filename", "big.mp4")]))
        .send()
        .await
        .expect("gateway answers");
    let (status, body) = error_code(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "upload_too_large");

    assert_eq!(stack.video_count().await, 0, "no video was created");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_json_and_invalid_fields_are_refused_with_400_naming_the_field() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let post = |body: &'static str| {
        stack
            .http
            .post(stack.url("/v1/videos"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };

    let (status, body) = error_code(post("{\"title\": ").await.expect("answer")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_json");

    for invalid in [
        "{\"description\": \"no title\"}",
        "{\"title\": \"   \"}",
        "{\"title\": 42}",
    ] {
        let (status, body) = error_code(post(invalid).await.expect("answer")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
        assert_eq!(body["field"], "title", "{invalid}: {body}");
    }

    let long_title = json!({ "title": "x".repeat(201) }).to_string();
    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .header("Content-Type", "application/json")
        .body(long_title)
        .send()
        .await
        .expect("answer");
    let (status, body) = error_code(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "validation_failed");
    assert_eq!(body["field"], "title");

    let created = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": "Holiday", "description": "at sea" }))
        .send()
        .await
        .expect("answer");
    assert_eq!(created.status(), StatusCode::CREATED);
    let video: Value = created.json().await.expect("JSON");
    assert_eq!(video["status"], "CREATED");
    assert_eq!(video["title"], "Holiday");

    assert_eq!(stack.video_count().await, 1, "only the valid video exists");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_that_are_not_a_video_fail_with_a_reason_and_the_stack_keeps_serving() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bad = stack.upload_in_pieces(&garbage, "notes.mp4", 3).await;

    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "160x120");
    let good_bytes = std::fs::read(&clip).expect("clip");
    let good = stack.upload_in_pieces(&good_bytes, "clip.mp4", 3).await;

    let failed = stack.wait_until_settled(bad.video_id).await;
    assert_eq!(failed.status, VideoStatus::Failed, "{failed:#?}");
    let flow = &failed.flows[0];
    assert_eq!(flow.status, FlowStatus::Failed);
    let reason = flow.error.as_deref().expect("a failure reason");
    assert!(
        reason.contains("not a video") || reason.contains("Invalid data"),
        "{reason}"
    );
    assert!(
        !reason.contains(env.dir.path().to_str().expect("utf-8")),
        "no server paths: {reason}"
    );
    assert!(failed.playback.is_none());

    let ready = stack.wait_until_settled(good.video_id).await;
    assert_eq!(ready.status, VideoStatus::Ready, "{ready:#?}");
    stack.shutdown().await;
}
