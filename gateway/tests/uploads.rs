//! tus at `/v1/uploads`, against real PostgreSQL and RabbitMQ, with a test double of the
//! uploader answering the gateway's requests.

mod support;

use futures_util::stream;
use reqwest::{Method, StatusCode};
use support::{b64, error_body, header, http, Gateway, TestEnv, UploaderDouble, TEST_KEY};

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

#[tokio::test]
async fn options_announces_the_tus_capabilities() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.max_upload_bytes = 123_456;
    let gateway = Gateway::spawn(config).await;
    for path in [
        "/v1/uploads",
        "/v1/uploads/0190a6c1-0000-7000-8000-000000000000",
    ] {
        let response = http()
            .request(Method::OPTIONS, gateway.url(path))
            .send()
            .await
            .expect("options");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
        assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
        assert_eq!(
            header(&response, "tus-extension"),
            Some(
                "creation,creation-with-upload,creation-defer-length,termination,expiration,\
                 checksum,concatenation"
            )
        );
        assert_eq!(
            header(&response, "tus-checksum-algorithm"),
            Some("sha1,sha256,sha512,md5")
        );
        assert_eq!(header(&response, "tus-max-size"), Some("123456"));
    }
}

#[tokio::test]
async fn browsers_get_cors_on_preflight_and_on_answers() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let preflight = http()
        .request(Method::OPTIONS, gateway.url("/v1/uploads/abc"))
        .header("Origin", "http://player.example")
        .header("Access-Control-Request-Method", "PATCH")
        .header(
            "Access-Control-Request-Headers",
            "tus-resumable,upload-offset,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success());
    assert_eq!(header(&preflight, "access-control-allow-origin"), Some("*"));
    let methods = header(&preflight, "access-control-allow-methods").unwrap_or_default();
    assert!(
        methods.contains("PATCH") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = header(&preflight, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("upload-offset") && allowed.contains("tus-resumable"),
        "{allowed}"
    );

    let answer = http()
        .head(gateway.url("/v1/uploads/not-an-id"))
        .header("Origin", "http://player.example")
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("head");
    assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
    let exposed = header(&answer, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in [
        "location",
        "upload-offset",
        "tus-resumable",
        "video-id",
        "upload-metadata",
    ] {
        assert!(exposed.contains(name), "{name} not exposed in {exposed}");
    }
}

#[tokio::test]
async fn creation_without_tus_resumable_is_refused_with_412() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    for version in [None, Some("0.2.2")] {
        let mut request = http()
            .post(gateway.url("/v1/uploads"))
            .header("Upload-Length", "10");
        if let Some(version) = version {
            request = request.header("Tus-Resumable", version);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
        assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
        assert_eq!(error_body(response).await.code, "tus_version_unsupported");
    }
}

#[tokio::test]
async fn creation_checks_upload_length() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.max_upload_bytes = 1_000;
    let gateway = Gateway::spawn(config).await;
    let post = || http().post(gateway.url("/v1/uploads")).header(TUS.0, TUS.1);

    let response = post().send().await.expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = error_body(response).await;
    assert_eq!(body.code, "invalid_header");
    assert_eq!(body.field.as_deref(), Some("Upload-Length"));

    let response = post()
        .header("Upload-Length", "-5")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_body(response).await.field.as_deref(),
        Some("Upload-Length")
    );

    let response = post()
        .header("Upload-Defer-Length", "2")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_body(response).await.field.as_deref(),
        Some("Upload-Defer-Length")
    );

    let response = post()
        .header("Upload-Length", "1001")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await.code, "upload_too_large");
}

#[tokio::test]
async fn creation_with_malformed_metadata_is_400_naming_the_header() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "10")
        .header("Upload-Metadata", "filename not*base64")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = error_body(response).await;
    assert_eq!(body.code, "invalid_header");
    assert_eq!(body.field.as_deref(), Some("Upload-Metadata"));

    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "10")
        .header("Upload-Metadata", format!("title {}", b64("   ")))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = error_body(response).await;
    assert_eq!(body.code, "validation_failed");
    assert_eq!(body.field.as_deref(), Some("title"));
}

