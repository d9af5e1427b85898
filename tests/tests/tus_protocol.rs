//! The tus 1.0.0 extensions through the whole stack: checksums, deferred lengths,
//! concatenation, expiration, concurrent writers, and the status code of every bad request.

use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use md5::Md5;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use sha1::{Digest, Sha1};
use vod_contracts::VideoStatus;
use vod_tests::media::generate_clip;
use vod_tests::tus::{header_u64, metadata, Upload, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha1_header(bytes: &[u8]) -> String {
    format!("sha1 {}", b64(&Sha1::digest(bytes)))
}

fn sha256_header(bytes: &[u8]) -> String {
    format!("sha256 {}", b64(&sha2::Sha256::digest(bytes)))
}

fn md5_header(bytes: &[u8]) -> String {
    format!("md5 {}", b64(&Md5::digest(bytes)))
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

async fn code_of(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn patch_with(
    stack: &Stack,
    location: &str,
    offset: u64,
    body: Vec<u8>,
    extra: &[(&str, String)],
) -> Response {
    let mut request = stack
        .http
        .patch(location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", offset.to_string());
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    request.body(body).send().await.expect("gateway answers")
}

async fn create_with(stack: &Stack, headers: &[(&str, String)]) -> Response {
    let mut request = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("gateway answers")
}

fn location_of(response: &Response) -> String {
    header(response, "location").expect("Location").to_owned()
}

fn clip(env: &TestEnv, seconds: u32) -> Vec<u8> {
    let path = env.dir.path().join(format!("clip-{seconds}.mp4"));
    generate_clip(&path, seconds, "320x240");
    std::fs::read(&path).expect("clip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn options_advertises_every_extension_and_checksum_algorithm() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let response = stack
        .http
        .request(reqwest::Method::OPTIONS, stack.url("/v1/uploads"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
    let extensions: Vec<&str> = header(&response, "tus-extension")
        .unwrap_or_default()
        .split(',')
        .collect();
    for extension in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(extensions.contains(&extension), "{extension}");
    }
    let algorithms = header(&response, "tus-checksum-algorithm").unwrap_or_default();
    for algorithm in ["sha1", "sha256", "md5"] {
        assert!(algorithms.split(',').any(|a| a == algorithm), "{algorithm}");
    }
    assert!(header(&response, "tus-max-size").is_some());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_bad_request_gets_its_status_and_leaves_the_offset_alone() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(1_000, "a.mp4").await;
    let first = stack.patch(&upload.location, 0, vec![1u8; 100]).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);

    // 412: not tus 1.0.0.
    let response = stack
        .http
        .patch(&upload.location)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", "100")
        .body(vec![2u8; 10])
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    // 415: not tus bytes.
    let response = stack
        .http
        .patch(&upload.location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "100")
        .body(vec![2u8; 10])
        .send()
        .await
        .expect("answer");
    assert_eq!(
        code_of(response).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".to_owned()
        )
    );
    // 400: no offset, an unknown checksum algorithm, a malformed checksum.
    let response = stack
        .http
        .patch(&upload.location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .body(vec![2u8; 10])
        .send()
        .await
        .expect("answer");
    assert_eq!(
        code_of(response).await,
        (StatusCode::BAD_REQUEST, "invalid_header".to_owned())
    );
    let unknown = [("Upload-Checksum", "crc64 AAAAAAAAAAA=".to_owned())];
    let response = patch_with(&stack, &upload.location, 100, vec![2u8; 10], &unknown).await;
    assert_eq!(
        code_of(response).await,
        (
            StatusCode::BAD_REQUEST,
            "checksum_algorithm_unsupported".to_owned()
        )
    );
    let malformed = [("Upload-Checksum", "sha1".to_owned())];
    let response = patch_with(&stack, &upload.location, 100, vec![2u8; 10], &malformed).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // 404: no such upload.
    let unknown_url = stack.url(&format!("/v1/uploads/{}", uuid::Uuid::new_v4()));
    let response = stack.patch(&unknown_url, 0, vec![2u8; 10]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::NOT_FOUND, "upload_not_found".to_owned())
    );
    // 409: another offset.
    let response = stack.patch(&upload.location, 50, vec![2u8; 10]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::CONFLICT, "offset_mismatch".to_owned())
    );
    // 413: more bytes than remain.
    let response = stack.patch(&upload.location, 100, vec![2u8; 901]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "length_exceeded".to_owned())
    );
    // 460: the body does not match its checksum.
    let body = vec![3u8; 300];
    let wrong = [("Upload-Checksum", sha1_header(&[4u8; 300]))];
    let response = patch_with(&stack, &upload.location, 100, body.clone(), &wrong).await;
    assert_eq!(response.status().as_u16(), 460);
    assert_eq!(code_of(response).await.1, "checksum_mismatch");

    assert_eq!(
        stack.offset(&upload.location).await,
        100,
        "offset unchanged"
    );
    let right = [("Upload-Checksum", sha1_header(&body))];
    let response = patch_with(&stack, &upload.location, 100, body, &right).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), 400);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checksummed_patches_larger_than_a_chunk_commit_whole_or_not_at_all() {
    let env = TestEnv::new().await;
    let chunk_size_bytes = 32 * 1024;
    let options = StackOptions {
        chunk_size_bytes,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let bytes = clip(&env, 3);
    assert!(
        bytes.len() > 6 * chunk_size_bytes,
        "each PATCH spans several chunks"
    );
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
    let half = bytes.len() / 2;

    // A wrong digest over several chunks: nothing counts, the staged bytes are dropped.
    let corrupted: Vec<u8> = bytes[..half].iter().map(|b| b ^ 0xff).collect();
    let claimed = [("Upload-Checksum", sha256_header(&bytes[..half]))];
    let response = patch_with(&stack, &upload.location, 0, corrupted, &claimed).await;
    assert_eq!(response.status().as_u16(), 460);
    assert_eq!(stack.offset(&upload.location).await, 0);

    for (range, checksum) in [
        (0..half, sha256_header(&bytes[..half])),
        (half..bytes.len(), md5_header(&bytes[half..])),
    ] {
        let start = range.start as u64;
        let piece = bytes[range.clone()].to_vec();
        let response = patch_with(
            &stack,
            &upload.location,
            start,
            piece,
            &[("Upload-Checksum", checksum)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{range:?}");
        assert_eq!(header_u64(&response, "upload-offset"), range.end as u64);
    }
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deferred_length_is_declared_once_by_a_later_patch() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env, 2);
    let created = create_with(
        &stack,
        &[
            ("Upload-Defer-Length", "1".to_owned()),
            ("Upload-Metadata", metadata(&[("filename", "deferred.mp4")])),
        ],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = location_of(&created);
    let video_id = header(&created, "video-id")
        .and_then(|id| id.parse().ok())
        .expect("Video-Id");
    let half = bytes.len() / 2;
    let response = stack.patch(&location, 0, bytes[..half].to_vec()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let head = stack
        .http
        .head(&location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("answer");
    assert_eq!(header(&head, "upload-defer-length"), Some("1"));
    assert_eq!(header(&head, "upload-length"), None);

    let length = [("Upload-Length", bytes.len().to_string())];
    let response = patch_with(
        &stack,
        &location,
        half as u64,
        bytes[half..].to_vec(),
        &length,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), bytes.len() as u64);
    let other_length = [("Upload-Length", (bytes.len() + 1).to_string())];
    let response = patch_with(
        &stack,
        &location,
        bytes.len() as u64,
        Vec::new(),
        &other_length,
    )
    .await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::BAD_REQUEST, "invalid_length".to_owned())
    );
    stack.assert_ready_with_source(video_id, &bytes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_uploads_are_joined_by_a_final_upload_that_takes_no_patch() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env, 3);
    let cuts = [0, bytes.len() / 3, bytes.len() / 2, bytes.len()];
    let mut parts = Vec::new();
    for window in cuts.windows(2) {
        let piece = &bytes[window[0]..window[1]];
        let created = create_with(
            &stack,
            &[
                ("Upload-Concat", "partial".to_owned()),
                ("Upload-Length", piece.len().to_string()),
            ],
        )
        .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(header(&created, "video-id"), None, "a part is no video");
        let location = location_of(&created);
        let response = stack.patch(&location, 0, piece.to_vec()).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        parts.push(location);
    }
    let head = stack
        .http
        .head(&parts[0])
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("answer");
    assert_eq!(header(&head, "upload-concat"), Some("partial"));

    // Parts are named by absolute or relative URLs.
    let relative = parts[1].trim_start_matches(&stack.gateway_url).to_owned();
    let concat = format!("final;{} {relative} {}", parts[0], parts[2]);
    let created = create_with(
        &stack,
        &[
            ("Upload-Concat", concat.clone()),
            ("Upload-Metadata", metadata(&[("title", "Joined")])),
        ],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let final_location = location_of(&created);
    let video_id = header(&created, "video-id")
        .and_then(|id| id.parse().ok())
        .expect("Video-Id");

    let head = stack
        .http
        .head(&final_location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("answer");
    assert_eq!(header_u64(&head, "upload-length"), bytes.len() as u64);
    let announced = header(&head, "upload-concat").unwrap_or_default();
    assert!(announced.starts_with("final;"), "{announced}");
    assert_eq!(announced.split(' ').count(), 3, "{announced}");

    let response = stack.patch(&final_location, 0, vec![0u8; 10]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::FORBIDDEN, "upload_is_final".to_owned())
    );
    // A part belongs to one final upload.
    let again = create_with(&stack, &[("Upload-Concat", concat)]).await;
    assert_eq!(
        code_of(again).await,
        (StatusCode::BAD_REQUEST, "invalid_concat".to_owned())
    );

    stack.assert_ready_with_source(video_id, &bytes).await;
    let video = stack.video(video_id).await;
    assert_eq!(video.title, "Joined");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_upload_of_unfinished_or_unknown_parts_is_refused() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let created = create_with(
        &stack,
        &[
            ("Upload-Concat", "partial".to_owned()),
            ("Upload-Length", "100".to_owned()),
        ],
    )
    .await;
    let unfinished = location_of(&created);
    let whole = stack.create_upload(10, "whole.mp4").await;
    for parts in [
        unfinished.clone(),
        whole.location.clone(),
        "http://elsewhere.example/files/abc".to_owned(),
    ] {
        let response = create_with(&stack, &[("Upload-Concat", format!("final;{parts}"))]).await;
        assert_eq!(
            code_of(response).await,
            (StatusCode::BAD_REQUEST, "invalid_concat".to_owned()),
            "{parts}"
        );
    }
    let unknown = stack.url(&format!("/v1/uploads/{}", uuid::Uuid::new_v4()));
    let response = create_with(&stack, &[("Upload-Concat", format!("final;{unknown}"))]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::NOT_FOUND, "upload_not_found".to_owned())
    );
    assert_eq!(
        stack.video_count().await,
        1,
        "only the whole upload made a video"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_never_interleave_and_the_loser_gets_409() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        lock_wait_ms: 300,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let bytes = clip(&env, 2);
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;

    // The first PATCH sends less than a chunk (so nothing is counted yet), then waits until
    // told to go on.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let half = 100_000;
    let head_part = bytes::Bytes::copy_from_slice(&bytes[..half]);
    let tail_part = bytes::Bytes::copy_from_slice(&bytes[half..]);
    let slow_body = futures_util::stream::iter([Ok::<_, std::io::Error>(head_part)]).chain(
        futures_util::stream::once(async move {
            let _ = released.await;
            Ok(tail_part)
        }),
    );
    let first = {
        let request = stack
            .http
            .patch(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", "0")
            .body(reqwest::Body::wrap_stream(slow_body));
        tokio::spawn(request.send())
    };
    // Once the first holds the upload's write lock, a second writer at the same offset waits,
    // then is turned away.
    let db = env.db().await;
    poll_until(
        "the first PATCH to hold the lock",
        Duration::from_secs(30),
        || async {
            let row = db
                .query_one(
                    "SELECT writer IS NOT NULL FROM upload_session WHERE id = $1",
                    &[&upload.session_id.0],
                )
                .await
                .expect("session row");
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
    let second = stack.patch(&upload.location, 0, vec![0xAA; 1_000]).await;
    assert_eq!(
        code_of(second).await,
        (StatusCode::CONFLICT, "upload_locked".to_owned())
    );
    release.send(()).expect("first PATCH still sending");
    let first = first.await.expect("task").expect("answer");
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&first, "upload-offset"), bytes.len() as u64);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

/// A body that sends nothing for a second is ended (by default, after a minute).
fn quick_body_idle_timeout(config: &mut gateway::Config) {
    config.body_idle_timeout_ms = 1_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_gone_silent_keeps_its_bytes_and_gives_its_lock_back_after_the_idle_timeout() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        lock_wait_ms: 300,
        configure_gateway: quick_body_idle_timeout,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let bytes = clip(&env, 2);
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;

    // The first PATCH sends part of the file, then nothing more, its connection still open: a
    // phone that lost its network. Without the idle timeout, it would hold the write lock
    // until the uploader's lease ran out.
    // Less than a chunk: nothing is stored before the body ends.
    let sent = 100_000;
    assert!(sent < StackOptions::default().chunk_size_bytes);
    let silent_body = futures_util::stream::iter([Ok::<_, std::io::Error>(
        bytes::Bytes::copy_from_slice(&bytes[..sent]),
    )])
    .chain(futures_util::stream::pending());
    let silent = tokio::spawn(
        stack
            .http
            .patch(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", "0")
            .body(reqwest::Body::wrap_stream(silent_body))
            .send(),
    );
    let db = env.db().await;
    let (writer, uploaded) = poll_until(
        "the silent PATCH to be ended",
        Duration::from_secs(30),
        || async {
            let row = db
                .query_one(
                    "SELECT s.writer IS NOT NULL, f.uploaded_bytes FROM upload_session s
                     JOIN flow f ON f.id = s.flow_id WHERE s.id = $1",
                    &[&upload.session_id.0],
                )
                .await
                .expect("session row");
            let uploaded: i64 = row.get(1);
            (uploaded > 0).then(|| (row.get::<_, bool>(0), uploaded))
        },
    )
    .await;
    assert_eq!(uploaded, sent as i64, "what the silent PATCH sent is kept");
    assert!(!writer, "the silent PATCH gave the write lock back");

    // The client, on a new connection, resumes from HEAD's offset at once.
    assert_eq!(stack.offset(&upload.location).await, sent as u64);
    let rest = stack
        .patch(&upload.location, sent as u64, bytes[sent..].to_vec())
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&rest, "upload-offset"), bytes.len() as u64);
    silent.abort();
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_upload_answers_410_and_its_process_is_freed() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        session_ttl_secs: 2,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let upload: Upload = stack.create_upload(1_000, "a.mp4").await;
    let response = stack.patch(&upload.location, 0, vec![1u8; 100]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let expires = header(&response, "upload-expires").expect("Upload-Expires");
    assert!(expires.ends_with(" GMT"), "{expires}");
    let replica = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("a replica holds the bytes");
    let replica_id = replica
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .expect("id");
    let spool = stack
        .fflow_spool
        .join(replica_id)
        .join(upload.session_id.to_string());
    assert!(spool.exists(), "{spool:?}");

    poll_until("the upload to expire", Duration::from_secs(30), || async {
        let head = stack
            .http
            .head(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .expect("answer");
        (head.status() == StatusCode::GONE).then_some(())
    })
    .await;
    let response = stack.patch(&upload.location, 100, vec![1u8; 10]).await;
    assert_eq!(
        code_of(response).await,
        (StatusCode::GONE, "upload_expired".to_owned())
    );
    // The scheduler frees whatever a request did not.
    for scheduler in &stack.schedulers {
        scheduler
            .expire_stale_sessions()
            .await
            .expect("expiry runs");
    }
    poll_until(
        "the spool to be removed",
        Duration::from_secs(30),
        || async { (!spool.exists()).then_some(()) },
    )
    .await;
    let video = stack.video(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Failed);
    assert!(video.flows[0]
        .error
        .as_deref()
        .is_some_and(|error| error.contains("expired")));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn method_override_turns_a_post_into_a_patch() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(100, "a.mp4").await;
    let response = stack
        .http
        .post(&upload.location)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", "0")
        .body(vec![5u8; 40])
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), 40);
    assert_eq!(stack.offset(&upload.location).await, 40);
    stack.shutdown().await;
}
