#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ffmpeg_processes_in, make_mkv, Replica, TestEnv};
use reqwest::StatusCode;
use vod_contracts::fflow::CreateProcess;
use vod_contracts::layout;
use vod_contracts::outcome::{EncodeOutcome, EncodeResult};
use vod_contracts::EncodePath;

const CHUNK: usize = 64 * 1024;

async fn streaming_replica(env: &TestEnv) -> Replica {
    let mut config = env.fflow_config("r1");
    config.streaming_probe_bytes = CHUNK as u64;
    config.progress_interval_ms = 50;
    env.start_replica_with(config).await
}

/// Sends the first `count` chunks.
async fn put_chunks(
    env: &TestEnv,
    replica: &Replica,
    request: &CreateProcess,
    clip: &[u8],
    count: usize,
) {
    for (index, chunk) in clip.chunks(CHUNK).take(count).enumerate() {
        replica
            .put_ok(&env.http, request.session_id, (index * CHUNK) as u64, chunk)
            .await;
    }
}

async fn put_the_rest(
    env: &TestEnv,
    replica: &Replica,
    request: &CreateProcess,
    clip: &[u8],
    from_chunk: usize,
) {
    for (index, chunk) in clip.chunks(CHUNK).enumerate().skip(from_chunk) {
        replica
            .put_ok(&env.http, request.session_id, (index * CHUNK) as u64, chunk)
            .await;
    }
    assert_eq!(
        replica.finish(&env.http, request.session_id).await.status(),
        StatusCode::ACCEPTED
    );
}

/// Waits until the streaming encode has encoded something, so ffmpeg has read the first chunk.
async fn wait_for_streaming_output(env: &TestEnv) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reports = env.progress_reports().await;
        assert!(
            reports
                .iter()
                .all(|report| report.started.path == EncodePath::Streaming),
            "{reports:?}"
        );
        if reports.iter().any(|report| report.percent > 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the streaming encode made no output"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_path(outcome: &EncodeOutcome) -> EncodePath {
    assert!(
        matches!(outcome.result, EncodeResult::Ready(_)),
        "{:?}",
        outcome.result
    );
    outcome.started.expect("how the encode started").path
}