#[tokio::test]
async fn creation_answers_with_location_and_video_id_as_the_uploader_confirmed() {
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let metadata = format!("filename {},title {}", b64("clip.mp4"), b64("My clip"));
    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "1000")
        .header("Upload-Metadata", &metadata)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    let location = header(&response, "location").expect("location").to_owned();
    assert!(
        location.starts_with(&format!("{}/v1/uploads/", gateway.base_url)),
        "{location}"
    );
    let video_id = header(&response, "video-id").expect("video id").to_owned();

    let head = http()
        .head(&location)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "upload-offset"), Some("0"));
    assert_eq!(header(&head, "upload-length"), Some("1000"));
    assert_eq!(header(&head, "upload-metadata"), Some(metadata.as_str()));
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert_eq!(header(&head, "tus-resumable"), Some("1.0.0"));

    let title: String = env
        .db
        .query_one(
            "SELECT title FROM video WHERE id = $1",
            &[&video_id.parse::<uuid::Uuid>().expect("uuid")],
        )
        .await
        .expect("video row")
        .get(0);
    assert_eq!(title, "My clip");
}

#[tokio::test]
async fn creation_for_an_unknown_video_is_404() {
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "10")
        .header(
            "Upload-Metadata",
            format!("video_id {}", b64(&uuid::Uuid::new_v4().to_string())),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(response).await.code, "video_not_found");
}

#[tokio::test]
async fn creation_with_upload_stores_the_first_bytes() {
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Length", "100")
        .body(vec![7_u8; 40])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "upload-offset"), Some("40"));
    let chunks = uploader.chunks();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].header.offset, 0);
    assert_eq!(chunks[0].payload, vec![7_u8; 40]);
}

#[tokio::test]
async fn head_of_unknown_terminated_or_expired_uploads() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let head = |path: String| http().head(gateway.url(&path)).header(TUS.0, TUS.1).send();

    let response = head(format!("/v1/uploads/{}", uuid::Uuid::new_v4()))
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    let response = head("/v1/uploads/not-a-uuid".to_owned())
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let (_, terminated) = env.insert_upload("TERMINATED", 0, 10, None).await;
    let response = head(format!("/v1/uploads/{terminated}"))
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let (_, expired) = env.insert_upload("EXPIRED", 0, 10, None).await;
    let response = head(format!("/v1/uploads/{expired}")).await.expect("head");
    assert_eq!(response.status(), StatusCode::GONE);

    let (video_id, open) = env.insert_upload("OPEN", 4, 10, None).await;
    let response = head(format!("/v1/uploads/{open}")).await.expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "upload-offset"), Some("4"));
    assert_eq!(header(&response, "upload-length"), Some("10"));
    assert_eq!(header(&response, "upload-metadata"), None);
    assert_eq!(
        header(&response, "video-id"),
        Some(video_id.to_string().as_str())
    );
}

#[tokio::test]
async fn patch_checks_its_headers_before_anything_else() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let (_, session_id) = env.insert_upload("OPEN", 0, 10, None).await;
    let url = gateway.url(&format!("/v1/uploads/{session_id}"));

    let response = http()
        .patch(&url)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body("abc")
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);

    let response = http()
        .patch(&url)
        .header(TUS.0, TUS.1)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "0")
        .body("abc")
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_body(response).await.code, "unsupported_media_type");

    for offset in [None, Some("zero"), Some("-1")] {
        let mut request = http()
            .patch(&url)
            .header(TUS.0, TUS.1)
            .header(OCTETS.0, OCTETS.1);
        if let Some(offset) = offset {
            request = request.header("Upload-Offset", offset);
        }
        let response = request.body("abc").send().await.expect("patch");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{offset:?}");
        let body = error_body(response).await;
        assert_eq!(body.code, "invalid_header");
        assert_eq!(body.field.as_deref(), Some("Upload-Offset"));
    }
    assert_eq!(env.uploaded_bytes(session_id).await, 0);
}

