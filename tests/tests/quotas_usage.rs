//! Quotas and usage counters per project on the whole stack: each quota reached is answered
//! 413 or 429 (with `Retry-After`) and accepted again once freed; the counters equal what was
//! sent, also when an uploader replica dies mid-upload, and `/metrics` shows them per project.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{json, Value};
use vod_contracts::api::VideoView;
use vod_contracts::{layout, ProjectId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::{header_u64, metadata, trickled_patch, TUS_VERSION};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

/// `PATCH /v1/admin/projects/{id}` with `quotas`; answers the project as the gateway shows it.
async fn set_quotas(stack: &Stack, project_id: ProjectId, quotas: Value) -> Value {
    let response = stack
        .http
        .patch(stack.url(&format!("/v1/admin/projects/{project_id}")))
        .bearer_auth(&stack.admin_token)
        .json(&json!({ "quotas": quotas }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::OK, "quotas changed");
    response.json().await.expect("the project as JSON")
}

async fn usage(stack: &Stack) -> Value {
    let response = stack
        .http
        .get(stack.url("/v1/usage"))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::OK, "GET /v1/usage");
    response.json().await.expect("usage as JSON")
}

/// A tus creation of `length` bytes; the raw answer.
async fn try_create(stack: &Stack, length: u64) -> reqwest::Response {
    stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", length.to_string())
        .header(
            "Upload-Metadata",
            metadata(&[("filename", "quota.mp4"), ("title", "quota")]),
        )
        .send()
        .await
        .expect("the gateway answers")
}

/// The refusal's code and its `Retry-After`, if any.
async fn refusal(response: reqwest::Response) -> (StatusCode, String, Option<u64>) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let body: Value = response.json().await.unwrap_or_default();
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    (status, code, retry_after)
}

async fn terminate(stack: &Stack, location: &str) {
    let response = stack
        .http
        .delete(location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "terminated");
}

