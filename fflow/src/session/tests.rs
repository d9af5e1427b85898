use std::convert::Infallible;
use std::sync::Arc;

use futures_util::stream;
use sha2::{Digest, Sha256};
use vod_contracts::fflow::CreateProcess;
use vod_contracts::{FlowId, VideoId};

use super::*;

impl Session {
    async fn write_chunk_at<S, E>(
        &self,
        offset: u64,
        epoch: u64,
        declared_len: Option<u64>,
        max_chunk_bytes: u64,
        body: S,
    ) -> Result<u64, SessionError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let chunk = ChunkWrite {
            offset,
            epoch,
            declared_len,
            max_chunk_bytes,
        };
        self.write_chunk(chunk, body).await
    }

    /// A chunk of one piece under epoch 0, with no declared length, as most tests write.
    async fn write_at(&self, offset: u64, bytes: &'static [u8]) -> Result<u64, SessionError> {
        self.write_chunk_at(offset, 0, None, 100, body(&[bytes]))
            .await
    }
}

fn request(total_bytes: u64) -> CreateProcess {
    CreateProcess {
        session_id: SessionId::new(),
        target: Some(EncodeTarget {
            video_id: VideoId::new(),
            flow_id: FlowId::new(),
            mp4_support: Default::default(),
        }),
        total_bytes: Some(total_bytes),
    }
}

fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin {
    stream::iter(
        parts
            .iter()
            .map(|part| Ok(Bytes::from_static(part)))
            .collect::<Vec<_>>(),
    )
}

async fn new_session(sessions: &Sessions, total: u64) -> Arc<Session> {
    match sessions.create(&request(total)).await.unwrap() {
        Created::New(session) => session,
        Created::Existing(_) => panic!("session existed"),
    }
}

#[tokio::test]
async fn chunks_stitch_and_redelivery_is_harmless() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 10).await;
    assert_eq!(
        session
            .write_chunk_at(0, 0, None, 100, body(&[b"abc", b"d"]))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        session
            .write_chunk_at(4, 0, Some(3), 100, body(&[b"efg"]))
            .await
            .unwrap(),
        7
    );
    assert_eq!(session.write_at(4, b"efg").await.unwrap(), 7);
    assert!(matches!(
        session.write_at(8, b"x").await,
        Err(SessionError::OffsetGap {
            offset: 8,
            received: 7
        })
    ));
    assert!(matches!(
        session.write_at(7, b"hijk").await,
        Err(SessionError::LengthExceeded { end: 11, total: 10 })
    ));
    assert!(matches!(
        session
            .write_chunk_at(7, 0, Some(4), 100, body(&[b"hijk"]))
            .await,
        Err(SessionError::LengthExceeded { .. })
    ));
    assert!(matches!(
        session.write_chunk_at(7, 0, None, 2, body(&[b"hij"])).await,
        Err(SessionError::ChunkTooLarge { max: 2 })
    ));
    assert!(matches!(
        session.begin_encode().await,
        Err(SessionError::Incomplete {
            received: 7,
            total: 10
        })
    ));
    assert_eq!(session.write_at(7, b"hij").await.unwrap(), 10);
    assert_eq!(
        tokio::fs::read(session.source_path()).await.unwrap(),
        b"abcdefghij"
    );
    assert_eq!(session.begin_encode().await.unwrap(), BeginEncode::Start);
    assert_eq!(
        session.begin_encode().await.unwrap(),
        BeginEncode::AlreadyStarted
    );
    assert!(matches!(
        session.write_at(0, b"a").await,
        Err(SessionError::Finished)
    ));
}