#[tokio::test]
async fn patch_of_unknown_or_expired_upload_is_404_or_410() {
    let env = TestEnv::new().await;
    let gateway = Gateway::spawn(env.config()).await;
    let (_, expired) = env.insert_upload("EXPIRED", 0, 10, None).await;
    let (_, terminated) = env.insert_upload("TERMINATED", 0, 10, None).await;
    let cases = [
        (
            uuid::Uuid::new_v4().to_string(),
            StatusCode::NOT_FOUND,
            "upload_not_found",
        ),
        ("nope".to_owned(), StatusCode::NOT_FOUND, "upload_not_found"),
        (
            terminated.to_string(),
            StatusCode::NOT_FOUND,
            "upload_not_found",
        ),
        (expired.to_string(), StatusCode::GONE, "upload_expired"),
    ];
    for (id, status, code) in cases {
        let response = http()
            .patch(gateway.url(&format!("/v1/uploads/{id}")))
            .header(TUS.0, TUS.1)
            .header(OCTETS.0, OCTETS.1)
            .header("Upload-Offset", "0")
            .body("abc")
            .send()
            .await
            .expect("patch");
        assert_eq!(response.status(), status, "{id}");
        assert_eq!(error_body(response).await.code, code);
    }
}

#[tokio::test]
async fn patch_at_another_offset_is_409_and_writes_nothing() {
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let (_, session_id) = env.insert_upload("OPEN", 10, 100, None).await;
    let response = http()
        .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body(vec![1_u8; 20])
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    let body = error_body(response).await;
    assert_eq!(body.code, "offset_mismatch");
    assert!(body.message.contains("10"), "{}", body.message);
    assert!(uploader.chunks().is_empty());
    assert_eq!(env.uploaded_bytes(session_id).await, 10);
}

#[tokio::test]
async fn patch_declaring_more_than_remains_is_413_before_reading() {
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let (_, session_id) = env.insert_upload("OPEN", 0, 10, None).await;
    let response = http()
        .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body(vec![1_u8; 11])
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await.code, "length_exceeded");
    assert!(uploader.chunks().is_empty());
}

#[tokio::test]
async fn patch_body_larger_than_a_chunk_arrives_in_bounded_ordered_pieces() {
    const CHUNK: usize = 64 * 1024;
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let mut config = env.config();
    config.chunk_size_bytes = CHUNK;
    let gateway = Gateway::spawn(config).await;
    let data: Vec<u8> = (0..300 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let (_, session_id) = env.insert_upload("OPEN", 0, data.len() as i64, None).await;

    // One request whose body streams in (chunked encoding, no Content-Length).
    let frames: Vec<Result<Vec<u8>, std::io::Error>> = data
        .chunks(10_000)
        .map(|frame| Ok(frame.to_vec()))
        .collect();
    let response = http()
        .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body(reqwest::Body::wrap_stream(stream::iter(frames)))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));

    let chunks = uploader.chunks();
    assert!(
        chunks.len() >= data.len().div_ceil(CHUNK),
        "{} pieces",
        chunks.len()
    );
    let mut expected_offset = 0;
    let mut joined = Vec::new();
    for chunk in &chunks {
        assert!(
            chunk.payload.len() <= CHUNK,
            "piece of {} bytes",
            chunk.payload.len()
        );
        assert!(!chunk.payload.is_empty());
        assert_eq!(chunk.header.offset, expected_offset);
        assert_eq!(chunk.header.len, chunk.payload.len() as u64);
        expected_offset += chunk.header.len;
        joined.extend_from_slice(&chunk.payload);
    }
    assert!(joined == data, "the pieces do not add up to the body");
    // The last piece gives the write lock back; the others keep it.
    let releases: Vec<bool> = chunks.iter().map(|chunk| chunk.header.release).collect();
    let mut expected_releases = vec![false; chunks.len() - 1];
    expected_releases.push(true);
    assert_eq!(releases, expected_releases);
    let confirmed = chunks.last().expect("pieces").uploaded_bytes;
    assert_eq!(
        header(&response, "upload-offset"),
        Some(confirmed.to_string().as_str())
    );
    assert_eq!(confirmed, data.len() as u64);

    let head = http()
        .head(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("head");
    assert_eq!(
        header(&head, "upload-offset"),
        Some(confirmed.to_string().as_str())
    );
}

