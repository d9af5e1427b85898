#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

mod common;

use std::time::Duration;

use common::{raw_get, Backend, TestHolder};
use reqwest::header;
use reqwest::Method;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn range_request_returns_the_requested_bytes(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let contents: Vec<u8> = (0..10_000u32).map(|i| (i % 256) as u8).collect();
    holder.write_file("videos/v/f/720p/segment_00001.m4s", &contents);

    let response = client()
        .get(holder.url("/videos/v/f/720p/segment_00001.m4s"))
        .header(header::RANGE, "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        "bytes 100-1099/10000"
    );
    assert_eq!(response.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "1000");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "video/iso.segment"
    );
    assert_eq!(response.bytes().await.unwrap(), &contents[100..1100]);

    let response = client()
        .get(holder.url("/videos/v/f/720p/segment_00001.m4s"))
        .header(header::RANGE, "bytes=9990-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        "bytes 9990-9999/10000"
    );
    assert_eq!(response.bytes().await.unwrap(), &contents[9990..]);

    let response = client()
        .get(holder.url("/videos/v/f/720p/segment_00001.m4s"))
        .header(header::RANGE, "bytes=20000-30000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
}

async fn head_answers_headers_without_a_body(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("videos/v/f/manifest.mpd", b"<MPD/>");
    let response = client()
        .head(holder.url("/videos/v/f/manifest.mpd"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/dash+xml"
    );
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "6");
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=2"
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

async fn unchanged_file_is_not_sent_again(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("v/init.mp4", b"init");
    let first = client()
        .get(holder.url("/v/init.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.headers()[header::CONTENT_TYPE], "video/mp4");
    let last_modified = first.headers()[header::LAST_MODIFIED].clone();

    let again = client()
        .get(holder.url("/v/init.mp4"))
        .header(header::IF_MODIFIED_SINCE, last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(
        again.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
}

async fn every_player_file_type_gets_its_media_type(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let expected = [
        ("a.ts", "video/mp2t"),
        ("thumb.jpg", "image/jpeg"),
        ("thumb.jpeg", "image/jpeg"),
        ("en.vtt", "text/vtt"),
        ("facts.json", "application/json"),
    ];
    for (name, content_type) in expected {
        holder.write_file(&format!("v/{name}"), b"x");
        let response = client()
            .get(holder.url(&format!("/v/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            content_type,
            "{name}"
        );
    }
}

async fn cors_preflight_allows_range_requests_from_players(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let response = client()
        .request(Method::OPTIONS, holder.url("/videos/v/f/master.m3u8"))
        .header(header::ORIGIN, "https://player.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "range")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("range"), "{allowed}");
}

async fn get_from_another_origin_exposes_length_and_range_headers(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("v/a.m4s", b"0123456789");
    let response = client()
        .get(holder.url("/v/a.m4s"))
        .header(header::ORIGIN, "https://player.example")
        .header(header::RANGE, "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let exposed = response.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["content-length", "content-range", "accept-ranges"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert_eq!(response.bytes().await.unwrap(), "2345");
}

async fn only_configured_origins_are_allowed(backend: Backend) {
    let holder = TestHolder::spawn_on_with(backend, |config| holder::Config {
        cors_allow_origin: "https://a.example, https://b.example".to_owned(),
        ..config
    })
    .await;
    holder.write_file("v/a.ts", b"x");
    let from = |origin: &'static str| {
        client()
            .get(holder.url("/v/a.ts"))
            .header(header::ORIGIN, origin)
            .send()
    };
    let allowed = from("https://b.example").await.unwrap();
    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://b.example"
    );
    let other = from("https://evil.example").await.unwrap();
    assert!(other
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

async fn traversal_attempts_are_refused_and_outside_files_never_served(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let secret = "outside-the-root-7f3a";
    let secret_path = holder.base.path().join("secret.txt");
    std::fs::write(&secret_path, secret).unwrap();
    holder.write_file("videos/a.ts", b"inside");
    let absolute = secret_path.to_str().unwrap().replace('/', "%2f");

    let attempts = [
        "/../secret.txt".to_owned(),
        "/videos/../../secret.txt".to_owned(),
        "/%2e%2e/secret.txt".to_owned(),
        "/%2E%2E/secret.txt".to_owned(),
        "/videos/%2e%2e/%2e%2e/secret.txt".to_owned(),
        "/..%2fsecret.txt".to_owned(),
        "/..%5csecret.txt".to_owned(),
        "/videos\\..\\..\\secret.txt".to_owned(),
        format!("/{absolute}"),
        format!("/{}", secret_path.to_str().unwrap()),
    ];
    for target in attempts {
        let (status, response) = raw_get(holder.http_addr, &target).await;
        assert!((400..500).contains(&status), "{target}: {status}");
        assert!(!response.contains(secret), "{target} leaked the file");
    }

    // The same file inside the root is served, so the refusals above are about the paths.
    let (status, response) = raw_get(holder.http_addr, "/videos/a.ts").await;
    assert_eq!(status, 200);
    assert!(response.ends_with("inside"));
}

async fn hidden_temporary_files_are_not_served(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("videos/v/f/.segment_00002.m4s.part", b"half");
    holder.write_file("videos/v/.incoming/master.m3u8", b"#EXTM3U");
    for path in [
        "/videos/v/f/.segment_00002.m4s.part",
        "/videos/v/f/%2esegment_00002.m4s.part",
        "/videos/v/.incoming/master.m3u8",
    ] {
        let response = client().get(holder.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
    }
}

async fn directories_are_not_listed(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("videos/v/f/master.m3u8", b"#EXTM3U");
    for path in ["/", "/videos", "/videos/", "/videos/v/f", "/videos/v/f/"] {
        let response = client().get(holder.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

async fn missing_file_is_a_json_404(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let response = client()
        .get(holder.url("/videos/nope/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

async fn writes_are_not_allowed_over_http(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let response = client()
        .put(holder.url("/videos/a.ts"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(!holder.stored_file("videos/a.ts").exists());
}

#[tokio::test]
async fn healthz_is_ok_while_the_root_is_readable() {
    let holder = TestHolder::spawn_on(Backend::Fs).await;
    let response = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    std::fs::remove_dir_all(&holder.root).unwrap();
    let response = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "storage_unavailable");
}

async fn a_current_etag_is_not_modified_and_an_old_one_gets_the_file(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("videos/v/f/media_0.m3u8", b"#EXTM3U\n");
    let first = client()
        .get(holder.url("/videos/v/f/media_0.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()[header::ETAG].clone();
    assert!(etag.to_str().unwrap().starts_with('"'), "{etag:?}");

    let again = client()
        .get(holder.url("/videos/v/f/media_0.m3u8"))
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], etag);
    assert_eq!(again.headers()[header::CACHE_CONTROL], "public, max-age=2");

    let other = client()
        .get(holder.url("/videos/v/f/media_0.m3u8"))
        .header(header::IF_NONE_MATCH, "\"not-this-one\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.bytes().await.unwrap(), "#EXTM3U\n");

    let failed = client()
        .get(holder.url("/videos/v/f/media_0.m3u8"))
        .header(header::IF_MATCH, "\"not-this-one\"")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 412);
}

async fn a_range_for_another_version_gets_the_whole_file(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("v/a.m4s", b"0123456789");
    let response = client()
        .get(holder.url("/v/a.m4s"))
        .header(header::RANGE, "bytes=2-5")
        .header(header::IF_RANGE, "\"an-older-version\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), "0123456789");
}

async fn head_of_a_range_answers_its_length(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    holder.write_file("v/a.m4s", b"0123456789");
    let response = client()
        .head(holder.url("/v/a.m4s"))
        .header(header::RANGE, "bytes=-4")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes 6-9/10");
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "4");
}

async fn a_file_removed_behind_holders_back_is_404(backend: Backend) {
    let holder = TestHolder::spawn_on(backend).await;
    let stored = holder.write_file("videos/v/f/seg-1.m4s", b"segment");
    let url = holder.url("/videos/v/f/seg-1.m4s");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    std::fs::remove_file(stored).unwrap();
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

/// Every test above, once on each store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod fs {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::Fs).await })*
        }
        mod s3 {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Backend::S3).await })*
        }
    };
}

on_both_stores!(
    range_request_returns_the_requested_bytes,
    head_answers_headers_without_a_body,
    unchanged_file_is_not_sent_again,
    every_player_file_type_gets_its_media_type,
    cors_preflight_allows_range_requests_from_players,
    get_from_another_origin_exposes_length_and_range_headers,
    only_configured_origins_are_allowed,
    traversal_attempts_are_refused_and_outside_files_never_served,
    hidden_temporary_files_are_not_served,
    directories_are_not_listed,
    missing_file_is_a_json_404,
    writes_are_not_allowed_over_http,
    a_current_etag_is_not_modified_and_an_old_one_gets_the_file,
    a_range_for_another_version_gets_the_whole_file,
    head_of_a_range_answers_its_length,
    a_file_removed_behind_holders_back_is_404,
);

#[tokio::test]
async fn an_unreachable_bucket_is_503_with_retry_after_never_a_200() {
    let holder = TestHolder::spawn_on(Backend::S3).await;
    holder.write_file("videos/v/f/seg-1.m4s", &[7u8; 4096]);
    let url = holder.url("/videos/v/f/seg-1.m4s");
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);

    let bucket = holder.bucket.as_ref().unwrap();
    bucket.proxy.cut();
    for request in [
        client().get(&url),
        client().get(&url).header(header::RANGE, "bytes=0-99"),
        client().head(&url),
    ] {
        let response = tokio::time::timeout(Duration::from_secs(20), request.send())
            .await
            .expect("holder answers while the bucket is away")
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
    let health = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);

    bucket.proxy.restore();
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 4096);
    let health = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
