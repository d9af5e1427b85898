//! A chunk message processed twice is harmless: the offset moves once and the stitched source
//! is the one the client sent.

use std::time::Duration;

use gateway::uploader_client::{ClientOptions, UploaderClient};
use vod_contracts::commands::{Ack, ChunkHeader};
use vod_contracts::VideoStatus;
use vod_tests::media::{decoded_duration, generate_clip, probe};
use vod_tests::{Stack, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_chunk_twice_moves_the_offset_once_and_keeps_the_bytes() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 3, "320x240");
    let source = probe(clip.to_str().expect("utf-8 path"));
    let bytes = std::fs::read(&clip).expect("clip");
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;

    // Talk to the uploaders the way the gateway does, but send every chunk twice, as a
    // redelivery after a lost acknowledgement would.
    let options = ClientOptions {
        rpc_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let (client, _replies) = UploaderClient::connect(&env.amqp(), options)
        .await
        .expect("broker reachable");
    let piece_len = bytes.len().div_ceil(3);
    let mut offset = 0u64;
    for piece in bytes.chunks(piece_len) {
        let header = ChunkHeader::immediate(upload.session_id, offset, piece.len() as u64);
        let expected = offset + piece.len() as u64;
        for attempt in ["first", "repeated"] {
            let ack = client.send_chunk(&header, piece).await.expect("stored");
            let Ack::ChunkStored {
                uploaded_bytes,
                total_bytes,
                ..
            } = ack
            else {
                panic!("{attempt} delivery of the chunk at {offset}: {ack:?}");
            };
            assert_eq!(
                (uploaded_bytes, total_bytes),
                (expected, Some(bytes.len() as u64)),
                "{attempt} delivery of the chunk at {offset}"
            );
        }
        assert_eq!(stack.offset(&upload.location).await, expected);
        offset = expected;
    }

    let video = stack.wait_until_settled(upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
    let playback = video.playback.expect("playback URLs");
    let decoded = decoded_duration(&playback.hls);
    assert!(
        (decoded - source.duration_seconds).abs() <= 0.5,
        "decodes for {decoded} s, the source lasts {} s",
        source.duration_seconds
    );
    client.close().await;
    stack.shutdown().await;
}