#[tokio::test]
async fn patch_streaming_past_the_length_keeps_what_fits_and_is_413() {
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let mut config = env.config();
    config.chunk_size_bytes = 16;
    let gateway = Gateway::spawn(config).await;
    let (_, session_id) = env.insert_upload("OPEN", 0, 40, None).await;
    let frames: Vec<Result<Vec<u8>, std::io::Error>> = (0..6).map(|_| Ok(vec![3_u8; 10])).collect();
    let response = http()
        .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body(reqwest::Body::wrap_stream(stream::iter(frames)))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(response).await.code, "length_exceeded");
    let stored: u64 = uploader.chunks().iter().map(|chunk| chunk.header.len).sum();
    assert_eq!(stored, 40);
    assert_eq!(env.uploaded_bytes(session_id).await, 40);
}

#[tokio::test]
async fn terminated_upload_is_gone() {
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let gateway = Gateway::spawn(env.config()).await;
    let (_, session_id) = env.insert_upload("OPEN", 0, 10, None).await;
    let url = gateway.url(&format!("/v1/uploads/{session_id}"));

    let response = http().delete(&url).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);

    let response = http()
        .delete(&url)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    let response = http()
        .head(&url)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = http()
        .delete(gateway.url(&format!("/v1/uploads/{}", uuid::Uuid::new_v4())))
        .header(TUS.0, TUS.1)
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(response).await.code, "upload_not_found");
}

