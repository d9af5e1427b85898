//! A world of one test: a real holder on a temp root, fflow replicas on a temp spool, queues
//! with a unique prefix on the local RabbitMQ.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use lapin::{Channel, Connection};
use reqwest::StatusCode;
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vod_contracts::fflow::{ChunkWritten, CreateProcess, FflowError, ProcessCreated};
use vod_contracts::outcome::EncodeOutcome;
use vod_contracts::{FlowId, SessionId, VideoId};
use vod_infra::config::AmqpSettings;

const HOLDER_PASSWORD: &str = "test-password";

pub struct TestEnv {
    pub dir: TempDir,
    pub holder_root: PathBuf,
    pub holder_http: SocketAddr,
    pub holder_ftp: SocketAddr,
    pub queue_prefix: String,
    /// The internal token every replica of this world takes.
    pub token: String,
    /// Sends the token on every call, as the uploaders do.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    holder: JoinHandle<anyhow::Result<()>>,
    amqp: Connection,
    channel: Channel,
}

pub struct Replica {
    /// `http://127.0.0.1:port`, the bare address.
    pub base: String,
    /// The advertised address, `http://127.0.0.1:port/{id}/`.
    pub address: String,
    pub spool: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// An HTTP client that sends `Authorization: Bearer {token}` on every call, or nothing.
pub fn client_with_token(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The test broker (`VOD_TEST_AMQP_URL`) with this test's queue prefix.
fn amqp_settings(queue_prefix: &str) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(vod_infra::testsuite::amqp_url()),
        queue_prefix: queue_prefix.to_owned(),
        ..AmqpSettings::default()
    }
}

