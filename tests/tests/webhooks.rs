//! Webhooks: a project's events reach its endpoints signed, at least once, through failures
//! of the receiver and of the uploaders, never another project's, and never at an address a
//! user may not reach.

use std::time::Duration;

use serde_json::{json, Value};
use vod_contracts::event::{EventList, EventView};
use vod_contracts::webhook::{
    DeliveryList, DeliveryQueued, DeliveryStatus, DeliveryView, Redelivered, SecretRotated,
    WebhookCreated, WebhookView,
};
use vod_contracts::{VideoId, VideoStatus, WebhookId};
use vod_tests::media::generate_clip;
use vod_tests::receiver::{local_options, local_quick_delivery, Answer, Received, Receiver};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

/// What an upload that plays records, in order.
const UPLOAD_TYPES: [&str; 5] = [
    "video.created",
    "video.upload.created",
    "video.upload.completed",
    "video.processing",
    "video.ready",
];

async fn json_of(response: reqwest::Response, what: &str, status: u16) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{what}: {body}");
    body
}

async fn add_webhook(
    stack: &Stack,
    http: &reqwest::Client,
    url: &str,
    events: &[&str],
) -> WebhookCreated {
    let response = http
        .post(stack.url("/v1/webhooks"))
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .expect("gateway answers");
    let created = json_of(response, "POST /v1/webhooks", 201).await;
    serde_json::from_value(created).expect("a created webhook")
}

async fn create_video(stack: &Stack, http: &reqwest::Client, title: &str) -> VideoId {
    let response = http
        .post(stack.url("/v1/videos"))
        .json(&json!({"title": title, "description": ""}))
        .send()
        .await
        .expect("gateway answers");
    let created = json_of(response, "POST /v1/videos", 201).await;
    created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the video's id")
}

/// The project's events of `video_id`, oldest first (the tests make only a few), once the log
/// shows at least `count`: the log may show an event later than its commit (it waits for every
/// older transaction to end, other tests' on this server too).
async fn logged_events(
    stack: &Stack,
    http: &reqwest::Client,
    video_id: VideoId,
    count: usize,
) -> Vec<EventView> {
    poll_until(
        &format!("{count} events of {video_id} in the log"),
        Duration::from_secs(30),
        || async {
            let response = http
                .get(stack.url("/v1/events?limit=100"))
                .send()
                .await
                .expect("gateway answers");
            let list: EventList =
                serde_json::from_value(json_of(response, "GET /v1/events", 200).await)
                    .expect("an event list");
            let events: Vec<EventView> = list
                .events
                .into_iter()
                .filter(|event| event.object.id == video_id.0)
                .collect();
            (events.len() >= count).then_some(events)
        },
    )
    .await
}

async fn delivery_log(
    stack: &Stack,
    http: &reqwest::Client,
    webhook_id: WebhookId,
) -> DeliveryList {
    let response = http
        .get(stack.url(&format!("/v1/webhooks/{webhook_id}/deliveries")))
        .send()
        .await
        .expect("gateway answers");
    serde_json::from_value(json_of(response, "GET deliveries", 200).await).expect("a delivery log")
}

/// The endpoint's delivery of `event_id`, once it is settled.
async fn settled_delivery(
    stack: &Stack,
    http: &reqwest::Client,
    webhook_id: WebhookId,
    event_id: &str,
) -> DeliveryView {
    poll_until(
        &format!("the delivery of {event_id} to settle"),
        Duration::from_secs(60),
        || async {
            delivery_log(stack, http, webhook_id)
                .await
                .deliveries
                .into_iter()
                .find(|delivery| {
                    delivery.event_id == event_id && delivery.status != DeliveryStatus::Pending
                })
        },
    )
    .await
}

async fn ping(stack: &Stack, http: &reqwest::Client, webhook_id: WebhookId) -> DeliveryQueued {
    let response = http
        .post(stack.url(&format!("/v1/webhooks/{webhook_id}/test")))
        .send()
        .await
        .expect("gateway answers");
    serde_json::from_value(json_of(response, "POST test", 202).await).expect("a queued ping")
}

