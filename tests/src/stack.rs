use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vod_contracts::api::VideoView;
use vod_contracts::{SessionId, VideoId, VideoStatus};
use vod_infra::free_space::FreeSpaceReserve;
use vod_infra::testsuite::{
    FaultProxy, S3Server, S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY,
};

use crate::env::TestEnv;
use crate::poll_until;

/// Knobs a test may turn; everything else is the services' defaults.
#[derive(Clone, Debug)]
pub struct StackOptions {
    pub chunk_size_bytes: usize,
    pub max_upload_bytes: u64,
    /// Changes both fflow replicas' configuration before they start.
    pub configure_fflow: fn(&mut fflow::Config),
    /// Changes the gateway's configuration before it starts.
    pub configure_gateway: fn(&mut gateway::Config),
    /// Changes both uploaders' configuration before they start.
    pub configure_uploader: fn(&mut uploader::Config),
    /// Changes holder's configuration before it starts.
    pub configure_holder: fn(&mut holder::Config),
    /// Uploads idle this long expire.
    pub session_ttl_secs: u64,
    /// How long a PATCH waits for another one writing to the same upload.
    pub lock_wait_ms: u64,
    /// How long an upload's fflow replica may be unreachable before the upload moves.
    pub fflow_reassign_after_ms: u64,
    /// How long every service may take to finish its work in flight once told to stop.
    pub shutdown_timeout_ms: u64,
    /// The dependencies every service reaches through a [`FaultProxy`] the test holds
    /// ([`Stack::proxies`]), to cut them off and restore them.
    pub proxied: Proxied,
    /// Where holder keeps presentations.
    pub holder_store: HolderStore,
}

/// holder's store in a stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HolderStore {
    /// A directory of the test's own.
    #[default]
    Fs,
    /// A bucket of a real S3 server (`s3s-fs`) of the test's own, reached through a fault
    /// proxy ([`Proxies::bucket`]).
    S3,
}

/// The bucket holder's presentations go to in a stack with [`HolderStore::S3`].
pub const STACK_BUCKET: &str = "vod";

/// Which dependencies go through a fault proxy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Proxied {
    pub postgres: bool,
    pub amqp: bool,
    pub redis: bool,
    /// holder's FTP control connection (passive data connections go to the address holder
    /// answers, so cutting the control connection is the cut).
    pub holder_ftp: bool,
}

/// The fault proxies of a stack, for the dependencies [`Proxied`] named.
#[derive(Default)]
pub struct Proxies {
    postgres: Option<FaultProxy>,
    amqp: Option<FaultProxy>,
    redis: Option<FaultProxy>,
    holder_ftp: Option<FaultProxy>,
    bucket: Option<FaultProxy>,
}

impl Proxies {
    pub fn postgres(&self) -> &FaultProxy {
        self.postgres
            .as_ref()
            .expect("the stack was started with postgres proxied")
    }

    pub fn amqp(&self) -> &FaultProxy {
        self.amqp
            .as_ref()
            .expect("the stack was started with amqp proxied")
    }

    pub fn redis(&self) -> &FaultProxy {
        self.redis
            .as_ref()
            .expect("the stack was started with redis proxied")
    }

    /// The way to holder's bucket ([`HolderStore::S3`] only).
    pub fn bucket(&self) -> &FaultProxy {
        self.bucket
            .as_ref()
            .expect("the stack was started with holder on a bucket")
    }

    pub fn holder_ftp(&self) -> &FaultProxy {
        self.holder_ftp
            .as_ref()
            .expect("the stack was started with holder's ftp proxied")
    }
}

/// `url` itself, or the URL of a new proxy in front of it.
async fn proxied_url(url: &str, proxy: bool, slot: &mut Option<FaultProxy>) -> String {
    if !proxy {
        return url.to_owned();
    }
    let (started, proxied) = FaultProxy::in_front_of(url).await;
    *slot = Some(started);
    proxied
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            chunk_size_bytes: 256 * 1024,
            max_upload_bytes: 512 * 1024 * 1024,
            configure_fflow: |_| {},
            configure_gateway: |_| {},
            configure_uploader: |_| {},
            configure_holder: |_| {},
            session_ttl_secs: 24 * 3600,
            lock_wait_ms: 3_000,
            fflow_reassign_after_ms: uploader::Config::default().fflow_reassign_after_ms,
            shutdown_timeout_ms: 8_000,
            proxied: Proxied::default(),
            holder_store: HolderStore::default(),
        }
    }
}

