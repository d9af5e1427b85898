//! Uploads made to reach past themselves: files that make ffmpeg read other files of the fflow
//! host, or that claim hours of media in a few bytes. Each is refused with a reason a user
//! reads, and nothing of what it names reaches holder.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    eventually, ffmpeg_processes_in, files_under, make_mkv, make_sparse_mkv, make_with_ffmpeg,
    upload, TestEnv,
};
use reqwest::StatusCode;
use vod_contracts::outcome::{EncodeOutcome, EncodeResult};
use vod_contracts::EncodePath;

/// A video on the fflow host that no upload may publish.
fn secret_media(env: &TestEnv) -> std::path::PathBuf {
    let path = env.dir.path().join("secret.ts");
    make_with_ffmpeg(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    path
}

fn failure_reason(outcome: &EncodeOutcome) -> &str {
    match &outcome.result {
        EncodeResult::Failed { reason } => reason,
        EncodeResult::Ready(facts) => panic!("published {facts:?}"),
    }
}

/// Uploads `bytes` as a whole and returns the reason it failed; holder received nothing.
async fn refused(env: &TestEnv, bytes: &[u8]) -> (EncodeOutcome, String) {
    let replica = env.start_replica("r1").await;
    let request = upload(env, &replica, bytes).await;
    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    let reason = failure_reason(&outcome).to_owned();
    let stored = files_under(&env.holder_root);
    assert!(stored.is_empty(), "holder received {stored:?}");
    replica.stop().await;
    (outcome, reason)
}

#[tokio::test]
async fn a_playlist_naming_a_file_of_the_fflow_host_fails_and_publishes_nothing() {
    let env = TestEnv::start().await;
    let secret = secret_media(&env);
    let playlist = format!(
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n",
        secret.display()
    );

    let (outcome, reason) = refused(&env, playlist.as_bytes()).await;
    assert!(
        reason.starts_with("the file's format (hls) is not accepted; accepted formats: mov, "),
        "{reason}"
    );
    assert!(outcome.started.is_none(), "no encode started");
    env.stop().await;
}

#[tokio::test]
async fn a_concat_script_naming_a_file_of_the_fflow_host_fails_and_publishes_nothing() {
    let env = TestEnv::start().await;
    let secret = secret_media(&env);
    let script = format!("ffconcat version 1.0\nfile {}\n", secret.display());

    let (outcome, reason) = refused(&env, script.as_bytes()).await;
    assert!(
        reason.starts_with("the file's format (concat) is not accepted"),
        "{reason}"
    );
    assert!(outcome.started.is_none(), "no encode started");
    env.stop().await;
}

#[tokio::test]
async fn a_tiny_file_claiming_ten_minutes_is_refused_before_it_is_encoded() {
    let env = TestEnv::start().await;
    let sparse = make_sparse_mkv(env.dir.path(), 2);
    assert!(sparse.len() < 2048, "{} bytes", sparse.len());

    let (outcome, reason) = refused(&env, &sparse).await;
    assert_eq!(
        reason,
        format!(
            "the file says it lasts 601 seconds but holds only {} bytes, less than 256 bytes \
             per second of media: its timestamps are not believable",
            sparse.len()
        )
    );
    // Refused from its probe: ffmpeg never started to encode it.
    assert!(outcome.started.is_none(), "{:?}", outcome.started);
    assert_eq!(env.progress_reports().await, []);
    env.stop().await;
}

/// The variables of a running process, `NAME=value` each.
fn environment_of(pid: u32) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|byte| *byte == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

fn arguments_of(pid: u32) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    cmdline
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[tokio::test]
async fn ffmpeg_sees_only_path_and_reads_only_the_upload_with_its_probed_demuxer() {
    // fflow's own environment holds more than PATH (cargo sets several variables for tests).
    assert!(
        std::env::vars_os().any(|(name, _)| name != "PATH"),
        "the test process has nothing to leak"
    );
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    const CHUNK: usize = 64 * 1024;
    config.streaming_probe_bytes = CHUNK as u64;
    let replica = env.start_replica_with(config).await;
    let clip = make_mkv(env.dir.path(), 6);
    let chunks: Vec<&[u8]> = clip.chunks(CHUNK).collect();
    let (request, _) = replica.create(&env.http, clip.len() as u64).await;
    let session_id = request.session_id;
    let mut offset = 0;
    for chunk in &chunks[..chunks.len() / 2] {
        offset = replica.put_ok(&env.http, session_id, offset, chunk).await;
    }

    // The streaming encode's ffmpeg waits for the rest of the upload: look at it (the one that
    // reads its standard input; a short `idet` run over the spool may come first).
    let session_dir = replica.session_dir(session_id);
    let streaming_encoder = || {
        ffmpeg_processes_in(&session_dir).into_iter().find(|pid| {
            // A process that ended meanwhile has no command line left to read.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|byte| *byte == 0).any(|arg| arg == b"pipe:0"))
        })
    };
    eventually("the streaming encode's ffmpeg", || {
        streaming_encoder().is_some()
    })
    .await;
    let pid = streaming_encoder().expect("the streaming encode's ffmpeg is running");
    let path = std::env::var("PATH").unwrap();
    assert_eq!(environment_of(pid), [format!("PATH={path}")]);
    let args = arguments_of(pid);
    assert_eq!(
        args[1..7],
        [
            "-protocol_whitelist",
            "file,pipe",
            "-format_whitelist",
            "matroska",
            "-f",
            "matroska",
        ]
    );
    // At most the probed 6 seconds with a margin, then the input.
    assert_eq!(args[7], "-t");
    let max_seconds: f64 = args[8].parse().unwrap();
    assert!((6.6..9.0).contains(&max_seconds), "{max_seconds}");
    assert_eq!(args[9..11], ["-i", "pipe:0"]);

    for (index, chunk) in chunks.iter().enumerate().skip(chunks.len() / 2) {
        let at = (index * CHUNK) as u64;
        offset = replica.put_ok(&env.http, session_id, at, chunk).await;
    }
    assert_eq!(offset, clip.len() as u64);
    assert_eq!(
        replica.finish(&env.http, session_id).await.status(),
        StatusCode::ACCEPTED
    );
    let outcome = env.next_outcome().await;
    assert!(
        matches!(outcome.result, EncodeResult::Ready(_)),
        "{:?}",
        outcome.result
    );
    assert_eq!(
        outcome.started.map(|started| started.path),
        Some(EncodePath::Streaming)
    );
    replica.stop().await;
    env.stop().await;
}
