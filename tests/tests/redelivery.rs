//! A chunk message processed twice is harmless: the offset moves once and the stitched source
//! is the one the client sent. So is one that comes before the chunk its request sent ahead of
//! it (the gateway sends a body's pieces two at a time): it waits for that one. A repeated
//! chunk records no event: each change of the upload has exactly one.

use std::time::Duration;

use gateway::uploader_client::{BrokerMetrics, CallError, ClientOptions, UploaderClient};
use gateway::Config;
use vod_contracts::commands::{ChunkHeader, ChunkReply, RejectCode};
use vod_contracts::{VideoStatus, WriterId};
use vod_tests::media::{decoded_duration, generate_clip, probe};
use vod_tests::tus::Upload;
use vod_tests::{Stack, StackOptions, TestEnv};

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
        ..Config::default().uploader_client(BrokerMetrics::default())
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
            let ChunkReply::Stored {
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
    // The repeated completing chunk changed nothing, so it recorded no event either.
    let recorded: Vec<String> = env
        .db()
        .await
        .query(
            "SELECT type FROM event WHERE object_id = $1 ORDER BY xact, seq",
            &[&upload.video_id.0],
        )
        .await
        .expect("the video's events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        recorded,
        [
            "video.created",
            "video.upload.created",
            "video.upload.completed",
            "video.processing",
            "video.ready"
        ]
    );
    client.close().await;
    stack.shutdown().await;
}

/// An upload of a clip in three pieces, sent to the uploaders the way the gateway sends a
/// request's pieces; the first is stored, which takes the write lock for the request.
struct ThreePieces {
    // Dropped last: the stack uses its database and queues.
    env: TestEnv,
    stack: Stack,
    bytes: Vec<u8>,
    upload: Upload,
    client: UploaderClient,
    writer: WriterId,
}

impl ThreePieces {
    async fn start(options: StackOptions) -> Self {
        let env = TestEnv::new().await;
        let stack = Stack::spawn_with(&env, options).await;
        let clip = env.dir.path().join("clip.mp4");
        generate_clip(&clip, 3, "320x240");
        let bytes = std::fs::read(&clip).expect("clip");
        let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;
        let client_options = ClientOptions {
            rpc_timeout: Duration::from_secs(30),
            ..Config::default().uploader_client(BrokerMetrics::default())
        };
        let (client, _replies) = UploaderClient::connect(&env.amqp(), client_options)
            .await
            .expect("broker reachable");
        let pieces = Self {
            env,
            stack,
            bytes,
            upload,
            client,
            writer: WriterId::new(),
        };
        pieces.send(0).await.expect("first piece stored");
        pieces
    }

    /// Where the piece at `index` (of three) ends.
    fn end_of(&self, index: usize) -> u64 {
        let len = self.bytes.len().div_ceil(3);
        ((index + 1) * len).min(self.bytes.len()) as u64
    }

    /// Sends the piece at `index`; the third gives the lock back.
    fn send(
        &self,
        index: usize,
    ) -> impl std::future::Future<Output = Result<ChunkReply, CallError>> {
        let len = self.bytes.len().div_ceil(3);
        let start = index * len;
        let piece = self.bytes[start..self.end_of(index) as usize].to_vec();
        let header = ChunkHeader {
            writer: Some(self.writer),
            release: index == 2,
            ..ChunkHeader::immediate(self.upload.session_id, start as u64, piece.len() as u64)
        };
        let client = self.client.clone();
        async move { client.send_chunk(&header, &piece).await }
    }

    async fn finish(self) {
        self.stack
            .assert_ready_with_source(self.upload.video_id, &self.bytes)
            .await;
        self.client.close().await;
        self.stack.shutdown().await;
        drop(self.env);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_that_overtakes_the_one_sent_before_it_waits_for_it() {
    let pieces = ThreePieces::start(StackOptions::default()).await;
    // The third piece comes before the second.
    let overtaking = tokio::spawn(pieces.send(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !overtaking.is_finished(),
        "the third piece waits for the second"
    );
    assert_eq!(
        pieces.stack.offset(&pieces.upload.location).await,
        pieces.end_of(0)
    );

    pieces.send(1).await.expect("second piece stored");
    let ack = overtaking
        .await
        .expect("task")
        .expect("third piece stored after the second");
    let ChunkReply::Stored { uploaded_bytes, .. } = ack else {
        panic!("third piece: {ack:?}");
    };
    assert_eq!(uploaded_bytes, pieces.bytes.len() as u64);
    pieces.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_whose_predecessor_never_comes_is_refused_at_the_offset_reached() {
    let pieces = ThreePieces::start(StackOptions {
        configure_uploader: |config| config.chunk_ahead_wait_ms = 300,
        ..StackOptions::default()
    })
    .await;
    match pieces.send(2).await {
        Err(CallError::Rejected(reject)) => {
            assert_eq!(reject.code, RejectCode::OffsetMismatch, "{reject}");
            assert!(
                reject.message.contains(&pieces.end_of(0).to_string()),
                "names the offset reached: {reject}"
            );
        }
        other => panic!("the third piece without the second: {other:?}"),
    }
    // Nothing of it was kept: the upload carries on from where it was.
    assert_eq!(
        pieces.stack.offset(&pieces.upload.location).await,
        pieces.end_of(0)
    );
    pieces.send(1).await.expect("second piece stored");
    pieces.send(2).await.expect("third piece stored");
    pieces.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_sent_two_pieces_at_a_time_is_stored_in_order() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            chunk_size_bytes: 16 * 1024,
            // Through the broker: pieces streamed to a chunk listener go one at a time.
            configure_gateway: |config| {
                config.chunks_in_flight = 2;
                config.uploader_chunks_urls.clear();
            },
            ..StackOptions::default()
        },
    )
    .await;
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 3, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    assert!(bytes.len() > 8 * 16 * 1024, "the body is many pieces");
    let upload = stack.create_upload(bytes.len() as u64, "clip.mp4").await;

    // Two PATCHes of many pieces each; the uploaders see them two at a time, in any order.
    let half = bytes.len() / 2;
    let first = stack
        .patch(&upload.location, 0, bytes[..half].to_vec())
        .await;
    assert_eq!(first.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(stack.offset(&upload.location).await, half as u64);
    let second = stack
        .patch(&upload.location, half as u64, bytes[half..].to_vec())
        .await;
    assert_eq!(second.status(), reqwest::StatusCode::NO_CONTENT);
    stack
        .assert_ready_with_source(upload.video_id, &bytes)
        .await;
    stack.shutdown().await;
}