#[tokio::test]
async fn a_chunk_the_disk_has_no_room_for_is_refused_and_the_session_keeps_its_bytes() {
    let spool = tempfile::tempdir().unwrap();
    let sessions =
        Sessions::load_keeping_free(spool.path().join("r1"), true, 1, CancellationToken::new())
            .await
            .unwrap();
    let session = new_session(&sessions, 10).await;
    assert_eq!(
        session
            .write_chunk_at(0, 1, Some(4), 100, body(&[b"abcd"]))
            .await
            .unwrap(),
        4
    );

    // A reserve larger than the disk: nothing more fits.
    sessions.free_space().set_min_free_bytes(u64::MAX);
    for declared_len in [Some(3), None] {
        assert!(matches!(
            session
                .write_chunk_at(4, 2, declared_len, 100, body(&[b"efg"]))
                .await,
            Err(SessionError::InsufficientStorage(_))
        ));
        assert_eq!(
            tokio::fs::read(session.source_path()).await.unwrap(),
            b"abcd"
        );
    }
    assert!(matches!(
        sessions.create(&request(5)).await,
        Err(SessionError::InsufficientStorage(_))
    ));
    assert!(matches!(
        session.begin_encode().await,
        Err(SessionError::Incomplete {
            received: 4,
            total: 10
        })
    ));

    // Space is back: the upload goes on from where it was, and the refused chunk's epoch was
    // never recorded.
    sessions.free_space().set_min_free_bytes(1);
    assert_eq!(
        session
            .write_chunk_at(4, 1, Some(3), 100, body(&[b"efg"]))
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        tokio::fs::read(session.source_path()).await.unwrap(),
        b"abcdefg"
    );
}

#[tokio::test]
async fn a_rewrite_of_bytes_ffmpeg_read_abandons_streaming_unless_identical() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 8).await;
    session.write_at(0, b"abcd").await.unwrap();
    assert_eq!(session.claim_streaming_decision().await, Some(4));
    assert_eq!(
        session.claim_streaming_decision().await,
        None,
        "one decider"
    );
    let cancel = CancellationToken::new();
    assert_eq!(session.start_streaming(cancel.clone()).await, Some(4));
    let FeedRead::Bytes(fed) = session.read_for_feed(0, 3).await.unwrap() else {
        panic!("bytes to feed");
    };
    assert_eq!(fed, b"abc");
    assert!(matches!(
        session.read_for_feed(4, 3).await.unwrap(),
        FeedRead::Wait
    ));

    // A redelivery with the same bytes changes nothing for ffmpeg.
    session
        .write_chunk_at(2, 0, None, 100, body(&[b"c", b"d"]))
        .await
        .unwrap();
    assert!(!cancel.is_cancelled());
    assert!(session.is_streaming().await);
    // Past what was fed, anything may be rewritten.
    session.write_at(3, b"D").await.unwrap();
    assert!(!cancel.is_cancelled());
    // A different byte ffmpeg already read does.
    session.write_at(1, b"Bcd").await.unwrap();
    assert!(cancel.is_cancelled());
    assert!(!session.is_streaming().await);
    assert_eq!(session.claim_streaming_decision().await, None);

    session.write_at(4, b"efgh").await.unwrap();
    assert_eq!(
        tokio::fs::read(session.source_path()).await.unwrap(),
        b"aBcdefgh"
    );
    assert_eq!(session.begin_encode().await.unwrap(), BeginEncode::Start);
}

#[tokio::test]
async fn a_running_streaming_encode_finishes_the_session() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 4).await;
    session.write_at(0, b"ab").await.unwrap();
    session.claim_streaming_decision().await.unwrap();
    session
        .start_streaming(CancellationToken::new())
        .await
        .unwrap();
    session.write_at(2, b"cd").await.unwrap();
    assert!(matches!(
        session.read_for_feed(4, 10).await.unwrap(),
        FeedRead::End
    ));
    assert_eq!(
        session.begin_encode().await.unwrap(),
        BeginEncode::StreamingRunning
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), session.finished())
        .await
        .unwrap();
    // Had it failed now, its task would encode the complete source itself.
    assert!(session.streaming_failed().await);
}

#[tokio::test]
async fn without_streaming_every_session_waits_for_its_last_byte() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), false, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 4).await;
    session.write_at(0, b"ab").await.unwrap();
    assert_eq!(session.claim_streaming_decision().await, None);
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[tokio::test]
async fn the_digest_follows_the_source_through_rewrites() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), false, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 9).await;
    session.write_at(0, b"abc").await.unwrap();
    session.write_at(3, b"XYZ").await.unwrap();
    // The last chunk again, with other bytes (staged bytes overwritten): rewinds.
    session.write_at(3, b"def").await.unwrap();
    session.write_at(6, b"ghi").await.unwrap();
    assert_eq!(
        session.source_sha256().await.unwrap(),
        sha256_hex(b"abcdefghi")
    );
    assert!(session
        .state
        .lock()
        .await
        .digest
        .hex_if_at(9)
        .await
        .is_some());

    // A rewrite from the middle of a chunk: the digest comes from the file.
    session.write_at(4, b"EFGHI").await.unwrap();
    assert!(session
        .state
        .lock()
        .await
        .digest
        .hex_if_at(9)
        .await
        .is_none());
    assert_eq!(
        session.source_sha256().await.unwrap(),
        sha256_hex(b"abcdEFGHI")
    );
}

