//! Conformance with tus clients written elsewhere: tus-js-client (under Node) and tuspy (under
//! Python), installed from their registries by `./dev test` into `tests/tus-clients/`. Each
//! upload ends with the video READY and the stitched source byte-identical to the file sent.

use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vod_contracts::VideoId;
use vod_tests::media::generate_clip;
use vod_tests::tus::TUS_VERSION;
use vod_tests::{Stack, TestEnv};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tus-clients")
}

/// Runs tus-js-client through `upload.mjs` with `options`, sending `api_key` (from the
/// environment, as a key is given to a program, never on its command line).
async fn tus_js_client(api_key: &str, options: Value) -> Output {
    let dir = clients_dir();
    assert!(
        dir.join("node_modules/tus-js-client").exists(),
        "tus-js-client is not installed: run ./dev test, which installs it into {}",
        dir.display()
    );
    tokio::process::Command::new("node")
        .arg(dir.join("upload.mjs"))
        .arg(options.to_string())
        .env("VOD_API_KEY", api_key)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs")
}

fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn success(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "the client failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    events(output)
        .into_iter()
        .find(|event| event["event"] == "success")
        .expect("a success event")
}

fn clip(env: &TestEnv, seconds: u32) -> (PathBuf, Vec<u8>) {
    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, seconds, "320x240");
    let bytes = std::fs::read(&path).expect("clip");
    (path, bytes)
}

async fn video_of(stack: &Stack, upload_url: &str) -> VideoId {
    let head = stack
        .http
        .head(upload_url)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(head.status(), StatusCode::OK, "HEAD {upload_url}");
    head.headers()
        .get("video-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Video-Id on the upload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_js_client_uploads_a_whole_file() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (path, bytes) = clip(&env, 3);
    let output = tus_js_client(
        &stack.api_key,
        json!({
            "endpoint": stack.url("/v1/uploads"),
            "file": path,
            "metadata": {"filename": "clip.mp4", "title": "From tus-js-client"},
        }),
    )
    .await;
    let done = success(&output);
    let url = done["url"].as_str().expect("upload url");
    let video_id = video_of(&stack, url).await;
    assert_eq!(
        done["videoId"].as_str(),
        Some(video_id.to_string().as_str())
    );
    stack.assert_ready_with_source(video_id, &bytes).await;
    assert_eq!(stack.video(video_id).await.title, "From tus-js-client");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_js_client_killed_midway_is_resumed_by_a_new_process_from_the_server_offset() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (path, bytes) = clip(&env, 4);
    let chunk_size = 64 * 1024;
    assert!(
        bytes.len() > 4 * chunk_size,
        "the upload takes several PATCHes"
    );
    let storage = env.dir.path().join("tus-urls.json");
    let options = |mode: &str| {
        json!({
            "endpoint": stack.url("/v1/uploads"),
            "file": path,
            "mode": mode,
            "chunkSize": chunk_size,
            "storage": storage,
            "killAfterBytes": if mode == "new" { bytes.len() / 2 } else { 0 },
        })
    };

    let killed = tus_js_client(&stack.api_key, options("new")).await;
    assert!(!killed.status.success(), "the first process was killed");
    let killing = events(&killed)
        .into_iter()
        .find(|event| event["event"] == "killing")
        .expect("the first process reports its upload before it dies");
    let url = killing["url"].as_str().expect("upload url").to_owned();
    let stored = stack.offset(&url).await;
    assert!(
        stored > 0 && stored < bytes.len() as u64,
        "midway: {stored} of {}",
        bytes.len()
    );

    let resumed = tus_js_client(&stack.api_key, options("resume")).await;
    let done = success(&resumed);
    assert_eq!(done["url"].as_str(), Some(url.as_str()), "the same upload");
    assert_eq!(
        done["firstPatchOffset"].as_u64(),
        Some(stored),
        "the new process continued from the server's offset"
    );
    let video_id = video_of(&stack, &url).await;
    stack.assert_ready_with_source(video_id, &bytes).await;
    assert_eq!(stack.video_count().await, 1, "no second upload was started");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_js_client_parallel_upload_is_joined_through_concatenation() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (path, bytes) = clip(&env, 3);
    let output = tus_js_client(
        &stack.api_key,
        json!({
            "endpoint": stack.url("/v1/uploads"),
            "file": path,
            "parallel": 3,
            "metadata": {"filename": "parallel.mp4"},
        }),
    )
    .await;
    let done = success(&output);
    let url = done["url"].as_str().expect("final upload url");
    let video_id = video_of(&stack, url).await;
    stack.assert_ready_with_source(video_id, &bytes).await;
    assert_eq!(stack.video_count().await, 1, "the parts are no videos");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_js_client_uploads_a_stream_of_deferred_length() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (path, bytes) = clip(&env, 3);
    let output = tus_js_client(
        &stack.api_key,
        json!({
            "endpoint": stack.url("/v1/uploads"),
            "file": path,
            "deferred": true,
            "chunkSize": 200 * 1024,
            "overridePatch": true,
            "metadata": {"filename": "stream.mp4"},
        }),
    )
    .await;
    let done = success(&output);
    let url = done["url"].as_str().expect("upload url");
    let video_id = video_of(&stack, url).await;
    stack.assert_ready_with_source(video_id, &bytes).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tuspy_uploads_with_a_checksum_on_every_patch() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (path, bytes) = clip(&env, 3);
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "tuspy is not installed: run ./dev test, which installs it into {}",
        clients_dir().display()
    );
    let output = tokio::process::Command::new(&python)
        .arg(clients_dir().join("checksum_upload.py"))
        .env("VOD_API_KEY", &stack.api_key)
        .arg(stack.url("/v1/uploads"))
        .arg(&path)
        .arg((150 * 1024).to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    let done = success(&output);
    assert_eq!(done["offset"].as_u64(), Some(bytes.len() as u64));
    let url = done["url"].as_str().expect("upload url");
    let video_id = video_of(&stack, url).await;
    stack.assert_ready_with_source(video_id, &bytes).await;
    stack.shutdown().await;
}
