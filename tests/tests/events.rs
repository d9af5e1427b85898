//! Events: every change of a video is recorded once, in order, with the video as the API showed
//! it, in the transaction of the change; `GET /v1/events` reads them per project.

use std::time::Duration;

use serde_json::Value;
use vod_contracts::event::{EventList, EventView};
use vod_contracts::{VideoId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

/// What an upload that plays records, in order.
const UPLOAD_TYPES: [&str; 5] = [
    "video.created",
    "video.upload.created",
    "video.upload.completed",
    "video.processing",
    "video.ready",
];

async fn events_page(http: &reqwest::Client, url: String) -> EventList {
    let response = http.get(url).send().await.expect("gateway answers");
    assert_eq!(response.status(), 200, "GET /v1/events");
    response.json().await.expect("event list JSON")
}

/// Every event of the project, read page by page with `after`.
async fn all_events(stack: &Stack, http: &reqwest::Client) -> Vec<EventView> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(after) => stack.url(&format!("/v1/events?limit=3&after={after}")),
            None => stack.url("/v1/events?limit=3"),
        };
        let page = events_page(http, url).await;
        if page.events.is_empty() {
            return events;
        }
        after = page.next_after.clone();
        events.extend(page.events);
    }
}

/// The video's events, once the one of `last_type` is among them.
async fn events_of_video(
    stack: &Stack,
    http: &reqwest::Client,
    video_id: VideoId,
    last_type: &str,
) -> Vec<EventView> {
    poll_until(
        &format!("a {last_type} event of video {video_id}"),
        Duration::from_secs(30),
        || async {
            let events: Vec<EventView> = all_events(stack, http)
                .await
                .into_iter()
                .filter(|event| event.object.id == video_id.0)
                .collect();
            events
                .iter()
                .any(|event| event.event_type.as_str() == last_type)
                .then_some(events)
        },
    )
    .await
}

fn types(events: &[EventView]) -> Vec<&'static str> {
    events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect()
}

/// An event's video without what the type adds: the video as `GET /v1/videos/{id}` showed it.
fn video_of(event: &EventView) -> Value {
    let mut data = event.data.clone();
    if let Some(fields) = data.as_object_mut() {
        for added in ["flow_id", "encode_path", "reason"] {
            fields.remove(added);
        }
    }
    data
}

