//! The JSON video API and health, against real PostgreSQL and RabbitMQ, with a test double of
//! the uploader answering the gateway's requests.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{error_body, header, http, Gateway, TestEnv, UploaderDouble};
use vod_contracts::api::{VideoList, VideoView};
use vod_contracts::{FlowStatus, VideoStatus};

#[tokio::test]
async fn healthz_is_ok_when_database_and_broker_answer() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn healthz_is_503_when_the_database_is_unreachable() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.postgres.url = "postgres://postgres@127.0.0.1:1/none".to_owned().into();
    config.postgres.timeout_ms = 500;
    let gateway = Gateway::spawn(config).await;
    let response = http()
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&response, "retry-after").is_some());
}

#[tokio::test]
async fn creating_a_video_answers_its_view() {
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .post(gateway.url("/v1/videos"))
        .json(&json!({"title": "  Holiday  ", "description": "beach"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = header(&response, "location").expect("location").to_owned();
    let view: VideoView = response.json().await.expect("video view");
    assert_eq!(location, format!("/v1/videos/{}", view.id));
    assert_eq!(view.title, "Holiday");
    assert_eq!(view.description, "beach");
    assert_eq!(view.status, VideoStatus::Created);
    assert!(view.flows.is_empty());
    assert_eq!(view.playback, None);

    let fetched: VideoView = http()
        .get(gateway.url(&location))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("video view");
    assert_eq!(fetched, view);
}

#[tokio::test]
async fn create_video_refuses_what_is_not_json() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .post(gateway.url("/v1/videos"))
        .header("Content-Type", "text/plain")
        .body(r#"{"title": "x"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_body(response).await.code, "unsupported_media_type");

    let response = http()
        .post(gateway.url("/v1/videos"))
        .header("Content-Type", "application/json")
        .body(r#"{"title": "x""#)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(response).await.code, "invalid_json");

    // An array is JSON, but no request is one: serde alone would take a struct from it.
    let video_id = vod_contracts::VideoId::new();
    for (method, path) in [
        (reqwest::Method::POST, "/v1/videos".to_owned()),
        (reqwest::Method::PATCH, format!("/v1/videos/{video_id}")),
    ] {
        let response = http()
            .request(method, gateway.url(&path))
            .header("Content-Type", "application/json")
            .body(r#"["x", ""]"#)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let error = error_body(response).await;
        assert_eq!(error.code, "invalid_json");
        assert!(error.message.contains("object"), "{}", error.message);
    }
}

#[tokio::test]
async fn create_video_validation_names_the_field() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let cases = [
        (json!({"description": "no title"}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": "t".repeat(201)}), "title"),
        (
            json!({"title": "ok", "description": "d".repeat(5001)}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let response = http()
            .post(gateway.url("/v1/videos"))
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = error_body(response).await;
        assert_eq!(error.code, "validation_failed");
        assert_eq!(error.field.as_deref(), Some(field));
    }
}

#[tokio::test]
async fn create_video_body_over_the_limit_is_413() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.max_json_bytes = 1024;
    let gateway = Gateway::spawn(config).await;
    let response = http()
        .post(gateway.url("/v1/videos"))
        .json(&json!({"title": "x", "description": "d".repeat(2000)}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await.code, "payload_too_large");
}

#[tokio::test]
async fn unknown_videos_are_404() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        let response = http()
            .get(gateway.url(&format!("/v1/videos/{id}")))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_body(response).await.code, "video_not_found");
    }
}

#[tokio::test]
async fn a_ready_video_has_absolute_playback_urls_of_its_newest_ready_flow() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.holder_public_url = "http://media.test:8090/".to_owned();
    let gateway = Gateway::spawn(config).await;
    let video_id = uuid::Uuid::now_v7();
    env.db
        .execute(
            "INSERT INTO video (project_id, id, title, status) VALUES ('00000000-0000-7000-8000-000000000001', $1, 'Ready one', 'READY')",
            &[&video_id],
        )
        .await
        .expect("video");
    for (age, path) in [("2 minutes", "old"), ("1 minute", "new")] {
        env.db
            .execute(
                &format!(
                    "INSERT INTO flow (id, video_id, status, uploaded_bytes, total_bytes,
                         duration_seconds, width, height, video_codec, hls_path, dash_path,
                         created_at)
                     VALUES ($1, $2, 'READY', 10, 10, 1.5, 640, 360, 'h264',
                         'videos/{path}/master.m3u8', 'videos/{path}/manifest.mpd',
                         now() - interval '{age}')"
                ),
                &[&uuid::Uuid::now_v7(), &video_id],
            )
            .await
            .expect("flow");
    }
    env.db
        .execute(
            "INSERT INTO flow (id, video_id, status, uploaded_bytes, total_bytes, error)
             VALUES ($1, $2, 'FAILED', 3, 10, 'broken input')",
            &[&uuid::Uuid::now_v7(), &video_id],
        )
        .await
        .expect("failed flow");

    let view: VideoView = http()
        .get(gateway.url(&format!("/v1/videos/{video_id}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("view");
    assert_eq!(view.status, VideoStatus::Ready);
    let statuses: Vec<FlowStatus> = view.flows.iter().map(|flow| flow.status).collect();
    assert_eq!(
        statuses,
        [FlowStatus::Failed, FlowStatus::Ready, FlowStatus::Ready]
    );
    assert_eq!(view.flows[0].error.as_deref(), Some("broken input"));
    assert_eq!(view.flows[1].width, Some(640));
    let playback = view.playback.expect("playback");
    assert_eq!(
        playback.hls,
        "http://media.test:8090/videos/new/master.m3u8"
    );
    assert_eq!(
        playback.dash,
        "http://media.test:8090/videos/new/manifest.mpd"
    );
}

#[tokio::test]
async fn listing_is_newest_first_and_paged() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = uuid::Uuid::now_v7();
        env.db
            .execute(
                &format!(
                    "INSERT INTO video (project_id, id, title, created_at)
                     VALUES ('00000000-0000-7000-8000-000000000001', $1, 'video {n}', now() - interval '{} minutes')",
                    10 - n
                ),
                &[&id],
            )
            .await
            .expect("video");
        ids.push(id);
    }
    env.insert_upload("OPEN", 1, 10, None).await;

    let list: VideoList = http()
        .get(gateway.url("/v1/videos?limit=2&offset=1"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    let titles: Vec<&str> = list
        .videos
        .iter()
        .map(|video| video.title.as_str())
        .collect();
    assert_eq!(titles, ["video 2", "video 1"]);

    let list: VideoList = http()
        .get(gateway.url("/v1/videos"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("list json");
    assert_eq!(list.videos.len(), 4);
    assert_eq!(
        list.videos[0].flows.len(),
        1,
        "flows are loaded with the page"
    );
    assert_eq!(list.videos[0].flows[0].uploaded_bytes, 1);

    for bad in ["0", "101", "x"] {
        let response = http()
            .get(gateway.url(&format!("/v1/videos?limit={bad}")))
            .send()
            .await
            .expect("list");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_body(response).await.field.as_deref(), Some("limit"));
    }
}
