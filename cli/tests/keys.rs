//! `vod keys`, `vod rm` and `vod usage` against the whole stack, with real API keys: a key made
//! from the command line works, is listed, and once revoked is refused with a plain message;
//! no command ever prints a key it was given.

use std::time::Duration;

use vod_contracts::access::{KeyCreated, Scope};
use vod_contracts::api::VideoView;
use vod_tests::{poll_until, Stack, TestEnv};

use common::{run, shows_no_key, stderr, succeeded, vod};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_made_listed_and_revoked_with_vod_keys_is_refused_once_revoked() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let stack_key = stack.api_key.as_str();

    // The flag wins over the environment.
    let created = run({
        let mut command = vod(
            &stack,
            Some("vod_not_a_key"),
            &["keys", "create", "--name", "laptop"],
        );
        command.args(["--api-key", stack_key]);
        command
    })
    .await;
    let printed = succeeded(&created);
    let made: KeyCreated = serde_json::from_str(&printed).expect("the new key as JSON");
    assert_eq!(made.name, "laptop");
    assert_eq!(made.scopes, [Scope::Read, Scope::Write], "both by default");
    assert!(made.key.starts_with("vod_"), "{printed}");
    assert!(
        stderr(&created).contains("shown this once"),
        "{}",
        stderr(&created)
    );
    shows_no_key(&created, &[stack_key]);
    let new_key = made.key.as_str();

    let listed = run(vod(&stack, Some(new_key), &["keys", "ls"])).await;
    let table = succeeded(&listed);
    let line = table
        .lines()
        .find(|line| line.starts_with(&made.id.to_string()))
        .unwrap_or_else(|| panic!("the new key listed: {table}"));
    assert!(
        line.contains("read,write") && line.contains("active") && line.ends_with("laptop"),
        "{line}"
    );
    assert!(table.lines().count() >= 2, "the stack's key too: {table}");
    shows_no_key(&listed, &[stack_key, new_key]);

    let read_only = run(vod(
        &stack,
        Some(new_key),
        &["keys", "create", "--scope", "read"],
    ))
    .await;
    let read_only: KeyCreated =
        serde_json::from_str(&succeeded(&read_only)).expect("the read key as JSON");
    assert_eq!(read_only.scopes, [Scope::Read]);
    let refused = run(vod(
        &stack,
        Some(&read_only.key),
        &["keys", "revoke", &made.id.to_string()],
    ))
    .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the API key may not do this (403 forbidden)"),
        "{}",
        stderr(&refused)
    );
    shows_no_key(&refused, &[&read_only.key]);

    let revoked = run(vod(
        &stack,
        Some(stack_key),
        &["keys", "revoke", &made.id.to_string()],
    ))
    .await;
    assert_eq!(
        succeeded(&revoked).trim(),
        format!("key {} revoked", made.id)
    );
    let table = succeeded(&run(vod(&stack, Some(stack_key), &["keys", "ls"])).await);
    let line = table
        .lines()
        .find(|line| line.starts_with(&made.id.to_string()))
        .unwrap_or_else(|| panic!("the revoked key still listed: {table}"));
    assert!(line.contains("revoked "), "{line}");

    // The gateway may remember the key as verified for its cache time (short in the stack).
    let refused = poll_until(
        "the revoked key to be refused",
        Duration::from_secs(30),
        || async {
            let output = run(vod(&stack, Some(new_key), &["ls"])).await;
            (!output.status.success()).then_some(output)
        },
    )
    .await;
    let said = stderr(&refused);
    assert!(
        said.contains("the API key was refused (401 unauthorized)") && said.contains("VOD_API_KEY"),
        "{said}"
    );
    shows_no_key(&refused, &[new_key]);

    let keyless = run(vod(&stack, None, &["ls"])).await;
    assert!(!keyless.status.success());
    assert!(
        stderr(&keyless).contains("the server requires an API key (401 unauthorized)"),
        "{}",
        stderr(&keyless)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vod_rm_deletes_a_video_and_vod_usage_prints_the_counters() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let key = stack.api_key.as_str();

    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&serde_json::json!({ "title": "To delete", "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 201);
    let video: VideoView = response.json().await.expect("video JSON");

    let removed = run(vod(&stack, Some(key), &["rm", &video.id.to_string()])).await;
    assert_eq!(
        succeeded(&removed).trim(),
        format!("video {} deleted", video.id)
    );
    shows_no_key(&removed, &[key]);
    let gone = stack
        .http
        .get(stack.url(&format!("/v1/videos/{}", video.id)))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(gone.status(), 404, "the video is gone");
    let again = run(vod(&stack, Some(key), &["status", &video.id.to_string()])).await;
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("404 video_not_found"),
        "{}",
        stderr(&again)
    );

    let usage = run(vod(&stack, Some(key), &["usage"])).await;
    let counters: serde_json::Value =
        serde_json::from_str(&succeeded(&usage)).expect("usage as JSON");
    for counter in [
        "bytes_received",
        "uploads_completed",
        "stored_bytes",
        "open_uploads",
    ] {
        assert!(counters[counter].is_u64(), "{counter} in {counters}");
    }
    assert!(counters["encoded_seconds"].is_number(), "{counters}");
    assert!(counters["since"].is_string(), "{counters}");
    assert!(
        counters["quotas"]["max_uploads_per_hour"].is_u64(),
        "{counters}"
    );
    shows_no_key(&usage, &[key]);
    stack.shutdown().await;
}