async fn clip(env: &TestEnv, seconds: u32, size: &str) -> Vec<u8> {
    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, seconds, size);
    std::fs::read(&path).expect("clip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_records_each_change_in_order_with_the_video_as_shown() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let bytes = clip(&env, 2, "320x240").await;

    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 3).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");

    let events = events_of_video(&stack, &stack.http, upload.video_id, "video.ready").await;
    assert_eq!(types(&events), UPLOAD_TYPES, "{events:#?}");
    for pair in events.windows(2) {
        assert!(pair[0].created_at <= pair[1].created_at, "{pair:#?}");
    }
    let flow_id = serde_json::to_value(video.flows[0].id).expect("id");
    for event in &events[1..] {
        assert_eq!(event.data["flow_id"], flow_id, "{event:#?}");
    }
    // Each shows the video at its moment; the last one, the video as it is now.
    let statuses: Vec<&str> = events
        .iter()
        .map(|event| event.data["status"].as_str().expect("a status"))
        .collect();
    assert_eq!(
        statuses,
        ["CREATED", "UPLOADING", "PROCESSING", "PROCESSING", "READY"]
    );
    let shown: Value = stack
        .http
        .get(stack.url(&format!("/v1/videos/{}", upload.video_id)))
        .send()
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("video JSON");
    let ready = &events[4];
    assert_eq!(video_of(ready), shown, "the event's video is the API's");
    assert!(ready.data["playback"]["hls"]
        .as_str()
        .is_some_and(|hls| hls.starts_with(&stack.holder_url)));

    // One event by its id is the same as in the list.
    let response = stack
        .http
        .get(stack.url(&format!("/v1/events/{}", ready.id)))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 200);
    let one: EventView = response.json().await.expect("event JSON");
    assert_eq!(&one, ready);

    // Filtered by type; an unknown type is refused by name.
    let only_ready = events_page(&stack.http, stack.url("/v1/events?type=video.ready")).await;
    assert_eq!(types(&only_ready.events), ["video.ready"]);
    let response = stack
        .http
        .get(stack.url("/v1/events?type=video.ready,video.exploded"))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("error JSON");
    assert_eq!(error["field"], "type");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.contains("video.exploded")),
        "{error}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_projects_events_are_never_visible() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (_, other) = stack.project_client("other").await;

    let response = other
        .post(stack.url("/v1/videos"))
        .json(&serde_json::json!({"title": "theirs", "description": ""}))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("video JSON");
    let video_id: VideoId = created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the video's id");
    let theirs = events_of_video(&stack, &other, video_id, "video.created").await;
    assert_eq!(types(&theirs), ["video.created"]);
    assert_eq!(theirs[0].data["title"], "theirs");

    // The default project sees none of it: not in its list, not by id, not as a cursor.
    let ours = all_events(&stack, &stack.http).await;
    assert!(
        ours.iter().all(|event| event.object.id != video_id.0),
        "{ours:#?}"
    );
    let by_id = stack
        .http
        .get(stack.url(&format!("/v1/events/{}", theirs[0].id)))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(by_id.status(), 404);
    let as_cursor = stack
        .http
        .get(stack.url(&format!("/v1/events?after={}", theirs[0].id)))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(as_cursor.status(), 404);
    let error: Value = as_cursor.json().await.expect("error JSON");
    assert_eq!(error["code"], "event_not_found");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploader_killed_mid_upload_leaves_one_event_per_change() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            // Many pieces: both uploaders are storing some, and completing, when one dies.
            chunk_size_bytes: 64 * 1024,
            ..StackOptions::default()
        },
    )
    .await;
    let bytes = clip(&env, 4, "640x360").await;
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
    let half = bytes.len() / 2;
    let response = stack
        .patch(&upload.location, 0, bytes[..half].to_vec())
        .await;
    assert_eq!(response.status(), 204);
    stack.crash_service("uploader-1");
    // The rest, resumed from wherever the server stands, as a tus client would.
    poll_until(
        "the upload to complete on the remaining uploader",
        Duration::from_secs(60),
        || async {
            let offset = stack.offset(&upload.location).await;
            if offset == bytes.len() as u64 {
                return Some(());
            }
            let _ = stack
                .patch(&upload.location, offset, bytes[offset as usize..].to_vec())
                .await;
            None
        },
    )
    .await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");

    let events = events_of_video(&stack, &stack.http, upload.video_id, "video.ready").await;
    assert_eq!(types(&events), UPLOAD_TYPES, "{events:#?}");
    // The table itself holds nothing more for this video.
    let db = env.db().await;
    let rows = db
        .query_one(
            "SELECT count(*) FROM event WHERE object_id = $1",
            &[&upload.video_id.0],
        )
        .await
        .expect("count");
    assert_eq!(rows.get::<_, i64>(0), UPLOAD_TYPES.len() as i64);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_past_the_retention_are_deleted_by_the_scheduler() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    for title in ["old", "new"] {
        let response = stack
            .http
            .post(stack.url("/v1/videos"))
            .json(&serde_json::json!({"title": title, "description": ""}))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 201);
    }
    let events = poll_until("both videos' events", Duration::from_secs(30), || async {
        let events = all_events(&stack, &stack.http).await;
        (events.len() == 2).then_some(events)
    })
    .await;
    let db = env.db().await;
    db.execute(
        "UPDATE event SET created_at = now() - interval '31 days' WHERE id = $1",
        &[&events[0].id],
    )
    .await
    .expect("age the first event");

    let deleted = stack.schedulers[0]
        .purge_expired_events()
        .await
        .expect("the job runs");
    assert_eq!(deleted, 1);
    let left = all_events(&stack, &stack.http).await;
    assert_eq!(left, events[1..].to_vec());
    let gone = stack
        .http
        .get(stack.url(&format!("/v1/events/{}", events[0].id)))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(gone.status(), 404);
    stack.shutdown().await;
}