/// A service running in-process on a runtime of its own, stopped by its own token. Its
/// connections, pools and tasks live on that runtime, so dropping the runtime ends them all at
/// once, as a crash of the process would.
struct Running {
    name: String,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// An uploader started on a runtime of its own.
struct StartedUploader {
    running: Running,
    scheduler: uploader::scheduler::Scheduler,
    url: String,
    chunks_url: Option<String>,
}

impl StartedUploader {
    async fn start(mut config: uploader::Config, name: &str) -> Self {
        config.replica_name = name.to_owned();
        let runtime = service_runtime(name);
        let app = on_runtime(&runtime, uploader::App::build(config))
            .await
            .expect("uploader starts");
        Self {
            scheduler: app.scheduler(),
            url: format!("http://{}", app.local_addr()),
            chunks_url: app.chunks_addr().map(|addr| format!("http://{addr}")),
            running: Running::spawn(runtime, name, |stop| app.run_until_stopped(stop)),
        }
    }
}

/// A runtime for one service.
fn service_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("service runtime")
}

/// Runs `future` (a service's `build`) on `runtime` and waits for it.
async fn on_runtime<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    runtime.spawn(future).await.expect("service build panicked")
}

impl Running {
    fn spawn<F>(
        runtime: tokio::runtime::Runtime,
        name: &str,
        run: impl FnOnce(CancellationToken) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = runtime.spawn(run(stop.clone()));
        Self {
            name: name.to_owned(),
            stop,
            task: Some(task),
            runtime: Some(runtime),
        }
    }

    /// Stops gracefully, as on SIGTERM, and checks that the service ended cleanly within 30 s.
    async fn stop(mut self) {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("{} failed: {error:?}", self.name),
            Ok(Err(error)) => panic!("{} panicked: {error}", self.name),
            Err(_) => panic!("{} did not stop within 30 s", self.name),
        }
    }

    /// Ends the service abruptly: every task of its runtime is dropped, its sockets close
    /// without a goodbye, its ffmpeg children are killed.
    fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A runtime cannot be dropped inside another one; this one is let go in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How long the gateway of a stack believes a verified key: short, so that a revocation shows
/// soon.
pub const KEY_CACHE_MS: u64 = 500;

/// A client that sends `key` as its bearer credential.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .expect("a key is a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an http client")
}

