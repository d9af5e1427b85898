//! The Node.js side of the upload benchmark, in `bench/tus-reference/` (`./dev bench upload`
//! installs its pinned packages with `npm ci`): the reference tus server (`@tus/server` with
//! `@tus/file-store`) and the one tus client (tus-js-client) that uploads to either server.
//! `BENCH_NODE_DIR` names another directory holding the same scripts and packages.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde::Deserialize;

use crate::cpu::Watched;

/// Where the scripts and their `node_modules` are.
pub fn node_dir() -> PathBuf {
    std::env::var_os("BENCH_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tus-reference"))
}

/// `@tus/server` with `@tus/file-store` on a port of its own, storing into a directory of its
/// own; stopped when dropped.
pub struct ReferenceServer {
    /// The creation endpoint.
    pub endpoint: String,
    dir: tempfile::TempDir,
    child: Child,
}

#[derive(Deserialize)]
struct Listening {
    port: u16,
}

impl ReferenceServer {
    pub fn start(node_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let store = dir.path().join("files");
        std::fs::create_dir(&store)?;
        let mut child = Command::new("node")
            .arg(node_dir.join("server.mjs"))
            .arg(&store)
            .current_dir(node_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("failed to start node (./dev bench upload installs it)")?;
        let mut first_line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut first_line)?;
        }
        let Ok(Listening { port }) = serde_json::from_str(&first_line) else {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            bail!("the reference tus server did not start: {first_line}{log}");
        };
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}/files"),
            dir,
            child,
        })
    }

    pub fn watched(&self) -> Watched {
        let name = "reference server (Node)".to_owned();
        Watched {
            group: name.clone(),
            name,
            pid: self.child.id(),
        }
    }

    /// The file holding the bytes of the upload at `url`.
    pub fn stored_file(&self, url: &str) -> PathBuf {
        let id = url.rsplit('/').next().unwrap_or_default();
        self.dir.path().join("files").join(id)
    }

    /// Deletes what the server stored, so that the runs that follow start alike.
    pub fn forget(&self, url: &str) -> std::io::Result<()> {
        let file = self.stored_file(url);
        std::fs::remove_file(file.with_extension("json"))?;
        std::fs::remove_file(file)
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tus-js-client under Node, one process per run of uploads.
pub struct TusClient {
    pub node_dir: PathBuf,
    pub chunk_bytes: u64,
}

/// What one run of the client reports.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRun {
    /// From the first request to the last answer.
    pub seconds: f64,
    /// The client's own user and system time.
    pub cpu_seconds: f64,
    pub uploads: Vec<ClientUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientUpload {
    pub file: PathBuf,
    /// The upload's URL.
    pub url: String,
    /// vod's `Video-Id` creation header.
    pub video_id: Option<String>,
}

impl TusClient {
    /// Uploads all `files` at once to `endpoint`, each in chunks of `chunk_bytes`, sending
    /// `headers` (name and value) with every request. The headers reach the client in its
    /// environment rather than on its command line, which every user of the machine can read:
    /// they carry a key.
    pub async fn upload(
        &self,
        endpoint: &str,
        files: &[&Path],
        headers: &BTreeMap<&str, String>,
    ) -> anyhow::Result<ClientRun> {
        let options = serde_json::json!({
            "endpoint": endpoint,
            "files": files,
            "chunkSize": self.chunk_bytes,
        });
        let output = tokio::process::Command::new("node")
            .arg(self.node_dir.join("client.mjs"))
            .arg(options.to_string())
            .env("TUS_CLIENT_HEADERS", serde_json::to_string(headers)?)
            .current_dir(&self.node_dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("failed to run node (./dev bench upload installs it)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last_line = stdout.lines().last().unwrap_or_default();
        ensure!(
            output.status.success(),
            "tus-js-client failed ({}): {last_line} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let run: ClientRun = serde_json::from_str(last_line)
            .with_context(|| format!("tus-js-client printed {last_line}"))?;
        ensure!(
            run.uploads.len() == files.len(),
            "tus-js-client reported {} uploads of {}",
            run.uploads.len(),
            files.len()
        );
        Ok(run)
    }
}
