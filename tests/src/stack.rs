use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vod_contracts::api::VideoView;
use vod_contracts::{SessionId, VideoId, VideoStatus};

use crate::env::TestEnv;
use crate::poll_until;

/// Knobs a test may turn; everything else is the services' defaults.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub chunk_size_bytes: usize,
    pub max_upload_bytes: u64,
    /// Changes both fflow replicas' configuration before they start.
    pub configure_fflow: fn(&mut fflow::Config),
    /// Uploads idle this long expire.
    pub session_ttl_secs: u64,
    /// How long a PATCH waits for another one writing to the same upload.
    pub lock_wait_ms: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            chunk_size_bytes: 256 * 1024,
            max_upload_bytes: 512 * 1024 * 1024,
            configure_fflow: |_| {},
            session_ttl_secs: 24 * 3600,
            lock_wait_ms: 3_000,
        }
    }
}

/// A service running in-process, stopped by its own token.
struct Running {
    name: String,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(name: &str, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        Self {
            name: name.to_owned(),
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("{} failed: {error:?}", self.name),
            Ok(Err(error)) => panic!("{} panicked: {error}", self.name),
            Err(_) => panic!("{} did not stop within 30 s", self.name),
        }
    }
}

/// The whole system, in-process: holder, two fflow replicas, two uploaders, the gateway.
pub struct Stack {
    pub gateway_url: String,
    pub holder_url: String,
    pub holder_ftp: SocketAddr,
    pub holder_root: std::path::PathBuf,
    /// fflow spools live in `{fflow_spool}/{replica_id}/{session_id}`.
    pub fflow_spool: std::path::PathBuf,
    /// Advertised addresses of the fflow replicas, `r1` first.
    pub fflow_addresses: Vec<String>,
    pub http: reqwest::Client,
    /// The uploaders' scheduler jobs, to drive them directly.
    pub schedulers: Vec<uploader::scheduler::Scheduler>,
    /// Base URLs of the fflow replicas' and the uploaders' own listeners (`/healthz`,
    /// `/readyz`, `/metrics`), in start order.
    pub fflow_urls: Vec<String>,
    pub uploader_urls: Vec<String>,
    services: Vec<Running>,
}

impl Stack {
    pub async fn spawn(env: &TestEnv) -> Self {
        Self::spawn_with(env, StackOptions::default()).await
    }

    pub async fn spawn_with(env: &TestEnv, options: StackOptions) -> Self {
        vod_infra::telemetry::init("warn,gateway=info,uploader=info,fflow=info,holder=info");
        let mut services = Vec::new();
        let ftp_password = format!("pw-{}", env.id);

        let holder_root = env.dir.path().join("holder");
        let holder = holder::App::build(holder::Config::for_tests(
            holder_root.clone(),
            &ftp_password,
        ))
        .await
        .expect("holder starts");
        let holder_url = format!("http://{}", holder.http_addr());
        let holder_ftp = holder.ftp_addr();
        services.push(Running::spawn("holder", |stop| {
            holder.run_until_stopped(stop)
        }));

        let mut fflow_addresses = Vec::new();
        let mut fflow_urls = Vec::new();
        for replica in ["r1", "r2"] {
            let mut config = fflow::Config::for_tests(
                env.dir.path().join("fflow"),
                replica,
                &holder_ftp.to_string(),
                &ftp_password,
                &env.queue_prefix,
            );
            config.amqp = env.amqp();
            (options.configure_fflow)(&mut config);
            let app = fflow::App::build(config).await.expect("fflow starts");
            fflow_urls.push(format!("http://{}", app.local_addr()));
            fflow_addresses.push(app.address());
            services.push(Running::spawn(&format!("fflow {replica}"), |stop| {
                app.run_until_stopped(stop)
            }));
        }

        let mut schedulers = Vec::new();
        let mut uploader_urls = Vec::new();
        for index in 1..=2 {
            let config = uploader::Config {
                listen_addr: "127.0.0.1:0".to_owned(),
                postgres: env.postgres(),
                redis: env.redis(),
                amqp: env.amqp(),
                fflow_urls: fflow_urls.clone(),
                replica_name: format!("uploader-{index}"),
                routing_ttl_secs: 3_600,
                session_ttl_secs: options.session_ttl_secs,
                ..uploader::Config::default()
            };
            let app = uploader::App::build(config).await.expect("uploader starts");
            schedulers.push(app.scheduler());
            uploader_urls.push(format!("http://{}", app.local_addr()));
            services.push(Running::spawn(&format!("uploader-{index}"), |stop| {
                app.run_until_stopped(stop)
            }));
        }

        let mut gateway_config = gateway::Config::for_tests(&env.postgres_url, &env.queue_prefix);
        gateway_config.postgres = env.postgres();
        gateway_config.amqp = env.amqp();
        gateway_config.holder_public_url = holder_url.clone();
        gateway_config.chunk_size_bytes = options.chunk_size_bytes;
        gateway_config.max_upload_bytes = options.max_upload_bytes;
        gateway_config.lock_wait_ms = options.lock_wait_ms;
        let gateway = gateway::App::build(gateway_config)
            .await
            .expect("gateway starts");
        let gateway_url = format!("http://{}", gateway.local_addr());
        services.push(Running::spawn("gateway", |stop| {
            gateway.run_until_stopped(stop)
        }));

        Self {
            gateway_url,
            holder_url,
            holder_ftp,
            holder_root,
            fflow_spool: env.dir.path().join("fflow"),
            fflow_addresses,
            http: reqwest::Client::new(),
            schedulers,
            fflow_urls,
            uploader_urls,
            services,
        }
    }

