#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use holder::{App, Config, S3Settings, StoreKind};
use suppaftp::tokio::AsyncFtpStream;
use suppaftp::types::FileType;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vod_infra::testsuite::{
    FaultProxy, S3Server, S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY,
};

pub const FTP_USER: &str = "vod";
pub const FTP_PASSWORD: &str = "correct horse battery staple";

/// Upper bound of one network step, so a broken server fails a test instead of hanging it.
pub const STEP: Duration = Duration::from_secs(20);

pub const BUCKET: &str = "vod";

/// The store a test's holder keeps its files in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
}

/// A real S3 server (`s3s-fs`) with the bucket `BUCKET`, reached through a fault proxy the test
/// can cut.
pub struct TestBucket {
    pub server: S3Server,
    pub proxy: FaultProxy,
}

impl TestBucket {
    pub async fn start() -> TestBucket {
        let server = S3Server::start(BUCKET);
        let proxy = FaultProxy::start(server.authority()).await;
        TestBucket { server, proxy }
    }

    /// Settings of the `s3` store for this bucket, through the proxy.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: format!("http://{}", self.proxy.addr()),
            region: S3_REGION.to_owned(),
            bucket: BUCKET.to_owned(),
            access_key_id: S3_ACCESS_KEY_ID.to_owned(),
            secret_access_key: S3_SECRET_ACCESS_KEY.to_owned().into(),
            path_style: true,
            max_retries: 1,
            retry_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            ..S3Settings::default()
        }
    }
}

/// A holder serving a fresh temp directory or bucket. `base` holds `root` (the holder root of
/// the `fs` store) and whatever a test puts beside it.
pub struct TestHolder {
    pub base: TempDir,
    pub root: PathBuf,
    pub bucket: Option<TestBucket>,
    pub http_addr: SocketAddr,
    pub ftp_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestHolder {
    pub async fn spawn() -> TestHolder {
        Self::spawn_with(|config| config).await
    }

    pub async fn spawn_on(backend: Backend) -> TestHolder {
        Self::spawn_on_with(backend, |config| config).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(Config) -> Config) -> TestHolder {
        Self::spawn_on_with(Backend::Fs, adjust).await
    }

    pub async fn spawn_on_with(
        backend: Backend,
        adjust: impl FnOnce(Config) -> Config,
    ) -> TestHolder {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let mut config = Config::for_tests(root.clone(), FTP_PASSWORD);
        let bucket = match backend {
            Backend::Fs => None,
            Backend::S3 => {
                let bucket = TestBucket::start().await;
                config.store = StoreKind::S3;
                config.s3 = bucket.settings();
                Some(bucket)
            }
        };
        let config = adjust(config);
        let app = App::build(config).await.unwrap();
        let http_addr = app.http_addr();
        let ftp_addr = app.ftp_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        TestHolder {
            base,
            root,
            bucket,
            http_addr,
            ftp_addr,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    pub async fn ftp(&self) -> AsyncFtpStream {
        ftp_login(self.ftp_addr, FTP_USER, FTP_PASSWORD)
            .await
            .unwrap()
    }

    /// Where the store keeps the file `relative` on disk: under the root, or where the S3
    /// server keeps the object.
    pub fn stored_file(&self, relative: &str) -> PathBuf {
        match &self.bucket {
            None => self.root.join(relative),
            Some(bucket) => bucket.server.object_file(BUCKET, relative),
        }
    }

    /// Puts a file in the store behind holder's back (what another replica, or an operator,
    /// would have stored).
    pub fn write_file(&self, relative: &str, contents: &[u8]) -> PathBuf {
        let path = self.stored_file(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TestHolder {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn step<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("network step timed out")
}

pub async fn ftp_login(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> suppaftp::FtpResult<AsyncFtpStream> {
    let mut ftp = step(AsyncFtpStream::connect(addr)).await?;
    step(ftp.login(user, password)).await?;
    step(ftp.transfer_type(FileType::Binary)).await?;
    Ok(ftp)
}

/// Uploads like fflow does: to a hidden temporary name, then renamed into place.
pub async fn upload(ftp: &mut AsyncFtpStream, path: &str, contents: &[u8]) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let temporary = if dir.is_empty() {
        format!(".{name}.part")
    } else {
        format!("{dir}/.{name}.part")
    };
    let mut reader = contents;
    let written = step(ftp.put_file(temporary.as_str(), &mut reader))
        .await
        .unwrap();
    assert_eq!(written, contents.len() as u64);
    step(ftp.rename(temporary.as_str(), path)).await.unwrap();
}

/// Creates every directory of `path` that does not exist yet, one level at a time.
pub async fn mkdir_all(ftp: &mut AsyncFtpStream, path: &str) {
    let mut current = String::new();
    for segment in path.split('/') {
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(segment);
        if step(ftp.mkdir(current.as_str())).await.is_err() {
            // Already there: listing it proves it is a directory.
            step(ftp.list(Some(current.as_str()))).await.unwrap();
        }
    }
}

/// Sends a GET for `target` exactly as written (HTTP clients would normalise it) and returns
/// the status code and the whole response.
pub async fn raw_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = step(TcpStream::connect(addr)).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: holder\r\nConnection: close\r\n\r\n");
    step(stream.write_all(request.as_bytes())).await.unwrap();
    let mut response = Vec::new();
    step(stream.read_to_end(&mut response)).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an http response: {response:?}"));
    (status, response)
}
