//! A resumable upload becomes a playable HLS and DASH presentation, through the whole stack.

use std::collections::{BTreeSet, HashMap};

use vod_contracts::{FlowStatus, VideoStatus};
use vod_tests::media::{
    decoded_duration, generate_clip, mpd_references, playlist_references, probe,
};
use vod_tests::{HolderStore, Stack, StackOptions, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaded_clip_plays_as_hls_and_dash_with_the_source_duration() {
    uploaded_clip_plays_from(HolderStore::Fs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaded_clip_plays_as_hls_and_dash_from_a_bucket() {
    uploaded_clip_plays_from(HolderStore::S3).await;
}

async fn uploaded_clip_plays_from(holder_store: HolderStore) {
    let env = TestEnv::new().await;
    let options = StackOptions {
        holder_store,
        ..StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 4, "320x240");
    let source = probe(clip.to_str().expect("utf-8 path"));
    let bytes = std::fs::read(&clip).expect("clip");

    // Three PATCHes, each cut by the gateway into several pieces.
    let upload = stack.upload_in_pieces(&bytes, "clip.mp4", 3).await;
    let video = stack.wait_until_settled(upload.video_id).await;

    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    assert_eq!(video.title, "clip.mp4");
    let flow = &video.flows[0];
    assert_eq!(flow.status, FlowStatus::Ready);
    assert_eq!(flow.uploaded_bytes, bytes.len() as u64);
    assert_eq!(flow.total_bytes, bytes.len() as u64);
    assert_eq!((flow.width, flow.height), (Some(320), Some(240)));
    let playback = video.playback.expect("playback URLs once ready");
    assert!(
        playback.hls.starts_with(&stack.holder_url),
        "{}",
        playback.hls
    );
    assert!(
        playback.dash.starts_with(&stack.holder_url),
        "{}",
        playback.dash
    );

    // Every file the master playlist references, transitively, is served.
    let (content_type, master) = stack.fetch(&playback.hls).await;
    assert_eq!(content_type, "application/vnd.apple.mpegurl");
    let master = String::from_utf8(master).expect("utf-8 playlist");
    let media_playlists = playlist_references(&playback.hls, &master);
    assert!(
        !media_playlists.is_empty(),
        "master lists media playlists:\n{master}"
    );
    let mut hls_segments = BTreeSet::new();
    for media_url in &media_playlists {
        let (_, body) = stack.fetch(media_url).await;
        let body = String::from_utf8(body).expect("utf-8 playlist");
        assert!(
            body.contains("#EXT-X-ENDLIST"),
            "{media_url} is complete:\n{body}"
        );
        hls_segments.extend(playlist_references(media_url, &body));
    }
    for segment in &hls_segments {
        let (_, body) = stack.fetch(segment).await;
        assert!(!body.is_empty(), "{segment} has bytes");
    }

    // The MPD references the same CMAF segments.
    let (content_type, mpd) = stack.fetch(&playback.dash).await;
    assert_eq!(content_type, "application/dash+xml");
    let mpd = String::from_utf8(mpd).expect("utf-8 MPD");
    let dash_segments: BTreeSet<String> =
        mpd_references(&playback.dash, &mpd).into_iter().collect();
    for segment in &dash_segments {
        stack.fetch(segment).await;
    }
    assert_eq!(
        dash_segments, hls_segments,
        "HLS and DASH share one set of segments"
    );

    // A player decodes the whole presentation, with picture and sound, for the source's length.
    let hls = probe(&playback.hls);
    assert!(hls.codec_types.contains(&"video".to_owned()), "{hls:?}");
    assert!(hls.codec_types.contains(&"audio".to_owned()), "{hls:?}");
    let decoded = decoded_duration(&playback.hls);
    assert!(
        (decoded - source.duration_seconds).abs() <= 0.5,
        "HLS decodes for {decoded} s, the source lasts {} s",
        source.duration_seconds
    );
    let dash = probe(&playback.dash);
    assert!(dash.codec_types.contains(&"video".to_owned()), "{dash:?}");
    assert!(dash.codec_types.contains(&"audio".to_owned()), "{dash:?}");

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_of_a_session_stay_on_one_replica_and_uploads_use_both() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "160x120");
    let bytes = std::fs::read(&clip).expect("clip");

    let uploads = (0..4).map(|index| {
        let stack = &stack;
        let env = &env;
        let bytes = bytes.clone();
        async move {
            let upload = stack
                .create_upload(bytes.len() as u64, &format!("clip-{index}.mp4"))
                .await;
            let mut seen = BTreeSet::new();
            let piece_len = bytes.len().div_ceil(4);
            let mut offset = 0;
            for piece in bytes.chunks(piece_len) {
                let response = stack
                    .patch(&upload.location, offset as u64, piece.to_vec())
                    .await;
                assert_eq!(response.status(), 204);
                offset += piece.len();
                seen.insert(Stack::recorded_replica(env, upload.session_id).await);
            }
            (upload, seen)
        }
    });
    let results = futures_util::future::join_all(uploads).await;

    let mut replica_per_upload = HashMap::new();
    for (upload, seen) in &results {
        assert_eq!(
            seen.len(),
            1,
            "one replica for every chunk of {}: {seen:?}",
            upload.session_id
        );
        let replica = seen
            .iter()
            .next()
            .cloned()
            .flatten()
            .expect("a recorded replica");
        assert!(
            stack.fflow_addresses.contains(&replica),
            "{replica} is one of ours"
        );
        replica_per_upload.insert(upload.session_id, replica);
        let video = stack.wait_until_settled(upload.video_id).await;
        assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    }
    let used: BTreeSet<_> = replica_per_upload.values().collect();
    assert_eq!(
        used.len(),
        2,
        "concurrent uploads spread over both replicas: {used:?}"
    );

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_large_streamed_patch_is_stored_whole() {
    let env = TestEnv::new().await;
    let options = vod_tests::StackOptions {
        chunk_size_bytes: 1024 * 1024,
        ..vod_tests::StackOptions::default()
    };
    let stack = Stack::spawn_with(&env, options).await;
    const LEN: usize = 24 * 1024 * 1024;
    let upload = stack.create_upload(LEN as u64, "large.bin").await;

    // A chunked body of unknown length, as a client streaming a file sends it.
    let frames = (0..LEN / 65_536).map(|index| {
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![(index % 251) as u8; 65_536]))
    });
    let response = stack
        .http
        .patch(&upload.location)
        .header("Tus-Resumable", vod_tests::tus::TUS_VERSION)
        .header("Content-Type", vod_tests::tus::OFFSET_OCTET_STREAM)
        .header("Upload-Offset", "0")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            frames,
        )))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), 204);
    assert_eq!(
        vod_tests::tus::header_u64(&response, "upload-offset"),
        LEN as u64
    );
    assert_eq!(stack.offset(&upload.location).await, LEN as u64);

    // Not a video, so it fails, but only after every byte was counted.
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.flows[0].uploaded_bytes, LEN as u64);
    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    stack.shutdown().await;
}
