#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

mod common;

use common::{raw_get, TestHolder};
use reqwest::header;
use reqwest::Method;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn range_request_returns_the_requested_bytes() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn head_answers_headers_without_a_body() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn unchanged_file_is_not_sent_again() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn every_player_file_type_gets_its_media_type() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn cors_preflight_allows_range_requests_from_players() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn get_from_another_origin_exposes_length_and_range_headers() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn only_configured_origins_are_allowed() {
    let holder = TestHolder::spawn_with(|config| holder::Config {
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

#[tokio::test]
async fn traversal_attempts_are_refused_and_outside_files_never_served() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn hidden_temporary_files_are_not_served() {
    let holder = TestHolder::spawn().await;
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

#[tokio::test]
async fn directories_are_not_listed() {
    let holder = TestHolder::spawn().await;
    holder.write_file("videos/v/f/master.m3u8", b"#EXTM3U");
    for path in ["/", "/videos", "/videos/", "/videos/v/f", "/videos/v/f/"] {
        let response = client().get(holder.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn missing_file_is_a_json_404() {
    let holder = TestHolder::spawn().await;
    let response = client()
        .get(holder.url("/videos/nope/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn writes_are_not_allowed_over_http() {
    let holder = TestHolder::spawn().await;
    let response = client()
        .put(holder.url("/videos/a.ts"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(!holder.root.join("videos/a.ts").exists());
}

#[tokio::test]
async fn healthz_is_ok_while_the_root_is_readable() {
    let holder = TestHolder::spawn().await;
    let response = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    std::fs::remove_dir_all(&holder.root).unwrap();
    let response = client().get(holder.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "storage_unavailable");
}
