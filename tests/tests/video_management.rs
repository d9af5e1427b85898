//! Managing videos: `PATCH /v1/videos/{id}` changes a video's own fields, `DELETE` removes it
//! with its open uploads, its rows and its output on holder, also when an encode of it was
//! still running; another project can do neither.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vod_contracts::{layout, FlowId, FlowStatus, ProjectId, VideoId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::TUS_VERSION;
use vod_tests::{
    client_with_key, create_key, create_project, poll_until, HolderStore, Stack, StackOptions,
    TestEnv,
};

async fn create_video(stack: &Stack, title: &str, description: &str) -> VideoId {
    let created = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": title, "description": description }))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(created.status(), StatusCode::CREATED);
    let video: Value = created.json().await.expect("JSON");
    video["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a video id")
}

async fn patch_video(
    http: &reqwest::Client,
    stack: &Stack,
    video_id: VideoId,
    body: Value,
) -> (StatusCode, Value) {
    let response = http
        .patch(stack.url(&format!("/v1/videos/{video_id}")))
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete_video(http: &reqwest::Client, stack: &Stack, video_id: VideoId) -> StatusCode {
    http.delete(stack.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("gateway answers")
        .status()
}

async fn get_video(
    http: &reqwest::Client,
    stack: &Stack,
    video_id: VideoId,
) -> (StatusCode, Value) {
    let response = http
        .get(stack.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("gateway answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn listed_ids(http: &reqwest::Client, stack: &Stack) -> Vec<String> {
    let list: Value = http
        .get(stack.url("/v1/videos?limit=100"))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    list["videos"]
        .as_array()
        .expect("videos")
        .iter()
        .filter_map(|video| video["id"].as_str().map(str::to_owned))
        .collect()
}

/// Rows left of a video: itself (deleted or not), its flows, their upload sessions.
async fn rows_of_video(env: &TestEnv, video_id: VideoId) -> (i64, i64, i64) {
    let row = env
        .db()
        .await
        .query_one(
            "SELECT (SELECT count(*) FROM video WHERE id = $1), \
                    (SELECT count(*) FROM flow WHERE video_id = $1), \
                    (SELECT count(*) FROM upload_session s JOIN flow f ON f.id = s.flow_id \
                     WHERE f.video_id = $1)",
            &[&video_id.0],
        )
        .await
        .expect("row counts");
    (row.get(0), row.get(1), row.get(2))
}

fn video_dir(stack: &Stack, video_id: VideoId) -> PathBuf {
    stack.holder_root.join(layout::video_dir(video_id))
}

async fn status_of(http: &reqwest::Client, url: &str) -> StatusCode {
    http.get(url).send().await.expect("server answers").status()
}

async fn another_project_client(stack: &Stack, name: &str) -> reqwest::Client {
    let project: ProjectId = create_project(&stack.gateway_url, &stack.admin_token, name).await;
    let key = create_key(
        &stack.gateway_url,
        &stack.admin_token,
        project,
        &["read", "write"],
    )
    .await;
    client_with_key(&key)
}

fn assert_refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, field: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["code"], code, "{answer:?}");
    if !field.is_empty() {
        assert_eq!(answer.1["field"], field, "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_changes_each_field_it_is_given_and_keeps_the_others() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let http = &stack.http;
    let video_id = create_video(&stack, "Before", "first words").await;
    let (_, created) = get_video(http, &stack, video_id).await;
    assert_eq!(created["passthrough"], Value::Null);

    let (status, video) = patch_video(http, &stack, video_id, json!({"title": "  After "})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(
        video["title"], "After",
        "the title is trimmed as on creation"
    );
    assert_eq!(video["description"], "first words");

    let (status, video) =
        patch_video(http, &stack, video_id, json!({"description": "new\nwords"})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(
        (&video["title"], &video["description"]),
        (&json!("After"), &json!("new\nwords"))
    );

    let reference = "order-42 ☃ ".repeat(23);
    assert_eq!(reference.chars().count(), 253);
    let (status, video) =
        patch_video(http, &stack, video_id, json!({"passthrough": reference})).await;
    assert_eq!(status, StatusCode::OK, "{video}");
    assert_eq!(video["passthrough"], reference.as_str());
    let (_, shown) = get_video(http, &stack, video_id).await;
    assert_eq!(shown["passthrough"], reference.as_str());
    assert_eq!(shown["title"], "After");
    let list: Value = http
        .get(stack.url("/v1/videos"))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["videos"][0]["passthrough"], reference.as_str());

    // Nothing given changes nothing; `null` clears the passthrough alone.
    let (status, video) = patch_video(http, &stack, video_id, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(video["passthrough"], reference.as_str());
    let (status, video) = patch_video(http, &stack, video_id, json!({"passthrough": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(video["passthrough"], Value::Null);
    assert_eq!(
        (&video["title"], &video["description"]),
        (&json!("After"), &json!("new\nwords"))
    );
    // As on creation, a `null` description is an empty one.
    let (status, video) = patch_video(http, &stack, video_id, json!({"description": null})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&video["title"], &video["description"]),
        (&json!("After"), &json!(""))
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_refuses_bad_input_naming_the_field_and_changes_nothing() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let http = &stack.http;
    let video_id = create_video(&stack, "Kept", "kept words").await;
    let (status, _) = patch_video(http, &stack, video_id, json!({"passthrough": "kept"})).await;
    assert_eq!(status, StatusCode::OK);

    let bad_request = StatusCode::BAD_REQUEST;
    for (body, field) in [
        (json!({"passthrough": "p".repeat(256)}), "passthrough"),
        (json!({"passthrough": "a\u{0}b"}), "passthrough"),
        (json!({"passthrough": 7}), "passthrough"),
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": null}), "title"),
        (json!({"title": "two\nlines"}), "title"),
        (json!({"title": "t".repeat(201)}), "title"),
        (json!({"description": "d".repeat(5001)}), "description"),
        (json!({"description": "evil\u{202e}"}), "description"),
        (
            json!({"title": "Fine", "passthrough": "p".repeat(256)}),
            "passthrough",
        ),
    ] {
        let answer = patch_video(http, &stack, video_id, body.clone()).await;
        assert_refused(&answer, bad_request, "validation_failed", field);
    }
    let not_json = http
        .patch(stack.url(&format!("/v1/videos/{video_id}")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(not_json.status(), bad_request);

    let (_, video) = get_video(http, &stack, video_id).await;
    assert_eq!(
        (
            &video["title"],
            &video["description"],
            &video["passthrough"]
        ),
        (&json!("Kept"), &json!("kept words"), &json!("kept"))
    );

    for missing in [VideoId::new().to_string(), "not-a-uuid".to_owned()] {
        let response = http
            .patch(stack.url(&format!("/v1/videos/{missing}")))
            .json(&json!({"title": "x"}))
            .send()
            .await
            .expect("gateway answers");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_refused(
            &(status, body),
            StatusCode::NOT_FOUND,
            "video_not_found",
            "",
        );
    }

    // Changing and deleting take the write scope.
    let read_key = create_key(
        &stack.gateway_url,
        &stack.admin_token,
        ProjectId::DEFAULT,
        &["read"],
    )
    .await;
    let reader = client_with_key(&read_key);
    let answer = patch_video(&reader, &stack, video_id, json!({"title": "x"})).await;
    assert_refused(&answer, StatusCode::FORBIDDEN, "forbidden", "");
    assert_eq!(
        delete_video(&reader, &stack, video_id).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get_video(http, &stack, video_id).await.0, StatusCode::OK);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_project_can_neither_patch_nor_delete_a_video() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let video_id = create_video(&stack, "Mine", "my words").await;
    let (status, _) = patch_video(
        &stack.http,
        &stack,
        video_id,
        json!({"passthrough": "mine"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = get_video(&stack.http, &stack, video_id).await;

    let other = another_project_client(&stack, "other").await;
    let answer = patch_video(
        &other,
        &stack,
        video_id,
        json!({"title": "Theirs", "passthrough": "theirs"}),
    )
    .await;
    assert_refused(&answer, StatusCode::NOT_FOUND, "video_not_found", "");
    let missing = patch_video(&other, &stack, VideoId::new(), json!({"title": "Theirs"})).await;
    assert_eq!(
        answer.1, missing.1,
        "another project's video is as absent as none"
    );
    assert_eq!(
        delete_video(&other, &stack, video_id).await,
        StatusCode::NOT_FOUND
    );

    let (status, after) = get_video(&stack.http, &stack, video_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after, before, "the video is unchanged");
    assert_eq!(rows_of_video(&env, video_id).await.0, 1);
    stack.shutdown().await;
}

/// The files under `dir`, at any depth (none when it is gone).
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_ready_video_removes_its_output_from_holder_and_its_rows() {
    deleting_a_ready_video_removes_everything(HolderStore::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_ready_video_removes_its_objects_from_the_bucket_and_its_rows() {
    deleting_a_ready_video_removes_everything(HolderStore::S3).await;
}

async fn deleting_a_ready_video_removes_everything(holder_store: HolderStore) {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let http = &stack.http;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let master = video.playback.expect("playback").hls;
    assert_eq!(status_of(http, &master).await, StatusCode::OK);
    let dir = video_dir(&stack, upload.video_id);
    assert!(dir.is_dir(), "{dir:?}");
    let kept = create_video(&stack, "Kept", "").await;

    assert_eq!(
        delete_video(http, &stack, upload.video_id).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_video(http, &stack, upload.video_id).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(listed_ids(http, &stack).await, vec![kept.to_string()]);
    assert_eq!(
        files_under(&dir),
        Vec::<PathBuf>::new(),
        "nothing of the video is stored"
    );
    if holder_store == HolderStore::Fs {
        assert!(!dir.exists(), "{dir:?} is gone from holder's disk");
    }
    assert_eq!(status_of(http, &master).await, StatusCode::NOT_FOUND);
    assert_eq!(rows_of_video(&env, upload.video_id).await, (0, 0, 0));
    assert_eq!(
        http.head(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .send()
            .await
            .expect("gateway answers")
            .status(),
        StatusCode::NOT_FOUND
    );

    // Deleting again finds nothing; the other video is untouched.
    assert_eq!(
        delete_video(http, &stack, upload.video_id).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        patch_video(http, &stack, upload.video_id, json!({"title": "Back"}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get_video(http, &stack, kept).await.0, StatusCode::OK);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_video_terminates_its_open_upload_and_frees_its_spool() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let http = &stack.http;
    let upload = stack.create_upload(1_000, "a.mp4").await;
    let response = stack.patch(&upload.location, 0, vec![1u8; 100]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let replica = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("a replica holds the bytes");
    let replica_id = replica
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let spool = stack
        .fflow_spool
        .join(replica_id)
        .join(upload.session_id.to_string());
    assert!(spool.exists(), "{spool:?}");

    assert_eq!(
        delete_video(http, &stack, upload.video_id).await,
        StatusCode::NO_CONTENT
    );
    let head = http
        .head(&upload.location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let more = stack.patch(&upload.location, 100, vec![1u8; 100]).await;
    assert_eq!(more.status(), StatusCode::NOT_FOUND);
    poll_until(
        "the spool to be released",
        Duration::from_secs(30),
        || async { (!spool.exists()).then_some(()) },
    )
    .await;
    assert_eq!(rows_of_video(&env, upload.video_id).await, (0, 0, 0));
    assert_eq!(
        get_video(http, &stack, upload.video_id).await.0,
        StatusCode::NOT_FOUND
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_deleted_while_it_encodes_leaves_nothing_on_holder_once_the_encode_ends() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        // A slow preset keeps the encode running well past the delete.
        configure_fflow: |config| config.x264_preset = "slow".to_owned(),
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let http = &stack.http;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 8, "960x540");
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;
    let (_, video) = get_video(http, &stack, upload.video_id).await;
    assert_eq!(video["status"], "PROCESSING", "{video}");

    assert_eq!(
        delete_video(http, &stack, upload.video_id).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get_video(http, &stack, upload.video_id).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(listed_ids(http, &stack).await.is_empty());
    assert_eq!(
        delete_video(http, &stack, upload.video_id).await,
        StatusCode::NOT_FOUND
    );
    // The encode runs on: its rows stay, hidden, until its outcome.
    let db = env.db().await;
    let flow = db
        .query_one(
            "SELECT id, status FROM flow WHERE video_id = $1",
            &[&upload.video_id.0],
        )
        .await
        .expect("the flow is kept while it encodes");
    assert_eq!(flow.get::<_, FlowStatus>(1), FlowStatus::Processing);
    let flow_id = FlowId(flow.get(0));

    // The outcome comes after the encode published to holder, and ends the video.
    poll_until(
        "the deleted video's rows to go",
        Duration::from_secs(300),
        || async { (rows_of_video(&env, upload.video_id).await == (0, 0, 0)).then_some(()) },
    )
    .await;
    let dir = video_dir(&stack, upload.video_id);
    assert!(!dir.exists(), "{dir:?} is gone from holder's disk");
    let master = format!(
        "{}/{}/{}",
        stack.holder_url.trim_end_matches('/'),
        layout::presentation_dir(upload.video_id, flow_id),
        layout::HLS_MASTER
    );
    assert_eq!(status_of(http, &master).await, StatusCode::NOT_FOUND);
    // Nothing is left for the scheduler either.
    assert_eq!(
        stack.schedulers[0]
            .delete_unused_videos()
            .await
            .expect("the job runs"),
        0
    );
    stack.shutdown().await;
}
