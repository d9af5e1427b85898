//! A service process dies, or is told to stop, while an upload is in flight: the upload still
//! completes with exactly the client's bytes, and no offset the client was told is lost (except
//! when the fflow replica holding the bytes is lost: the offset then drops to 0, once, and the
//! client resends).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use vod_contracts::VideoStatus;
use vod_tests::media::{generate_clip, playlist_references};
use vod_tests::tus::{header_u64, trickled_patch, Upload, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{poll_until, Stack, StackOptions, TestEnv};

/// Bytes per PATCH of the client below, and per frame of its throttled body.
const PATCH_BYTES: usize = 512 * 1024;
const FRAME_BYTES: usize = 32 * 1024;

/// Every offset the server told the client, in order, with where it came from.
#[derive(Clone, Default)]
struct Told(Arc<Mutex<Vec<(&'static str, u64)>>>);

impl Told {
    fn push(&self, from: &'static str, offset: u64) {
        self.0.lock().expect("lock").push((from, offset));
    }

    fn all(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().expect("lock").clone()
    }

    fn last(&self) -> u64 {
        self.all().last().map_or(0, |(_, offset)| *offset)
    }
}

/// A tus client that sends `bytes` in PATCHes of [`PATCH_BYTES`], each body trickled in small
/// frames so that a request is in flight most of the time. On any refusal it asks HEAD where
/// the upload stands and resends from there, as tus clients do.
async fn upload_resuming(http: reqwest::Client, location: String, bytes: Bytes, told: Told) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut offset = head_offset(&http, &location).await;
    told.push("HEAD", offset);
    while offset < bytes.len() as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upload did not complete; offsets told: {:?}",
            told.all()
        );
        let end = (offset as usize + PATCH_BYTES).min(bytes.len());
        let body = bytes.slice(offset as usize..end);
        let response = trickled_patch(&http, &location, offset, body, FRAME_BYTES).await;
        match response {
            Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                offset = header_u64(&response, "upload-offset");
                told.push("PATCH", offset);
            }
            Ok(response)
                if matches!(
                    response.status(),
                    StatusCode::CONFLICT
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                        | StatusCode::INTERNAL_SERVER_ERROR
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                offset = head_offset(&http, &location).await;
                told.push("HEAD", offset);
            }
            Ok(response) => panic!(
                "PATCH at {offset} answered {}: {:?}",
                response.status(),
                response.text().await
            ),
            Err(error) => {
                tracing::warn!(error = %error, "PATCH failed on the way, resuming");
                tokio::time::sleep(Duration::from_millis(200)).await;
                offset = head_offset(&http, &location).await;
                told.push("HEAD", offset);
            }
        }
    }
}

async fn head_offset(http: &reqwest::Client, location: &str) -> u64 {
    let response = http
        .head(location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers HEAD");
    assert_eq!(response.status(), StatusCode::OK, "HEAD {location}");
    header_u64(&response, "upload-offset")
}

/// A clip of a few MiB and its upload, created at the gateway.
async fn clip_upload(env: &TestEnv, stack: &Stack) -> (Bytes, Upload) {
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 8, "960x540");
    let bytes = Bytes::from(std::fs::read(&clip).expect("clip"));
    assert!(
        bytes.len() > 3 * PATCH_BYTES,
        "the clip spans several PATCHes"
    );
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
    (bytes, upload)
}

/// Starts the client and waits until the server holds some but not all of the bytes.
async fn start_uploading(
    stack: &Stack,
    upload: &Upload,
    bytes: &Bytes,
) -> (tokio::task::JoinHandle<()>, Told) {
    let told = Told::default();
    let client = tokio::spawn(upload_resuming(
        stack.http.clone(),
        upload.location.clone(),
        bytes.clone(),
        told.clone(),
    ));
    let len = bytes.len() as u64;
    poll_until(
        "some bytes to be stored",
        Duration::from_secs(30),
        || async {
            let offset = stack.offset(&upload.location).await;
            (offset > 0).then_some(offset)
        },
    )
    .await;
    assert!(
        told.last() < len,
        "the upload is still under way when the fault comes"
    );
    (client, told)
}