#[tokio::test]
async fn a_redelivered_chunk_with_the_same_bytes_keeps_the_streaming_encode() {
    let env = TestEnv::start().await;
    let replica = streaming_replica(&env).await;
    let clip = make_mkv(env.dir.path(), 6);
    let chunks = clip.len().div_ceil(CHUNK);
    assert!(chunks >= 6, "{} bytes", clip.len());
    let (request, _) = replica.create(&env.http, clip.len() as u64).await;

    put_chunks(&env, &replica, &request, &clip, chunks / 2).await;
    wait_for_streaming_output(&env).await;
    // The uploader lost its commit of the first chunk and sends it again.
    replica
        .put_ok(&env.http, request.session_id, 0, &clip[..CHUNK])
        .await;
    put_the_rest(&env, &replica, &request, &clip, 1).await;

    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    assert_eq!(ready_path(&outcome), EncodePath::Streaming);
    let started = outcome.started.unwrap();
    assert!(started.received_bytes < clip.len() as u64, "{started:?}");
    let target = request.target.unwrap();
    let stored = env
        .holder_root
        .join(layout::presentation_dir(target.video_id, target.flow_id));
    let (duration, _) = common::probe(stored.join("master.m3u8").to_str().unwrap()).await;
    assert!((duration - 6.0).abs() < 0.3, "{duration}");

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn a_rewrite_of_bytes_ffmpeg_read_makes_the_encode_wait_for_the_last_byte() {
    let env = TestEnv::start().await;
    let replica = streaming_replica(&env).await;
    let clip = make_mkv(env.dir.path(), 6);
    let chunks = clip.len().div_ceil(CHUNK);
    let (request, _) = replica.create(&env.http, clip.len() as u64).await;

    put_chunks(&env, &replica, &request, &clip, chunks / 2).await;
    wait_for_streaming_output(&env).await;
    // The same chunk, but with other bytes (the muxer's name in the header changed): what
    // ffmpeg read is no longer the source.
    let mut rewritten = clip[..CHUNK].to_vec();
    let at = rewritten
        .windows(4)
        .position(|window| window == b"Lavf")
        .expect("the muxer's name in the header");
    rewritten[at] = b'X';
    replica
        .put_ok(&env.http, request.session_id, 0, &rewritten)
        .await;
    put_the_rest(&env, &replica, &request, &clip, 1).await;

    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    assert_eq!(ready_path(&outcome), EncodePath::AfterUpload);
    assert_eq!(outcome.started.unwrap().received_bytes, clip.len() as u64);
    let source = std::fs::read(replica.session_dir(request.session_id).join("source"));
    // The spool is gone once published; what was encoded is the rewritten source.
    assert!(source.is_err() || source.unwrap()[at] == b'X');

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn the_watchdog_kills_an_encode_that_stops_making_progress() {
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    config.streaming_probe_bytes = CHUNK as u64;
    config.progress_interval_ms = 50;
    config.stall_timeout_seconds = 2;
    let replica = env.start_replica_with(config).await;
    let clip = make_mkv(env.dir.path(), 6);
    let chunks = clip.len().div_ceil(CHUNK);
    let (request, _) = replica.create(&env.http, clip.len() as u64).await;

    put_chunks(&env, &replica, &request, &clip, chunks / 2).await;
    wait_for_streaming_output(&env).await;
    // Waiting for the rest of the upload is not a stall: ffmpeg is still alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let session_dir = replica.session_dir(request.session_id);
    let ffmpeg = ffmpeg_processes_in(&session_dir);
    assert_eq!(
        ffmpeg.len(),
        1,
        "one ffmpeg waits for the upload: {ffmpeg:?}"
    );
    let pid = ffmpeg[0];
    // Freeze it, as a hung decoder would be, and send the rest.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    put_the_rest(&env, &replica, &request, &clip, chunks / 2).await;

    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    let EncodeResult::Failed { reason } = outcome.result else {
        panic!("a frozen encode was reported {:?}", outcome.result);
    };
    assert_eq!(
        reason,
        "the encode made no progress for 2 seconds and was stopped"
    );
    assert_eq!(
        outcome.started.map(|started| started.path),
        Some(EncodePath::Streaming)
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "ffmpeg {pid} was killed and reaped"
    );

    replica.stop().await;
    env.stop().await;
}

/// Waits until an encode of the session has reported progress while the upload arrives.
async fn wait_for_streaming_start(env: &TestEnv, session_id: vod_contracts::SessionId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reports = env.progress_reports().await;
        if reports.iter().any(|report| {
            report.session_id == session_id && report.started.path == EncodePath::Streaming
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no streaming encode started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the replica's only encode slot free again, a whole upload is encoded.
async fn the_slot_is_free(env: &TestEnv, replica: &Replica) {
    let clip = common::make_clip(env.dir.path());
    let other = common::upload(env, replica, &clip).await;
    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, other.session_id, "{outcome:?}");
    assert_eq!(ready_path(&outcome), EncodePath::AfterUpload);
}

#[tokio::test]
async fn a_streaming_encode_waiting_too_long_gives_its_slot_back_and_the_upload_becomes_ready() {
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    config.streaming_probe_bytes = CHUNK as u64;
    config.progress_interval_ms = 50;
    config.max_concurrent_encodes = 1;
    config.streaming_max_wait_seconds = 1;
    let replica = env.start_replica_with(config).await;
    let clip = make_mkv(env.dir.path(), 6);
    let chunks = clip.len().div_ceil(CHUNK);
    let (request, _) = replica.create(&env.http, clip.len() as u64).await;

    put_chunks(&env, &replica, &request, &clip, chunks / 2).await;
    wait_for_streaming_start(&env, request.session_id).await;
    // The rest of the upload does not come: its ffmpeg is stopped and its slot given back.
    let session_dir = replica.session_dir(request.session_id);
    common::eventually("the waiting ffmpeg stopped", || {
        ffmpeg_processes_in(&session_dir).is_empty()
    })
    .await;
    the_slot_is_free(&env, &replica).await;

    put_the_rest(&env, &replica, &request, &clip, chunks / 2).await;
    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    assert_eq!(ready_path(&outcome), EncodePath::AfterUpload);
    assert_eq!(outcome.started.unwrap().received_bytes, clip.len() as u64);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn a_streaming_encode_whose_output_outruns_its_bytes_gives_its_slot_back() {
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    config.streaming_probe_bytes = 1024;
    config.progress_interval_ms = 50;
    config.max_concurrent_encodes = 1;
    // Only the output's lead over the bytes can stop it.
    config.streaming_max_wait_seconds = 3600;
    let replica = env.start_replica_with(config).await;
    // Ten frames ten minutes apart in 1.5 KB, announced as a 2 MiB upload: its length is
    // believable for what it announces, not for what arrives.
    let sparse = common::make_sparse_mkv(env.dir.path(), 10);
    let announced = sparse.len() as u64 + 2 * 1024 * 1024;
    let (request, _) = replica.create(&env.http, announced).await;
    let sent = &sparse[..sparse.len() - 60];
    replica.put_ok(&env.http, request.session_id, 0, sent).await;

    wait_for_streaming_start(&env, request.session_id).await;
    let session_dir = replica.session_dir(request.session_id);
    common::eventually("the outrunning ffmpeg stopped", || {
        ffmpeg_processes_in(&session_dir).is_empty()
    })
    .await;
    the_slot_is_free(&env, &replica).await;

    replica.stop().await;
    env.stop().await;
}
