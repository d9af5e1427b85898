#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{ftp_login, mkdir_all, step, upload, TestHolder, FTP_PASSWORD, FTP_USER};
use suppaftp::{FtpError, Status};

async fn assert_login_refused(holder: &TestHolder, user: &str, password: &str) {
    let mut ftp = step(suppaftp::tokio::AsyncFtpStream::connect(holder.ftp_addr))
        .await
        .unwrap();
    match step(ftp.login(user, password)).await {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status, Status::NotLoggedIn)
        }
        other => panic!("login of {user:?} was not refused: {other:?}"),
    }
    assert!(step(ftp.mkdir("intruder")).await.is_err());
    assert!(!holder.root.join("intruder").exists());
}

#[tokio::test]
async fn uploaded_presentation_is_served_with_media_headers() {
    let holder = TestHolder::spawn().await;
    let mut ftp = holder.ftp().await;
    let dir = "videos/0190c1e2-video/0190c1e3-flow";
    let segment: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let playlist = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n720p.m3u8\n";

    mkdir_all(&mut ftp, &format!("{dir}/720p")).await;
    upload(&mut ftp, &format!("{dir}/720p/segment_00001.m4s"), &segment).await;
    upload(&mut ftp, &format!("{dir}/master.m3u8"), playlist).await;
    step(ftp.quit()).await.unwrap();

    let client = reqwest::Client::new();
    let response = client
        .get(holder.url(&format!("/{dir}/720p/segment_00001.m4s")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/iso.segment");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.bytes().await.unwrap(), segment);

    let response = client
        .get(holder.url(&format!("/{dir}/master.m3u8")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(response.headers()["cache-control"], "public, max-age=2");
    assert_eq!(response.bytes().await.unwrap(), &playlist[..]);

    let temporary = holder.root.join(dir).join("720p/.segment_00001.m4s.part");
    assert!(!temporary.exists(), "the temporary name was renamed away");
}

#[tokio::test]
async fn ftp_lists_sizes_deletes_and_removes_directories() {
    let holder = TestHolder::spawn().await;
    let mut ftp = holder.ftp().await;
    mkdir_all(&mut ftp, "videos/v/f").await;
    upload(&mut ftp, "videos/v/f/a.ts", &[7u8; 1234]).await;

    assert_eq!(step(ftp.size("videos/v/f/a.ts")).await.unwrap(), 1234);
    let names = step(ftp.nlst(Some("videos/v/f"))).await.unwrap();
    assert!(names.iter().any(|name| name.ends_with("a.ts")), "{names:?}");
    let listing = step(ftp.list(Some("videos/v/f"))).await.unwrap();
    assert!(
        listing.iter().any(|line| line.contains("a.ts")),
        "{listing:?}"
    );

    step(ftp.rm("videos/v/f/a.ts")).await.unwrap();
    assert!(!holder.root.join("videos/v/f/a.ts").exists());
    step(ftp.rmdir("videos/v/f")).await.unwrap();
    assert!(!holder.root.join("videos/v/f").exists());
    assert!(holder.root.join("videos/v").is_dir());
}

/// What fflow's removal of a video relies on: MLSD lists hidden entries with their type, MLST
/// tells a missing path by 550, hidden temporaries can be deleted, and a directory is removed
/// once empty.
#[tokio::test]
async fn fflow_account_lists_and_removes_hidden_temporaries_and_directories() {
    let holder = TestHolder::spawn().await;
    holder.write_file("videos/v/f/.segment.m4s.part", b"half");
    holder.write_file("videos/v/f/.hidden/.deeper.part", b"half");
    let mut ftp = holder.ftp().await;

    let listing = step(ftp.mlsd(Some("videos/v/f"))).await.unwrap();
    assert!(
        listing
            .iter()
            .any(|line| line.starts_with("type=file;") && line.ends_with(" .segment.m4s.part")),
        "{listing:?}"
    );
    assert!(
        listing
            .iter()
            .any(|line| line.starts_with("type=dir;") && line.ends_with(" .hidden")),
        "{listing:?}"
    );
    let facts = step(ftp.mlst(Some("videos/v/f/.hidden"))).await.unwrap();
    assert!(facts.starts_with("type=dir;"), "{facts}");

    // A directory with something in it stays.
    match step(ftp.rmdir("videos/v/f/.hidden")).await {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status, Status::FileUnavailable)
        }
        other => panic!("a non-empty directory was removed: {other:?}"),
    }
    step(ftp.rm("videos/v/f/.hidden/.deeper.part"))
        .await
        .unwrap();
    step(ftp.rmdir("videos/v/f/.hidden")).await.unwrap();
    step(ftp.rm("videos/v/f/.segment.m4s.part")).await.unwrap();
    step(ftp.rmdir("videos/v/f")).await.unwrap();
    assert!(!holder.root.join("videos/v/f").exists());

    // Gone is answered 550, to MLST, DELE and RMD alike.
    for result in [
        step(ftp.mlst(Some("videos/v/f"))).await.map(|_| ()),
        step(ftp.rm("videos/v/f/.segment.m4s.part")).await,
        step(ftp.rmdir("videos/v/f")).await,
    ] {
        match result {
            Err(FtpError::UnexpectedResponse(response)) => {
                assert_eq!(response.status, Status::FileUnavailable)
            }
            other => panic!("a missing path was not refused with 550: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_ftp_root_is_the_holder_root() {
    let holder = TestHolder::spawn().await;
    let mut ftp = holder.ftp().await;
    step(ftp.mkdir("videos")).await.unwrap();
    assert!(holder.root.join("videos").is_dir());
    // Whatever the server answers, nothing is created above the root.
    let _ = step(ftp.mkdir("../escaped")).await;
    let _ = step(ftp.mkdir("/../../escaped")).await;
    assert!(!holder.base.path().join("escaped").exists());
}

#[tokio::test]
async fn making_a_directory_that_exists_succeeds_but_not_over_a_file() {
    let holder = TestHolder::spawn().await;
    let mut ftp = holder.ftp().await;
    step(ftp.mkdir("videos")).await.unwrap();
    step(ftp.mkdir("videos")).await.unwrap();
    upload(&mut ftp, "videos/master.m3u8", b"#EXTM3U\n").await;
    match step(ftp.mkdir("videos/master.m3u8")).await {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status, Status::FileUnavailable)
        }
        other => panic!("a directory was made over a file: {other:?}"),
    }
    assert!(holder.root.join("videos/master.m3u8").is_file());
}

#[tokio::test]
async fn a_holder_whose_ftps_certificate_cannot_be_read_does_not_start() {
    let base = tempfile::tempdir().unwrap();
    let config = holder::Config {
        ftps_cert_file: Some(base.path().join("missing-cert.pem")),
        ftps_key_file: Some(base.path().join("missing-key.pem")),
        ..holder::Config::for_tests(base.path().join("root"), FTP_PASSWORD)
    };
    let error = holder::App::build(config)
        .await
        .err()
        .expect("a holder without its certificate must not start");
    assert!(error.to_string().contains("ftp"), "{error:#}");
}

#[tokio::test]
async fn sessions_fail_cleanly_while_the_root_is_missing() {
    let holder = TestHolder::spawn().await;
    std::fs::remove_dir_all(&holder.root).unwrap();
    let mut ftp = holder.ftp().await;
    assert!(step(ftp.mkdir("videos")).await.is_err());

    std::fs::create_dir(&holder.root).unwrap();
    let mut ftp = holder.ftp().await;
    step(ftp.mkdir("videos")).await.unwrap();
    assert!(holder.root.join("videos").is_dir());
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let holder = TestHolder::spawn().await;
    assert_login_refused(&holder, FTP_USER, "wrong password").await;
    assert_login_refused(&holder, FTP_USER, "").await;
}

#[tokio::test]
async fn anonymous_login_is_refused() {
    let holder = TestHolder::spawn().await;
    assert_login_refused(&holder, "anonymous", "guest@example.com").await;
    assert_login_refused(&holder, "ftp", "").await;
}

#[tokio::test]
async fn unknown_user_with_the_right_password_is_refused() {
    let holder = TestHolder::spawn().await;
    assert_login_refused(&holder, "root", FTP_PASSWORD).await;
}

#[tokio::test]
async fn parallel_holders_share_the_passive_port_range() {
    let holders = spawn_holders(4).await;
    let mut uploads = Vec::new();
    for (index, holder) in holders.iter().enumerate() {
        for session in 0..3 {
            let addr = holder.ftp_addr;
            uploads.push(tokio::spawn(async move {
                let mut ftp = ftp_login(addr, FTP_USER, FTP_PASSWORD).await.unwrap();
                for file in 0..5 {
                    let contents = format!("holder {index} session {session} file {file}");
                    upload(
                        &mut ftp,
                        &format!("s{session}-f{file}.ts"),
                        contents.as_bytes(),
                    )
                    .await;
                }
                step(ftp.quit()).await.unwrap();
            }));
        }
    }
    for upload in uploads {
        upload.await.unwrap();
    }
    for (index, holder) in holders.iter().enumerate() {
        let mut names = HashSet::new();
        for session in 0..3 {
            for file in 0..5 {
                let name = format!("s{session}-f{file}.ts");
                let contents = std::fs::read_to_string(holder.root.join(&name)).unwrap();
                assert_eq!(
                    contents,
                    format!("holder {index} session {session} file {file}")
                );
                names.insert(name);
            }
        }
        assert_eq!(names.len(), 15);
    }
}

async fn spawn_holders(count: usize) -> Vec<TestHolder> {
    let mut holders = Vec::new();
    for _ in 0..count {
        holders.push(TestHolder::spawn().await);
    }
    holders
}

#[tokio::test]
async fn cancelling_the_token_stops_both_servers() {
    let mut holder = TestHolder::spawn().await;
    // An idle session must not keep the server alive past the grace period.
    let _idle = holder.ftp().await;
    holder.shutdown.cancel();
    let task = holder.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("holder did not stop")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(holder.ftp_addr)
        .await
        .is_err());
    assert!(tokio::net::TcpStream::connect(holder.http_addr)
        .await
        .is_err());
}