/// No offset told was ever taken back: each one is at least every one told before it.
fn assert_never_lost(told: &[(&str, u64)], len: u64) {
    let mut highest = 0;
    for (from, offset) in told {
        assert!(
            *offset >= highest,
            "{from} told {offset} after {highest} was told: {told:?}"
        );
        highest = *offset;
    }
    assert_eq!(highest, len, "{told:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploader_killed_mid_upload_the_other_replica_completes_it() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            // Many pieces per PATCH: both uploaders hold some when one dies.
            chunk_size_bytes: 64 * 1024,
            ..StackOptions::default()
        },
    )
    .await;
    let (bytes, upload) = clip_upload(&env, &stack).await;
    let (client, told) = start_uploading(&stack, &upload, &bytes).await;

    stack.crash_service("uploader-1");
    client.await.expect("the client completes the upload");

    assert_never_lost(&told.all(), bytes.len() as u64);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploader_stopped_mid_upload_finishes_or_hands_back_its_chunks() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            chunk_size_bytes: 64 * 1024,
            shutdown_timeout_ms: 2_000,
            ..StackOptions::default()
        },
    )
    .await;
    let (bytes, upload) = clip_upload(&env, &stack).await;
    let (client, told) = start_uploading(&stack, &upload, &bytes).await;

    // Panics unless the replica stops cleanly within 30 s.
    stack.stop_service("uploader-1").await;
    client.await.expect("the client completes the upload");

    assert_never_lost(&told.all(), bytes.len() as u64);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fflow_replica_killed_mid_upload_the_upload_moves_and_plays() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            fflow_reassign_after_ms: 1_000,
            ..StackOptions::default()
        },
    )
    .await;
    let (bytes, upload) = clip_upload(&env, &stack).await;
    let (client, told) = start_uploading(&stack, &upload, &bytes).await;

    let lost = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("the session has a replica once bytes are stored");
    stack.crash_service(&stack.fflow_service(&lost));
    client.await.expect("the client completes the upload");

    // The offset dropped to 0 once, when the replica was given up; otherwise it only grew.
    let told = told.all();
    let drop_at = told
        .windows(2)
        .position(|pair| pair[1].1 < pair[0].1)
        .expect("the offset dropped when the replica was lost");
    assert_eq!(told[drop_at + 1], ("HEAD", 0), "{told:?}");
    assert_never_lost(&told[drop_at + 1..], bytes.len() as u64);
    let moved_to = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("the session has a replica");
    assert_ne!(moved_to, lost, "the upload moved to the other replica");
    let reassignments: i32 = env
        .db()
        .await
        .query_one(
            "SELECT fflow_reassignments FROM upload_session WHERE id = $1",
            &[&upload.session_id.0],
        )
        .await
        .expect("session row")
        .get(0);
    assert_eq!(reassignments, 1);

    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    let video = stack.video(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready);
    let hls = video.playback.expect("playback URLs").hls;
    let (_, master) = stack.fetch(&hls).await;
    let master = String::from_utf8(master).expect("utf-8 playlist");
    let media = playlist_references(&hls, &master);
    let (_, media_body) = stack.fetch(&media[0]).await;
    let media_body = String::from_utf8(media_body).expect("utf-8 playlist");
    let segments = playlist_references(&media[0], &media_body);
    let (_, segment) = stack.fetch(segments.last().expect("a segment")).await;
    assert!(!segment.is_empty(), "the last segment has bytes");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_stops_within_its_timeout_with_a_body_still_arriving() {
    let env = TestEnv::new().await;
    let chunk_size_bytes = 64 * 1024;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            chunk_size_bytes,
            shutdown_timeout_ms: 1_000,
            ..StackOptions::default()
        },
    )
    .await;
    let upload = stack.create_upload(1024 * 1024, "stalled.mp4").await;
    // One whole piece, then a body that never ends.
    let first = Bytes::from(vec![7u8; chunk_size_bytes]);
    let frames = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(futures_util::stream::pending());
    let stalled = tokio::spawn(
        stack
            .http
            .patch(&upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", "0")
            .body(reqwest::Body::wrap_stream(frames))
            .send(),
    );
    poll_until(
        "the first piece to be stored",
        Duration::from_secs(30),
        || async { (stack.offset(&upload.location).await > 0).then_some(()) },
    )
    .await;

    // Panics unless the gateway stops cleanly within 30 s.
    stack.stop_service("gateway").await;

    let stored: i64 = env
        .db()
        .await
        .query_one(
            "SELECT f.uploaded_bytes FROM flow f JOIN upload_session s ON s.flow_id = f.id \
             WHERE s.id = $1",
            &[&upload.session_id.0],
        )
        .await
        .expect("flow row")
        .get(0);
    assert_eq!(
        stored, chunk_size_bytes as i64,
        "the piece that arrived is kept"
    );
    stalled.abort();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flow_processing_on_a_lost_fflow_replica_fails_with_a_reason() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            fflow_reassign_after_ms: 1_000,
            // An encode slow enough to still run when its replica dies.
            configure_fflow: |config| config.x264_preset = "veryslow".to_owned(),
            ..StackOptions::default()
        },
    )
    .await;
    let (bytes, upload) = clip_upload(&env, &stack).await;
    let response = stack.patch(&upload.location, 0, bytes.to_vec()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        stack.video(upload.video_id).await.status,
        VideoStatus::Processing
    );

    let lost = Stack::recorded_replica(&env, upload.session_id)
        .await
        .expect("the session has a replica");
    stack.crash_service(&stack.fflow_service(&lost));

    let scheduler = stack.schedulers[0].clone();
    let video = poll_until("the flow to fail", Duration::from_secs(30), || async {
        scheduler
            .fail_flows_on_lost_replicas()
            .await
            .expect("the job runs");
        let video = stack.video(upload.video_id).await;
        (video.status != VideoStatus::Processing).then_some(video)
    })
    .await;
    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    let error = video.flows[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("was lost"), "{error}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holder_stops_within_its_timeout_with_a_download_nobody_reads() {
    let env = TestEnv::new().await;
    let mut stack = Stack::spawn_with(
        &env,
        StackOptions {
            shutdown_timeout_ms: 1_000,
            ..StackOptions::default()
        },
    )
    .await;
    let dir = stack.holder_root.join("stalled");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("big.m4s"), vec![0u8; 64 * 1024 * 1024]).expect("segment");
    // Headers read, body never: holder's writes block once the socket buffers are full.
    let response = stack
        .http
        .get(format!("{}/stalled/big.m4s", stack.holder_url))
        .send()
        .await
        .expect("holder answers");
    assert_eq!(response.status(), StatusCode::OK);

    // Panics unless holder stops cleanly within 30 s.
    stack.stop_service("holder").await;
    drop(response);
    stack.shutdown().await;
}