#[tokio::test]
async fn create_is_idempotent_and_refuses_conflicts() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
        .await
        .unwrap();
    let request = request(5);
    assert!(matches!(
        sessions.create(&request).await.unwrap(),
        Created::New(_)
    ));
    assert!(matches!(
        sessions.create(&request).await.unwrap(),
        Created::Existing(_)
    ));
    let other = CreateProcess {
        total_bytes: Some(6),
        ..request.clone()
    };
    assert!(matches!(
        sessions.create(&other).await,
        Err(SessionError::Conflict(_))
    ));
}

#[tokio::test]
async fn sessions_are_reloaded_from_the_spool() {
    let spool = tempfile::tempdir().unwrap();
    let root = spool.path().join("r1");
    let (receiving, finished) = {
        let sessions = Sessions::load(root.clone(), true, CancellationToken::new())
            .await
            .unwrap();
        let receiving = new_session(&sessions, 10).await;
        receiving.write_at(0, b"abc").await.unwrap();
        let finished = new_session(&sessions, 2).await;
        finished.write_at(0, b"ab").await.unwrap();
        finished.begin_encode().await.unwrap();
        (receiving.session_id, finished.session_id)
    };
    tokio::fs::create_dir_all(root.join("half-created"))
        .await
        .unwrap();

    let sessions = Sessions::load(root.clone(), true, CancellationToken::new())
        .await
        .unwrap();
    let reloaded = sessions.get(receiving).unwrap();
    assert_eq!(reloaded.phase().await, Phase::Receiving);
    assert_eq!(reloaded.write_at(3, b"d").await.unwrap(), 4);
    let encoding = sessions.encoding().await;
    assert_eq!(encoding.len(), 1);
    assert_eq!(encoding[0].session_id, finished);
    assert!(!root.join("half-created").exists());
}

#[tokio::test]
async fn removing_cancels_and_forgets() {
    let spool = tempfile::tempdir().unwrap();
    let sessions = Sessions::load(spool.path().join("r1"), true, CancellationToken::new())
        .await
        .unwrap();
    let session = new_session(&sessions, 10).await;
    let removed = sessions.remove(session.session_id).unwrap();
    assert!(removed.cancel.is_cancelled());
    assert!(removed.is_deleted());
    removed.remove_spool().await.unwrap();
    assert!(!session.dir.exists());
    assert!(sessions.get(session.session_id).is_none());
    assert!(sessions.remove(session.session_id).is_none());
}

#[tokio::test]
async fn a_stale_writer_changes_nothing_and_stays_fenced_after_a_reload() {
    let spool = tempfile::tempdir().unwrap();
    let root = spool.path().join("r1");
    let id = {
        let sessions = Sessions::load(root.clone(), true, CancellationToken::new())
            .await
            .unwrap();
        let session = new_session(&sessions, 10).await;
        session.write_at(0, b"abc").await.unwrap();
        session
            .write_chunk_at(3, 2, None, 100, body(&[b"def"]))
            .await
            .unwrap();
        assert!(matches!(
            session
                .write_chunk_at(3, 1, None, 100, body(&[b"XYZ"]))
                .await,
            Err(SessionError::StaleWriter {
                epoch: 1,
                highest: 2
            })
        ));
        assert_eq!(*session.received_changes().borrow(), 6);
        session.session_id
    };
    let sessions = Sessions::load(root, true, CancellationToken::new())
        .await
        .unwrap();
    let reloaded = sessions.get(id).unwrap();
    assert!(matches!(
        reloaded
            .write_chunk_at(6, 1, None, 100, body(&[b"XYZ"]))
            .await,
        Err(SessionError::StaleWriter { .. })
    ));
    assert_eq!(
        tokio::fs::read(reloaded.source_path()).await.unwrap(),
        b"abcdef"
    );
    assert_eq!(
        reloaded
            .write_chunk_at(6, 2, None, 100, body(&[b"ghi"]))
            .await
            .unwrap(),
        9
    );
}
