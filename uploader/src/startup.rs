use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use lapin::Connection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vod_contracts::queues::QueueNames;
use vod_infra::config::millis;

use crate::config::Config;
use crate::fflow_client::FflowClient;
use crate::handlers::Handlers;
use crate::http::{self, HttpState};
use crate::metrics::UploaderMetrics;
use crate::routing::Routing;
use crate::scheduler::{Scheduler, UnusedVideos};
use crate::{consumer, outcomes, progress};

/// One uploader replica: its pools, its broker connection and its consumers.
pub struct App {
    config: Config,
    handlers: Arc<Handlers>,
    amqp: Arc<Connection>,
    queues: QueueNames,
    scheduler: Scheduler,
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl App {
    /// Migrates the schema (serialized across replicas), builds the pools, connects to the
    /// broker and binds the operators' listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        vod_infra::postgres::migrate(&config.postgres).await?;
        let pg = vod_infra::postgres::pool(&config.postgres)?;
        let redis = vod_infra::redis::pool(&config.redis)?;
        let mut registry = vod_infra::metrics::registry("uploader");
        let metrics = UploaderMetrics::register(&mut registry);
        let fflow = Arc::new(FflowClient::new(
            config.fflow_urls.clone(),
            millis(config.fflow_timeout_ms),
        )?);
        let routing = Routing::new(
            redis.clone(),
            config.redis.key_prefix.clone(),
            config.routing_ttl_secs,
            fflow.clone(),
        );
        let amqp = Arc::new(vod_infra::amqp::connect(&config.amqp, &config.replica_name).await?);
        let queues = vod_infra::amqp::queue_names(&config.amqp);
        let setup = amqp.create_channel().await?;
        vod_infra::amqp::declare_queues(&setup, &queues).await?;
        let router = http::router(HttpState {
            pg: pg.clone(),
            redis,
            amqp: amqp.clone(),
            queues: vec![
                queues.commands.clone(),
                queues.outcomes.clone(),
                queues.progress.clone(),
            ],
            metrics: metrics.clone(),
            registry,
            timeout: millis(config.readiness_timeout_ms),
        });
        let (listener, local_addr) = vod_infra::http::bind(&config.listen_addr).await?;
        tracing::info!(replica = %config.replica_name, addr = %local_addr, "uploader listening");
        let handlers = Arc::new(Handlers {
            pg,
            routing,
            fflow,
            finish_attempts: config.finish_attempts,
            session_ttl_secs: config.session_ttl_secs,
            writer_lease_secs: config.writer_lease_secs,
            metrics,
        });
        let scheduler = Scheduler::new(
            handlers.clone(),
            config.session_ttl_secs,
            UnusedVideos {
                ttl_secs: config.unused_video_ttl_secs,
                batch: config.unused_video_batch,
                remove_timeout: millis(config.remove_video_timeout_ms),
            },
        );
        Ok(Self {
            config,
            handlers,
            amqp,
            queues,
            scheduler,
            listener,
            local_addr,
            router,
        })
    }

    /// The address of `/healthz`, `/readyz` and `/metrics`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The scheduler's jobs, to run them directly.
    pub fn scheduler(&self) -> Scheduler {
        self.scheduler.clone()
    }

    /// Consumes commands and outcomes (and runs the scheduler if configured) and serves the
    /// operators' listener until `shutdown`; then stops consuming, finishes and acks what is in
    /// flight, and closes the connection.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = &self.config.replica_name;
        let commands_channel =
            vod_infra::amqp::consumer_channel(&self.amqp, self.config.amqp.prefetch).await?;
        let outcomes_channel = vod_infra::amqp::consumer_channel(&self.amqp, 1).await?;
        let progress_channel =
            vod_infra::amqp::consumer_channel(&self.amqp, self.config.progress_prefetch).await?;
        let reply_channel = self.amqp.create_channel().await?;
        let cron = if self.config.scheduler {
            tracing::info!(replica = %name, "scheduler enabled");
            Some(
                self.scheduler
                    .start(
                        &self.config.expire_sessions_cron,
                        &self.config.delete_unused_videos_cron,
                    )
                    .await?,
            )
        } else {
            None
        };
        // A consumer that fails stops the other one too, and the replica exits with the error.
        let stop = shutdown.child_token();
        let stop_on_error = |result: anyhow::Result<()>| {
            if result.is_err() {
                stop.cancel();
            }
            result
        };
        let commands = async {
            stop_on_error(
                consumer::run(
                    commands_channel,
                    reply_channel,
                    self.queues.commands.clone(),
                    format!("{name}-commands"),
                    self.handlers.clone(),
                    stop.clone(),
                )
                .await,
            )
        };
        let outcomes = async {
            stop_on_error(
                outcomes::run(
                    outcomes_channel,
                    self.queues.outcomes.clone(),
                    format!("{name}-outcomes"),
                    self.handlers.pg.clone(),
                    self.handlers.routing.clone(),
                    self.handlers.metrics.transitions.clone(),
                    stop.clone(),
                )
                .await,
            )
        };
        let progress = async {
            stop_on_error(
                progress::run(
                    progress_channel,
                    self.queues.progress.clone(),
                    format!("{name}-progress"),
                    self.handlers.pg.clone(),
                    stop.clone(),
                )
                .await,
            )
        };
        let served = async {
            stop_on_error(vod_infra::http::serve(self.listener, self.router, stop.clone()).await)
        };
        tracing::info!(replica = %name, queue = %self.queues.commands, "uploader consuming");
        let (commands, outcomes, progress, served) =
            tokio::join!(commands, outcomes, progress, served);
        if let Some(mut cron) = cron {
            let _ = cron.shutdown().await;
        }
        let _ = self.amqp.close(200, "shutting down".into()).await;
        commands.context("commands consumer failed")?;
        outcomes.context("outcomes consumer failed")?;
        progress.context("progress consumer failed")?;
        served
    }
}
