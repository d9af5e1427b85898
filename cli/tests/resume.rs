//! The `vod` command line against the whole stack: an upload killed midway and started again
//! continues from the server's offset, and the video plays with the file's exact bytes.

use std::process::{Output, Stdio};
use std::time::Duration;

use vod_contracts::VideoStatus;
use vod_tests::media::generate_clip;
use vod_tests::{poll_until, sha256_hex, Stack, TestEnv};

/// `vod` against the stack, with the stack's API key in `VOD_API_KEY`.
fn vod(stack: &Stack, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vod"));
    command
        .env("VOD_API_KEY", &stack.api_key)
        .arg("--server")
        .arg(&stack.gateway_url)
        .args(args);
    command
}

async fn run(mut command: std::process::Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("vod runs"))
        .await
        .expect("vod finished")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_killed_midway_resumes_from_the_server_offset() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 4, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let state = env.dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8 path");
    let clip_arg = clip.to_str().expect("utf-8 path");
    let chunk = 32 * 1024;
    assert!(bytes.len() > 8 * chunk, "several chunks to send");

    // A slow first run, killed once the server holds some of the file.
    let mut first = vod(
        &stack,
        &[
            "upload",
            clip_arg,
            "--title",
            "Resumed",
            "--chunk-size",
            &chunk.to_string(),
            "--limit-rate",
            "131072",
            "--state-file",
            state_arg,
            "--quiet",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .expect("vod starts");
    let location = poll_until(
        "the upload to be remembered",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&state).ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            let uploads = json["uploads"].as_object()?;
            uploads.values().next()?["location"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    let stored = poll_until(
        "some bytes to be stored",
        Duration::from_secs(60),
        || async {
            let offset = stack.offset(&location).await;
            (offset >= 2 * chunk as u64).then_some(offset)
        },
    )
    .await;
    first.kill().expect("kill vod");
    let _ = first.wait();
    // The gateway finishes with what the killed request had sent, then gives its lock back.
    let session_id = location.rsplit('/').next().expect("upload id").to_owned();
    let db = env.db().await;
    poll_until(
        "the killed request to be over",
        Duration::from_secs(30),
        || async {
            let row = db
                .query_one(
                    "SELECT writer IS NULL FROM upload_session WHERE id::text = $1",
                    &[&session_id],
                )
                .await
                .expect("session row");
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
    let remembered = std::fs::read_to_string(&state).expect("state file");
    assert!(
        !remembered.contains(&stack.api_key),
        "the key is never written to the state file: {remembered}"
    );
    let at_kill = stack.offset(&location).await;
    assert!(
        at_kill >= stored && at_kill < bytes.len() as u64,
        "midway: {at_kill}"
    );

    let second = run(vod(
        &stack,
        &[
            "upload",
            clip_arg,
            "--chunk-size",
            &chunk.to_string(),
            "--state-file",
            state_arg,
            "--quiet",
        ],
    ))
    .await;
    assert!(
        second.status.success(),
        "{}{}",
        stdout(&second),
        String::from_utf8_lossy(&second.stderr)
    );
    let said = stdout(&second);
    assert!(
        !said.contains(&stack.api_key)
            && !String::from_utf8_lossy(&second.stderr).contains(&stack.api_key),
        "the key is never printed"
    );
    assert!(
        said.contains(&format!(
            "resuming upload of {clip_arg} at byte {at_kill} of {}",
            bytes.len()
        )),
        "{said}"
    );

    let list = run(vod(&stack, &["ls"])).await;
    let listed = stdout(&list);
    assert_eq!(
        listed.lines().count(),
        1,
        "one video, not a second upload: {listed}"
    );
    let video_id = listed.split_whitespace().next().expect("an id").to_owned();

    let waited = run(vod(&stack, &["wait", &video_id, "--max-wait", "120"])).await;
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let video = stack.video(video_id.parse().expect("uuid")).await;
    assert_eq!(video.status, VideoStatus::Ready);
    assert_eq!(video.title, "Resumed");
    let playback = video.playback.expect("playback");
    let printed = stdout(&waited);
    assert!(
        printed.contains(&playback.hls) && printed.contains(&playback.dash),
        "{printed}"
    );
    assert_eq!(
        video.flows[0].source_sha256.as_deref(),
        Some(sha256_hex(&bytes).as_str()),
        "the resumed upload is the file, byte for byte"
    );

    let status = run(vod(&stack, &["status", &video_id])).await;
    assert!(
        stdout(&status).contains("status: READY"),
        "{}",
        stdout(&status)
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_errors_are_told_plainly() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let missing = run(vod(&stack, &["status", &uuid_like()])).await;
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("no such video") && said.contains("404 video_not_found"),
        "{said}"
    );

    let unreachable = run({
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vod"));
        command
            .env("VOD_API_KEY", &stack.api_key)
            .args(["--server", "http://127.0.0.1:9", "ls"]);
        command
    })
    .await;
    assert!(!unreachable.status.success());
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        said.contains("cannot reach the vod server at http://127.0.0.1:9")
            && !said.contains(&stack.api_key),
        "{said}"
    );
    stack.shutdown().await;
}

fn uuid_like() -> String {
    vod_contracts::VideoId::new().to_string()
}
