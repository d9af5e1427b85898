#![allow(clippy::unwrap_used)]

mod common;

use common::{error_of, eventually, make_clip, make_clip_of, probe, upload, TestEnv};
use reqwest::StatusCode;
use vod_contracts::fflow::ProcessCreated;
use vod_contracts::layout;
use vod_contracts::outcome::EncodeResult;
use vod_contracts::EncodePath;

#[tokio::test]
async fn uploaded_clip_is_encoded_stored_on_holder_and_reported_ready() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let clip = make_clip(env.dir.path());

    let (request, created) = replica.create(&env.http, clip.len() as u64).await;
    assert_eq!(created.replica_id, "r1");
    assert_eq!(created.address, replica.address);
    assert!(created.address.ends_with("/r1/"), "{}", created.address);
    let again = env
        .http
        .post(format!("{}/processes", replica.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<ProcessCreated>().await.unwrap(), created);

    let piece = clip.len().div_ceil(3);
    let chunks: Vec<&[u8]> = clip.chunks(piece).collect();
    assert_eq!(chunks.len(), 3);
    let session_id = request.session_id;
    let after_first = replica.put_ok(&env.http, session_id, 0, chunks[0]).await;
    let after_second = replica
        .put_ok(&env.http, session_id, after_first, chunks[1])
        .await;
    // A redelivered chunk rewrites the same bytes.
    let redelivered = replica
        .put_ok(&env.http, session_id, after_first, chunks[1])
        .await;
    assert_eq!(redelivered, after_second);
    let after_third = replica
        .put_ok(&env.http, session_id, after_second, chunks[2])
        .await;
    assert_eq!(after_third, clip.len() as u64);
    let source = std::fs::read(replica.session_dir(session_id).join("source")).unwrap();
    assert!(
        source == clip,
        "the stitched source differs from the upload"
    );

    assert_eq!(
        replica.finish(&env.http, session_id).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        replica.finish(&env.http, session_id).await.status(),
        StatusCode::ACCEPTED
    );

    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, session_id);
    assert_eq!(outcome.video_id, request.target.expect("a target").video_id);
    assert_eq!(outcome.flow_id, request.target.expect("a target").flow_id);
    let EncodeResult::Ready(facts) = outcome.result else {
        panic!("encode failed: {:?}", outcome.result);
    };
    let dir = layout::presentation_dir(
        request.target.expect("a target").video_id,
        request.target.expect("a target").flow_id,
    );
    assert!((facts.duration_seconds - 3.0).abs() < 0.2, "{facts:?}");
    assert_eq!((facts.width, facts.height), (Some(320), Some(240)));
    assert_eq!(facts.video_codec.as_deref(), Some("h264"));
    assert_eq!(facts.poster_path, Some(format!("{dir}/poster.jpg")));
    assert_eq!(facts.audio_codec.as_deref(), Some("aac"));
    assert_eq!(facts.hls_path, format!("{dir}/master.m3u8"));
    assert_eq!(facts.dash_path, format!("{dir}/manifest.mpd"));

    let stored = env.holder_root.join(&dir);
    let mut names: Vec<String> = std::fs::read_dir(&stored)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chunk-stream0-00001.m4s",
            "chunk-stream1-00001.m4s",
            "init-stream0.m4s",
            "init-stream1.m4s",
            "manifest.mpd",
            "master.m3u8",
            "media_0.m3u8",
            "media_1.m3u8",
            "poster.jpg",
            "storyboard.jpg",
            "storyboard.vtt",
        ]
    );
    let media = std::fs::read_to_string(stored.join("media_0.m3u8")).unwrap();
    assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{media}");
    assert!(!media.contains("PROGRAM-DATE-TIME"), "{media}");

    // Played the way a player gets it: over holder's HTTP.
    let (duration, kinds) = probe(&format!("http://{}/{}", env.holder_http, facts.hls_path)).await;
    assert!((duration - 3.0).abs() < 0.2, "played {duration} s");
    assert!(kinds.iter().any(|kind| kind == "video"), "{kinds:?}");
    assert!(kinds.iter().any(|kind| kind == "audio"), "{kinds:?}");

    let spool = replica.session_dir(session_id);
    eventually("spool removal", || !spool.exists()).await;
    assert_eq!(
        replica.finish(&env.http, session_id).await.status(),
        StatusCode::ACCEPTED
    );
    let late = replica.put_chunk(&env.http, session_id, 0, b"x").await;
    assert_eq!(
        error_of(late).await,
        (StatusCode::CONFLICT, "session_finished".to_owned())
    );

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn encode_progress_is_reported_as_ffmpeg_advances() {
    let env = TestEnv::start().await;
    let mut config = env.fflow_config("r1");
    config.progress_interval_ms = 50;
    let replica = env.start_replica_with(config).await;
    let clip = make_clip_of(env.dir.path(), 12);

    let request = upload(&env, &replica, &clip).await;
    let outcome = env.next_outcome().await;
    assert!(
        matches!(outcome.result, EncodeResult::Ready(_)),
        "{:?}",
        outcome.result
    );
    let started = outcome
        .started
        .expect("the outcome says how the encode started");
    assert_eq!(started.path, EncodePath::AfterUpload);
    assert_eq!(started.received_bytes, clip.len() as u64);

    let reports = env.progress_reports().await;
    assert!(!reports.is_empty(), "no progress was reported");
    assert!(reports
        .iter()
        .all(
            |report| request.target.map(|target| target.flow_id) == Some(report.flow_id)
                && report.session_id == request.session_id
                && report.started == started
        ));
    let percents: Vec<u8> = reports.iter().map(|report| report.percent).collect();
    assert_eq!(percents[0], 0, "the first report comes as ffmpeg starts");
    assert!(
        percents.windows(2).all(|pair| pair[0] < pair[1]),
        "reports only when it grows: {percents:?}"
    );
    assert!(
        percents.iter().any(|percent| (1..=99).contains(percent)),
        "ffmpeg's progress between start and end: {percents:?}"
    );

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn non_media_file_is_reported_failed_with_a_readable_reason() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let request = upload(&env, &replica, &garbage).await;

    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    let EncodeResult::Failed { reason } = outcome.result else {
        panic!("garbage was encoded: {:?}", outcome.result);
    };
    assert_eq!(
        reason,
        "the file is not a video or audio file ffmpeg can read: Invalid data found when processing input"
    );
    let spool = replica.session_dir(request.session_id);
    eventually("spool removal", || !spool.exists()).await;
    assert!(!env
        .holder_root
        .join(layout::presentation_dir(
            request.target.expect("a target").video_id,
            request.target.expect("a target").flow_id
        ))
        .exists());

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn encode_interrupted_by_shutdown_is_resumed_by_the_restarted_replica() {
    let env = TestEnv::start().await;
    // Holder out of reach: the encode is still retrying the upload when the replica stops.
    let mut unreachable = env.fflow_config("r1");
    unreachable.holder.addr = "127.0.0.1:1".to_owned();
    unreachable.holder.attempts = 1_000;
    unreachable.holder.backoff_ms = 1_000;
    let replica = env.start_replica_with(unreachable).await;
    let clip = make_clip(env.dir.path());

    let request = upload(&env, &replica, &clip).await;
    let spool = replica.session_dir(request.session_id);
    replica.stop().await;
    assert!(spool.join("source").exists(), "the spool was not kept");

    let restarted = env.start_replica("r1").await;
    let outcome = env.next_outcome().await;
    assert_eq!(outcome.session_id, request.session_id);
    assert!(
        matches!(outcome.result, EncodeResult::Ready(_)),
        "{:?}",
        outcome.result
    );
    let stored = env.holder_root.join(layout::presentation_dir(
        request.target.expect("a target").video_id,
        request.target.expect("a target").flow_id,
    ));
    assert!(stored.join("master.m3u8").exists());
    eventually("spool removal", || !spool.exists()).await;

    restarted.stop().await;
    env.stop().await;
}