/// Makes a key of `project_id` with the admin token; answers the whole key.
pub async fn create_key(
    gateway_url: &str,
    admin_token: &str,
    project_id: vod_contracts::ProjectId,
    scopes: &[&str],
) -> String {
    let response = reqwest::Client::new()
        .post(format!("{gateway_url}/v1/admin/projects/{project_id}/keys"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({"scopes": scopes, "name": "tests"}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 201, "a key is made");
    let created: serde_json::Value = response.json().await.expect("json");
    created["key"].as_str().expect("the key").to_owned()
}

/// Makes a project with the admin token; answers its id.
pub async fn create_project(
    gateway_url: &str,
    admin_token: &str,
    name: &str,
) -> vod_contracts::ProjectId {
    let response = reqwest::Client::new()
        .post(format!("{gateway_url}/v1/admin/projects"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 201, "a project is made");
    let created: serde_json::Value = response.json().await.expect("json");
    created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the project's id")
}

/// The whole system, in-process: holder, two fflow replicas, two uploaders, the gateway.
pub struct Stack {
    pub gateway_url: String,
    pub holder_url: String,
    pub holder_ftp: SocketAddr,
    /// Where holder's files lie on disk: its root, or the directory the S3 server keeps the
    /// bucket's objects in (an object `a/b` is the file `a/b`; directories are left behind
    /// when their last object goes).
    pub holder_root: std::path::PathBuf,
    /// The S3 server of [`HolderStore::S3`].
    pub s3_server: Option<S3Server>,
    /// fflow spools live in `{fflow_spool}/{replica_id}/{session_id}`.
    pub fflow_spool: std::path::PathBuf,
    /// Advertised addresses of the fflow replicas, `r1` first.
    pub fflow_addresses: Vec<String>,
    /// The internal token the fflow replicas take and the uploaders send.
    pub fflow_token: SecretString,
    /// Sends [`Stack::api_key`].
    pub http: reqwest::Client,
    /// The gateway's admin token.
    pub admin_token: String,
    /// A read and write key of the project `default`.
    pub api_key: String,
    /// The uploaders' scheduler jobs, to drive them directly.
    pub schedulers: Vec<uploader::scheduler::Scheduler>,
    /// Base URLs of the fflow replicas' and the uploaders' own listeners (`/healthz`,
    /// `/readyz`, `/metrics`), in start order.
    pub fflow_urls: Vec<String>,
    pub uploader_urls: Vec<String>,
    /// Base URLs of the uploaders' chunk listeners, and the token they take from the gateway.
    pub uploader_chunks_urls: Vec<String>,
    pub chunks_token: SecretString,
    /// The proxies of the dependencies [`StackOptions::proxied`] named.
    pub proxies: Proxies,
    /// The free-space reserves of the fflow replicas' spools (`r1` first) and of holder's
    /// FTP uploads, to change while the stack runs.
    pub fflow_free_space: Vec<FreeSpaceReserve>,
    pub holder_free_space: FreeSpaceReserve,
    /// The uploaders' configuration before [`StackOptions::configure_uploader`].
    uploader_base: uploader::Config,
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
        let mut proxies = Proxies::default();
        let wanted = options.proxied;
        let postgres_url =
            proxied_url(&env.postgres_url, wanted.postgres, &mut proxies.postgres).await;
        let amqp_url = proxied_url(
            &vod_infra::testsuite::amqp_url(),
            wanted.amqp,
            &mut proxies.amqp,
        )
        .await;
        let redis_url = proxied_url(
            &vod_infra::testsuite::redis_url(),
            wanted.redis,
            &mut proxies.redis,
        )
        .await;
        let postgres = vod_infra::config::PostgresSettings {
            url: SecretString::from(postgres_url.clone()),
            ..env.postgres()
        };
        let amqp = vod_infra::config::AmqpSettings {
            url: SecretString::from(amqp_url),
            ..env.amqp()
        };
        let redis = vod_infra::config::RedisSettings {
            url: SecretString::from(redis_url),
            ..env.redis()
        };

        let mut holder_root = env.dir.path().join("holder");
        let runtime = service_runtime("holder");
        let mut holder_config = holder::Config::for_tests(holder_root.clone(), &ftp_password);
        holder_config.shutdown_timeout_ms = options.shutdown_timeout_ms;
        let mut s3_server = None;
        if options.holder_store == HolderStore::S3 {
            let server = S3Server::start(STACK_BUCKET);
            let proxy = FaultProxy::start(server.authority()).await;
            holder_config.store = holder::StoreKind::S3;
            holder_config.s3 = holder::S3Settings {
                endpoint: format!("http://{}", proxy.addr()),
                region: S3_REGION.to_owned(),
                bucket: STACK_BUCKET.to_owned(),
                access_key_id: S3_ACCESS_KEY_ID.to_owned(),
                secret_access_key: SecretString::from(S3_SECRET_ACCESS_KEY),
                path_style: true,
                ..holder::S3Settings::default()
            };
            holder_root = server.data_dir.join(STACK_BUCKET);
            proxies.bucket = Some(proxy);
            s3_server = Some(server);
        }
        (options.configure_holder)(&mut holder_config);
        let holder = on_runtime(&runtime, holder::App::build(holder_config))
            .await
            .expect("holder starts");
        let holder_url = format!("http://{}", holder.http_addr());
        let holder_free_space = holder.free_space();
        let holder_ftp = holder.ftp_addr();
        let holder_ftp_seen_by_fflow = if wanted.holder_ftp {
            let proxy = FaultProxy::start(&holder_ftp.to_string()).await;
            let addr = proxy.addr();
            proxies.holder_ftp = Some(proxy);
            addr
        } else {
            holder_ftp
        };
        services.push(Running::spawn(runtime, "holder", |stop| {
            holder.run_until_stopped(stop)
        }));

        // One internal token for every fflow replica and uploader; the replicas know each
        // other as peers, on listeners bound before either starts.
        let fflow_token = SecretString::from(format!("fflow-{}", uuid::Uuid::new_v4().simple()));
        let replicas = ["r1", "r2"];
        let listeners: Vec<std::net::TcpListener> = replicas
            .iter()
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a local port"))
            .collect();
        let mut peers = fflow::Peers::default();
        for (replica, listener) in replicas.iter().zip(&listeners) {
            let addr = listener.local_addr().expect("a bound address");
            peers
                .insert(replica, &format!("http://{addr}"))
                .expect("a valid peer");
        }
        let mut fflow_addresses = Vec::new();
        let mut fflow_urls = Vec::new();
        let mut fflow_free_space = Vec::new();
        for (replica, listener) in replicas.into_iter().zip(listeners) {
            let mut config = fflow::Config::for_tests(
                env.dir.path().join("fflow"),
                replica,
                &holder_ftp_seen_by_fflow.to_string(),
                &ftp_password,
                &env.queue_prefix,
            );
            config.amqp = amqp.clone();
            config.shutdown_timeout_ms = options.shutdown_timeout_ms;
            config.internal_token = fflow_token.clone();
            config.peers = peers.clone();
            (options.configure_fflow)(&mut config);
            let runtime = service_runtime(&format!("fflow-{replica}"));
            let app = on_runtime(&runtime, fflow::App::build_on_std(config, listener))
                .await
                .expect("fflow starts");
            fflow_urls.push(format!("http://{}", app.local_addr()));
            fflow_addresses.push(app.address());
            fflow_free_space.push(app.free_space());
            services.push(Running::spawn(
                runtime,
                &format!("fflow {replica}"),
                |stop| app.run_until_stopped(stop),
            ));
        }

        // The gateway streams bodies to the uploaders' chunk listeners with this token.
        let chunks_token = SecretString::from(format!("chunks-{}", uuid::Uuid::new_v4().simple()));
        let mut schedulers = Vec::new();
        let mut uploader_urls = Vec::new();
        let mut uploader_chunks_urls = Vec::new();
        let uploader_base = uploader::Config {
            listen_addr: "127.0.0.1:0".to_owned(),
            chunks_listen_addr: "127.0.0.1:0".to_owned(),
            chunks_token: chunks_token.clone(),
            postgres: postgres.clone(),
            redis: redis.clone(),
            amqp: amqp.clone(),
            fflow_urls: fflow_urls.clone(),
            fflow_token: fflow_token.clone(),
            routing_ttl_secs: 3_600,
            session_ttl_secs: options.session_ttl_secs,
            fflow_reassign_after_ms: options.fflow_reassign_after_ms,
            shutdown_timeout_ms: options.shutdown_timeout_ms,
            holder_public_url: holder_url.clone(),
            ..uploader::Config::default()
        };
        for index in 1..=2 {
            let mut config = uploader_base.clone();
            (options.configure_uploader)(&mut config);
            let started = StartedUploader::start(config, &format!("uploader-{index}")).await;
            schedulers.push(started.scheduler);
            uploader_urls.push(started.url);
            uploader_chunks_urls.extend(started.chunks_url);
            services.push(started.running);
        }

        let mut gateway_config = gateway::Config::for_tests(&postgres_url, &env.queue_prefix);
        gateway_config.postgres = postgres;
        gateway_config.amqp = amqp;
        gateway_config.holder_public_url = holder_url.clone();
        gateway_config.chunk_size_bytes = options.chunk_size_bytes;
        gateway_config.max_upload_bytes = options.max_upload_bytes;
        gateway_config.lock_wait_ms = options.lock_wait_ms;
        gateway_config.shutdown_timeout_ms = options.shutdown_timeout_ms;
        gateway_config.api_key_cache_ms = KEY_CACHE_MS;
        gateway_config.uploader_chunks_urls = uploader_chunks_urls.clone();
        gateway_config.uploader_chunks_token = chunks_token.clone();
        (options.configure_gateway)(&mut gateway_config);
        let admin_token = gateway_config.admin_token.expose_secret().to_owned();
        let runtime = service_runtime("gateway");
        let gateway = on_runtime(&runtime, gateway::App::build(gateway_config))
            .await
            .expect("gateway starts");
        let gateway_url = format!("http://{}", gateway.local_addr());
        services.push(Running::spawn(runtime, "gateway", |stop| {
            gateway.run_until_stopped(stop)
        }));
        let api_key = create_key(
            &gateway_url,
            &admin_token,
            vod_contracts::ProjectId::DEFAULT,
            &["read", "write"],
        )
        .await;

        Self {
            gateway_url,
            holder_url,
            holder_ftp,
            holder_root,
            s3_server,
            fflow_spool: env.dir.path().join("fflow"),
            fflow_addresses,
            fflow_token,
            http: client_with_key(&api_key),
            admin_token,
            api_key,
            schedulers,
            fflow_urls,
            uploader_urls,
            uploader_chunks_urls,
            chunks_token,
            proxies,
            fflow_free_space,
            holder_free_space,
            uploader_base,
            services,
        }
    }

    /// Starts one more uploader, named `name`, configured as the stack's were before
    /// [`StackOptions::configure_uploader`], then by `configure`; returns its base URL. The
    /// gateway does not stream bodies to it.
    pub async fn start_uploader(
        &mut self,
        name: &str,
        configure: fn(&mut uploader::Config),
    ) -> String {
        let mut config = self.uploader_base.clone();
        configure(&mut config);
        let started = StartedUploader::start(config, name).await;
        self.schedulers.push(started.scheduler);
        self.uploader_urls.push(started.url.clone());
        self.services.push(started.running);
        started.url
    }

    /// Panics unless every service is still running: a dependency that went away and came
    /// back must not have stopped one.
    pub fn assert_running(&self) {
        for service in &self.services {
            assert!(
                service
                    .task
                    .as_ref()
                    .is_some_and(|task| !task.is_finished()),
                "{} stopped by itself",
                service.name
            );
        }
    }

    /// Stops every service and checks that each stopped cleanly.
    pub async fn shutdown(self) {
        for service in self.services.into_iter().rev() {
            service.stop().await;
        }
    }

    /// Stops one service (`holder`, `fflow r1`, `fflow r2`, `uploader-1`, `uploader-2`,
    /// `gateway`) as SIGTERM would; panics unless it stops cleanly within 30 s.
    pub async fn stop_service(&mut self, name: &str) {
        self.take_service(name).stop().await;
    }

    /// Crashes one service: its tasks end at once, its broker connection and pools drop
    /// without a goodbye, its ffmpeg children are killed. Nothing of it runs afterwards.
    pub fn crash_service(&mut self, name: &str) {
        self.take_service(name).crash();
    }

    /// The service name of the fflow replica with this advertised address.
    pub fn fflow_service(&self, address: &str) -> String {
        let index = self
            .fflow_addresses
            .iter()
            .position(|known| known == address)
            .unwrap_or_else(|| panic!("{address} is no fflow replica of the stack"));
        format!("fflow r{}", index + 1)
    }

    fn take_service(&mut self, name: &str) -> Running {
        let index = self
            .services
            .iter()
            .position(|service| service.name == name)
            .unwrap_or_else(|| panic!("no running service named {name}"));
        self.services.remove(index)
    }

    /// A new project named `name`, and a client sending a read and write key of it.
    pub async fn project_client(&self, name: &str) -> (vod_contracts::ProjectId, reqwest::Client) {
        let project_id = create_project(&self.gateway_url, &self.admin_token, name).await;
        let key = create_key(
            &self.gateway_url,
            &self.admin_token,
            project_id,
            &["read", "write"],
        )
        .await;
        (project_id, client_with_key(&key))
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
