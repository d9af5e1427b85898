//! holder on the `s3` store, through the whole stack: what fflow publishes reaches the bucket in
//! an order a player can never catch half-way, and a bucket that goes away is waited out by
//! fflow's retries, then fails the flow.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use vod_contracts::{layout, VideoStatus};
use vod_tests::media::{generate_clip, playlist_references};
use vod_tests::{poll_until, HolderStore, Stack, StackOptions, TestEnv};

/// Everything a master playlist names, transitively; the URL of the first one missing, if any.
async fn first_missing(http: &reqwest::Client, master_url: &str, master: &str) -> Option<String> {
    for media_url in playlist_references(master_url, master) {
        let response = http.get(&media_url).send().await.expect("holder answers");
        if response.status() != 200 {
            return Some(format!("{media_url}: {}", response.status()));
        }
        let body = response.text().await.expect("a playlist");
        for segment in playlist_references(&media_url, &body) {
            let status = http
                .head(&segment)
                .send()
                .await
                .expect("holder answers")
                .status();
            if status != 200 {
                return Some(format!("{segment}: {status}"));
            }
        }
    }
    None
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_polling_the_master_playlist_never_finds_a_missing_object() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store: HolderStore::S3,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 6, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;

    // The whole upload is in: the flow is being encoded, then published.
    let flow_id = stack.video(upload.video_id).await.flows[0].id;
    let dir = layout::presentation_dir(upload.video_id, flow_id);
    let master_url = format!("{}/{dir}/{}", stack.holder_url, layout::HLS_MASTER);
    let reader = reqwest::Client::new();
    let mut checks_with_master = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let response = reader
            .get(&master_url)
            .send()
            .await
            .expect("holder answers");
        if response.status() == 200 {
            let master = response.text().await.expect("the master playlist");
            if let Some(missing) = first_missing(&reader, &master_url, &master).await {
                panic!("the master playlist was published before {missing}");
            }
            checks_with_master += 1;
        } else {
            assert_eq!(response.status(), 404, "{master_url}");
        }
        if checks_with_master > 0 && stack.video(upload.video_id).await.status == VideoStatus::Ready
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the video never became ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The bucket's own record of when each object appeared: every segment before every
    // playlist, every media playlist and the MPD before the master.
    let stored = stack.holder_root.join(&dir);
    let files = files_of(&stored);
    let name = |path: &PathBuf| {
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned()
    };
    let master = stored.join(layout::HLS_MASTER);
    let (playlists, segments): (Vec<_>, Vec<_>) = files
        .iter()
        .filter(|path| **path != master)
        .partition(|path| name(path).ends_with(".m3u8") || name(path).ends_with(".mpd"));
    assert!(!segments.is_empty() && !playlists.is_empty(), "{files:?}");
    let last_segment = segments
        .iter()
        .map(|path| modified(path))
        .max()
        .expect("segments");
    for playlist in &playlists {
        assert!(
            modified(playlist) >= last_segment,
            "{} before a segment",
            name(playlist)
        );
        assert!(
            modified(&master) >= modified(playlist),
            "master before {}",
            name(playlist)
        );
    }
    stack.shutdown().await;
}

/// Three attempts, 100 ms and 200 ms apart.
fn impatient_ftp(config: &mut fflow::Config) {
    config.holder.attempts = 3;
    config.holder.backoff_ms = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_away_past_the_retries_fails_the_flow_with_a_reason_naming_holders_storage() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store: HolderStore::S3,
        configure_fflow: impatient_ftp,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    stack.proxies.bucket().cut();
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;

    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    let reason = video.flows[0].error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("holder") && reason.contains("storage"),
        "the reason names holder and its storage: {reason}"
    );
    assert!(
        stack.proxies.bucket().refused() >= 3,
        "every attempt reached for the bucket"
    );
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_back_within_the_retries_receives_the_presentation() {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store: HolderStore::S3,
        configure_fflow: |config| {
            config.holder.attempts = 10;
            config.holder.backoff_ms = 200;
        },
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let bucket = stack.proxies.bucket();
    bucket.cut();
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 1).await;
    poll_until(
        "holder to try the bucket",
        Duration::from_secs(120),
        || async { (bucket.refused() >= 1).then_some(()) },
    )
    .await;
    bucket.restore();

    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    let playback = stack
        .video(upload.video_id)
        .await
        .playback
        .expect("playback");
    stack.fetch(&playback.hls).await;
    stack.fetch(&playback.dash).await;
    stack.assert_running();
    stack.shutdown().await;
}
