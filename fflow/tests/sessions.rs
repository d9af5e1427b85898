#![allow(clippy::unwrap_used)]

mod common;

use common::{error_of, TestEnv};
use reqwest::StatusCode;
use vod_contracts::fflow::{self, CreateProcess};
use vod_contracts::{FlowId, SessionId, VideoId};

#[tokio::test]
async fn chunk_past_the_received_offset_is_refused_with_409() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let (request, _) = replica.create(&env.http, 10).await;
    let id = request.session_id;

    assert_eq!(replica.put_ok(&env.http, id, 0, b"abcd").await, 4);
    let gap = replica.put_chunk(&env.http, id, 5, b"f").await;
    assert_eq!(
        error_of(gap).await,
        (StatusCode::CONFLICT, "offset_gap".to_owned())
    );
    let too_long = replica.put_chunk(&env.http, id, 4, b"efghijk").await;
    assert_eq!(
        error_of(too_long).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "length_exceeded".to_owned())
    );
    let early = replica.finish(&env.http, id).await;
    assert_eq!(
        error_of(early).await,
        (StatusCode::CONFLICT, "incomplete".to_owned())
    );
    // Nothing of the refused chunks was kept.
    assert_eq!(replica.put_ok(&env.http, id, 4, b"e").await, 5);
    let source = std::fs::read(replica.session_dir(id).join("source")).unwrap();
    assert_eq!(source, b"abcde");

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn chunk_of_an_older_writer_is_refused_with_409_stale_writer_even_after_a_restart() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let (request, _) = replica.create(&env.http, 10).await;
    let id = request.session_id;
    let source_path = replica.session_dir(id).join("source");

    // A caller without an epoch is epoch 0, and a newer writer takes over from it.
    assert_eq!(replica.put_ok(&env.http, id, 0, b"abc").await, 3);
    let newer = replica
        .put_chunk_at_epoch(&env.http, id, 3, 2, b"def")
        .await;
    assert_eq!(newer.status(), StatusCode::OK);
    assert_eq!(std::fs::read(&source_path).unwrap(), b"abcdef");

    for (epoch, offset) in [(1, 3), (1, 6), (0, 6)] {
        let stale = replica
            .put_chunk_at_epoch(&env.http, id, offset, epoch, b"XYZ")
            .await;
        assert_eq!(
            error_of(stale).await,
            (StatusCode::CONFLICT, "stale_writer".to_owned())
        );
    }
    let without_epoch = replica.put_chunk(&env.http, id, 6, b"XYZ").await;
    assert_eq!(
        error_of(without_epoch).await,
        (StatusCode::CONFLICT, "stale_writer".to_owned())
    );
    assert_eq!(std::fs::read(&source_path).unwrap(), b"abcdef");

    replica.stop().await;
    let restarted = env.start_replica("r1").await;
    let stale = restarted
        .put_chunk_at_epoch(&env.http, id, 6, 1, b"XYZ")
        .await;
    assert_eq!(
        error_of(stale).await,
        (StatusCode::CONFLICT, "stale_writer".to_owned())
    );
    assert_eq!(std::fs::read(&source_path).unwrap(), b"abcdef");
    // The writer that holds the lease goes on.
    let same = restarted
        .put_chunk_at_epoch(&env.http, id, 6, 2, b"ghi")
        .await;
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(std::fs::read(&source_path).unwrap(), b"abcdefghi");

    restarted.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn chunk_larger_than_the_limit_is_refused_with_413() {
    let env = TestEnv::start().await;
    let config = ::fflow::Config {
        max_chunk_bytes: 4,
        ..env.fflow_config("r1")
    };
    let replica = env.start_replica_with(config).await;
    let (request, _) = replica.create(&env.http, 100).await;
    let big = replica
        .put_chunk(&env.http, request.session_id, 0, b"abcde")
        .await;
    assert_eq!(
        error_of(big).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "chunk_too_large".to_owned())
    );
    assert_eq!(
        replica
            .put_ok(&env.http, request.session_id, 0, b"abcd")
            .await,
        4
    );

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn calls_for_another_replica_or_unknown_session_are_refused_with_404() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let (request, _) = replica.create(&env.http, 10).await;
    let chunk_url = |replica_id: &str, session_id: SessionId| {
        format!(
            "{}/{replica_id}/{}?offset=0",
            replica.base,
            fflow::chunks_path(session_id)
        )
    };

    let wrong = env
        .http
        .put(chunk_url("r2", request.session_id))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(wrong).await,
        (StatusCode::NOT_FOUND, "wrong_replica".to_owned())
    );
    let wrong_create = env
        .http
        .post(format!("{}/r2/processes", replica.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(wrong_create).await,
        (StatusCode::NOT_FOUND, "wrong_replica".to_owned())
    );
    let unknown = env
        .http
        .put(chunk_url("r1", SessionId::new()))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(unknown).await,
        (StatusCode::NOT_FOUND, "session_not_found".to_owned())
    );
    let right = env
        .http
        .put(chunk_url("r1", request.session_id))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn process_creation_is_served_under_the_replica_path_too() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r2").await;
    let request = CreateProcess {
        session_id: SessionId::new(),
        target: Some(vod_contracts::fflow::EncodeTarget {
            video_id: VideoId::new(),
            flow_id: FlowId::new(),
            mp4_support: Default::default(),
        }),
        total_bytes: Some(3),
    };
    let created = env
        .http
        .post(format!("{}{}", replica.address, fflow::PROCESSES_PATH))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let conflicting = env
        .http
        .post(format!("{}/processes", replica.base))
        .json(&CreateProcess {
            total_bytes: Some(4),
            ..request.clone()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(conflicting).await,
        (StatusCode::CONFLICT, "session_conflict".to_owned())
    );
    let health = env
        .http
        .get(format!("{}/healthz", replica.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn deleted_session_is_forgotten_with_its_spool() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let (request, _) = replica.create(&env.http, 10).await;
    let id = request.session_id;
    replica.put_ok(&env.http, id, 0, b"abc").await;
    let dir = replica.session_dir(id);
    assert!(dir.exists());

    let delete_url = format!("{}{}", replica.address, fflow::session_path(id));
    let deleted = env.http.delete(&delete_url).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(!dir.exists());
    let after = replica.put_chunk(&env.http, id, 3, b"d").await;
    assert_eq!(
        error_of(after).await,
        (StatusCode::NOT_FOUND, "session_not_found".to_owned())
    );
    let again = env.http.delete(&delete_url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn restarted_replica_takes_its_sessions_up_again() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let (request, _) = replica.create(&env.http, 6).await;
    let id = request.session_id;
    replica.put_ok(&env.http, id, 0, b"abc").await;
    replica.stop().await;

    let restarted = env.start_replica("r1").await;
    let gap = restarted.put_chunk(&env.http, id, 4, b"e").await;
    assert_eq!(
        error_of(gap).await,
        (StatusCode::CONFLICT, "offset_gap".to_owned())
    );
    assert_eq!(restarted.put_ok(&env.http, id, 3, b"def").await, 6);
    let source = std::fs::read(restarted.session_dir(id).join("source")).unwrap();
    assert_eq!(source, b"abcdef");

    restarted.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn chunk_above_axum_default_body_limit_is_accepted() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let big = vec![7u8; 5 * 1024 * 1024];
    let (request, _) = replica.create(&env.http, big.len() as u64).await;
    let received = replica.put_ok(&env.http, request.session_id, 0, &big).await;
    assert_eq!(received, big.len() as u64);

    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn a_session_nobody_writes_to_is_forgotten_with_its_spool() {
    let env = TestEnv::start().await;
    let config = ::fflow::Config {
        idle_session_ttl_ms: 1_000,
        idle_sweep_interval_ms: 100,
        ..env.fflow_config("r1")
    };
    let replica = env.start_replica_with(config).await;
    let (request, _) = replica.create(&env.http, 10).await;
    let id = request.session_id;
    let spool = replica.session_dir(id);
    assert!(spool.exists(), "the session has its spool");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while spool.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle session's spool is still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let gone = replica.put_chunk(&env.http, id, 0, b"abc").await;
    assert_eq!(
        error_of(gone).await,
        (StatusCode::NOT_FOUND, "session_not_found".to_owned())
    );

    replica.stop().await;
    env.stop().await;
}
