use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vod_infra::config::millis;

use crate::config::Config;
use crate::context::EncodeContext;
use crate::encode;
use crate::holder_check::HolderCheck;
use crate::join::PartSources;
use crate::metrics::FflowMetrics;
use crate::outcomes::Publisher;
use crate::routes;
use crate::session::{check_writable, Sessions};
use crate::state::AppState;

pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<AppState>,
    router: Router,
}

impl App {
    /// Checks ffmpeg, ffprobe and the spool, binds the listener, connects to RabbitMQ and
    /// reloads the sessions an earlier run left in the spool.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let (listener, _) = vod_infra::http::bind(&config.listen_addr).await?;
        Self::build_on(config, listener).await
    }

    /// As [`App::build`], serving on a listener bound already (its address may then be named
    /// in the other replicas' peers before this one starts).
    pub async fn build_on_std(
        config: Config,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<App> {
        listener.set_nonblocking(true)?;
        Self::build_on(config, TcpListener::from_std(listener)?).await
    }

    async fn build_on(mut config: Config, listener: TcpListener) -> anyhow::Result<App> {
        config.validate()?;
        config.ffmpeg_path = resolve_program(&config.ffmpeg_path)?;
        config.ffprobe_path = resolve_program(&config.ffprobe_path)?;
        let spool = config.spool_dir.join(&config.replica_id);
        check_writable(&spool).await?;
        let sandbox = config.sandbox();
        for check in sandbox.version_checks(&spool) {
            check_runs(check).await?;
        }

        let local_addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let address = format!(
            "{}/{}/",
            public_url.trim_end_matches('/'),
            config.replica_id
        );

        let mut registry = vod_infra::metrics::registry("fflow");
        let metrics = FflowMetrics::register(&mut registry);
        let publisher = Publisher::connect(
            &config.amqp,
            format!("fflow-{}", config.replica_id),
            millis(config.publish_timeout_ms),
            metrics.clone(),
        )
        .await?;
        let stopping = CancellationToken::new();
        let sessions = Arc::new(
            Sessions::load_keeping_free(
                spool.clone(),
                config.streaming_encode,
                config.spool_min_free_bytes,
                stopping.clone(),
            )
            .await?,
        );
        let http = reqwest::Client::builder()
            .connect_timeout(millis(config.peer_timeout_ms))
            .read_timeout(millis(config.peer_timeout_ms))
            .pool_idle_timeout(millis(config.peer_pool_idle_timeout_ms))
            .tcp_nodelay(true)
            // A peer answers with bytes or an error; it never sends the caller elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("failed to build the http client")?;
        let config = Arc::new(config);
        let publisher = Arc::new(publisher);
        let encode = Arc::new(EncodeContext {
            config: config.clone(),
            sandbox,
            address: address.clone(),
            encodes: Semaphore::new(config.max_concurrent_encodes),
            metrics: metrics.clone(),
            sink: publisher.clone(),
            stopping: stopping.clone(),
            parts: PartSources::new(&config, sessions.clone(), http),
        });
        let state = Arc::new(AppState {
            address,
            sessions,
            tracker: TaskTracker::new(),
            publisher,
            encode,
            stopping,
            metrics,
            spool,
            config,
            holder_check: HolderCheck::default(),
        });
        tracing::info!(
            replica_id = %state.config.replica_id,
            addr = %local_addr,
            address = %state.address,
            "fflow replica ready"
        );
        Ok(App {
            listener,
            local_addr,
            router: routes::router(state.clone())
                .merge(vod_infra::metrics::route(Arc::new(registry))),
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address this replica advertises, ending in `/{replica_id}/`.
    pub fn address(&self) -> String {
        self.state.address.clone()
    }

    /// The spool's free-space reserve, which a running replica's tests may change.
    pub fn free_space(&self) -> vod_infra::free_space::FreeSpaceReserve {
        self.state.sessions.free_space().clone()
    }

    pub fn replica_id(&self) -> &str {
        &self.state.config.replica_id
    }

    /// Serves until `shutdown`; then stops taking requests, kills running ffmpeg processes and
    /// waits for the encode tasks, all within the shutdown timeout.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state;
        for session in state.sessions.encoding().await {
            tracing::info!(session_id = %session.session_id, "encode resumed after restart");
            state
                .tracker
                .spawn(encode::run(state.encode.clone(), session));
        }
        state.tracker.spawn(sweep_idle_sessions(state.clone()));
        state.tracker.spawn(keep_publisher_connected(state.clone()));
        let stopping = state.stopping.clone();
        let shutdown_watch = shutdown.clone();
        state.tracker.spawn(async move {
            tokio::select! {
                () = shutdown_watch.cancelled() => stopping.cancel(),
                () = stopping.cancelled() => {}
            }
        });

        let abandon =
            vod_infra::shutdown::abandon_after(&shutdown, millis(state.config.shutdown_timeout_ms));
        let _stop_timer = abandon.clone().drop_guard();
        let served = vod_infra::http::serve(
            self.listener,
            self.router,
            &state.config.http,
            shutdown,
            abandon.clone(),
        )
        .await;
        state.stopping.cancel();
        state.tracker.close();
        if vod_infra::shutdown::unless_abandoned(&abandon, state.tracker.wait())
            .await
            .is_none()
        {
            // Their ffmpeg children die with them: each is killed when its task is dropped.
            tracing::warn!(
                tasks = state.tracker.len(),
                "encode tasks abandoned at the shutdown timeout"
            );
        }
        if vod_infra::shutdown::unless_abandoned(&abandon, state.publisher.close())
            .await
            .is_none()
        {
            tracing::warn!("broker connection dropped without a close");
        }
        tracing::info!(replica_id = %state.config.replica_id, "fflow replica stopped");
        served
    }
}

/// Every `idle_sweep_interval_ms` until the replica stops, forgets the sessions idle for
/// `idle_session_ttl_ms` and removes their spools.
async fn sweep_idle_sessions(state: Arc<AppState>) {
    let ttl = millis(state.config.idle_session_ttl_ms);
    let mut every = tokio::time::interval(millis(state.config.idle_sweep_interval_ms.max(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = state.stopping.cancelled() => return,
        }
        for session in state.sessions.idle(ttl).await {
            if state.sessions.remove(session.session_id).is_none() {
                continue;
            }
            if let Err(err) = session.remove_spool().await {
                tracing::warn!(session_id = %session.session_id, error = %err, "idle session's spool not removed");
            }
            tracing::info!(session_id = %session.session_id, "idle session removed");
        }
    }
}

/// Until the replica stops, replaces a lost publishing connection.
async fn keep_publisher_connected(state: Arc<AppState>) {
    let config = &state.config;
    state
        .publisher
        .keep_connected(
            millis(config.broker_check_interval_ms),
            millis(config.publish_backoff_ms),
            millis(config.publish_max_backoff_ms),
            &state.stopping,
        )
        .await;
}

/// A relative path with a directory part is made absolute: ffmpeg runs inside the session
/// directory.
fn resolve_program(program: &str) -> anyhow::Result<String> {
    let path = Path::new(program);
    if path.is_absolute() || path.components().count() == 1 {
        return Ok(program.to_owned());
    }
    let absolute = std::fs::canonicalize(path).with_context(|| format!("{program} not found"))?;
    Ok(absolute.to_string_lossy().into_owned())
}

async fn check_runs(command: std::process::Command) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let run = tokio::process::Command::from(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .with_context(|| format!("{program} -version did not finish"))?
        .with_context(|| format!("failed to run {program}"))?;
    anyhow::ensure!(status.success(), "{program} -version exited with {status}");
    Ok(())
}