    /// Stops every service and checks that each stopped cleanly.
    pub async fn shutdown(self) {
        for service in self.services.into_iter().rev() {
            service.stop().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway_url)
    }

    pub async fn video(&self, video_id: VideoId) -> VideoView {
        let response = self
            .http
            .get(self.url(&format!("/v1/videos/{video_id}")))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 200, "GET video {video_id}");
        response.json().await.expect("video JSON")
    }

    /// Polls the video until it is READY or FAILED and returns it.
    pub async fn wait_until_settled(&self, video_id: VideoId) -> VideoView {
        poll_until(
            "the video to be READY or FAILED",
            Duration::from_secs(120),
            || async {
                let video = self.video(video_id).await;
                matches!(video.status, VideoStatus::Ready | VideoStatus::Failed).then_some(video)
            },
        )
        .await
    }

    /// How many videos `GET /v1/videos` lists.
    pub async fn video_count(&self) -> usize {
        let list: serde_json::Value = self
            .http
            .get(self.url("/v1/videos"))
            .send()
            .await
            .expect("gateway answers")
            .json()
            .await
            .expect("JSON");
        list["videos"].as_array().map_or(0, Vec::len)
    }

    /// Waits until the video is READY and checks that the source fflow encoded is `bytes`.
    pub async fn assert_ready_with_source(&self, video_id: VideoId, bytes: &[u8]) {
        let video = self.wait_until_settled(video_id).await;
        assert_eq!(video.status, VideoStatus::Ready, "{video:#?}");
        assert_eq!(
            video.flows[0].source_sha256.as_deref(),
            Some(crate::sha256_hex(bytes).as_str()),
            "the stitched source is the file sent"
        );
    }

    /// GETs a URL that must answer 200; returns its `Content-Type` and body.
    pub async fn fetch(&self, url: &str) -> (String, Vec<u8>) {
        let response = self.http.get(url).send().await.expect("server answers");
        assert_eq!(response.status(), 200, "GET {url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (content_type, response.bytes().await.expect("body").to_vec())
    }

    /// A service's `/metrics`, parsed; `base_url` is one of the services' base URLs.
    pub async fn metrics(&self, base_url: &str) -> crate::exposition::Exposition {
        let (_, body) = self.fetch(&format!("{base_url}/metrics")).await;
        let text = String::from_utf8(body).expect("utf-8 metrics");
        crate::exposition::Exposition::parse(&text)
            .unwrap_or_else(|error| panic!("{base_url}/metrics: {error}\n{text}"))
    }

    /// The fflow replica recorded for a session in PostgreSQL.
    pub async fn recorded_replica(env: &TestEnv, session_id: SessionId) -> Option<String> {
        let db = env.db().await;
        db.query_one(
            "SELECT fflow_address FROM upload_session WHERE id = $1",
            &[&session_id.0],
        )
        .await
        .expect("session row")
        .get(0)
    }
}