/// The FTPS test certificates (`tests/fixtures/ftps`): `ca.pem`, `holder.pem`, ...
pub fn ftps_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ftps")
        .join(name)
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        Self::start_with_holder(|_| {}).await
    }

    /// As [`TestEnv::start`], with holder's configuration changed by `configure`.
    pub async fn start_with_holder(configure: impl FnOnce(&mut holder::Config)) -> TestEnv {
        vod_infra::telemetry::init("warn");
        let dir = tempfile::tempdir().unwrap();
        let holder_root = dir.path().join("holder");
        let mut holder_config = holder::Config::for_tests(holder_root.clone(), HOLDER_PASSWORD);
        configure(&mut holder_config);
        let holder = holder::App::build(holder_config).await.unwrap();
        let holder_http = holder.http_addr();
        let holder_ftp = holder.ftp_addr();
        let shutdown = CancellationToken::new();
        let holder = tokio::spawn(holder.run_until_stopped(shutdown.clone()));

        let queue_prefix = format!("test-{}", uuid::Uuid::new_v4());
        let amqp = vod_infra::amqp::connect(&amqp_settings(&queue_prefix), "fflow-tests")
            .await
            .unwrap();
        let channel = amqp.create_channel().await.unwrap();
        vod_infra::amqp::declare_queues(
            &channel,
            &vod_contracts::queues::QueueNames::with_prefix(&queue_prefix),
        )
        .await
        .unwrap();
        let token = format!("test-{}", uuid::Uuid::new_v4().simple());
        TestEnv {
            dir,
            holder_root,
            holder_http,
            holder_ftp,
            queue_prefix,
            http: client_with_token(Some(&token)),
            token,
            shutdown,
            holder,
            amqp,
            channel,
        }
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    pub fn fflow_config(&self, replica_id: &str) -> fflow::Config {
        let mut config = fflow::Config::for_tests(
            self.spool(),
            replica_id,
            &self.holder_ftp.to_string(),
            HOLDER_PASSWORD,
            &self.queue_prefix,
        );
        config.amqp = amqp_settings(&self.queue_prefix);
        config.internal_token = SecretString::from(self.token.clone());
        config
    }

    pub async fn start_replica(&self, replica_id: &str) -> Replica {
        self.start_replica_with(self.fflow_config(replica_id)).await
    }

    pub async fn start_replica_with(&self, config: fflow::Config) -> Replica {
        let spool = config.spool_dir.join(&config.replica_id);
        let app = fflow::App::build(config).await.unwrap();
        self.serve(app, spool)
    }

    /// Replicas that know each other as peers, on listeners bound before any starts.
    pub async fn start_peers(&self, replica_ids: &[&str]) -> Vec<Replica> {
        let listeners: Vec<std::net::TcpListener> = replica_ids
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut peers = fflow::Peers::default();
        for (id, listener) in replica_ids.iter().zip(&listeners) {
            let url = format!("http://{}", listener.local_addr().unwrap());
            peers.insert(id, &url).unwrap();
        }
        let mut replicas = Vec::new();
        for (id, listener) in replica_ids.iter().zip(listeners) {
            let mut config = self.fflow_config(id);
            config.peers = peers.clone();
            let spool = config.spool_dir.join(id);
            let app = fflow::App::build_on_std(config, listener).await.unwrap();
            replicas.push(self.serve(app, spool));
        }
        replicas
    }

    fn serve(&self, app: fflow::App, spool: PathBuf) -> Replica {
        let base = format!("http://{}", app.local_addr());
        let address = app.address();
        let shutdown = self.shutdown.child_token();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Replica {
            base,
            address,
            spool,
            shutdown,
            task,
        }
    }

    /// Every progress report fflow published so far.
    pub async fn progress_reports(&self) -> Vec<vod_contracts::outcome::EncodeProgress> {
        let queue = vod_contracts::queues::QueueNames::with_prefix(&self.queue_prefix).progress;
        let mut reports = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            reports.push(serde_json::from_slice(&message.delivery.data).unwrap());
        }
        reports
    }

    /// The next outcome fflow published, waiting for it up to two minutes.
    pub async fn next_outcome(&self) -> EncodeOutcome {
        let queue = vod_contracts::queues::QueueNames::with_prefix(&self.queue_prefix).outcomes;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let message = self
                .channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if let Some(message) = message {
                let properties = &message.delivery.properties;
                assert_eq!(
                    properties.delivery_mode(),
                    &Some(2),
                    "outcome not persistent"
                );
                return serde_json::from_slice(&message.delivery.data).unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no outcome was published"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.holder.await.unwrap().unwrap();
        let names = vod_contracts::queues::QueueNames::with_prefix(&self.queue_prefix);
        for queue in names.all() {
            self.channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        let _ = self.amqp.close(200, "done".into()).await;
    }
}

impl Replica {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    pub fn session_dir(&self, session_id: SessionId) -> PathBuf {
        self.spool.join(session_id.to_string())
    }

    pub async fn create(
        &self,
        http: &reqwest::Client,
        total_bytes: u64,
    ) -> (CreateProcess, ProcessCreated) {
        self.create_with(http, total_bytes, vod_contracts::fflow::Mp4Support::None)
            .await
    }

    pub async fn create_with(
        &self,
        http: &reqwest::Client,
        total_bytes: u64,
        mp4_support: vod_contracts::fflow::Mp4Support,
    ) -> (CreateProcess, ProcessCreated) {
        let request = CreateProcess {
            session_id: SessionId::new(),
            target: Some(vod_contracts::fflow::EncodeTarget {
                video_id: VideoId::new(),
                flow_id: FlowId::new(),
                mp4_support,
            }),
            total_bytes: Some(total_bytes),
        };
        let response = http
            .post(format!("{}/processes", self.base))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        (request, response.json().await.unwrap())
    }

    pub async fn put_chunk(
        &self,
        http: &reqwest::Client,
        session_id: SessionId,
        offset: u64,
        bytes: &[u8],
    ) -> reqwest::Response {
        http.put(format!(
            "{}{}?offset={offset}",
            self.address,
            vod_contracts::fflow::chunks_path(session_id)
        ))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
    }

    /// A chunk sent by the writer holding fencing token `epoch`.
    pub async fn put_chunk_at_epoch(
        &self,
        http: &reqwest::Client,
        session_id: SessionId,
        offset: u64,
        epoch: u64,
        bytes: &[u8],
    ) -> reqwest::Response {
        http.put(format!(
            "{}{}?offset={offset}&epoch={epoch}",
            self.address,
            vod_contracts::fflow::chunks_path(session_id)
        ))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
    }

    pub async fn put_ok(
        &self,
        http: &reqwest::Client,
        session_id: SessionId,
        offset: u64,
        bytes: &[u8],
    ) -> u64 {
        let response = self.put_chunk(http, session_id, offset, bytes).await;
        assert_eq!(response.status(), StatusCode::OK);
        let written: ChunkWritten = response.json().await.unwrap();
        written.received_bytes
    }

    pub async fn finish(&self, http: &reqwest::Client, session_id: SessionId) -> reqwest::Response {
        http.post(format!(
            "{}{}",
            self.address,
            vod_contracts::fflow::finish_path(session_id)
        ))
        .send()
        .await
        .unwrap()
    }
}

/// Uploads `bytes` in `chunks` pieces and finishes.
pub async fn upload(env: &TestEnv, replica: &Replica, bytes: &[u8]) -> CreateProcess {
    upload_with(env, replica, bytes, vod_contracts::fflow::Mp4Support::None).await
}

/// Uploads `bytes` for a flow that wants `mp4_support`, and finishes.
pub async fn upload_with(
    env: &TestEnv,
    replica: &Replica,
    bytes: &[u8],
    mp4_support: vod_contracts::fflow::Mp4Support,
) -> CreateProcess {
    let (request, _) = replica
        .create_with(&env.http, bytes.len() as u64, mp4_support)
        .await;
    let piece = bytes.len().div_ceil(3);
    let mut offset = 0;
    for chunk in bytes.chunks(piece) {
        offset = replica
            .put_ok(&env.http, request.session_id, offset, chunk)
            .await;
    }
    assert_eq!(
        replica.finish(&env.http, request.session_id).await.status(),
        StatusCode::ACCEPTED
    );
    request
}

pub async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let error: FflowError = response.json().await.unwrap();
    (status, error.code.to_string())
}

