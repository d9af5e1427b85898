//! Direct uploads on the whole stack: a URL made with a key takes one upload without a key
//! (tus-js-client in a new process holding none), the video lands in the key's project, and
//! the URL is refused afterwards, after its timeout and after a cancel; a browser may use it
//! only from its `cors_origin`; another project sees none of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use vod_contracts::api::VideoView;
use vod_contracts::{VideoId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::TUS_VERSION;
use vod_tests::{poll_until, sha256_hex, Stack, TestEnv};

const APP_ORIGIN: &str = "https://app.example";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tus-clients")
}

/// Runs tus-js-client through `upload.mjs` with `options` and no key at all.
async fn tus_js_client_without_a_key(options: Value) -> Value {
    let dir = clients_dir();
    assert!(
        dir.join("node_modules/tus-js-client").exists(),
        "tus-js-client is not installed: run ./dev test, which installs it into {}",
        dir.display()
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join("upload.mjs"))
        .arg(options.to_string())
        .env_remove("VOD_API_KEY")
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "the client failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["event"] == "success")
        .expect("a success event")
}

async fn code_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap_or_default();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// `POST /v1/direct-uploads` with `request`; panics unless 201.
async fn create_direct_upload(stack: &Stack, client: &Client, request: Value) -> Value {
    let response = client
        .post(stack.url("/v1/direct-uploads"))
        .json(&request)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("JSON")
}

async fn show(stack: &Stack, client: &Client, id: &str) -> (StatusCode, Value) {
    let response = client
        .get(stack.url(&format!("/v1/direct-uploads/{id}")))
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

/// A tus creation at `url`, with no key.
async fn create_at(url: &str, origin: Option<&str>) -> reqwest::Response {
    let mut request = Client::new()
        .post(url)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "10");
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.expect("gateway answers")
}