#[tokio::test]
async fn without_an_uploader_answering_requests_are_503_with_retry_after() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.rpc_timeout_ms = 300;
    config.retry_after_secs = 7;
    let gateway = Gateway::spawn(config).await;
    let response = http()
        .post(gateway.url("/v1/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("7"));
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    assert_eq!(error_body(response).await.code, "service_unavailable");
}

#[tokio::test]
async fn bytes_received_before_the_client_disconnects_are_stored() {
    use tokio::io::AsyncWriteExt;

    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let mut config = env.config();
    config.chunk_size_bytes = 64 * 1024;
    let gateway = Gateway::spawn(config).await;
    let (_, session_id) = env.insert_upload("OPEN", 0, 100_000, None).await;

    // Declares 100 000 bytes, sends 50 000 (less than a chunk), then goes away.
    let addr = gateway.base_url.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH /v1/uploads/{session_id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TEST_KEY}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
         Content-Length: 100000\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("write head");
    socket.write_all(&[9_u8; 50_000]).await.expect("write body");
    socket.flush().await.expect("flush");
    drop(socket);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.uploaded_bytes(session_id).await != 50_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received bytes were lost: {} stored",
            env.uploaded_bytes(session_id).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stored: Vec<u8> = uploader
        .chunks()
        .into_iter()
        .flat_map(|chunk| chunk.payload)
        .collect();
    assert_eq!(stored, vec![9_u8; 50_000]);
}

/// A PATCH, on a connection of its own, that declares `declared` bytes, sends ten of them, and
/// then nothing more, its connection left open.
async fn stalled_patch(
    gateway: &Gateway,
    session_id: vod_contracts::SessionId,
    declared: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;

    let addr = gateway.base_url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH /v1/uploads/{session_id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TEST_KEY}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    stalled
        .write_all(head.as_bytes())
        .await
        .expect("write head");
    stalled.write_all(&[5_u8; 10]).await.expect("write body");
    stalled.flush().await.expect("flush");
    stalled
}

#[tokio::test]
async fn bodies_wait_for_memory_held_by_others_then_get_503_with_retry_after() {
    const CHUNK: usize = 64 * 1024;
    let env = TestEnv::new().await;
    let uploader = UploaderDouble::start(&env).await;
    let mut config = env.config();
    config.chunk_size_bytes = CHUNK;
    config.chunks_in_flight = 1;
    // Room for one piece in the whole gateway.
    config.max_buffered_bytes = CHUNK;
    config.buffer_wait_ms = 300;
    config.retry_after_secs = 4;
    let gateway = Gateway::spawn(config).await;

    // A client declares a whole piece, sends a few bytes of it, and stalls.
    let (_, stalled_id) = env.insert_upload("OPEN", 0, CHUNK as i64, None).await;
    let stalled = stalled_patch(&gateway, stalled_id, CHUNK).await;

    let patch = |session_id: vod_contracts::SessionId| {
        http()
            .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
            .header(TUS.0, TUS.1)
            .header(OCTETS.0, OCTETS.1)
            .header("Upload-Offset", "0")
            .body(vec![6_u8; 1_000])
            .send()
    };
    // Once the stalled request holds the memory, another upload's body waits, then is told to
    // come back later; until then, each attempt uses a fresh upload.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        let (_, session_id) = env.insert_upload("OPEN", 0, 1_000, None).await;
        let response = patch(session_id).await.expect("patch");
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(env.uploaded_bytes(session_id).await, 0, "nothing stored");
            break response;
        }
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled body never held the memory"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(header(&refused, "retry-after"), Some("4"));
    let body = error_body(refused).await;
    assert_eq!(body.code, "server_busy");
    assert!(
        body.message.contains("too many uploads"),
        "{}",
        body.message
    );

    // The stalled client goes away: its bytes are stored and the memory is free again.
    drop(stalled);
    let (_, session_id) = env.insert_upload("OPEN", 0, 1_000, None).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = patch(session_id).await.expect("patch");
        if response.status() == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the memory was never given back"
        );
    }
    assert_eq!(env.uploaded_bytes(session_id).await, 1_000);
    assert_eq!(env.uploaded_bytes(stalled_id).await, 10);
    let stalled_bytes: usize = uploader
        .chunks()
        .iter()
        .filter(|chunk| chunk.header.session_id == stalled_id)
        .map(|chunk| chunk.payload.len())
        .sum();
    assert_eq!(stalled_bytes, 10);
}

#[tokio::test]
async fn a_body_that_sends_nothing_for_the_idle_timeout_is_ended_and_keeps_its_bytes() {
    use tokio::io::AsyncReadExt;

    const CHUNK: usize = 64 * 1024;
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let mut config = env.config();
    config.chunk_size_bytes = CHUNK;
    config.chunks_in_flight = 1;
    // Room for one piece in the whole gateway: the stalled body holds it.
    config.max_buffered_bytes = CHUNK;
    config.buffer_wait_ms = 60_000;
    config.body_idle_timeout_ms = 300;
    let gateway = Gateway::spawn(config).await;

    // A client declares a whole piece, sends a few bytes of it, and goes silent without
    // closing its connection, as one whose network went away.
    let (_, stalled_id) = env.insert_upload("OPEN", 0, CHUNK as i64, None).await;
    let mut stalled = stalled_patch(&gateway, stalled_id, CHUNK).await;

    // The gateway ends the request itself: what came is stored and answered.
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stalled.read_to_end(&mut answer),
    )
    .await
    .expect("the stalled request is answered and closed")
    .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 204"), "{answer}");
    assert!(answer.contains("upload-offset: 10\r\n"), "{answer}");
    assert_eq!(env.uploaded_bytes(stalled_id).await, 10);

    // Its memory is free again: another upload's body is taken at once, not after the wait.
    let (_, session_id) = env.insert_upload("OPEN", 0, 1_000, None).await;
    let response = http()
        .patch(gateway.url(&format!("/v1/uploads/{session_id}")))
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", "0")
        .body(vec![6_u8; 1_000])
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(env.uploaded_bytes(session_id).await, 1_000);
}
