//! A source becomes an adaptive ladder: every rung at or below its height, keyframes aligned
//! across renditions, a master playlist and an MPD that reference only files holder serves.

use std::collections::BTreeSet;

use vod_contracts::{EncodePath, FlowStatus, VideoStatus};
use vod_tests::media::{
    decoded_duration, generate_clip, keyframe_times, mpd_references, playlist_references, probe,
    stream_infs,
};
use vod_tests::{Stack, TestEnv};

async fn fetch_text(stack: &Stack, url: &str) -> String {
    String::from_utf8(stack.fetch(url).await.1).expect("utf-8 text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hd_source_yields_every_rung_up_to_720_with_aligned_keyframes() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("hd.mp4");
    generate_clip(&clip, 6, "1280x720");
    let source = probe(clip.to_str().expect("utf-8 path"));
    let bytes = std::fs::read(&clip).expect("clip");

    let upload = stack.upload_in_pieces(&bytes, "hd.mp4", 2).await;
    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let flow = &video.flows[0];
    assert_eq!(flow.status, FlowStatus::Ready);
    assert_eq!(flow.progress_percent, Some(100));
    assert!(
        matches!(
            flow.encode_path,
            Some(EncodePath::Streaming | EncodePath::AfterUpload)
        ),
        "{flow:#?}"
    );
    assert!(flow.encode_started_at_byte.is_some(), "{flow:#?}");
    let sizes: Vec<(u32, u32)> = flow
        .renditions
        .iter()
        .map(|rendition| (rendition.width, rendition.height))
        .collect();
    assert_eq!(sizes, [(1280, 720), (854, 480), (640, 360), (426, 240)]);
    assert_eq!((flow.width, flow.height), (Some(1280), Some(720)));
    let source_view = flow.source.as_ref().expect("source facts once ready");
    assert_eq!(
        (source_view.width, source_view.height),
        (Some(1280), Some(720))
    );
    assert_eq!(source_view.video_codec.as_deref(), Some("h264"));
    assert_eq!(source_view.audio_codec.as_deref(), Some("aac"));
    let bandwidths: Vec<u64> = flow.renditions.iter().map(|r| r.bandwidth).collect();
    assert!(
        bandwidths.windows(2).all(|pair| pair[0] > pair[1]),
        "taller renditions take more bits: {bandwidths:?}"
    );

    let poster = flow.poster.as_deref().expect("a poster URL");
    let (content_type, jpeg) = stack.fetch(poster).await;
    assert_eq!(content_type, "image/jpeg");
    assert!(jpeg.starts_with(&[0xff, 0xd8]), "the poster is a JPEG");

    // The master lists every variant with the attributes players choose by.
    let playback = video.playback.as_ref().expect("playback URLs");
    let master = fetch_text(&stack, &playback.hls).await;
    let variants = stream_infs(&master);
    assert_eq!(variants.len(), 4, "{master}");
    let mut hls_files = BTreeSet::new();
    for ((attributes, uri), rendition) in variants.iter().zip(&flow.renditions) {
        assert_eq!(
            attributes.get("RESOLUTION").map(String::as_str),
            Some(format!("{}x{}", rendition.width, rendition.height).as_str()),
            "{master}"
        );
        let bandwidth: u64 = attributes["BANDWIDTH"].parse().expect("BANDWIDTH number");
        assert_eq!(bandwidth, rendition.bandwidth);
        let codecs = &attributes["CODECS"];
        assert!(
            codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
            "{codecs}"
        );
        assert_eq!(
            format!("{}/{uri}", playback.hls.rsplit_once('/').expect("a path").0),
            rendition.hls
        );
    }
    for media_url in playlist_references(&playback.hls, &master) {
        let media = fetch_text(&stack, &media_url).await;
        assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{media}");
        assert!(media.ends_with("#EXT-X-ENDLIST\n"), "{media}");
        for file in playlist_references(&media_url, &media) {
            stack.fetch(&file).await;
            hls_files.insert(file);
        }
    }

    // The MPD has a video and an audio adaptation set over the same segments.
    let (content_type, mpd) = stack.fetch(&playback.dash).await;
    assert_eq!(content_type, "application/dash+xml");
    let mpd = String::from_utf8(mpd).expect("utf-8 MPD");
    assert_eq!(mpd.matches("<AdaptationSet ").count(), 2, "{mpd}");
    assert!(mpd.contains("contentType=\"video\""), "{mpd}");
    assert!(mpd.contains("contentType=\"audio\""), "{mpd}");
    assert_eq!(mpd.matches("<Representation ").count(), 5, "{mpd}");
    let dash_files: BTreeSet<String> = mpd_references(&playback.dash, &mpd).into_iter().collect();
    for file in &dash_files {
        stack.fetch(file).await;
    }
    assert_eq!(dash_files, hls_files, "HLS and DASH share one set of files");

    // Every rendition decodes for the source's length, with keyframes at the same times.
    let mut keyframes_of_first: Option<Vec<f64>> = None;
    for rendition in &flow.renditions {
        let decoded = decoded_duration(&rendition.hls);
        assert!(
            (decoded - source.duration_seconds).abs() <= 0.5,
            "{}p decodes for {decoded} s, the source lasts {} s",
            rendition.height,
            source.duration_seconds
        );
        let keyframes = keyframe_times(&rendition.hls);
        assert!(keyframes.len() >= 3, "{}p: {keyframes:?}", rendition.height);
        match &keyframes_of_first {
            None => keyframes_of_first = Some(keyframes),
            Some(first) => assert_eq!(
                &keyframes, first,
                "{}p has keyframes elsewhere",
                rendition.height
            ),
        }
    }
    stack.shutdown().await;
}
