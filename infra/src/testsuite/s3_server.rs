//! A real S3-protocol server for tests: `s3s-fs` (from crates.io, installed by `./dev test`),
//! one process per test, on a free port, over a temporary directory.
//!
//! The binary is `VOD_TEST_S3S_FS`, else where `./dev test` installs it
//! (`~/.cache/vod/tools/bin/s3s-fs`), else `s3s-fs` on the `PATH`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub const S3_ACCESS_KEY_ID: &str = "vod-test-key";
pub const S3_SECRET_ACCESS_KEY: &str = "vod-test-secret";
pub const S3_REGION: &str = "us-east-1";

/// A running `s3s-fs`, stopped when dropped. Its buckets are directories of `data_dir`.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub data_dir: PathBuf,
    child: Child,
    _data: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server holding the empty bucket `bucket`, with the test key.
    pub fn start(bucket: &str) -> S3Server {
        let data = tempfile::tempdir().expect("a temporary directory for the bucket");
        let data_dir = data.path().to_path_buf();
        std::fs::create_dir_all(data_dir.join(bucket)).expect("the bucket's directory");
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", S3_ACCESS_KEY_ID])
            .args(["--secret-key", S3_SECRET_ACCESS_KEY])
            .arg(&data_dir)
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start the S3 test server {}: {err}; `./dev test` installs it, or \
                     `cargo install s3s-fs --features binary --locked`",
                    binary.display()
                )
            });
        let stdout = child.stdout.take().expect("the server's output is piped");
        let (address_tx, address_rx) = mpsc::channel();
        // Reads the output to its end on a thread of its own, so the server never blocks on a
        // full pipe whatever runtime the test is on.
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split("server is running at http://").nth(1) {
                    if let Some(tx) = address_tx.take() {
                        let _ = tx.send(address.trim().to_owned());
                    }
                }
            }
        });
        let address = match address_rx.recv_timeout(START_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!("the S3 test server {} did not start", binary.display());
            }
        };
        S3Server {
            endpoint: format!("http://{address}"),
            data_dir,
            child,
            _data: data,
        }
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// Where an object of `bucket` lies on disk.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.data_dir.join(bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VOD_TEST_S3S_FS").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = Path::new(&home).join(".cache/vod/tools/bin/s3s-fs");
        if cached.is_file() {
            return cached;
        }
    }
    PathBuf::from("s3s-fs")
}
