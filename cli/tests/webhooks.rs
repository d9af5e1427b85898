//! `vod webhooks` and `vod events` against the whole stack and a real receiver: an endpoint
//! added from the command line is listed, pinged and removed; the event log prints, and
//! `--follow` prints an event as it happens.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use vod_contracts::webhook::WebhookCreated;
use vod_tests::receiver::{local_options, Receiver};
use vod_tests::{poll_until, Stack, TestEnv};

use common::{run, shows_no_key, stderr, stdout, succeeded, vod};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_added_with_vod_is_listed_pinged_and_removed() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, local_options()).await;
    let key = Some(stack.api_key.as_str());
    let receiver = Receiver::start().await;

    let added = run(vod(
        &stack,
        key,
        &[
            "webhooks",
            "add",
            &receiver.url("cli"),
            "--events",
            "video.ready,video.failed",
        ],
    ))
    .await;
    let created: WebhookCreated =
        serde_json::from_str(&succeeded(&added)).expect("the endpoint as JSON");
    assert_eq!(created.webhook.events, ["video.ready", "video.failed"]);
    assert!(
        stderr(&added).contains("shown this once"),
        "{}",
        stderr(&added)
    );
    shows_no_key(&added, &[&stack.api_key]);
    let id = created.webhook.id.to_string();

    let listed = succeeded(&run(vod(&stack, key, &["webhooks", "ls"])).await);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("the endpoint listed: {listed}"));
    assert!(
        line.contains("enabled  video.ready,video.failed") && line.ends_with(&receiver.url("cli")),
        "{line}"
    );
    assert!(!listed.contains(&created.secret), "a secret is shown once");

    // A ping reaches the receiver, signed, and the command says how its attempt went.
    let tested = run(vod(&stack, key, &["webhooks", "test", &id])).await;
    let printed = succeeded(&tested);
    assert!(printed.contains("delivered  ping"), "{printed}");
    assert!(printed.contains("  200  "), "{printed}");
    let received = receiver.received("cli");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].signed_by(&created.secret));
    let log = succeeded(&run(vod(&stack, key, &["webhooks", "log", &id])).await);
    assert!(log.contains(&received[0].event_id), "{log}");

    // A ping the receiver refuses fails the command, saying so.
    receiver.script("cli", [vod_tests::receiver::Answer::Status(410)]);
    let refused = run(vod(&stack, key, &["webhooks", "test", &id])).await;
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("  410  "), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("not delivered at its first attempt"),
        "{}",
        stderr(&refused)
    );

    // A URL the server refuses is told with its reason.
    let bad = run(vod(&stack, key, &["webhooks", "add", "ftp://example.com/"])).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("url"), "{}", stderr(&bad));

    let removed = run(vod(&stack, key, &["webhooks", "rm", &id])).await;
    assert!(succeeded(&removed).contains("removed"));
    let listed = succeeded(&run(vod(&stack, key, &["webhooks", "ls"])).await);
    assert_eq!(listed.trim(), "no webhooks");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vod_events_prints_the_log_and_follows_new_events() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let key = Some(stack.api_key.as_str());
    let create = |title: &str| {
        stack
            .http
            .post(stack.url("/v1/videos"))
            .json(&serde_json::json!({"title": title, "description": ""}))
            .send()
    };
    let first: serde_json::Value = create("first")
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("video JSON");
    let first_id = first["id"].as_str().expect("an id").to_owned();

    let printed = poll_until("the event in the log", Duration::from_secs(30), || async {
        let printed = succeeded(&run(vod(&stack, key, &["events"])).await);
        printed.contains(&first_id).then_some(printed)
    })
    .await;
    let line = printed
        .lines()
        .find(|line| line.contains(&first_id))
        .expect("a line");
    assert!(
        line.contains("video.created") && line.contains("evt_"),
        "{line}"
    );
    let as_json = succeeded(
        &run(vod(
            &stack,
            key,
            &["events", "--json", "--type", "video.created"],
        ))
        .await,
    );
    let event: serde_json::Value =
        serde_json::from_str(as_json.lines().next().expect("a line")).expect("an event as JSON");
    assert_eq!(event["type"], "video.created");
    assert_eq!(event["data"]["id"], first_id.as_str());

    // Following: an event made after the command started is printed as it happens.
    let mut following = vod(&stack, key, &["events", "--follow", "--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("vod runs");
    let output = following.stdout.take().expect("its stdout");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let second: serde_json::Value = create("second")
        .await
        .expect("gateway answers")
        .json()
        .await
        .expect("video JSON");
    let second_id = second["id"].as_str().expect("an id").to_owned();
    let found = tokio::task::spawn_blocking(move || {
        while let Ok(line) = seen.recv_timeout(Duration::from_secs(60)) {
            if line.contains(&second_id) {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("reader");
    let _ = following.kill();
    let _ = following.wait();
    let line = found.expect("vod events --follow printed the new video's event");
    assert!(line.contains("video.created"), "{line}");
    stack.shutdown().await;
}