/// A 3-second 320x240 MP4 with a 440 Hz tone.
pub fn make_clip(dir: &Path) -> Vec<u8> {
    make_clip_of(dir, 3)
}

/// A 320x240 MP4 with a 440 Hz tone, `seconds` long.
pub fn make_clip_of(dir: &Path, seconds: u32) -> Vec<u8> {
    let path = dir.join(format!("clip-{seconds}.mp4"));
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &seconds.to_string(),
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// A 320x240 Matroska clip with a 440 Hz tone, `seconds` long: readable as it arrives.
pub fn make_mkv(dir: &Path, seconds: u32) -> Vec<u8> {
    let path = dir.join(format!("clip-{seconds}.mkv"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=25")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

/// ffprobe's view of a URL or file: (duration, stream kinds).
pub async fn probe(input: &str) -> (f64, Vec<String>) {
    let output = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_format",
            "-show_streams",
            input,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let duration = answer["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kinds = answer["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stream| stream["codec_type"].as_str().unwrap().to_owned())
        .collect();
    (duration, kinds)
}

/// Makes `output` with ffmpeg from `args` (inputs and output options) and returns its bytes.
pub fn make_with_ffmpeg(output: &Path, args: &[&str]) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(output)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
    std::fs::read(output).unwrap()
}

/// A tiny Matroska file whose `frames` black 16x16 frames are 600 seconds apart: it claims
/// `(frames - 1) * 600 + 1` seconds in about a kilobyte.
pub fn make_sparse_mkv(dir: &Path, frames: u32) -> Vec<u8> {
    make_with_ffmpeg(
        &dir.join(format!("sparse-{frames}.mkv")),
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("color=c=black:s=16x16:r=1:d={frames}"),
            "-vf",
            "setpts=N*600/TB",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    )
}

/// The ffmpeg processes working in `dir`.
pub fn ffmpeg_processes_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            (comm.trim() == "ffmpeg" && cwd == dir).then_some(pid)
        })
        .collect()
}

/// Every file under `dir`, relative to it.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.to_path_buf());
            }
        }
    }
    files
}

/// Polls `condition` until it holds, for up to 30 seconds.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An FTP session on the test holder with fflow's account, in binary mode.
pub async fn holder_ftp(env: &TestEnv) -> suppaftp::tokio::AsyncFtpStream {
    let mut ftp = suppaftp::tokio::AsyncFtpStream::connect(env.holder_ftp)
        .await
        .unwrap();
    ftp.login("vod", HOLDER_PASSWORD).await.unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .unwrap();
    ftp
}
