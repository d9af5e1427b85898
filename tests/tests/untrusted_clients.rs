//! What a hostile or broken client can do at the gateway's edge, through the whole stack: hold
//! memory and a write lock with a trickling body, guess another client's upload URL, store
//! control characters, send huge metadata, grow the metrics with invented methods, or steer
//! `Location` with its `Host` header.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;
use vod_tests::tus::{header_u64, metadata, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

async fn refusal(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

async fn create_with_metadata(stack: &Stack, upload_metadata: &str) -> Response {
    stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "100")
        .header("Upload-Metadata", upload_metadata)
        .send()
        .await
        .expect("gateway answers")
}

async fn create_video(stack: &Stack, body: &Value) -> Response {
    stack
        .http
        .post(stack.url("/v1/videos"))
        .json(body)
        .send()
        .await
        .expect("gateway answers")
}

/// A body must bring 10 000 bytes a second, judged over half-second windows after half a
/// second of grace; nothing is ever idle long enough for the idle timeout.
fn strict_body_rate(config: &mut gateway::Config) {
    config.body_min_bytes_per_sec = 10_000;
    config.body_rate_window_ms = 500;
    config.body_rate_grace_ms = 500;
    config.body_idle_timeout_ms = 600_000;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_trickling_below_the_minimum_rate_is_ended_keeps_its_bytes_and_frees_the_lock() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        lock_wait_ms: 300,
        configure_gateway: strict_body_rate,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let total = 50_000u64;
    let upload = stack.create_upload(total, "slow.mp4").await;

    // A few bytes at once, then one byte every 50 ms (20 bytes a second) for as long as the
    // server reads: less than a chunk, so nothing is stored before the body ends.
    let head = bytes::Bytes::from(vec![7u8; 1_000]);
    let trickle = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[7u8])),
            (),
        ))
    });
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(head)]).chain(trickle);
    let slow = tokio::spawn(
        stack
            .http
            .patch(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", "0")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );

    let db = env.db().await;
    let (writer, uploaded) = poll_until(
        "the trickling PATCH to be ended",
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
            (uploaded > 0).then(|| (row.get::<_, bool>(0), uploaded as u64))
        },
    )
    .await;
    assert!(uploaded >= 1_000, "what the slow PATCH sent is kept");
    assert!(!writer, "the slow PATCH gave the write lock back");
    assert_eq!(stack.offset(&upload.location).await, uploaded);
    let metrics = stack.metrics(&stack.gateway_url).await;
    assert_eq!(
        metrics.sum(
            "gateway_upload_bodies_cut_short_total",
            &[("reason", "too_slow")]
        ),
        1.0
    );

    // Another client takes the lock at once and finishes the upload.
    let rest = stack
        .patch(
            &upload.location,
            uploaded,
            vec![8u8; (total - uploaded) as usize],
        )
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    assert_eq!(header_u64(&rest, "upload-offset"), total);
    slow.abort();
    stack.shutdown().await;
}

