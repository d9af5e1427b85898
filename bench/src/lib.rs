//! The whole stack as separate processes started from the release binaries, in a world of its
//! own (database, queues, Redis keys, directories), so that benchmarks measure what a deployment
//! runs and can read each service's memory. The gateway gets an admin token of its own, with
//! which the stack makes a read and write API key of the project `default`, as an operator
//! would; clients send that key. `BENCH_RUST_LOG` sets the services' log filter
//! (default `warn`), and `BENCH_LOG_DIR` names a directory their logs are copied to at the end.
//! [`cpu`] reads the CPU time and memory of processes, [`node`] runs the reference tus server
//! and the tus client under Node.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use vod_contracts::access::KeyCreated;
use vod_contracts::ProjectId;
use vod_infra::testsuite::{self, TestWorld};

pub mod cpu;
pub mod node;

use cpu::Watched;

pub struct LocalStack {
    pub gateway_url: String,
    pub holder_url: String,
    /// A read and write key of the project `default`, the whole string to send after `Bearer`.
    pub api_key: String,
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    _world: TestWorld,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalStack {
    /// Starts holder, two fflow replicas, two uploaders and the gateway from `bin_dir`.
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        let world = TestWorld::new().await;
        let dir = tempfile::tempdir()?;
        let ftp_password = format!("bench-{}", world.id);
        let fflow_token = format!("bench-fflow-{}", world.id);
        let chunks_token = format!("bench-chunks-{}", uuid::Uuid::new_v4().simple());
        let chunk_ports = [free_port()?, free_port()?];
        let holder_http = free_port()?;
        let holder_ftp = free_port()?;
        let fflow_ports = [free_port()?, free_port()?];
        let gateway_port = free_port()?;
        let amqp_url = testsuite::amqp_url();
        // 122 bits from the operating system's CSPRNG.
        let admin_token = format!("bench-admin-{}", uuid::Uuid::new_v4().simple());

        let mut stack = Self {
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            holder_url: format!("http://127.0.0.1:{holder_http}"),
            api_key: String::new(),
            dir,
            children: Vec::new(),
            _world: world,
        };
        let (postgres_url, queue_prefix, redis_prefix) = (
            stack._world.postgres_url.clone(),
            stack._world.queue_prefix.clone(),
            stack._world.redis_prefix.clone(),
        );
        let holder_env = HashMap::from([
            ("HOLDER_HTTP_ADDR", format!("127.0.0.1:{holder_http}")),
            ("HOLDER_FTP_ADDR", format!("127.0.0.1:{holder_ftp}")),
            ("HOLDER_ROOT", path_text(&stack.dir.path().join("holder"))),
            ("HOLDER_FTP_PASSWORD", ftp_password.clone()),
        ]);
        stack.spawn(bin_dir, "holder", "holder", holder_env)?;
        let fflow_peers = fflow_ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("r{}=http://127.0.0.1:{port}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut fflow_urls = Vec::new();
        for (index, port) in fflow_ports.iter().enumerate() {
            let replica = format!("r{}", index + 1);
            let env = HashMap::from([
                ("FFLOW_LISTEN_ADDR", format!("127.0.0.1:{port}")),
                ("FFLOW_REPLICA_ID", replica.clone()),
                (
                    "FFLOW_SPOOL_DIR",
                    path_text(&stack.dir.path().join("fflow")),
                ),
                ("FFLOW_HOLDER__ADDR", format!("127.0.0.1:{holder_ftp}")),
                ("FFLOW_HOLDER__PASSWORD", ftp_password.clone()),
                ("FFLOW_INTERNAL_TOKEN", fflow_token.clone()),
                ("FFLOW_PEERS", fflow_peers.clone()),
                ("FFLOW_AMQP__URL", amqp_url.clone()),
                ("FFLOW_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
            ]);
            stack.spawn(bin_dir, &format!("fflow-{replica}"), "fflow", env)?;
            fflow_urls.push(format!("http://127.0.0.1:{port}"));
        }
        for (index, chunk_port) in (1..=2).zip(chunk_ports) {
            let env = HashMap::from([
                ("UPLOADER_POSTGRES__URL", postgres_url.clone()),
                ("UPLOADER_REDIS__URL", testsuite::redis_url()),
                ("UPLOADER_REDIS__KEY_PREFIX", redis_prefix.clone()),
                ("UPLOADER_AMQP__URL", amqp_url.clone()),
                ("UPLOADER_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
                ("UPLOADER_FFLOW_URLS", fflow_urls.join(",")),
                ("UPLOADER_FFLOW_TOKEN", fflow_token.clone()),
                ("UPLOADER_REPLICA_NAME", format!("uploader-{index}")),
                // Port 0: the replicas share the machine; nothing here scrapes them.
                ("UPLOADER_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
                (
                    "UPLOADER_CHUNKS_LISTEN_ADDR",
                    format!("127.0.0.1:{chunk_port}"),
                ),
                ("UPLOADER_CHUNKS_TOKEN", chunks_token.clone()),
                ("UPLOADER_HOLDER_PUBLIC_URL", stack.holder_url.clone()),
            ]);
            stack.spawn(bin_dir, &format!("uploader-{index}"), "uploader", env)?;
        }
        let gateway_env = HashMap::from([
            ("GATEWAY_LISTEN_ADDR", format!("127.0.0.1:{gateway_port}")),
            ("GATEWAY_POSTGRES__URL", postgres_url.clone()),
            ("GATEWAY_AMQP__URL", amqp_url.clone()),
            ("GATEWAY_AMQP__QUEUE_PREFIX", queue_prefix.clone()),
            ("GATEWAY_HOLDER_PUBLIC_URL", stack.holder_url.clone()),
            ("GATEWAY_ADMIN_TOKEN", admin_token.clone()),
            (
                "GATEWAY_UPLOADER_CHUNKS_URLS",
                chunk_ports
                    .map(|port| format!("http://127.0.0.1:{port}"))
                    .join(","),
            ),
            ("GATEWAY_UPLOADER_CHUNKS_TOKEN", chunks_token.clone()),
        ]);
        stack.spawn(bin_dir, "gateway", "gateway", gateway_env)?;

        let mut health = vec![
            format!("{}/healthz", stack.holder_url),
            format!("{}/healthz", stack.gateway_url),
        ];
        health.extend(fflow_urls.iter().map(|url| format!("{url}/healthz")));
        let http = reqwest::Client::new();
        for url in health {
            stack
                .wait_until(&format!("{url} answers"), || async {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
                .await?;
        }
        stack.api_key = create_default_project_key(&http, &stack.gateway_url, &admin_token)
            .await
            .context("failed to make an API key of the project default")?;
        Ok(stack)
    }

    /// A client that sends the stack's API key with every request.
    pub fn http(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer(&self.api_key)?);
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }

    fn spawn(
        &mut self,
        bin_dir: &Path,
        name: &str,
        binary: &str,
        env: HashMap<&str, String>,
    ) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = Command::new(bin_dir.join(binary))
            .envs(env)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {binary} from {}", bin_dir.display()))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    async fn wait_until<F, Fut>(&mut self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check().await {
            for (name, child) in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{name} exited with {status}; see {}",
                        self.dir.path().display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The stack's processes, for their CPU time and memory; the replicas of a service are one
    /// group.
    pub fn watched(&self) -> Vec<Watched> {
        self.children
            .iter()
            .map(|(name, child)| Watched {
                name: name.clone(),
                // fflow-r1 and fflow-r2 are fflow, uploader-1 and uploader-2 the uploader.
                group: name.split('-').next().unwrap_or(name).to_owned(),
                pid: child.id(),
            })
            .collect()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Ok(keep) = std::env::var("BENCH_LOG_DIR") {
            let copied = std::fs::create_dir_all(&keep).and_then(|()| {
                for entry in std::fs::read_dir(self.dir.path())? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|ext| ext == "log") {
                        if let Some(name) = path.file_name() {
                            std::fs::copy(&path, Path::new(&keep).join(name))?;
                        }
                    }
                }
                Ok(())
            });
            if let Err(error) = copied {
                eprintln!("logs not copied to {keep}: {error}");
            }
        }
        for (_, child) in &mut self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `POST /v1/admin/projects/{default}/keys` with the admin token: the key the benchmark's
/// clients send.
async fn create_default_project_key(
    http: &reqwest::Client,
    gateway_url: &str,
    admin_token: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!(
            "{gateway_url}/v1/admin/projects/{}/keys",
            ProjectId::DEFAULT
        ))
        .header(AUTHORIZATION, bearer(admin_token)?)
        .json(&serde_json::json!({"scopes": ["read", "write"], "name": "bench"}))
        .send()
        .await?;
    let status = response.status();
    ensure!(
        status == reqwest::StatusCode::CREATED,
        "the gateway answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(response.json::<KeyCreated>().await?.key)
}

/// `Bearer <secret>`, kept out of debug output.
fn bearer(secret: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {secret}"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where `cargo build --release` put the binaries.
pub fn release_bin_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}