async fn video_in(stack: &Stack, client: &Client, video_id: VideoId) -> (StatusCode, Value) {
    let response = client
        .get(stack.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tus_js_client_without_a_key_uploads_once_through_a_direct_upload_url() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (_, owner) = stack.project_client("direct-owner").await;
    let created = create_direct_upload(
        &stack,
        &owner,
        json!({
            "new_video": {"title": "From a browser", "description": "sent without a key", "playback_policy": "public"},
            "cors_origin": APP_ORIGIN,
            "timeout_seconds": 600,
        }),
    )
    .await;
    assert_eq!(created["status"], "waiting", "{created}");
    assert_eq!(created["cors_origin"], APP_ORIGIN);
    assert_eq!(created["new_video"]["title"], "From a browser");
    assert_eq!(created["new_video"]["playback_policy"], "public");
    let id = created["id"].as_str().expect("an id").to_owned();
    let url = created["url"].as_str().expect("a url").to_owned();
    assert!(url.starts_with(&stack.url("/v1/direct/")), "{url}");

    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, 3, "320x240");
    let bytes = std::fs::read(&path).expect("clip");
    let chunk_size = 64 * 1024;
    assert!(
        bytes.len() > 2 * chunk_size,
        "the upload takes several PATCHes"
    );
    let done = tus_js_client_without_a_key(json!({
        "endpoint": url,
        "file": path,
        "chunkSize": chunk_size,
        "metadata": {"filename": "clip.mp4", "title": "the uploader's own title"},
    }))
    .await;
    let upload_url = done["url"].as_str().expect("the upload's url");
    assert!(upload_url.starts_with(&format!("{url}/")), "{upload_url}");
    let video_id: VideoId = done["videoId"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("Video-Id of the creation");

    // The video is the project's, with the direct upload's title and description.
    let video: VideoView = poll_until("the video to be READY", Duration::from_secs(120), || {
        let owner = owner.clone();
        let stack = &stack;
        async move {
            let (status, video) = video_in(stack, &owner, video_id).await;
            assert_eq!(status, StatusCode::OK, "{video}");
            let video: VideoView = serde_json::from_value(video).expect("a video");
            assert_ne!(video.status, VideoStatus::Failed, "{video:#?}");
            (video.status == VideoStatus::Ready).then_some(video)
        }
    })
    .await;
    assert_eq!(video.title, "From a browser");
    assert_eq!(video.description, "sent without a key");
    assert_eq!(
        video.flows[0].source_sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str()),
        "the stitched source is the file sent"
    );
    let (status, shown) = show(&stack, &owner, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["status"], "asset_created", "{shown}");
    assert_eq!(shown["video_id"], video_id.to_string());
    assert!(shown.get("url").is_none(), "the URL is shown once: {shown}");

    // Single use; and one that made its upload cannot be cancelled.
    let again = create_at(&url, None).await;
    assert_eq!(again.status(), StatusCode::GONE);
    assert_eq!(code_of(again).await, "upload_url_expired");
    let cancel = owner
        .delete(stack.url(&format!("/v1/direct-uploads/{id}")))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(cancel.status(), StatusCode::CONFLICT);
    assert_eq!(code_of(cancel).await, "direct_upload_finished");

    // The listing shows it to its project, and another project sees nothing of it.
    let listed: Value = owner
        .get(stack.url("/v1/direct-uploads?limit=5"))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["direct_uploads"][0]["id"], id.as_str(), "{listed}");
    let other = &stack.http;
    let (status, _) = show(&stack, other, &id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = video_in(&stack, other, video_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let cancel = other
        .delete(stack.url(&format!("/v1/direct-uploads/{id}")))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);
    let others: Value = other
        .get(stack.url("/v1/direct-uploads"))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(others["direct_uploads"], json!([]), "{others}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_upload_url_is_refused_after_its_timeout_and_after_a_cancel() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let key = &stack.http;

    let timed_out = create_direct_upload(&stack, key, json!({"timeout_seconds": 60.0})).await;
    let timed_out_id = timed_out["id"].as_str().expect("an id");
    let timed_out_uuid: uuid::Uuid = timed_out_id.parse().expect("a uuid");
    let db = env.db().await;
    let timeout: f64 = db
        .query_one(
            "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM direct_upload \
             WHERE id = $1",
            &[&timed_out_uuid],
        )
        .await
        .expect("the direct upload is stored")
        .get(0);
    assert_eq!(timeout.round(), 60.0);
    let moved = db
        .execute(
            "UPDATE direct_upload SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&timed_out_uuid],
        )
        .await
        .expect("expiry moved");
    assert_eq!(moved, 1);
    let (_, shown) = show(&stack, key, timed_out_id).await;
    assert_eq!(shown["status"], "timed_out", "{shown}");
    let refused = create_at(timed_out["url"].as_str().expect("url"), None).await;
    assert_eq!(refused.status(), StatusCode::GONE);
    assert_eq!(code_of(refused).await, "upload_url_expired");

    let cancelled = create_direct_upload(&stack, key, json!({})).await;
    let cancelled_id = cancelled["id"].as_str().expect("an id");
    let (_, shown) = show(&stack, key, cancelled_id).await;
    assert_eq!(shown["status"], "waiting", "{shown}");
    for _ in 0..2 {
        let cancel = key
            .delete(stack.url(&format!("/v1/direct-uploads/{cancelled_id}")))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(cancel.status(), StatusCode::NO_CONTENT);
    }
    let (_, shown) = show(&stack, key, cancelled_id).await;
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert!(shown["cancelled_at"].is_string(), "{shown}");
    let refused = create_at(cancelled["url"].as_str().expect("url"), None).await;
    assert_eq!(refused.status(), StatusCode::GONE);
    assert_eq!(code_of(refused).await, "upload_url_expired");

    // Nothing was made through either URL.
    assert_eq!(stack.video_count().await, 0);

    // An unknown token, and another upload of the same project, are out of a URL's reach.
    let unknown = create_at(
        &stack.url("/v1/direct/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        None,
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(code_of(unknown).await, "upload_url_not_found");
    let keyed = stack.create_upload(10, "keyed.mp4").await;
    let waiting = create_direct_upload(&stack, key, json!({})).await;
    let waiting_url = waiting["url"].as_str().expect("url");
    let reach = Client::new()
        .head(format!("{waiting_url}/{}", keyed.session_id))
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(reach.status(), StatusCode::NOT_FOUND);

    // Bad input is named.
    for (request, field) in [
        (json!({"timeout_seconds": 59}), "timeout_seconds"),
        (json!({"timeout_seconds": 604801}), "timeout_seconds"),
        (json!({"timeout_seconds": 600.5}), "timeout_seconds"),
        (json!({"timeout_seconds": null}), "timeout_seconds"),
        (
            json!({"cors_origin": "https://app.example/path"}),
            "cors_origin",
        ),
        (
            json!({"new_video": {"playback_policy": "private"}}),
            "new_video.playback_policy",
        ),
    ] {
        let response = key
            .post(stack.url("/v1/direct-uploads"))
            .json(&request)
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{request}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["field"], field, "{request}: {body}");
    }
    let keyless = Client::new()
        .post(stack.url("/v1/direct-uploads"))
        .json(&json!({}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(keyless.status(), StatusCode::UNAUTHORIZED);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_may_use_a_direct_upload_url_only_from_its_origin() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let key = &stack.http;
    let created = create_direct_upload(&stack, key, json!({"cors_origin": APP_ORIGIN})).await;
    let id = created["id"].as_str().expect("an id");
    let url = created["url"].as_str().expect("url");
    let browser = Client::new();

    let evil = create_at(url, Some("https://evil.example")).await;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    assert_eq!(code_of(evil).await, "origin_not_allowed");
    let evil_preflight = browser
        .request(Method::OPTIONS, url)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(evil_preflight.status(), StatusCode::FORBIDDEN);
    let (_, shown) = show(&stack, key, id).await;
    assert_eq!(
        shown["status"], "waiting",
        "a refused request uses nothing: {shown}"
    );

    let preflight = browser
        .request(Method::OPTIONS, url)
        .header("Origin", APP_ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "tus-resumable, upload-length, upload-metadata",
        )
        .send()
        .await
        .expect("gateway answers");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        APP_ORIGIN
    );
    assert!(header(&preflight, "access-control-allow-methods").contains("patch"));
    assert!(header(&preflight, "access-control-allow-headers").contains("upload-metadata"));

    let created_upload = create_at(url, Some(APP_ORIGIN)).await;
    assert_eq!(created_upload.status(), StatusCode::CREATED);
    assert_eq!(
        header(&created_upload, "access-control-allow-origin"),
        APP_ORIGIN
    );
    assert!(header(&created_upload, "access-control-expose-headers").contains("location"));
    let location = header(&created_upload, "location");
    assert!(location.starts_with(&format!("{url}/").to_ascii_lowercase()));
    let head = browser
        .head(
            created_upload.headers()["location"]
                .to_str()
                .expect("location"),
        )
        .header("Origin", APP_ORIGIN)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "upload-offset"), "0");
    assert_eq!(header(&head, "access-control-allow-origin"), APP_ORIGIN);

    // Without a cors_origin, no browser may use the URL at all; apps (no Origin) may.
    let app_only = create_direct_upload(&stack, key, json!({})).await;
    let app_only_url = app_only["url"].as_str().expect("url");
    let refused = create_at(app_only_url, Some(APP_ORIGIN)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let accepted = create_at(app_only_url, None).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    stack.shutdown().await;
}
