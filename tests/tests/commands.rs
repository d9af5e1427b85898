//! The commands between the gateway and the uploaders, on the real broker and real uploader
//! replicas: each command's reply comes back as its own type, and a failure inside an
//! uploader reaches the client as a server error, not as an outage to wait out.

use std::time::Duration;

use gateway::uploader_client::{BrokerMetrics, CallError, ClientOptions, UploaderClient};
use gateway::Config;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use vod_contracts::commands::{
    ChunkCommit, ChunkHeader, ChunkReply, CreateFinalUpload, CreatePartialUpload, CreateUpload,
    CreateVideo, DeclareLength, LengthDeclared, LockUpload, PartialUploadCreated, RejectCode,
    TerminateUpload, UnlockUpload, UploadCreated, UploadLocked, UploadTerminated, UploadUnlocked,
    VideoCreated,
};
use vod_contracts::commands::{CreateProject, ProjectCreated};
use vod_contracts::{PlaybackPolicy, ProjectId, SessionId, VideoStatus, WriterId};
use vod_tests::media::generate_clip;
use vod_tests::tus::{metadata, TUS_VERSION};
use vod_tests::{Stack, TestEnv};

/// A client of the uploaders, as the gateway's.
async fn uploader_client(env: &TestEnv) -> (UploaderClient, tokio::task::JoinHandle<()>) {
    let options = ClientOptions {
        rpc_timeout: Duration::from_secs(30),
        ..Config::default().uploader_client(BrokerMetrics::default())
    };
    UploaderClient::connect(&env.amqp(), options)
        .await
        .expect("broker reachable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_is_answered_with_its_own_reply_type_through_the_broker() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let (client, _replies) = uploader_client(&env).await;

    let VideoCreated { video_id } = client
        .call(&CreateVideo {
            project_id: ProjectId::DEFAULT,
            title: "Typed".to_owned(),
            description: "every command".to_owned(),
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .expect("video created");
    assert_eq!(stack.video(video_id).await.title, "Typed");

    // An upload of that video whose length is declared late, written by one locked request
    // that stages a piece and then commits it with the next.
    let created: UploadCreated = client
        .call(&CreateUpload {
            project_id: ProjectId::DEFAULT,
            video_id: Some(video_id),
            title: "Typed".to_owned(),
            filename: Some("typed.bin".to_owned()),
            total_bytes: None,
            metadata: None,
            direct_upload_id: None,
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .expect("upload created");
    assert_eq!(created.video_id, video_id);
    assert!(created.expires_at.is_some(), "{created:?}");
    let session_id = created.session_id;
    let writer = WriterId::new();
    let locked: UploadLocked = client
        .call(&LockUpload {
            project_id: ProjectId::DEFAULT,
            session_id,
            writer,
            offset: 0,
        })
        .await
        .expect("upload locked");
    assert_eq!(locked.uploaded_bytes, 0);
    let piece = vec![7u8; 1000];
    let staged = client
        .send_chunk(
            &ChunkHeader {
                writer: Some(writer),
                commit: ChunkCommit::Stage { base: 0 },
                ..ChunkHeader::immediate(session_id, 0, 1000)
            },
            &piece,
        )
        .await
        .expect("piece staged");
    assert_eq!(staged, ChunkReply::Staged { staged_to: 1000 });
    let stored = client
        .send_chunk(
            &ChunkHeader {
                writer: Some(writer),
                commit: ChunkCommit::CommitStaged { base: 0 },
                ..ChunkHeader::immediate(session_id, 1000, 1000)
            },
            &piece,
        )
        .await
        .expect("pieces committed");
    let ChunkReply::Stored {
        uploaded_bytes,
        total_bytes,
        ..
    } = stored
    else {
        panic!("the committing piece is stored: {stored:?}");
    };
    assert_eq!((uploaded_bytes, total_bytes), (2000, None));
    let unlocked: UploadUnlocked = client
        .call(&UnlockUpload { session_id, writer })
        .await
        .expect("upload unlocked");
    assert_eq!(unlocked, UploadUnlocked {});
    let declared: LengthDeclared = client
        .call(&DeclareLength {
            project_id: ProjectId::DEFAULT,
            session_id,
            total_bytes: 5000,
        })
        .await
        .expect("length declared");
    assert_eq!(
        declared,
        LengthDeclared {
            uploaded_bytes: 2000,
            total_bytes: 5000
        }
    );
    let terminated: UploadTerminated = client
        .call(&TerminateUpload {
            project_id: ProjectId::DEFAULT,
            session_id,
        })
        .await
        .expect("upload terminated");
    assert_eq!(terminated, UploadTerminated {});

    // A refusal is a typed error too.
    let refused = client
        .call(&LockUpload {
            project_id: ProjectId::DEFAULT,
            session_id: SessionId::new(),
            writer,
            offset: 0,
        })
        .await;
    assert!(
        matches!(&refused, Err(CallError::Rejected(reject)) if reject.code == RejectCode::UploadNotFound),
        "{refused:?}"
    );

    // A partial upload, complete in one chunk, joined by a final upload that is encoded.
    let clip = env.dir.path().join("clip.mp4");
    generate_clip(&clip, 2, "320x240");
    let bytes = std::fs::read(&clip).expect("clip");
    let len = bytes.len() as u64;
    let partial: PartialUploadCreated = client
        .call(&CreatePartialUpload {
            project_id: ProjectId::DEFAULT,
            total_bytes: Some(len),
            metadata: None,
        })
        .await
        .expect("partial upload created");
    let stored = client
        .send_chunk(&ChunkHeader::immediate(partial.session_id, 0, len), &bytes)
        .await
        .expect("partial upload stored");
    let ChunkReply::Stored {
        uploaded_bytes,
        total_bytes,
        expires_at,
    } = stored
    else {
        panic!("an immediate chunk is stored: {stored:?}");
    };
    assert_eq!((uploaded_bytes, total_bytes), (len, Some(len)));
    assert_eq!(expires_at, None, "a complete upload does not expire");
    let joined: UploadCreated = client
        .call(&CreateFinalUpload {
            project_id: ProjectId::DEFAULT,
            video_id: None,
            title: "Joined".to_owned(),
            filename: Some("clip.mp4".to_owned()),
            metadata: None,
            parts: vec![partial.session_id],
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .expect("final upload created");
    assert_ne!(joined.video_id, video_id);
    let video = stack.wait_until_settled(joined.video_id).await;
    assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");

    client.close().await;
    stack.shutdown().await;
}

/// A title this test's database refuses once the test broke it: a constraint no uploader knows
/// of, which fails the insert of the video however often it is retried.
const REFUSED_TITLE: &str = "A title the database refuses";

async fn refuse_the_title_in_the_database(env: &TestEnv) {
    env.db()
        .await
        .batch_execute(&format!(
            "ALTER TABLE video ADD CONSTRAINT refused_by_the_test \
             CHECK (title <> '{REFUSED_TITLE}') NOT VALID"
        ))
        .await
        .expect("constraint added");
}

async fn assert_internal_error(what: &str, response: Response) {
    let status = response.status();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}: {body}");
    assert_eq!(body["code"], "internal", "{what}: {body}");
    assert!(
        retry_after.is_none(),
        "{what}: a defect is not an outage to wait out: {retry_after:?}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && !message.contains("refused_by_the_test"),
        "{what}: the cause stays in the uploader's log: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_internal_uploader_failure_is_answered_500_internal_without_retry_after() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    refuse_the_title_in_the_database(&env).await;

    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": REFUSED_TITLE, "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_internal_error("creating a video", response).await;

    let response = stack
        .http
        .post(stack.url("/v1/uploads"))
        .header("Tus-Resumable", TUS_VERSION)
        .header("Upload-Length", "100")
        .header(
            "Upload-Metadata",
            metadata(&[("filename", "a.mp4"), ("title", REFUSED_TITLE)]),
        )
        .send()
        .await
        .expect("gateway answers");
    assert_internal_error("creating an upload", response).await;

    // A chunk whose offset the database refuses to move: the bytes reached fflow, but the
    // upload cannot count them.
    let upload = stack.create_upload(100, "a.mp4").await;
    env.db()
        .await
        .batch_execute(
            "CREATE FUNCTION refused_by_the_test() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'flow % refused by the test', NEW.id; END $$; \
             CREATE TRIGGER refused_by_the_test BEFORE UPDATE OF uploaded_bytes ON flow \
             FOR EACH ROW EXECUTE FUNCTION refused_by_the_test()",
        )
        .await
        .expect("trigger added");
    let response = stack.patch(&upload.location, 0, vec![1u8; 10]).await;
    assert_internal_error("storing a chunk", response).await;
    assert_eq!(
        stack.offset(&upload.location).await,
        0,
        "nothing was counted"
    );

    // Nothing else is broken: the same stack goes on serving.
    let response = stack
        .http
        .post(stack.url("/v1/videos"))
        .json(&json!({ "title": "Another title", "description": "" }))
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        stack.video_count().await,
        2,
        "the upload's video and this one; none of the refused ones"
    );
    stack.assert_running();
    stack.shutdown().await;
}

/// The uploader is the last line of the isolation between projects: whatever the gateway
/// sends, a command never reaches a row of another project than the one it names, and such a
/// row is answered as one that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_of_one_project_finds_nothing_of_another() {
    let env = TestEnv::new().await;
    let _stack = Stack::spawn(&env).await;
    let (client, _replies) = uploader_client(&env).await;
    let ProjectCreated {
        project_id: other, ..
    } = client
        .call(&CreateProject {
            name: "other".to_owned(),
        })
        .await
        .expect("project created");
    let taken = client
        .call(&CreateProject {
            name: "other".to_owned(),
        })
        .await;
    assert!(
        matches!(&taken, Err(CallError::Rejected(r)) if r.code == RejectCode::ProjectNameTaken),
        "{taken:?}"
    );

    let mine: UploadCreated = client
        .call(&CreateUpload {
            project_id: ProjectId::DEFAULT,
            video_id: None,
            title: "Mine".to_owned(),
            filename: None,
            total_bytes: Some(10),
            metadata: None,
            direct_upload_id: None,
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .expect("upload created");
    let partial: PartialUploadCreated = client
        .call(&CreatePartialUpload {
            project_id: ProjectId::DEFAULT,
            total_bytes: Some(0),
            metadata: None,
        })
        .await
        .expect("partial upload created");

    let code = |result: Result<(), CallError>| match result {
        Err(CallError::Rejected(reject)) => Some(reject.code),
        _ => None,
    };
    let attach = client
        .call(&CreateUpload {
            project_id: other,
            video_id: Some(mine.video_id),
            title: "Theirs".to_owned(),
            filename: None,
            total_bytes: Some(10),
            metadata: None,
            direct_upload_id: None,
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .map(drop);
    assert_eq!(code(attach), Some(RejectCode::VideoNotFound));
    let lock = client
        .call(&LockUpload {
            project_id: other,
            session_id: mine.session_id,
            writer: WriterId::new(),
            offset: 0,
        })
        .await
        .map(drop);
    assert_eq!(code(lock), Some(RejectCode::UploadNotFound));
    let declare = client
        .call(&DeclareLength {
            project_id: other,
            session_id: mine.session_id,
            total_bytes: 10,
        })
        .await
        .map(drop);
    assert_eq!(code(declare), Some(RejectCode::UploadNotFound));
    let terminate = client
        .call(&TerminateUpload {
            project_id: other,
            session_id: mine.session_id,
        })
        .await
        .map(drop);
    assert_eq!(code(terminate), Some(RejectCode::UploadNotFound));
    let join = client
        .call(&CreateFinalUpload {
            project_id: other,
            video_id: None,
            title: "Joined".to_owned(),
            filename: None,
            metadata: None,
            parts: vec![partial.session_id],
            playback_policy: PlaybackPolicy::Public,
        })
        .await
        .map(drop);
    assert_eq!(code(join), Some(RejectCode::UploadNotFound));

    // The owner still reaches all of it.
    client
        .call(&LockUpload {
            project_id: ProjectId::DEFAULT,
            session_id: mine.session_id,
            writer: WriterId::new(),
            offset: 0,
        })
        .await
        .expect("the owner locks its upload");
}