fn clip(env: &TestEnv, name: &str, seconds: u32) -> Bytes {
    let path = env.dir.path().join(name);
    generate_clip(&path, seconds, "320x240");
    Bytes::from(std::fs::read(&path).expect("clip"))
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |meta| meta.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Seconds encoded for a ready video, and the bytes of its presentation on holder.
fn encoded_and_stored(stack: &Stack, video: &VideoView) -> (f64, u64) {
    let flow = video
        .flows
        .iter()
        .find(|flow| flow.duration_seconds.is_some())
        .expect("a ready flow");
    let seconds = flow.duration_seconds.unwrap_or_default() * flow.renditions.len().max(1) as f64;
    let dir = stack
        .holder_root
        .join(layout::presentation_dir(video.id, flow.id));
    (seconds, bytes_under(&dir))
}

fn count(usage: &Value, field: &str) -> u64 {
    usage[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {usage}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_many_open_uploads_is_429_until_one_ends_and_accepted_bytes_still_go_in() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let project = set_quotas(&stack, ProjectId::DEFAULT, json!({"max_open_uploads": 1})).await;
    assert_eq!(project["quotas"]["max_open_uploads"], 1, "{project}");

    let first = stack.create_upload(10, "first.mp4").await;
    let (status, code, retry_after) = refusal(try_create(&stack, 10).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, "too_many_open_uploads");
    assert_eq!(retry_after, Some(60), "the configured wait");
    assert_eq!(count(&usage(&stack).await, "open_uploads"), 1);

    // The upload already accepted still takes its bytes.
    let response = stack.patch(&first.location, 0, vec![7; 4]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), 4);

    terminate(&stack, &first.location).await;
    let response = try_create(&stack, 10).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let used = usage(&stack).await;
    assert_eq!(count(&used, "bytes_received"), 4, "{used}");
    assert_eq!(count(&used, "open_uploads"), 1, "{used}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creations_at_once_on_both_uploaders_never_pass_the_open_uploads_quota_together() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    set_quotas(&stack, ProjectId::DEFAULT, json!({"max_open_uploads": 1})).await;

    let creations = (0..8).map(|_| try_create(&stack, 10));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(creations)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let created = statuses
        .iter()
        .filter(|status| **status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert!(
        statuses.iter().all(
            |status| *status == StatusCode::CREATED || *status == StatusCode::TOO_MANY_REQUESTS
        ),
        "{statuses:?}"
    );
    assert_eq!(count(&usage(&stack).await, "open_uploads"), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_per_hour_is_429_until_the_hour_ends_or_the_quota_is_raised() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    set_quotas(
        &stack,
        ProjectId::DEFAULT,
        json!({"max_uploads_per_hour": 2}),
    )
    .await;

    // The three creations must fall in one clock hour: started close to its end, wait for the
    // next one.
    let into_the_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs()
        % 3600;
    if into_the_hour > 3600 - 60 {
        tokio::time::sleep(Duration::from_secs(3600 - into_the_hour + 1)).await;
    }
    for _ in 0..2 {
        assert_eq!(try_create(&stack, 10).await.status(), StatusCode::CREATED);
    }
    let (status, code, retry_after) = refusal(try_create(&stack, 10).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code, "rate_limited");
    let retry_after = retry_after.expect("Retry-After");
    assert!(
        (1..=3600).contains(&retry_after),
        "the end of the hour: {retry_after}"
    );

    // Back to the default (10000 an hour).
    let project = set_quotas(
        &stack,
        ProjectId::DEFAULT,
        json!({"max_uploads_per_hour": null}),
    )
    .await;
    assert_eq!(
        project["quotas"]["max_uploads_per_hour"], 10_000,
        "{project}"
    );
    assert_eq!(try_create(&stack, 10).await.status(), StatusCode::CREATED);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stored_bytes_over_the_quota_is_413_until_a_video_is_deleted() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env, "stored.mp4", 2);
    let upload = stack.upload_in_pieces(&bytes, "stored.mp4", 2).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready);
    let (_, on_holder) = encoded_and_stored(&stack, &video);
    let stored = count(&usage(&stack).await, "stored_bytes");
    assert_eq!(stored, on_holder, "what fflow sent is what holder holds");
    assert!(stored > 0);

    set_quotas(
        &stack,
        ProjectId::DEFAULT,
        json!({"max_stored_bytes": stored}),
    )
    .await;
    let (status, code, _) = refusal(try_create(&stack, 10).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code, "quota_exceeded");

    let response = stack
        .http
        .delete(stack.url(&format!("/v1/videos/{}", upload.video_id)))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(&usage(&stack).await, "stored_bytes"), 0);
    assert_eq!(try_create(&stack, 10).await.status(), StatusCode::CREATED);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_after_two_uploads_is_the_bytes_and_seconds_sent_also_on_metrics() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let before = usage(&stack).await;
    assert_eq!(count(&before, "bytes_received"), 0);
    assert!(before["since"].is_string(), "{before}");
    assert_eq!(
        before["quotas"]["max_stored_bytes"],
        1_u64 << 40,
        "{before}"
    );

    let mut sent = 0;
    let mut seconds = 0.0;
    let mut stored = 0;
    for (name, length) in [("one.mp4", 2), ("two.mp4", 3)] {
        let bytes = clip(&env, name, length);
        let upload = stack.upload_in_pieces(&bytes, name, 3).await;
        let video = stack.wait_until_settled(upload.video_id).await;
        assert_eq!(video.status, VideoStatus::Ready);
        let (encoded, on_holder) = encoded_and_stored(&stack, &video);
        sent += bytes.len() as u64;
        seconds += encoded;
        stored += on_holder;
    }

    let used = usage(&stack).await;
    assert_eq!(count(&used, "bytes_received"), sent, "{used}");
    assert_eq!(count(&used, "uploads_completed"), 2, "{used}");
    assert_eq!(count(&used, "stored_bytes"), stored, "{used}");
    assert_eq!(count(&used, "open_uploads"), 0, "{used}");
    let encoded = used["encoded_seconds"].as_f64().expect("encoded_seconds");
    assert!((encoded - seconds).abs() < 1e-6, "{encoded} != {seconds}");

    for uploader in &stack.uploader_urls {
        let metrics = stack.metrics(uploader).await;
        let project = [("project", "default")];
        assert_eq!(
            metrics.sum("uploader_project_bytes_received", &project),
            sent as f64
        );
        assert_eq!(
            metrics.sum("uploader_project_uploads_completed", &project),
            2.0
        );
        assert_eq!(
            metrics.sum("uploader_project_stored_bytes", &project),
            stored as f64
        );
        let metric_seconds = metrics.sum("uploader_project_encoded_seconds", &project);
        assert!((metric_seconds - seconds).abs() < 1e-6, "{metric_seconds}");
    }
    stack.shutdown().await;
}

/// Sends `bytes` in PATCHes of `patch_bytes`, each trickled in small frames so that a request
/// is in flight most of the time; on any refusal or broken request it asks HEAD where the
/// upload stands and resends from there, as tus clients do.
async fn upload_resuming(http: reqwest::Client, location: String, bytes: Bytes) {
    const PATCH_BYTES: usize = 256 * 1024;
    const FRAME_BYTES: usize = 32 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut offset = 0u64;
    while offset < bytes.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upload did not complete"
        );
        let end = (offset as usize + PATCH_BYTES).min(bytes.len());
        let body = bytes.slice(offset as usize..end);
        let response = trickled_patch(&http, &location, offset, body, FRAME_BYTES).await;
        match response {
            Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                offset = header_u64(&response, "upload-offset");
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let head = http
                    .head(&location)
                    .header("Tus-Resumable", TUS_VERSION)
                    .send()
                    .await;
                if let Ok(head) = head {
                    if head.status() == StatusCode::OK {
                        offset = header_u64(&head, "upload-offset");
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_counts_each_byte_once_when_an_uploader_dies_mid_upload() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            // Many pieces per PATCH: both uploaders hold some when one dies.
            chunk_size_bytes: 64 * 1024,
            ..StackOptions::default()
        },
    )
    .await;
    let path = env.dir.path().join("killed.mp4");
    generate_clip(&path, 8, "960x540");
    let bytes = Bytes::from(std::fs::read(&path).expect("clip"));
    let upload = stack.create_upload(bytes.len() as u64, "killed.mp4").await;
    let client = tokio::spawn(upload_resuming(
        stack.http.clone(),
        upload.location.clone(),
        bytes.clone(),
    ));
    poll_until(
        "some bytes to be stored",
        Duration::from_secs(30),
        || async { (stack.offset(&upload.location).await > 0).then_some(()) },
    )
    .await;
    // While open, the bytes in are counted at read time.
    let open = usage(&stack).await;
    assert_eq!(count(&open, "open_uploads"), 1, "{open}");
    assert!(count(&open, "bytes_received") > 0, "{open}");
    assert!(count(&open, "bytes_received") < bytes.len() as u64);

    stack.crash_service("uploader-1");
    client.await.expect("the client completes the upload");
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready);

    let used = usage(&stack).await;
    assert_eq!(count(&used, "bytes_received"), bytes.len() as u64, "{used}");
    assert_eq!(count(&used, "uploads_completed"), 1, "{used}");
    assert_eq!(count(&used, "open_uploads"), 0, "{used}");
    let (seconds, stored) = encoded_and_stored(&stack, &video);
    assert_eq!(count(&used, "stored_bytes"), stored, "{used}");
    let encoded = used["encoded_seconds"].as_f64().expect("encoded_seconds");
    assert!((encoded - seconds).abs() < 1e-6, "{encoded} != {seconds}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projects_list_shows_each_projects_quotas_in_force() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (other, _) = stack.project_client("other").await;
    set_quotas(&stack, other, json!({"max_open_uploads": 3})).await;
    let response = stack
        .http
        .get(stack.url("/v1/admin/projects"))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.expect("json");
    let projects = listed["projects"].as_array().expect("projects");
    let quotas_of = |name: &str| {
        projects
            .iter()
            .find(|project| project["name"] == name)
            .map(|project| project["quotas"].clone())
            .unwrap_or_default()
    };
    assert_eq!(quotas_of("other")["max_open_uploads"], 3);
    assert_eq!(quotas_of("default")["max_open_uploads"], 1_000);
    assert_eq!(quotas_of("other")["max_uploads_per_hour"], 10_000);

    // A quota out of range names its field; an unknown project is 404.
    let response = stack
        .http
        .patch(stack.url(&format!("/v1/admin/projects/{other}")))
        .bearer_auth(&stack.admin_token)
        .json(&json!({"quotas": {"max_open_uploads": u64::MAX}}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["field"], "quotas.max_open_uploads", "{body}");
    let response = stack
        .http
        .patch(stack.url(&format!("/v1/admin/projects/{}", ProjectId::new())))
        .bearer_auth(&stack.admin_token)
        .json(&json!({"quotas": {"max_open_uploads": 1}}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    stack.shutdown().await;
}
