//! A full disk, through the whole stack: fflow's spool and holder keep a free-space reserve,
//! and a reserve larger than what is free stands for a full disk. A PATCH fflow has no room for
//! is answered 507 `insufficient_storage`, the bytes under the offset stay, and the upload goes
//! on from there once space is back; a presentation holder has no room for fails its flow with
//! a reason and leaves no file.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;
use vod_contracts::api::ErrorBody;
use vod_contracts::fflow::replica_id_of_address;
use vod_contracts::{FlowStatus, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::{header_u64, metadata, TUS_VERSION};
use vod_tests::{Stack, TestEnv};

/// Larger than any disk: nothing fits above it.
const FULL: u64 = u64::MAX;

fn fill_spools(stack: &Stack, min_free_bytes: u64) {
    for reserve in &stack.fflow_free_space {
        reserve.set_min_free_bytes(min_free_bytes);
    }
}

async fn clip(env: &TestEnv) -> Vec<u8> {
    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, 2, "160x120");
    std::fs::read(&path).expect("clip")
}

/// Every regular file under `dir`, hidden ones included (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

async fn assert_insufficient_storage(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(
        response.headers().contains_key("retry-after"),
        "a 507 says when to come back"
    );
    let body: ErrorBody = response.json().await.expect("an error body");
    assert_eq!(body.code, "insufficient_storage");
    assert!(body.message.contains("offset"), "{}", body.message);
}

async fn fflow_sum(stack: &Stack, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for url in &stack.fflow_urls {
        sum += stack.metrics(url).await.sum(name, labels);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_answers_507_keeps_the_offset_and_the_upload_resumes_once_space_is_back() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env).await;
    let half = bytes.len() / 2;
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
    let response = stack
        .patch(&upload.location, 0, bytes[..half].to_vec())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), half as u64);

    fill_spools(&stack, FULL);
    let response = stack
        .patch(&upload.location, half as u64, bytes[half..].to_vec())
        .await;
    assert_insufficient_storage(response).await;

    // Nothing moved: the offset, the flow, and the bytes on the replica holding the upload.
    assert_eq!(stack.offset(&upload.location).await, half as u64);
    let video = stack.video(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Uploading);
    assert_eq!(video.flows[0].status, FlowStatus::Uploading);
    assert_eq!(video.flows[0].uploaded_bytes, half as u64);
    let replica = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("the upload has its replica");
    let source = stack
        .fflow_spool
        .join(replica_id_of_address(&replica).expect("a replica id"))
        .join(upload.session_id.to_string())
        .join("source");
    assert_eq!(
        std::fs::read(&source).expect("the spooled source"),
        bytes[..half]
    );

    let gateway = stack.metrics(&stack.gateway_url).await;
    let refused = [("reason", "insufficient_storage")];
    assert!(gateway.sum("gateway_chunks_rejected_total", &refused) >= 1.0);
    assert!(fflow_sum(&stack, "fflow_chunks_refused_total", &refused).await >= 1.0);

    // Space is back. The refused PATCH gave its write lock back, so the rest goes in at once
    // (a lock still held would answer 409 `upload_locked` after GATEWAY_LOCK_WAIT_MS).
    fill_spools(&stack, 1);
    let response = stack
        .patch(&upload.location, half as u64, bytes[half..].to_vec())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&response, "upload-offset"), bytes.len() as u64);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_no_replica_has_room_for_is_refused_before_any_replica_takes_it() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env).await;
    fill_spools(&stack, FULL);
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
    let response = stack.patch(&upload.location, 0, bytes.clone()).await;
    assert_insufficient_storage(response).await;

    assert_eq!(stack.offset(&upload.location).await, 0);
    assert_eq!(Stack::recorded_replica(&env, upload.session_id).await, None);
    for replica in ["r1", "r2"] {
        let spool = stack
            .fflow_spool
            .join(replica)
            .join(upload.session_id.to_string());
        assert!(!spool.exists(), "{} was created", spool.display());
    }

    fill_spools(&stack, 1);
    let response = stack.patch(&upload.location, 0, bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    assert_documented(&stack).await;
    stack.shutdown().await;
}

/// The OpenAPI document tells clients of the 507 of a PATCH, its code and its `Retry-After`.
async fn assert_documented(stack: &Stack) {
    let (_, document) = stack.fetch(&stack.url("/openapi.json")).await;
    let document: Value = serde_json::from_slice(&document).expect("JSON");
    let answer = &document["paths"]["/v1/uploads/{id}"]["patch"]["responses"]["507"];
    assert!(
        answer["description"]
            .as_str()
            .is_some_and(|description| description.contains("insufficient_storage")),
        "{answer}"
    );
    assert_eq!(
        answer["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(answer["headers"]["Retry-After"].is_object(), "{answer}");
    let codes = &document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
    assert!(codes
        .as_array()
        .is_some_and(|codes| codes.contains(&Value::from("insufficient_storage"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_holder_fails_the_flow_with_a_reason_and_keeps_no_file_of_it() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env).await;
    stack.holder_free_space.set_min_free_bytes(FULL);
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;
    let video = stack.wait_until_settled(upload.video_id).await;

    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    let flow = &video.flows[0];
    assert_eq!(flow.status, FlowStatus::Failed);
    assert_eq!(flow.uploaded_bytes, bytes.len() as u64);
    let reason = flow.error.as_deref().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("holder") && reason.contains("insufficient storage"),
        "{reason}"
    );
    assert!(video.playback.is_none());
    let video_dir = stack
        .holder_root
        .join("videos")
        .join(upload.video_id.to_string());
    assert_eq!(files_under(&video_dir), Vec::<PathBuf>::new());
    let holder = stack.metrics(&stack.holder_url).await;
    assert!(
        holder.sum(
            "holder_ftp_uploads_refused_total",
            &[("reason", "insufficient_storage")]
        ) >= 1.0
    );

    // Once holder has room, the video takes a new upload and becomes ready.
    stack.holder_free_space.set_min_free_bytes(1);
    let response = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", bytes.len().to_string())
        .header(
            "Upload-Metadata",
            metadata(&[
                ("filename", "clip.mp4"),
                ("video_id", &upload.video_id.to_string()),
            ]),
        )
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("Location")
        .to_owned();
    let response = stack.patch(&location, 0, bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    assert!(video.playback.is_some());
    stack.shutdown().await;
}
