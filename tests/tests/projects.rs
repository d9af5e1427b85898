//! Projects and API keys on the whole stack: every `/v1` route needs a key, a key reaches only
//! its project, its scopes bound what it may do, and a revoked key stops working within the
//! gateway's cache time.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use vod_tests::tus::{metadata, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{client_with_key, create_key, create_project, Stack, TestEnv, KEY_CACHE_MS};

/// Every route a key opens, as (method, path) with `{video}` and `{upload}` to fill in.
const KEYED_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/videos"),
    ("POST", "/v1/videos"),
    ("GET", "/v1/videos/{video}"),
    ("POST", "/v1/uploads"),
    ("HEAD", "/v1/uploads/{upload}"),
    ("PATCH", "/v1/uploads/{upload}"),
    ("DELETE", "/v1/uploads/{upload}"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/{video}"),
];

fn path_of(template: &str, video: &str, upload: &str) -> String {
    template
        .replace("{video}", video)
        .replace("{upload}", upload)
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap_or_default();
    body["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_needs_a_key_and_a_read_key_cannot_write() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(10, "mine.mp4").await;
    let (video, session) = (upload.video_id.to_string(), upload.session_id.to_string());
    let reader = client_with_key(
        &create_key(
            &stack.gateway_url,
            &stack.admin_token,
            vod_contracts::ProjectId::DEFAULT,
            &["read"],
        )
        .await,
    );
    let anonymous = reqwest::Client::new();
    let malformed = [
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer vod_short",
        "Bearer vod_0192a0b0c0d07e0fa1b2c3d4e5f60718_wrongwrongwrongwrongwrongwrongwrongwrongAAA",
        "Bearer 🙂",
    ];
    for (method, template) in KEYED_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let url = stack.url(&path_of(template, &video, &session));
        let response = anonymous
            .request(method.clone(), &url)
            .send()
            .await
            .expect("an answer");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {template}"
        );
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{method} {template}");
        if method != Method::HEAD {
            assert_eq!(error_code(response).await, "unauthorized");
        }
        for header in malformed {
            let response = anonymous
                .request(method.clone(), &url)
                .header("Authorization", header.as_bytes())
                .send()
                .await
                .expect("an answer");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {template} with {header:?}"
            );
        }
        let with_read_key = reader
            .request(method.clone(), &url)
            .send()
            .await
            .expect("an answer");
        let reads = method == Method::GET || method == Method::HEAD;
        if reads {
            assert_ne!(with_read_key.status(), StatusCode::FORBIDDEN, "{template}");
            assert_ne!(
                with_read_key.status(),
                StatusCode::UNAUTHORIZED,
                "{template}"
            );
        } else {
            assert_eq!(
                with_read_key.status(),
                StatusCode::FORBIDDEN,
                "{method} {template}"
            );
            assert_eq!(error_code(with_read_key).await, "forbidden");
        }
    }
    // Nothing of the upload was touched by any refused request.
    assert_eq!(stack.offset(&upload.location).await, 0);

    // The admin routes take the admin token and nothing else: not a key of a project.
    for client in [&anonymous, &stack.http] {
        let response = client
            .get(stack.url("/v1/admin/projects"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let projects: Value = anonymous
        .get(stack.url("/v1/admin/projects"))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json");
    assert_eq!(projects["projects"][0]["name"], "default", "{projects}");

    // CORS preflights and tus discovery need no key.
    let options = anonymous
        .request(Method::OPTIONS, stack.url("/v1/uploads"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    let preflight = anonymous
        .request(Method::OPTIONS, stack.url("/v1/videos"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .expect("an answer");
    assert!(preflight.status().is_success());
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projects_never_see_each_other() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let other_project = create_project(&stack.gateway_url, &stack.admin_token, "other").await;
    let other = client_with_key(
        &create_key(
            &stack.gateway_url,
            &stack.admin_token,
            other_project,
            &["read", "write"],
        )
        .await,
    );

    // The default project has a video with an open upload and a partial upload.
    let mine = stack.create_upload(100, "mine.mp4").await;
    let response = stack.patch(&mine.location, 0, vec![1; 10]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let partial = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "0")
        .header("Upload-Concat", "partial")
        .send()
        .await
        .expect("an answer");
    assert_eq!(partial.status(), StatusCode::CREATED);
    let partial_url = partial
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("a location")
        .to_owned();

    // The other project reads nothing of it, and its 404s are those of what does not exist.
    let video_url = stack.url(&format!("/v1/videos/{}", mine.video_id));
    let missing_video = stack.url(&format!("/v1/videos/{}", uuid::Uuid::now_v7()));
    for url in [&video_url, &missing_video] {
        let response = other.get(url).send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(response).await, "video_not_found");
    }
    let listed: Value = other
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["videos"], json!([]), "{listed}");
    for url in [&mine.location, &partial_url] {
        let head = other
            .head(url)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .expect("an answer");
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "HEAD {url}");
    }
    // Resume, terminate, attach and join: each as if the upload or the video did not exist.
    let resume = other
        .patch(&mine.location)
        .header("Tus-Resumable", TUS_VERSION)
        .header("Content-Type", OFFSET_OCTET_STREAM)
        .header("Upload-Offset", "10")
        .body(vec![2; 10])
        .send()
        .await
        .expect("an answer");
    assert_eq!(resume.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resume).await, "upload_not_found");
    let terminate = other
        .delete(&mine.location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("an answer");
    assert_eq!(terminate.status(), StatusCode::NOT_FOUND);
    let attach = other
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "10")
        .header(
            "Upload-Metadata",
            metadata(&[("video_id", &mine.video_id.to_string())]),
        )
        .send()
        .await
        .expect("an answer");
    assert_eq!(attach.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(attach).await, "video_not_found");
    let join = other
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Concat", format!("final;{partial_url}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(join.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(join).await, "upload_not_found");

    // The owner's upload is as it was, and its video keeps its single flow.
    assert_eq!(stack.offset(&mine.location).await, 10);
    let video = stack.video(mine.video_id).await;
    assert_eq!(video.flows.len(), 1);
    assert_eq!(stack.video_count().await, 1);

    // The other project's own uploads work, and only it lists them.
    let theirs = other
        .post(stack.url("/v1/videos"))
        .json(&json!({"title": "Theirs"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(theirs.status(), StatusCode::CREATED);
    let listed: Value = other
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["videos"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["videos"][0]["title"], "Theirs");
    assert_eq!(stack.video_count().await, 1, "the default project sees one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_made_listed_without_secrets_and_revoked() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let made = stack
        .http
        .post(stack.url("/v1/keys"))
        .json(&json!({"scopes": ["read"], "name": "dashboard"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.expect("json");
    let key = made["key"].as_str().expect("the key").to_owned();
    let id = made["id"].as_str().expect("the id").to_owned();
    assert_eq!(made["scopes"], json!(["read"]));
    assert_eq!(made["name"], "dashboard");
    assert!(key.starts_with("vod_") && key.contains(&id.replace('-', "")));

    // Listed without its secret; its first use is recorded.
    let reader = client_with_key(&key);
    let response = reader
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let secret = &key[key.len() - 43..];
    let listed = vod_tests::poll_until(
        "the key's use to be recorded",
        Duration::from_secs(30),
        || async {
            let text = stack
                .http
                .get(stack.url("/v1/keys"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let listed: Value = serde_json::from_str(&text).ok()?;
            let entry = listed["keys"]
                .as_array()?
                .iter()
                .find(|entry| entry["id"] == id.as_str())?
                .clone();
            (!entry["last_used_at"].is_null()).then_some(text)
        },
    )
    .await;
    assert!(!listed.contains(secret), "a listing shows a secret");
    assert!(!listed.contains("secret"), "{listed}");

    // Bad requests name their field.
    for (body, field) in [
        (json!({"scopes": []}), "scopes"),
        (json!({"scopes": ["admin"]}), "scopes[0]"),
        (json!({"name": "no scopes"}), "scopes"),
        (json!({"scopes": ["read"], "name": "x".repeat(101)}), "name"),
    ] {
        let response = stack
            .http
            .post(stack.url("/v1/keys"))
            .json(&body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["field"], field, "{body}: {error}");
    }

    // Another project cannot revoke it: the key is not found there.
    let other_project = create_project(&stack.gateway_url, &stack.admin_token, "other").await;
    let other = client_with_key(
        &create_key(
            &stack.gateway_url,
            &stack.admin_token,
            other_project,
            &["read", "write"],
        )
        .await,
    );
    let response = other
        .delete(stack.url(&format!("/v1/keys/{id}")))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "key_not_found");
    let still = reader
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(still.status(), StatusCode::OK);

    // Revoked by its project: refused at the latest once the gateway's cache time is over.
    let response = stack
        .http
        .delete(stack.url(&format!("/v1/keys/{id}")))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(KEY_CACHE_MS + 100)).await;
    let refused = reader
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let listed: Value = stack
        .http
        .get(stack.url("/v1/keys"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("json");
    let entry = listed["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|entry| entry["id"] == id.as_str()))
        .cloned()
        .unwrap_or_default();
    assert!(!entry["revoked_at"].is_null(), "{listed}");
}
