//! Every route but `/healthz`, `/readyz` and `/metrics` takes the internal token, and the
//! parts of a concatenated upload are fetched only from configured replicas.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{client_with_token, error_of, holder_ftp, make_clip, upload, Replica, TestEnv};
use reqwest::StatusCode;
use serde_json::json;
use vod_contracts::fflow::{
    chunks_path, finish_path, session_path, source_path, video_path, CreateProcess, EncodeTarget,
    FinishProcess, PartSource,
};
use vod_contracts::outcome::EncodeResult;
use vod_contracts::{layout, FlowId, SessionId, VideoId};

/// A client without the token, and one with a wrong one: both are strangers.
fn strangers() -> [(&'static str, reqwest::Client); 2] {
    [
        ("no token", client_with_token(None)),
        ("a wrong token", client_with_token(Some("not-the-token"))),
    ]
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

async fn assert_unauthorized(response: reqwest::Response, what: &str) {
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer"),
        "{what}"
    );
    assert_eq!(
        error_of(response).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
        "{what}"
    );
}

/// A process for a partial upload, created with the token.
async fn create_partial(env: &TestEnv, replica: &Replica, bytes: &[u8]) -> SessionId {
    let request = CreateProcess {
        session_id: SessionId::new(),
        target: None,
        total_bytes: Some(bytes.len() as u64),
    };
    let response = env
        .http
        .post(format!("{}/processes", replica.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        replica
            .put_ok(&env.http, request.session_id, 0, bytes)
            .await,
        bytes.len() as u64
    );
    request.session_id
}

/// A final upload's process, its length deferred, created with the token.
async fn create_final(env: &TestEnv, replica: &Replica) -> CreateProcess {
    let request = CreateProcess {
        session_id: SessionId::new(),
        target: Some(EncodeTarget {
            video_id: VideoId::new(),
            flow_id: FlowId::new(),
            mp4_support: Default::default(),
        }),
        total_bytes: None,
    };
    let response = env
        .http
        .post(format!("{}/processes", replica.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    request
}

#[tokio::test]
async fn a_stranger_cannot_replace_the_presentation_of_a_ready_video() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let clip = make_clip(env.dir.path());
    let published = upload(&env, &replica, &clip).await;
    let outcome = env.next_outcome().await;
    assert!(
        matches!(outcome.result, EncodeResult::Ready { .. }),
        "{outcome:?}"
    );
    let target = published.target.unwrap();
    let video_dir = env.holder_root.join(layout::video_dir(target.video_id));
    let before = tree(&video_dir);
    assert!(!before.is_empty(), "the video is on holder");

    for (who, stranger) in strangers() {
        // A new process for the same video and flow, as the uploader would create one.
        let attack = CreateProcess {
            session_id: SessionId::new(),
            target: Some(target),
            total_bytes: Some(clip.len() as u64),
        };
        for path in ["/processes".to_owned(), "/r1/processes".to_owned()] {
            let response = stranger
                .post(format!("{}{path}", replica.base))
                .json(&attack)
                .send()
                .await
                .unwrap();
            assert_unauthorized(response, &format!("{who}: POST {path}")).await;
        }
        assert!(
            !replica.session_dir(attack.session_id).exists(),
            "{who}: no process was created"
        );
        // Nor can one write to, finish or remove the session the video came from.
        let chunk = stranger
            .put(format!(
                "{}{}?offset=0",
                replica.address,
                chunks_path(published.session_id)
            ))
            .body(clip.clone())
            .send()
            .await
            .unwrap();
        assert_unauthorized(chunk, &format!("{who}: PUT chunk")).await;
        let finish = stranger
            .post(format!(
                "{}{}",
                replica.address,
                finish_path(published.session_id)
            ))
            .json(&FinishProcess {
                total_bytes: clip.len() as u64,
                parts: Vec::new(),
            })
            .send()
            .await
            .unwrap();
        assert_unauthorized(finish, &format!("{who}: finish")).await;
        let url = format!("{}{}", replica.address, session_path(published.session_id));
        assert_unauthorized(
            stranger.get(&url).send().await.unwrap(),
            &format!("{who}: GET session"),
        )
        .await;
        assert_unauthorized(
            stranger.delete(&url).send().await.unwrap(),
            &format!("{who}: DELETE session"),
        )
        .await;
    }
    assert_eq!(tree(&video_dir), before, "holder is unchanged");
    // The probes and metrics stay open to operators.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = client_with_token(None)
            .get(format!("{}{path}", replica.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn a_stranger_cannot_delete_a_video_from_holder() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let video_id = VideoId::new();
    let presentation = layout::presentation_dir(video_id, FlowId::new());
    let mut ftp = holder_ftp(&env).await;
    let mut level = String::new();
    for part in presentation.split('/') {
        if !level.is_empty() {
            level.push('/');
        }
        level.push_str(part);
        let _ = ftp.mkdir(&level).await;
    }
    let master = format!("{presentation}/{}", layout::HLS_MASTER);
    ftp.put_file(&master, &mut &b"#EXTM3U\n"[..]).await.unwrap();
    ftp.quit().await.unwrap();
    let on_disk = env.holder_root.join(&master);
    assert!(on_disk.exists());

    let url = format!("{}/{}", replica.base, video_path(video_id));
    for (who, stranger) in strangers() {
        assert_unauthorized(stranger.delete(&url).send().await.unwrap(), who).await;
        assert!(on_disk.exists(), "{who}: the video's files stay on holder");
    }
    // The uploaders' token removes it.
    let removed = env.http.delete(&url).send().await.unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(!on_disk.exists());
    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn the_source_of_an_upload_is_served_only_with_the_token() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let bytes = b"the private bytes of an upload".to_vec();
    let session_id = create_partial(&env, &replica, &bytes).await;
    let url = format!("{}{}", replica.address, source_path(session_id));
    for (who, stranger) in strangers() {
        assert_unauthorized(stranger.get(&url).send().await.unwrap(), who).await;
    }
    let served = env.http.get(&url).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap(), bytes);
    replica.stop().await;
    env.stop().await;
}

/// Counts the connections made to a local listener nobody should call.
struct Trap {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn start() -> Trap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Trap {
            url,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_finish_naming_an_outside_address_makes_no_connection_to_it() {
    let env = TestEnv::start().await;
    let replica = env.start_replica("r1").await;
    let trap = Trap::start().await;
    let part = SessionId::new();
    let len = 1024u64;
    let finale = create_final(&env, &replica).await;
    let finish_url = format!("{}{}", replica.address, finish_path(finale.session_id));

    // A part at the trap, in the shape of the old contract and with a replica id besides.
    let at_trap = json!({
        "total_bytes": len,
        "parts": [{ "address": format!("{}/r1/", trap.url), "session_id": part, "len": len }],
    });
    let at_trap_with_id = json!({
        "total_bytes": len,
        "parts": [{
            "address": format!("{}/r9/", trap.url),
            "replica_id": "r9",
            "session_id": part,
            "len": len,
        }],
    });
    for (who, stranger) in strangers() {
        for body in [&at_trap, &at_trap_with_id] {
            let response = stranger.post(&finish_url).json(body).send().await.unwrap();
            assert_unauthorized(response, who).await;
        }
    }
    // With the token, a part is named by replica id only, and one not configured is refused.
    let response = env
        .http
        .post(&finish_url)
        .json(&at_trap)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (StatusCode::BAD_REQUEST, "invalid_request".to_owned())
    );
    let response = env
        .http
        .post(&finish_url)
        .json(&at_trap_with_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (StatusCode::BAD_REQUEST, "unknown_replica".to_owned())
    );

    // Nothing started joining: the session still takes its bytes at offset 0.
    let written = replica
        .put_ok(&env.http, finale.session_id, 0, &[0u8; 16])
        .await;
    assert_eq!(written, 16);
    assert_eq!(
        trap.connections(),
        0,
        "fflow called the address it was given"
    );
    trap.task.abort();
    replica.stop().await;
    env.stop().await;
}

#[tokio::test]
async fn parts_on_a_peer_are_fetched_from_its_configured_address_with_the_token() {
    let env = TestEnv::start().await;
    let replicas = env.start_peers(&["r1", "r2"]).await;
    let (first, second) = (&replicas[0], &replicas[1]);
    let clip = make_clip(env.dir.path());
    let (head, tail) = clip.split_at(clip.len() / 2);
    // One part on each replica; the final upload joins them on r1.
    let on_first = create_partial(&env, first, head).await;
    let on_second = create_partial(&env, second, tail).await;
    let finale = create_final(&env, first).await;
    let request = FinishProcess {
        total_bytes: clip.len() as u64,
        parts: vec![
            PartSource {
                replica_id: "r1".to_owned(),
                session_id: on_first,
                len: head.len() as u64,
            },
            PartSource {
                replica_id: "r2".to_owned(),
                session_id: on_second,
                len: tail.len() as u64,
            },
        ],
    };
    let response = env
        .http
        .post(format!(
            "{}{}",
            first.address,
            finish_path(finale.session_id)
        ))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let outcome = env.next_outcome().await;
    assert!(
        matches!(outcome.result, EncodeResult::Ready { .. }),
        "{outcome:?}"
    );
    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&clip));
    assert_eq!(
        outcome.source_sha256.as_deref(),
        Some(digest.as_str()),
        "the joined source is both parts in order"
    );
    for replica in replicas {
        replica.stop().await;
    }
    env.stop().await;
}