/// The 48-bit big-endian timestamp a UUIDv7 starts with.
fn time_prefix(id: Uuid) -> [u8; 6] {
    let bytes = id.as_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_ids_are_random_and_unrelated_to_the_public_flow_ids() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let first = stack.create_upload(100, "a.mp4").await;
    let second = stack.create_upload(100, "b.mp4").await;
    let uploads = [first.session_id.0, second.session_id.0];
    let mut flows = Vec::new();
    for upload in [&first, &second] {
        flows.push(stack.video(upload.video_id).await.flows[0].id.0);
    }
    for upload in uploads {
        assert_eq!(upload.get_version_num(), 4, "{upload} is a random UUID");
    }
    assert_ne!(
        time_prefix(uploads[0]),
        time_prefix(uploads[1]),
        "consecutive upload ids share no timestamp"
    );
    for upload in uploads {
        for flow in &flows {
            assert_ne!(
                time_prefix(upload),
                time_prefix(*flow),
                "upload {upload} and flow {flow} share no timestamp"
            );
            assert_ne!(upload.as_bytes()[6..], flow.as_bytes()[6..]);
        }
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_and_bidi_characters_are_refused_naming_the_field_and_nothing_is_stored() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;

    let bad_texts = [
        "a\u{0}b",
        "bell\u{7}",
        "evil\u{202E}4pm.exe",
        "iso\u{2066}late",
    ];
    for bad in bad_texts {
        for (body, field) in [
            (json!({ "title": bad }), "title"),
            (
                json!({ "title": "Fine", "description": bad }),
                "description",
            ),
        ] {
            let (status, error) = refusal(create_video(&stack, &body).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error["code"], "validation_failed", "{body}: {error}");
            assert_eq!(error["field"], field, "{body}: {error}");
        }
        for (pairs, field) in [
            ([("title", bad), ("filename", "a.mp4")], "title"),
            ([("title", "Fine"), ("filename", bad)], "filename"),
        ] {
            let response = create_with_metadata(&stack, &metadata(&pairs)).await;
            let (status, error) = refusal(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{pairs:?}");
            assert_eq!(error["code"], "validation_failed", "{pairs:?}: {error}");
            assert_eq!(error["field"], field, "{pairs:?}: {error}");
        }
    }
    // A title with a line break is refused too; a description may keep its lines and tabs.
    let (status, error) =
        refusal(create_video(&stack, &json!({ "title": "two\nlines" })).await).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("title"))
    );
    let described = json!({ "title": "Fine", "description": "line one\n\tline two" });
    assert_eq!(
        create_video(&stack, &described).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(stack.video_count().await, 1, "only the valid video exists");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_upload_metadata_is_refused_naming_the_limit() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let long_value = "v".repeat(5_000);
    let huge = metadata(&[("filename", "a.mp4"), ("notes", long_value.as_str())]);
    let many_keys = (0..40)
        .map(|key| format!("k{key} dg=="))
        .collect::<Vec<_>>()
        .join(",");
    let long_filename = format!("{}.mp4", "f".repeat(300));
    let long_name = metadata(&[("filename", long_filename.as_str())]);
    for (sent, code, field) in [
        (huge, "metadata_too_large", "Upload-Metadata"),
        (many_keys, "metadata_too_many_keys", "Upload-Metadata"),
        (long_name, "filename_too_long", "filename"),
    ] {
        for concat in [None, Some("partial")] {
            let mut request = stack
                .http
                .post(stack.url("/v1/uploads"))
                .header("Tus-Resumable", TUS_VERSION)
                .header("Upload-Length", "100")
                .header("Upload-Metadata", &sent);
            if let Some(concat) = concat {
                request = request.header("Upload-Concat", concat);
            }
            let response = request.send().await.expect("gateway answers");
            let (status, error) = refusal(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{code} {concat:?}");
            assert_eq!(error["code"], code, "{error}");
            assert_eq!(error["field"], field, "{error}");
        }
    }
    let db = env.db().await;
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM upload_session", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(sessions, 0, "no upload was created");
    assert_eq!(stack.video_count().await, 0, "no video was created");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_methods_are_counted_as_other() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    for method in ["FOO", "BREW", "X-INVENTED-1"] {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let response = stack
            .http
            .request(method, stack.url("/v1/videos"))
            .send()
            .await
            .expect("gateway answers");
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // A method named by X-HTTP-Method-Override counts the same way.
    let overridden = stack
        .http
        .post(stack.url("/v1/videos"))
        .header("X-HTTP-Method-Override", "ZAP")
        .send()
        .await
        .expect("gateway answers");
    assert!(overridden.status().is_client_error());

    let metrics = stack.metrics(&stack.gateway_url).await;
    assert_eq!(
        metrics.sum("gateway_http_requests_total", &[("method", "OTHER")]),
        4.0
    );
    for sample in &metrics.samples {
        let method = sample.labels.get("method").map(String::as_str);
        assert!(
            !matches!(method, Some("FOO" | "BREW" | "X-INVENTED-1" | "ZAP")),
            "{sample:?}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spoofed_host_does_not_reach_location() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let response = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Host", "attacker.example")
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "100")
        .header("Upload-Metadata", metadata(&[("filename", "a.mp4")]))
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
    assert!(!location.contains("attacker"), "{location}");
    assert!(
        location.starts_with(&format!("{}/v1/uploads/", stack.gateway_url)),
        "{location}"
    );
    stack.shutdown().await;
}
