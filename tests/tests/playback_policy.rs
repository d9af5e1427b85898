//! A video's playback policy (`public` or `signed`): set by `POST /v1/videos`, by
//! `playback_policy` in `Upload-Metadata`, by a direct upload's `new_video`, changed by
//! `PATCH /v1/videos/{id}`, and shown in the video JSON.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use vod_contracts::VideoId;
use vod_tests::tus::{metadata, TUS_VERSION};
use vod_tests::{Stack, TestEnv};

async fn post_video(stack: &Stack, body: Value) -> (StatusCode, Value) {
    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn patch_video(stack: &Stack, video_id: &str, body: Value) -> (StatusCode, Value) {
    let response = stack
        .http
        .patch(stack.url(&format!("/v1/videos/{video_id}")))
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn policy_of(stack: &Stack, video_id: VideoId) -> Value {
    let video: Value = stack
        .http
        .get(stack.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    video["playback_policy"].clone()
}

/// A tus creation of 10 bytes with these metadata pairs, through `client` at `url`.
async fn create_upload(client: &Client, url: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    client
        .post(url)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "10")
        .header("Upload-Metadata", metadata(pairs))
        .send()
        .await
        .expect("gateway answers")
}

fn video_id_of(created: &reqwest::Response) -> VideoId {
    created
        .headers()
        .get("Video-Id")
        .and_then(|id| id.to_str().ok())
        .and_then(|id| id.parse().ok())
        .expect("a Video-Id header")
}

/// A refusal names the field: in `field` for a value that is not a policy, in the message for
/// a `null` (which the JSON reader refuses before validation).
fn assert_names_policy(body: &Value) {
    let named = body["field"] == "playback_policy"
        || body["message"].as_str().is_some_and(|message| {
            message.starts_with("Failed to parse the request body as JSON: playback_policy:")
        });
    assert!(named, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_is_public_unless_created_signed_and_a_patch_changes_its_policy() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;

    let (status, public) = post_video(&stack, json!({"title": "Open"})).await;
    assert_eq!(status, StatusCode::CREATED, "{public}");
    assert_eq!(public["playback_policy"], "public");
    let (status, signed) = post_video(
        &stack,
        json!({"title": "Paid", "playback_policy": "signed"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{signed}");
    assert_eq!(signed["playback_policy"], "signed");
    let signed_id = signed["id"].as_str().expect("an id").to_owned();

    for bad in [json!("private"), json!(null), json!("SIGNED")] {
        let (status, body) =
            post_video(&stack, json!({"title": "Bad", "playback_policy": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_names_policy(&body);
        let (status, body) = patch_video(&stack, &signed_id, json!({"playback_policy": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_names_policy(&body);
    }

    // A change of another field keeps the policy; the policy changes both ways.
    let (status, video) = patch_video(&stack, &signed_id, json!({"title": "Still paid"})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(video["playback_policy"], "signed");
    let (status, video) =
        patch_video(&stack, &signed_id, json!({"playback_policy": "public"})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(
        (&video["playback_policy"], &video["title"]),
        (&json!("public"), &json!("Still paid"))
    );
    let (status, video) =
        patch_video(&stack, &signed_id, json!({"playback_policy": "signed"})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(video["playback_policy"], "signed");
    let list: Value = stack
        .http
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    let policies: Vec<(&str, &str)> = list["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .filter_map(|video| Some((video["title"].as_str()?, video["playback_policy"].as_str()?)))
        .collect();
    assert_eq!(policies, [("Still paid", "signed"), ("Open", "public")]);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_metadata_sets_the_policy_of_the_video_it_makes_and_only_of_that_one() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let uploads = stack.url("/v1/uploads");

    let created = create_upload(&stack.http, &uploads, &[("filename", "a.mp4")]).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(policy_of(&stack, video_id_of(&created)).await, "public");

    let created = create_upload(
        &stack.http,
        &uploads,
        &[("filename", "b.mp4"), ("playback_policy", "signed")],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let signed = video_id_of(&created);
    assert_eq!(policy_of(&stack, signed).await, "signed");

    // A new flow of an existing video leaves the video's policy as it is.
    let signed_text = signed.to_string();
    let attached = create_upload(
        &stack.http,
        &uploads,
        &[("video_id", &signed_text), ("playback_policy", "public")],
    )
    .await;
    assert_eq!(attached.status(), StatusCode::CREATED);
    assert_eq!(video_id_of(&attached), signed);
    assert_eq!(policy_of(&stack, signed).await, "signed");

    let refused = create_upload(
        &stack.http,
        &uploads,
        &[("filename", "c.mp4"), ("playback_policy", "private")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["field"], "playback_policy", "{body}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_upload_makes_a_signed_video_when_asked_whatever_the_upload_says() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let response = stack
        .http
        .post(stack.url("/v1/direct-uploads"))
        .json(&json!({"new_video": {"title": "Members only", "playback_policy": "signed"}}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let direct: Value = response.json().await.expect("JSON");
    assert_eq!(direct["new_video"]["playback_policy"], "signed", "{direct}");
    let id = direct["id"].as_str().expect("an id");
    let shown: Value = stack
        .http
        .get(stack.url(&format!("/v1/direct-uploads/{id}")))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(shown["new_video"]["playback_policy"], "signed", "{shown}");

    let url = direct["url"].as_str().expect("a url");
    let created = create_upload(
        &Client::new(),
        url,
        &[("filename", "d.mp4"), ("playback_policy", "public")],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(policy_of(&stack, video_id_of(&created)).await, "signed");
    stack.shutdown().await;
}
