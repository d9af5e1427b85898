#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

//! The `s3` store behind FTP ingest: what fflow sends lands in the bucket under its final name,
//! and holder will not start on a bucket it cannot use.

mod common;

use common::{mkdir_all, step, upload, Backend, TestBucket, TestHolder, FTP_PASSWORD};
use holder::{App, Config, StoreKind};

const DIR: &str = "videos/0190c1e2-video/0190c1e3-flow";

#[tokio::test]
async fn an_upload_lands_under_its_final_name_and_is_served() {
    let holder = TestHolder::spawn_on(Backend::S3).await;
    let mut ftp = holder.ftp().await;
    let segment: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    mkdir_all(&mut ftp, &format!("{DIR}/720p")).await;
    upload(&mut ftp, &format!("{DIR}/720p/segment_00001.m4s"), &segment).await;
    upload(&mut ftp, &format!("{DIR}/master.m3u8"), b"#EXTM3U\n").await;
    assert_eq!(
        step(ftp.size(format!("{DIR}/720p/segment_00001.m4s").as_str()))
            .await
            .unwrap(),
        segment.len()
    );
    step(ftp.quit()).await.unwrap();

    assert_eq!(
        std::fs::read(holder.stored_file(&format!("{DIR}/720p/segment_00001.m4s"))).unwrap(),
        segment
    );
    assert!(
        !holder
            .stored_file(&format!("{DIR}/720p/.segment_00001.m4s.part"))
            .exists(),
        "nothing is stored under the temporary name"
    );
    let response = reqwest::get(holder.url(&format!("/{DIR}/720p/segment_00001.m4s")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/iso.segment");
    assert_eq!(response.bytes().await.unwrap(), segment);
}

#[tokio::test]
async fn a_file_larger_than_a_part_goes_up_as_a_multipart_upload() {
    let part_size = 5 * 1024 * 1024;
    let holder = TestHolder::spawn_on_with(Backend::S3, |mut config| {
        config.s3.part_size_bytes = part_size;
        config
    })
    .await;
    let mut ftp = holder.ftp().await;
    let size = 2 * part_size + 12_345;
    let contents: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    mkdir_all(&mut ftp, DIR).await;
    upload(&mut ftp, &format!("{DIR}/highest.mp4"), &contents).await;
    step(ftp.quit()).await.unwrap();

    let response = reqwest::get(holder.url(&format!("/{DIR}/highest.mp4")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], size.to_string());
    let served = response.bytes().await.unwrap();
    assert!(served == contents, "the object holds the bytes sent");
}

#[tokio::test]
async fn a_video_removed_over_ftp_leaves_no_object() {
    let holder = TestHolder::spawn_on(Backend::S3).await;
    let mut ftp = holder.ftp().await;
    mkdir_all(&mut ftp, &format!("{DIR}/720p")).await;
    upload(&mut ftp, &format!("{DIR}/720p/seg-1.m4s"), b"segment").await;
    upload(&mut ftp, &format!("{DIR}/master.m3u8"), b"#EXTM3U\n").await;

    // As fflow removes a video: MLST, MLSD, DELE each file, RMD deepest first.
    let facts = step(ftp.mlst(Some("videos/0190c1e2-video"))).await.unwrap();
    assert!(facts.to_ascii_lowercase().contains("type=dir"), "{facts}");
    let listing = step(ftp.mlsd(Some(DIR))).await.unwrap();
    assert!(
        listing
            .iter()
            .any(|line| line.ends_with(" 720p") && line.contains("type=dir")),
        "{listing:?}"
    );
    assert!(
        listing
            .iter()
            .any(|line| line.ends_with(" master.m3u8") && line.contains("type=file")),
        "{listing:?}"
    );
    step(ftp.rm(format!("{DIR}/720p/seg-1.m4s").as_str()))
        .await
        .unwrap();
    step(ftp.rm(format!("{DIR}/master.m3u8").as_str()))
        .await
        .unwrap();
    step(ftp.rmdir(format!("{DIR}/720p").as_str()))
        .await
        .unwrap();
    step(ftp.rmdir(DIR)).await.unwrap();
    assert!(step(ftp.mlst(Some("videos/0190c1e2-video"))).await.is_err());
    step(ftp.quit()).await.unwrap();

    for name in ["720p/seg-1.m4s", "master.m3u8"] {
        assert!(
            !holder.stored_file(&format!("{DIR}/{name}")).exists(),
            "{name}"
        );
        let response = reqwest::get(holder.url(&format!("/{DIR}/{name}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{name}");
    }
}

async fn start_error(adjust: impl FnOnce(&mut Config)) -> String {
    let bucket = TestBucket::start().await;
    let base = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(base.path().join("root"), FTP_PASSWORD);
    config.store = StoreKind::S3;
    config.s3 = bucket.settings();
    adjust(&mut config);
    match App::build(config).await {
        Ok(_) => panic!("holder started"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn a_key_the_bucket_refuses_stops_holder_at_start() {
    let message = start_error(|config| {
        config.s3.secret_access_key = "not-the-secret".to_owned().into();
    })
    .await;
    assert!(message.contains("bucket vod"), "{message}");
    assert!(
        message.contains("HOLDER_S3__SECRET_ACCESS_KEY"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret"), "{message}");
}

#[tokio::test]
async fn a_missing_bucket_stops_holder_at_start() {
    let message = start_error(|config| config.s3.bucket = "no-such-bucket".to_owned()).await;
    assert!(message.contains("bucket no-such-bucket"), "{message}");
}

#[tokio::test]
async fn an_unreachable_endpoint_stops_holder_at_start() {
    let message = start_error(|config| {
        config.s3.endpoint = "http://127.0.0.1:9".to_owned();
    })
    .await;
    assert!(message.contains("cannot be used"), "{message}");
}

#[tokio::test]
async fn two_replicas_over_one_bucket_serve_the_same_bytes_and_one_alone_still_serves() {
    let bucket = TestBucket::start().await;
    let over_the_bucket = |mut config: Config| {
        config.store = StoreKind::S3;
        config.s3 = bucket.settings();
        config
    };
    let mut first = TestHolder::spawn_with(over_the_bucket).await;
    let second = TestHolder::spawn_with(over_the_bucket).await;
    let segment: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let mut ftp = first.ftp().await;
    mkdir_all(&mut ftp, DIR).await;
    upload(&mut ftp, &format!("{DIR}/seg-1.m4s"), &segment).await;
    upload(&mut ftp, &format!("{DIR}/master.m3u8"), b"#EXTM3U\n").await;
    step(ftp.quit()).await.unwrap();

    let path = format!("/{DIR}/seg-1.m4s");
    let mut answers = Vec::new();
    for replica in [&first, &second] {
        let response = reqwest::get(replica.url(&path)).await.unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        answers.push((
            headers["etag"].clone(),
            headers["last-modified"].clone(),
            headers["content-type"].clone(),
            response.bytes().await.unwrap(),
        ));
    }
    assert_eq!(answers[0], answers[1], "both replicas answer alike");
    assert_eq!(answers[0].3, segment);

    first.shutdown.cancel();
    step(first.task.take().unwrap()).await.unwrap().unwrap();
    assert!(
        reqwest::get(first.url(&path)).await.is_err(),
        "the first replica is stopped"
    );
    let response = reqwest::get(second.url(&path)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), segment);
    let response = reqwest::get(second.url(&format!("/{DIR}/master.m3u8")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_presigned_redirects_segments_come_from_the_bucket_and_playlists_from_holder() {
    let holder = TestHolder::spawn_on_with(Backend::S3, |mut config| {
        config.s3.presigned_redirect_secs = 600;
        config
    })
    .await;
    let mut ftp = holder.ftp().await;
    let segment: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    mkdir_all(&mut ftp, &format!("{DIR}/720p")).await;
    upload(&mut ftp, &format!("{DIR}/720p/segment_00001.m4s"), &segment).await;
    upload(&mut ftp, &format!("{DIR}/master.m3u8"), b"#EXTM3U\n").await;
    step(ftp.quit()).await.unwrap();

    let not_following = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = not_following
        .get(holder.url(&format!("/{DIR}/720p/segment_00001.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("X-Amz-Signature=") && location.contains("segment_00001.m4s"),
        "{location}"
    );
    assert_eq!(response.headers()["cache-control"], "private, max-age=300");
    let from_bucket = reqwest::get(&location).await.unwrap();
    assert_eq!(
        from_bucket.status(),
        200,
        "the bucket takes its own signature"
    );
    assert_eq!(from_bucket.bytes().await.unwrap(), segment);
    // A player following redirects gets the bytes as before.
    let followed = reqwest::get(holder.url(&format!("/{DIR}/720p/segment_00001.m4s")))
        .await
        .unwrap();
    assert_eq!(followed.bytes().await.unwrap(), segment);

    // Playlists stay on holder, so their relative URIs resolve against it; HEAD too.
    let playlist = not_following
        .get(holder.url(&format!("/{DIR}/master.m3u8")))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200);
    assert_eq!(playlist.bytes().await.unwrap(), &b"#EXTM3U\n"[..]);
    let head = not_following
        .head(holder.url(&format!("/{DIR}/720p/segment_00001.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], segment.len().to_string());
    // A missing segment is a signed URL too: the bucket answers 404 for it.
    let missing = not_following
        .get(holder.url(&format!("/{DIR}/720p/segment_00002.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 307);
    let location = missing.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(reqwest::get(&location).await.unwrap().status(), 404);
}
