//! The uploaders' chunk listener, where the gateway streams upload bodies: only the gateway's
//! token is admitted, before a byte of the body counts; a chunk is what its body carries, never
//! more than its header says, and a body that breaks off counts nothing. Every other test of the
//! stack writes through it.

use bytes::Bytes;
use futures_util::stream;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use vod_contracts::commands::{ChunkHeader, CHUNKS_PATH, CHUNK_HEADER};
use vod_contracts::WriterId;
use vod_tests::{Stack, TestEnv};

fn chunks_url(stack: &Stack, index: usize) -> String {
    format!("{}{CHUNKS_PATH}", stack.uploader_chunks_urls[index])
}

fn header_json(header: &ChunkHeader) -> String {
    serde_json::to_string(header).expect("a header serializes")
}

async fn put_chunk(
    stack: &Stack,
    index: usize,
    authorization: Option<&str>,
    header: &ChunkHeader,
    body: reqwest::Body,
) -> reqwest::Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .put(chunks_url(stack, index))
        .header(CHUNK_HEADER, header_json(header))
        .body(body);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    request.send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_gateways_token_is_admitted_and_a_refused_chunk_counts_nothing() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    assert_eq!(stack.uploader_chunks_urls.len(), 2, "both uploaders listen");
    let upload = stack.create_upload(64, "clip.mp4").await;
    let header = ChunkHeader::immediate(upload.session_id, 0, 16);
    let token = stack.chunks_token.expose_secret().to_owned();
    let wrong_token = format!("Bearer {token}x");
    let short_token = format!("Bearer {}", &token[..token.len() - 1]);
    let as_basic = format!("Basic {token}");
    for authorization in [
        None,
        Some(wrong_token.as_str()),
        Some(short_token.as_str()),
        Some(as_basic.as_str()),
        Some(token.as_str()),
        Some("Bearer "),
    ] {
        let response = put_chunk(
            &stack,
            0,
            authorization,
            &header,
            Bytes::from_static(&[7; 16]).into(),
        )
        .await
        .expect("the listener answers");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        let body: Value = response.json().await.expect("a JSON refusal");
        assert_eq!(body["code"], "unauthorized", "{body}");
        assert!(
            !body.to_string().contains(&token),
            "the refusal does not echo the token"
        );
    }
    assert_eq!(stack.offset(&upload.location).await, 0);

    // With the token, on either replica, the chunk is stored.
    let bearer = format!("Bearer {token}");
    let response = put_chunk(
        &stack,
        1,
        Some(&bearer),
        &header,
        Bytes::from_static(&[7; 16]).into(),
    )
    .await
    .expect("the listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.expect("a JSON reply");
    assert_eq!(reply["ok"]["type"], "stored", "{reply}");
    assert_eq!(reply["ok"]["uploaded_bytes"], 16, "{reply}");
    assert_eq!(stack.offset(&upload.location).await, 16);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_longer_than_its_header_or_broken_off_counts_nothing() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn(&env).await;
    let upload = stack.create_upload(64, "clip.mp4").await;
    let bearer = format!("Bearer {}", stack.chunks_token.expose_secret());
    // One request's chunks, as the gateway sends them under its write lock: a refused one
    // leaves the lock with the request, which goes on.
    let writer = WriterId::new();
    let chunk = |len| ChunkHeader {
        writer: Some(writer),
        ..ChunkHeader::immediate(upload.session_id, 0, len)
    };

    // Says 8 bytes, sends 24.
    let header = chunk(8);
    let response = put_chunk(
        &stack,
        0,
        Some(&bearer),
        &header,
        Bytes::from_static(&[1; 24]).into(),
    )
    .await
    .expect("the listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.expect("a JSON reply");
    assert_eq!(reply["rejected"]["code"], "invalid_command", "{reply}");
    assert_eq!(stack.offset(&upload.location).await, 0);

    // Sends 8 bytes of 16, then breaks off.
    let header = chunk(16);
    let frames = stream::iter([
        Ok(Bytes::from_static(&[2; 8])),
        Err(std::io::Error::other("the sender died")),
    ]);
    let broken = put_chunk(
        &stack,
        0,
        Some(&bearer),
        &header,
        reqwest::Body::wrap_stream(frames),
    )
    .await;
    assert!(broken.is_err(), "the request broke off: {broken:?}");
    assert_eq!(stack.offset(&upload.location).await, 0);

    // A header that is no chunk's is refused by name.
    let response = reqwest::Client::new()
        .put(chunks_url(&stack, 0))
        .header("Authorization", &bearer)
        .header(CHUNK_HEADER, "{\"offset\": \"zero\"}")
        .body("x")
        .send()
        .await
        .expect("the listener answers");
    let reply: Value = response.json().await.expect("a JSON reply");
    assert_eq!(reply["rejected"]["code"], "invalid_command", "{reply}");
    assert!(
        reply["rejected"]["message"]
            .as_str()
            .is_some_and(|message| message.contains(CHUNK_HEADER)),
        "{reply}"
    );

    // The upload carries on from where it was.
    let header = chunk(64);
    let response = put_chunk(
        &stack,
        0,
        Some(&bearer),
        &header,
        Bytes::from_static(&[3; 64]).into(),
    )
    .await
    .expect("the listener answers");
    let reply: Value = response.json().await.expect("a JSON reply");
    assert_eq!(reply["ok"]["uploaded_bytes"], 64, "{reply}");
    stack.shutdown().await;
}
