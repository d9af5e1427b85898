//! The commands between the gateway and the uploaders, on the real broker and real uploader
//! replicas: each command's reply comes back as its own type, and a failure inside an
//! uploader reaches the client as a server error, not as an outage to wait out.

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use vod_tests::tus::{metadata, TUS_VERSION};
use vod_tests::{Stack, TestEnv};

/// A title this test's database refuses once the test broke it: a constraint no uploader knows
/// of, which fails the insert of the video however often it is retried.
const REFUSED_TITLE: &str = "A title the database refuses";

async fn refuse_the_title_in_the_database(env: &TestEnv) {
    env.db()
        .await
        .batch_execute(&format!(
            "ALTER TABLE video ADD CONSTRAINT refused_by_the_test \
             CHECK (title <> '{REFUSED_TITLE}') NOT VALID"
        ))
        .await
        .expect("constraint added");
}

async fn assert_internal_error(what: &str, response: Response) {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {body}");
    assert_eq!(body["code"], "internal", "{what}: {body}");
    assert!(
        retry_after.is_none(),
        "{what}: a defect is not an outage to wait out: {retry_after:?}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && !message.contains("refused_by_the_test"),
        "{what}: the cause stays in the uploader's log: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_internal_uploader_failure_is_answered_500_internal_without_retry_after() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    refuse_the_title_in_the_database(&env).await;

    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": REFUSED_TITLE, "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_internal_error("creating a video", response).await;

    let response = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "100")
        .header(
            "Upload-Metadata",
            metadata(&[("filename", "a.mp4"), ("title", REFUSED_TITLE)]),
        )
        .send()
        .await
        .expect("gateway answers");
    assert_internal_error("creating an upload", response).await;

    // Nothing else is broken: the same stack goes on serving.
    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": "Another title", "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(stack.video_count().await, 1);
    stack.assert_running();
    stack.shutdown().await;
}
