#![allow(clippy::unwrap_used)] // tests fail loudly on anything unexpected

//! holder keeps a free-space reserve on its root's disk: an FTP upload that would leave less is
//! refused with 452 once the client sent it, and nothing of it stays.

mod common;

use std::path::{Path, PathBuf};

use common::{ftp_login, mkdir_all, step, FTP_PASSWORD, FTP_USER};
use holder::{App, Config};
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::FtpError;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use vod_infra::free_space::FreeSpaceReserve;

const INSUFFICIENT_STORAGE: u32 = 452;

struct Holder {
    _base: tempfile::TempDir,
    root: PathBuf,
    http: String,
    ftp: std::net::SocketAddr,
    free_space: FreeSpaceReserve,
    stop: CancellationToken,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn holder(min_free_bytes: u64) -> Holder {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let config = Config {
        min_free_bytes,
        ..Config::for_tests(root.clone(), FTP_PASSWORD)
    };
    let app = App::build(config).await.unwrap();
    let holder = Holder {
        _base: base,
        root,
        http: format!("http://{}", app.http_addr()),
        ftp: app.ftp_addr(),
        free_space: app.free_space(),
        stop: CancellationToken::new(),
    };
    tokio::spawn(app.run_until_stopped(holder.stop.clone()));
    holder
}

impl Holder {
    async fn ftp(&self) -> AsyncFtpStream {
        ftp_login(self.ftp, FTP_USER, FTP_PASSWORD).await.unwrap()
    }
}

/// Every regular file under `dir`, hidden ones included.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn assert_refused_for_space<T: std::fmt::Debug>(result: Result<T, FtpError>) {
    match result {
        Err(FtpError::UnexpectedResponse(response)) => {
            assert_eq!(response.status.code(), INSUFFICIENT_STORAGE, "{response:?}");
            let text = String::from_utf8_lossy(&response.body).to_lowercase();
            assert!(text.contains("insufficient storage"), "{text}");
        }
        other => panic!("the upload was not refused for space: {other:?}"),
    }
}

#[tokio::test]
async fn an_upload_below_the_reserve_is_refused_with_452_and_leaves_nothing() {
    // A reserve larger than any disk: the disk is as good as full.
    let holder = holder(u64::MAX).await;
    let mut ftp = holder.ftp().await;
    mkdir_all(&mut ftp, "videos/v/f").await;
    let segment = vec![9u8; 300_000];
    let mut reader = &segment[..];
    assert_refused_for_space(step(ftp.put_file("videos/v/f/.seg.m4s.part", &mut reader)).await);

    assert_eq!(files_under(&holder.root), Vec::<PathBuf>::new());
    let response = reqwest::get(format!("{}/videos/v/f/seg.m4s", holder.http))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // The session goes on: what frees space (and what takes none) still works.
    step(ftp.mkdir("videos/v/g")).await.unwrap();
    step(ftp.rmdir("videos/v/g")).await.unwrap();
    let metrics = reqwest::get(format!("{}/metrics", holder.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("holder_ftp_uploads_refused_total{reason=\"insufficient_storage\"} 1"),
        "{metrics}"
    );

    holder.free_space.set_min_free_bytes(1);
    let mut reader = &segment[..];
    let written = step(ftp.put_file("videos/v/f/.seg.m4s.part", &mut reader))
        .await
        .unwrap();
    assert_eq!(written, segment.len() as u64);
    assert_eq!(
        std::fs::read(holder.root.join("videos/v/f/.seg.m4s.part")).unwrap(),
        segment
    );
}

#[tokio::test]
async fn an_upload_that_reaches_the_reserve_midway_is_refused_and_removed() {
    let holder = holder(1).await;
    let mut ftp = holder.ftp().await;
    mkdir_all(&mut ftp, "videos/v/f").await;
    let piece = vec![3u8; 1024 * 1024];
    let mut upload = step(ftp.put_with_stream("videos/v/f/.big.m4s.part"))
        .await
        .unwrap();
    for _ in 0..2 {
        step(upload.write_all(&piece)).await.unwrap();
    }
    // The disk fills while the transfer goes on; the client still sends all of it.
    holder.free_space.set_min_free_bytes(u64::MAX);
    for _ in 0..8 {
        step(upload.write_all(&piece)).await.unwrap();
    }
    assert_refused_for_space(step(upload.finish()).await);

    assert_eq!(files_under(&holder.root), Vec::<PathBuf>::new());
    step(ftp.mkdir("videos/v/after")).await.unwrap();
}