fn about_video(received: &Received, video_id: VideoId) -> bool {
    received.json()["object"]["id"] == json!(video_id)
}

/// Whether `received` holds an event of `event_type` about `video_id`.
fn has(received: &[Received], event_type: &str, video_id: VideoId) -> bool {
    received
        .iter()
        .any(|one| one.event_type == event_type && about_video(one, video_id))
}

fn assert_validation_failed(body: &Value, field: &str, naming: &str) {
    assert_eq!(body["code"], "validation_failed", "{body}");
    assert_eq!(body["field"], field, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains(naming)),
        "the message names {naming:?}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_is_delivered_in_order_signed_with_the_event_logs_ids() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    let all = add_webhook(&stack, &stack.http, &receiver.url("all"), &["*"]).await;
    let ready_only = add_webhook(
        &stack,
        &stack.http,
        &receiver.url("ready"),
        &["video.ready"],
    )
    .await;
    assert!(
        all.secret.starts_with("whsec_") && all.secret.len() == 70,
        "{}",
        all.secret
    );
    assert_ne!(all.secret, ready_only.secret);

    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, 2, "320x240");
    let bytes = std::fs::read(&path).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 3).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");

    let received = receiver
        .wait_for("all", "video.ready at the receiver", |received| {
            has(received, "video.ready", upload.video_id)
        })
        .await;
    let mut delivered: Vec<Value> = received
        .iter()
        .filter(|one| about_video(one, upload.video_id))
        .map(|one| {
            assert!(one.signed_by(&all.secret), "signed: {one:#?}");
            assert!(
                !one.signed_by(&ready_only.secret),
                "not by another endpoint's secret"
            );
            let event = one.json();
            assert_eq!(
                event["id"],
                one.event_id.as_str(),
                "Vod-Event-Id is the event's id"
            );
            assert_eq!(event["type"], one.event_type.as_str());
            event
        })
        .collect();
    delivered.sort_by_key(|event| {
        serde_json::from_value::<chrono::DateTime<chrono::Utc>>(event["created_at"].clone())
            .expect("a time")
    });
    let delivered_types: Vec<&str> = delivered
        .iter()
        .map(|event| event["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(delivered_types, UPLOAD_TYPES);

    // The same events, by id and content, as the log shows them. The log may show an event
    // later than its webhook (it waits for every transaction older than the event's to end,
    // other tests' on this server too), never earlier.
    let logged = logged_events(&stack, &stack.http, upload.video_id, delivered.len()).await;
    let logged: Vec<Value> = logged
        .iter()
        .map(|event| serde_json::to_value(event).expect("event JSON"))
        .collect();
    assert_eq!(delivered, logged);

    // The filtered endpoint got the ready event only.
    let ready = receiver
        .wait_for(
            "ready",
            "video.ready at the filtered endpoint",
            |received| has(received, "video.ready", upload.video_id),
        )
        .await;
    assert!(
        ready.iter().all(|one| one.event_type == "video.ready"),
        "{ready:#?}"
    );
    assert!(ready[0].signed_by(&ready_only.secret));

    // The log: one delivery per event, each delivered at its first attempt.
    for event in &delivered {
        let event_id = event["id"].as_str().expect("an id");
        let delivery = settled_delivery(&stack, &stack.http, all.webhook.id, event_id).await;
        assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:#?}");
        assert_eq!(delivery.event_type, event["type"].as_str().expect("a type"));
        assert!(!delivery.attempts.is_empty());
        let last = delivery.attempts.last().expect("an attempt");
        assert_eq!((last.status_code, last.error.as_deref()), (Some(200), None));
    }
    let mut successes = 0.0;
    for url in &stack.uploader_urls {
        successes += stack
            .metrics(url)
            .await
            .sum("uploader_webhook_attempts_total", &[("result", "success")]);
    }
    assert!(successes >= 6.0, "{successes} successful attempts counted");
    // What the dashboard draws of webhooks, the uploaders expose.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/grafana/dashboards/vod.json"),
    )
    .expect("the dashboard");
    let mut exposed = std::collections::BTreeSet::new();
    for url in &stack.uploader_urls {
        let metrics = stack.metrics(url).await;
        exposed.extend(metrics.samples.into_iter().map(|sample| sample.name));
    }
    let drawn: std::collections::BTreeSet<&str> = dashboard
        .match_indices("uploader_webhook_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(drawn.len() >= 4, "the dashboard draws webhooks: {drawn:?}");
    for name in drawn {
        assert!(
            exposed.contains(name),
            "the dashboard draws {name}, which no uploader exposes"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_gets_the_same_event_again_until_it_answers() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    receiver.script("flaky", [500, 500, 500].map(Answer::Status));
    let flaky = add_webhook(
        &stack,
        &stack.http,
        &receiver.url("flaky"),
        &["video.created"],
    )
    .await;

    let video_id = create_video(&stack, &stack.http, "retried").await;
    let received = receiver
        .wait_for("flaky", "four attempts", |received| received.len() >= 4)
        .await;
    let event_id = received[0].event_id.clone();
    for attempt in &received {
        assert_eq!(attempt.event_id, event_id, "a retry keeps the event's id");
        assert_eq!(attempt.body, received[0].body, "and its body");
        assert!(attempt.signed_by(&flaky.secret));
        assert!(about_video(attempt, video_id));
    }
    let delivery = settled_delivery(&stack, &stack.http, flaky.webhook.id, &event_id).await;
    assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:#?}");
    let codes: Vec<Option<u16>> = delivery.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(
        codes,
        [Some(500), Some(500), Some(500), Some(200)],
        "{delivery:#?}"
    );
    let numbers: Vec<u32> = delivery.attempts.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert!(delivery.attempts[..3].iter().all(|a| a
        .error
        .as_deref()
        .is_some_and(|error| error.contains("500"))));
    assert!(delivery.finished_at.is_some());
    assert_eq!(received.len(), 4, "nothing more once delivered");

    // Sent again by hand: a new delivery of the same event.
    let response = stack
        .http
        .post(stack.url(&format!("/v1/events/{event_id}/redeliver")))
        .send()
        .await
        .expect("gateway answers");
    let redelivered: Redelivered =
        serde_json::from_value(json_of(response, "redeliver", 202).await).expect("redelivered");
    assert_eq!(redelivered.deliveries.len(), 1, "{redelivered:#?}");
    assert_eq!(redelivered.deliveries[0].event_id, event_id);
    let received = receiver
        .wait_for("flaky", "the redelivery", |received| received.len() >= 5)
        .await;
    assert_eq!(received[4].event_id, event_id);
    assert_eq!(received[4].body, received[0].body);

    // A ping, signed like any event.
    let queued = ping(&stack, &stack.http, flaky.webhook.id).await;
    let received = receiver
        .wait_for("flaky", "the ping", |received| received.len() >= 6)
        .await;
    assert_eq!(received[5].event_type, "ping");
    assert_eq!(received[5].event_id, queued.event_id);
    assert_eq!(received[5].json()["data"]["id"], json!(flaky.webhook.id));
    assert!(received[5].signed_by(&flaky.secret));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_failing_past_the_period_is_disabled_with_an_event() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    receiver.script("down", [Answer::Status(503)]);
    let down = add_webhook(
        &stack,
        &stack.http,
        &receiver.url("down"),
        &["video.created"],
    )
    .await;

    // It has been failing for longer than the period (three days by default) ...
    let db = env.db().await;
    db.execute(
        "UPDATE webhook_endpoint SET failing_since = now() - interval '4 days' WHERE id = $1",
        &[&down.webhook.id.0],
    )
    .await
    .expect("an old failure");
    // ... and fails once more.
    let queued = ping(&stack, &stack.http, down.webhook.id).await;
    let delivery = settled_delivery(&stack, &stack.http, down.webhook.id, &queued.event_id).await;
    assert_eq!(delivery.attempts[0].status_code, Some(503));

    let response = stack
        .http
        .get(stack.url(&format!("/v1/webhooks/{}", down.webhook.id)))
        .send()
        .await
        .expect("gateway answers");
    let webhook: WebhookView =
        serde_json::from_value(json_of(response, "GET webhook", 200).await).expect("a webhook");
    assert!(!webhook.enabled, "{webhook:#?}");
    assert_eq!(
        serde_json::to_value(webhook.disabled_reason).expect("json"),
        "failing"
    );
    let response = stack
        .http
        .get(stack.url("/v1/events?type=webhook_endpoint.disabled"))
        .send()
        .await
        .expect("gateway answers");
    let disabled: EventList =
        serde_json::from_value(json_of(response, "GET events", 200).await).expect("events");
    assert_eq!(disabled.events.len(), 1, "{disabled:#?}");
    assert_eq!(disabled.events[0].object.id, down.webhook.id.0);
    assert_eq!(disabled.events[0].data["enabled"], false);

    // A disabled endpoint gets no delivery of new events: none is even made.
    let video_id = create_video(&stack, &stack.http, "unseen").await;
    let created = logged_events(&stack, &stack.http, video_id, 1).await;
    let deliveries = db
        .query_one(
            "SELECT count(*) FROM webhook_delivery WHERE endpoint_id = $1 AND event_id = $2",
            &[&down.webhook.id.0, &created[0].id],
        )
        .await
        .expect("count");
    assert_eq!(deliveries.get::<_, i64>(0), 0);

    // Enabled again by its project, it takes events again.
    let response = stack
        .http
        .patch(stack.url(&format!("/v1/webhooks/{}", down.webhook.id)))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .expect("gateway answers");
    let enabled = json_of(response, "PATCH enabled", 200).await;
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    let video_id = create_video(&stack, &stack.http, "seen").await;
    receiver
        .wait_for("down", "the event after enabling", |received| {
            has(received, "video.created", video_id)
        })
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_committed_before_every_uploader_died_are_delivered_by_the_next() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            // These uploaders record deliveries with their events but never publish them.
            configure_uploader: |config| {
                local_quick_delivery(config);
                config.webhooks.deliver = false;
            },
            ..local_options()
        },
    )
    .await;
    let receiver = Receiver::start().await;
    let outbox = add_webhook(&stack, &stack.http, &receiver.url("outbox"), &["*"]).await;
    let video_id = create_video(&stack, &stack.http, "outbox").await;
    let logged = logged_events(&stack, &stack.http, video_id, 1).await;
    assert_eq!(logged.len(), 1, "{logged:#?}");

    // The state changed and its event is recorded; no uploader published it, and now none
    // is left.
    stack.crash_service("uploader-1");
    stack.crash_service("uploader-2");
    assert!(receiver.received("outbox").is_empty());

    stack
        .start_uploader("uploader-3", local_quick_delivery)
        .await;
    let received = receiver
        .wait_for("outbox", "the recorded event", |received| {
            has(received, "video.created", video_id)
        })
        .await;
    assert_eq!(received[0].event_id, logged[0].id);
    assert!(received[0].signed_by(&outbox.secret));
    let delivery = settled_delivery(&stack, &stack.http, outbox.webhook.id, &logged[0].id).await;
    assert_eq!(delivery.status, DeliveryStatus::Delivered);

    let db = env.db().await;
    let events = db
        .query_one(
            "SELECT count(*) FROM event WHERE object_id = $1",
            &[&video_id.0],
        )
        .await
        .expect("count");
    assert_eq!(events.get::<_, i64>(0), 1, "exactly one event row");
    let deliveries = db
        .query_one(
            "SELECT count(*) FROM webhook_delivery WHERE event_id = $1",
            &[&logged[0].id],
        )
        .await
        .expect("count");
    assert_eq!(deliveries.get::<_, i64>(0), 1, "exactly one delivery");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_projects_events_and_endpoints_stay_its_own() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    let (_, other) = stack.project_client("other").await;
    let ours = add_webhook(&stack, &stack.http, &receiver.url("ours"), &["*"]).await;
    let theirs = add_webhook(&stack, &other, &receiver.url("theirs"), &["*"]).await;

    let their_video = create_video(&stack, &other, "theirs").await;
    let our_video = create_video(&stack, &stack.http, "ours").await;
    let their_received = receiver
        .wait_for("theirs", "their event", |received| {
            has(received, "video.created", their_video)
        })
        .await;
    receiver
        .wait_for("ours", "our event", |received| {
            has(received, "video.created", our_video)
        })
        .await;
    assert!(their_received
        .iter()
        .all(|one| !about_video(one, our_video)));
    assert!(receiver
        .received("ours")
        .iter()
        .all(|one| !about_video(one, their_video)));
    // Their event made no delivery to our endpoint at all (deliveries are made with the
    // event, so there is nothing still to come).
    let db = env.db().await;
    let crossed = db
        .query_one(
            "SELECT count(*) FROM webhook_delivery WHERE endpoint_id = $1 AND event_id = $2",
            &[&ours.webhook.id.0, &their_received[0].event_id],
        )
        .await
        .expect("count");
    assert_eq!(crossed.get::<_, i64>(0), 0);

    // Their endpoint does not exist for us, whatever we ask of it.
    let theirs_path = format!("/v1/webhooks/{}", theirs.webhook.id);
    let attempts = [
        stack.http.get(stack.url(&theirs_path)),
        stack
            .http
            .patch(stack.url(&theirs_path))
            .json(&json!({"enabled": false})),
        stack.http.delete(stack.url(&theirs_path)),
        stack.http.post(stack.url(&format!("{theirs_path}/test"))),
        stack
            .http
            .post(stack.url(&format!("{theirs_path}/rotate-secret"))),
        stack
            .http
            .get(stack.url(&format!("{theirs_path}/deliveries"))),
        stack.http.post(stack.url(&format!(
            "/v1/events/{}/redeliver?webhook_id={}",
            receiver.received("ours")[0].event_id,
            theirs.webhook.id
        ))),
    ];
    for request in attempts {
        let body = json_of(
            request.send().await.expect("gateway answers"),
            "theirs",
            404,
        )
        .await;
        assert_eq!(body["code"], "webhook_not_found", "{body}");
    }
    let response = stack
        .http
        .post(stack.url(&format!(
            "/v1/events/{}/redeliver",
            their_received[0].event_id
        )))
        .send()
        .await
        .expect("gateway answers");
    let body = json_of(response, "their event", 404).await;
    assert_eq!(body["code"], "event_not_found");
    let listed = json_of(
        stack
            .http
            .get(stack.url("/v1/webhooks"))
            .send()
            .await
            .expect("answers"),
        "GET /v1/webhooks",
        200,
    )
    .await;
    let ids: Vec<&Value> = listed["webhooks"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|webhook| &webhook["id"])
        .collect();
    assert_eq!(ids, [&json!(ours.webhook.id)]);
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "a secret is shown once"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_secret_signs_beside_the_new_one_for_the_overlap_only() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    let webhook = add_webhook(
        &stack,
        &stack.http,
        &receiver.url("rotating"),
        &["video.created"],
    )
    .await;
    let rotate = |query: &str| {
        stack
            .http
            .post(stack.url(&format!(
                "/v1/webhooks/{}/rotate-secret{query}",
                webhook.webhook.id
            )))
            .send()
    };

    let response = rotate("").await.expect("gateway answers");
    let rotated: SecretRotated =
        serde_json::from_value(json_of(response, "rotate", 200).await).expect("rotated");
    assert_ne!(rotated.secret, webhook.secret);
    let overlap = rotated.previous_secrets_expire_at - chrono::Utc::now();
    assert!(
        overlap > chrono::Duration::hours(23) && overlap <= chrono::Duration::hours(24),
        "the default overlap is 24 hours: {overlap}"
    );
    let during = create_video(&stack, &stack.http, "during").await;
    let received = receiver
        .wait_for("rotating", "an event during the overlap", |received| {
            has(received, "video.created", during)
        })
        .await;
    assert_eq!(
        received[0].signatures().count(),
        2,
        "{:?}",
        received[0].signature
    );
    assert!(
        received[0].signed_by(&webhook.secret),
        "the old secret verifies"
    );
    assert!(
        received[0].signed_by(&rotated.secret),
        "the new secret verifies"
    );

    let response = rotate("?overlap_seconds=0").await.expect("gateway answers");
    let newest: SecretRotated =
        serde_json::from_value(json_of(response, "rotate", 200).await).expect("rotated");
    let after = create_video(&stack, &stack.http, "after").await;
    let received = receiver
        .wait_for("rotating", "an event after the overlap", |received| {
            has(received, "video.created", after)
        })
        .await;
    let last = received.last().expect("a delivery");
    assert_eq!(last.signatures().count(), 1, "{:?}", last.signature);
    assert!(last.signed_by(&newest.secret));
    assert!(!last.signed_by(&rotated.secret));
    assert!(!last.signed_by(&webhook.secret));

    for bad in ["-1", "soon", "604801"] {
        let response = rotate(&format!("?overlap_seconds={bad}"))
            .await
            .expect("gateway answers");
        let body = json_of(response, bad, 400).await;
        assert_validation_failed(&body, "overlap_seconds", "overlap_seconds");
    }
    stack.shutdown().await;
}

/// The uploaders may post over `http` but only to public addresses: what a URL resolves to
/// is checked again as they connect.
fn http_to_public_only(config: &mut uploader::Config) {
    config.webhooks.allow_http = true;
    config.webhooks.relay_interval_ms = 50;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn urls_of_local_private_or_metadata_addresses_are_refused() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_uploader: http_to_public_only,
            ..StackOptions::default()
        },
    )
    .await;
    let long = format!("https://example.com/{}", "a".repeat(3000));
    let refused = [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.1.2.3:8443/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://172.16.0.1/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://[fd00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://169.254.1.1/hook", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://example.com/hook", "http"),
        ("ftp://example.com/hook", "ftp"),
        ("https://user:secret@example.com/hook", "password"),
        ("not a url", "absolute"),
        (long.as_str(), "longer than"),
    ];
    for (url, reason) in refused {
        let response = stack
            .http
            .post(stack.url("/v1/webhooks"))
            .json(&json!({"url": url, "events": ["*"]}))
            .send()
            .await
            .expect("gateway answers");
        let body = json_of(response, url, 400).await;
        assert_validation_failed(&body, "url", reason);
    }
    for (events, naming) in [
        (json!(["video.ready", "video.exploded"]), "video.exploded"),
        (json!([]), "events"),
        (json!(["*", "video.ready"]), "*"),
    ] {
        let response = stack
            .http
            .post(stack.url("/v1/webhooks"))
            .json(&json!({"url": "https://example.com/hook", "events": events}))
            .send()
            .await
            .expect("gateway answers");
        let body = json_of(response, "events", 400).await;
        assert_validation_failed(&body, "events", naming);
    }
    let listed = json_of(
        stack
            .http
            .get(stack.url("/v1/webhooks"))
            .send()
            .await
            .expect("answers"),
        "GET /v1/webhooks",
        200,
    )
    .await;
    assert_eq!(listed["webhooks"], json!([]), "nothing refused was kept");

    // Endpoints whose names resolved to public addresses when accepted and resolve to the
    // loopback now (DNS rebinding), or that name it outright, are never connected to.
    let receiver = Receiver::start().await;
    let db = env.db().await;
    let rebound = [
        format!("http://localhost:{}/rebound", receiver.port()),
        format!("http://127.0.0.1:{}/rebound", receiver.port()),
    ];
    for url in &rebound {
        let id = uuid::Uuid::new_v4();
        db.execute(
            "INSERT INTO webhook_endpoint (id, project_id, url, events) VALUES ($1, $2, $3, '{*}')",
            &[&id, &vod_contracts::ProjectId::DEFAULT.0, url],
        )
        .await
        .expect("an endpoint");
        db.execute(
            "INSERT INTO webhook_secret (endpoint_id, secret) VALUES ($1, $2)",
            &[&id, &format!("whsec_{}", "0".repeat(64))],
        )
        .await
        .expect("a secret");
        let webhook_id = WebhookId(id);
        let queued = ping(&stack, &stack.http, webhook_id).await;
        let delivery = poll_until("a refused attempt", Duration::from_secs(60), || async {
            delivery_log(&stack, &stack.http, webhook_id)
                .await
                .deliveries
                .into_iter()
                .find(|delivery| delivery.id == queued.id && !delivery.attempts.is_empty())
        })
        .await;
        let attempt = &delivery.attempts[0];
        assert_eq!(attempt.status_code, None, "{delivery:#?}");
        assert!(
            attempt
                .error
                .as_deref()
                .is_some_and(|error| error.contains("loopback")),
            "{url}: {delivery:#?}"
        );
    }
    assert!(receiver.received("rebound").is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receivers_that_redirect_stall_or_flood_are_bounded() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let receiver = Receiver::start().await;
    receiver.script("redirect", [Answer::Redirect(receiver.url("elsewhere"))]);
    receiver.script("stall", [Answer::Stall(Duration::from_secs(30))]);
    receiver.script("flood", [Answer::Flood]);

    let mut settled = Vec::new();
    for path in ["redirect", "stall", "flood"] {
        let webhook = add_webhook(&stack, &stack.http, &receiver.url(path), &["*"]).await;
        let queued = ping(&stack, &stack.http, webhook.webhook.id).await;
        settled.push((path, webhook.webhook.id, queued));
    }
    for (path, webhook_id, queued) in settled {
        let delivery = settled_delivery(&stack, &stack.http, webhook_id, &queued.event_id).await;
        assert_eq!(
            delivery.status,
            DeliveryStatus::Delivered,
            "{path}: {delivery:#?}"
        );
        let first = &delivery.attempts[0];
        let error = first.error.as_deref().unwrap_or_default();
        match path {
            "redirect" => {
                assert_eq!(first.status_code, Some(302), "{delivery:#?}");
                assert!(error.contains("redirects are not followed"), "{error}");
            }
            "stall" => {
                assert_eq!(first.status_code, None, "{delivery:#?}");
                assert!(error.contains("in time"), "{error}");
                assert!(first.latency_ms < 30_000, "{delivery:#?}");
            }
            _ => {
                // The endless body is never read: the attempt is a success at once.
                assert_eq!(delivery.attempts.len(), 1, "{delivery:#?}");
                assert_eq!(first.status_code, Some(200));
            }
        }
    }
    assert!(
        receiver.received("elsewhere").is_empty(),
        "the redirect was not followed"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_project_has_at_most_the_configured_number_of_endpoints() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_gateway: |config| {
                vod_tests::receiver::local_targets(config);
                config.webhooks.max_per_project = 2;
            },
            ..local_options()
        },
    )
    .await;
    let receiver = Receiver::start().await;
    let first = add_webhook(&stack, &stack.http, &receiver.url("one"), &["*"]).await;
    add_webhook(&stack, &stack.http, &receiver.url("two"), &["*"]).await;
    let create = |http: &reqwest::Client| {
        http.post(stack.url("/v1/webhooks"))
            .json(&json!({"url": receiver.url("three")}))
            .send()
    };
    let body = json_of(create(&stack.http).await.expect("answers"), "a third", 409).await;
    assert_eq!(body["code"], "webhook_limit_reached", "{body}");

    // The limit is the project's: another one has its own.
    let (_, other) = stack.project_client("other").await;
    json_of(
        create(&other).await.expect("answers"),
        "another project's",
        201,
    )
    .await;
    // Deleting one makes room again.
    let response = stack
        .http
        .delete(stack.url(&format!("/v1/webhooks/{}", first.webhook.id)))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 204);
    json_of(
        create(&stack.http).await.expect("answers"),
        "after a deletion",
        201,
    )
    .await;
    stack.shutdown().await;
}
