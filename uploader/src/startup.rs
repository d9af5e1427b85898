use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use lapin::Connection;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vod_contracts::queues::QueueNames;
use vod_infra::amqp::LossWatch;
use vod_infra::backoff::Backoff;
use vod_infra::bearer::SharedToken;
use vod_infra::config::millis;
use vod_infra::consume::Subscription;
use vod_infra::public_target::TargetPolicy;

use crate::config::Config;
use crate::fflow_client::FflowClient;
use crate::handlers::Handlers;
use crate::http::{self, CurrentBroker, HttpState};
use crate::metrics::UploaderMetrics;
use crate::routing::Routing;
use crate::scheduler::{Crons, EventRetention, Scheduler, UnusedVideos};
use crate::webhooks::{Attempting, Relay, RetrySchedule, Sender, WebhookMetrics};
use crate::{chunk_listener, consumer, outcomes, progress};

/// A broker connection and what tells that it was lost.
struct Broker {
    connection: Arc<Connection>,
    lost: LossWatch,
}

/// One uploader replica: its pools, its broker connection and its consumers.
pub struct App {
    config: Config,
    handlers: Arc<Handlers>,
    /// The connection made at build time; the first one the consumers use.
    amqp: Option<Broker>,
    /// The connection `/readyz` and `/metrics` look at.
    current_broker: CurrentBroker,
    queues: QueueNames,
    scheduler: Scheduler,
    /// The operators' listener and its routes, until they are served.
    http: Option<(TcpListener, Router)>,
    local_addr: SocketAddr,
    /// The chunk listener and its routes, when the gateway's token is configured.
    chunks: Option<(TcpListener, Router)>,
    chunks_addr: Option<SocketAddr>,
    /// What attempts webhook deliveries, when this replica delivers them.
    webhooks: Option<Arc<Attempting>>,
}

impl App {
    /// Migrates the schema (serialized across replicas), builds the pools, connects to the
    /// broker and binds the operators' listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        vod_infra::postgres::migrate(&config.postgres).await?;
        let pg = vod_infra::postgres::pool(&config.postgres)?;
        let redis = vod_infra::redis::pool(&config.redis)?;
        // The gateway shows a project's quotas in force: it reads the defaults from here.
        crate::quotas::record_defaults(&pg.get().await?, &config.quota).await?;
        let mut registry = vod_infra::metrics::registry("uploader");
        let metrics = UploaderMetrics::register(&mut registry);
        let webhook_metrics = WebhookMetrics::register(&mut registry);
        let fflow = Arc::new(FflowClient::new(
            config.fflow_urls.clone(),
            &config.fflow_token,
            millis(config.fflow_timeout_ms),
            millis(config.fflow_connect_timeout_ms),
            millis(config.fflow_pool_idle_timeout_ms),
        )?);
        let routing = Routing::new(
            redis.clone(),
            config.redis.key_prefix.clone(),
            config.routing_ttl_secs,
            fflow.clone(),
        );
        let amqp = Arc::new(vod_infra::amqp::connect(&config.amqp, &config.replica_name).await?);
        let lost = LossWatch::start(&amqp);
        let queues = vod_infra::amqp::queue_names(&config.amqp);
        let setup = amqp.create_channel().await?;
        vod_infra::amqp::declare_queues(&setup, &queues).await?;
        let current_broker = CurrentBroker::new(amqp.clone());
        let router = http::router(HttpState {
            pg: pg.clone(),
            redis,
            amqp: current_broker.clone(),
            queues: vec![
                queues.commands.clone(),
                queues.outcomes.clone(),
                queues.progress.clone(),
                queues.webhooks.clone(),
            ],
            metrics: metrics.clone(),
            registry,
            timeout: millis(config.readiness_timeout_ms),
            max_projects: config.metrics_max_projects,
        });
        let (listener, local_addr) = vod_infra::http::bind(&config.listen_addr).await?;
        tracing::info!(replica = %config.replica_name, addr = %local_addr, "uploader listening");
        let recorder =
            crate::events::Recorder::new(metrics.transitions.clone(), &config.holder_public_url);
        let webhooks = config
            .webhooks
            .deliver
            .then(|| webhooks(&config, &pg, recorder.clone(), webhook_metrics))
            .transpose()?;
        let handlers = Arc::new(Handlers {
            pg,
            routing,
            fflow,
            finish_attempts: config.finish_attempts,
            session_ttl_secs: config.session_ttl_secs,
            writer_lease_secs: config.writer_lease_secs,
            metrics,
            fflow_reassign_after: millis(config.fflow_reassign_after_ms),
            chunk_ahead_wait: millis(config.chunk_ahead_wait_ms),
            deleted_video_remove_timeout: millis(config.deleted_video_remove_timeout_ms),
            quota: config.quota.clone(),
            recorder,
        });
        let (chunks, chunks_addr) = if config.chunks_token.expose_secret().is_empty() {
            (None, None)
        } else {
            let (listener, addr) = vod_infra::http::bind(&config.chunks_listen_addr).await?;
            tracing::info!(replica = %config.replica_name, %addr, "uploader taking chunks over HTTP");
            let token = SharedToken::new(config.chunks_token.clone());
            (
                Some((listener, chunk_listener::router(handlers.clone(), token))),
                Some(addr),
            )
        };
        let scheduler = Scheduler::new(
            handlers.clone(),
            config.session_ttl_secs,
            UnusedVideos {
                ttl_secs: config.unused_video_ttl_secs,
                batch: config.unused_video_batch,
                remove_timeout: millis(config.remove_video_timeout_ms),
            },
            EventRetention {
                retention_secs: config.event_retention_secs,
                batch: config.purge_events_batch,
            },
        );
        Ok(Self {
            config,
            handlers,
            amqp: Some(Broker {
                connection: amqp,
                lost,
            }),
            current_broker,
            queues,
            scheduler,
            http: Some((listener, router)),
            local_addr,
            chunks,
            chunks_addr,
            webhooks,
        })
    }

    /// The address of `/healthz`, `/readyz` and `/metrics`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the chunk listener, when it is served.
    pub fn chunks_addr(&self) -> Option<SocketAddr> {
        self.chunks_addr
    }

    /// The scheduler's jobs, to run them directly.
    pub fn scheduler(&self) -> Scheduler {
        self.scheduler.clone()
    }

    /// Consumes commands and outcomes (and runs the scheduler if configured) and serves the
    /// operators' listener until `shutdown`; then stops consuming, finishes and acks what is in
    /// flight, and closes the connection. What is still running `shutdown_timeout_ms` after
    /// `shutdown` is abandoned unacked.
    ///
    /// When the broker connection is lost (which the consumers do not show: they neither end
    /// nor receive again), or the broker ends a consumer for good, the replica connects again
    /// with backoff and consumes anew instead of stopping, so it needs no supervisor to come
    /// back after a broker outage.
    pub async fn run_until_stopped(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let abandon =
            vod_infra::shutdown::abandon_after(&shutdown, millis(self.config.shutdown_timeout_ms));
        let _stop_timer = abandon.clone().drop_guard();
        let Some((listener, router)) = self.http.take() else {
            anyhow::bail!("the uploader's listener is already served");
        };
        let stop = shutdown.child_token();
        let http_limits = self.config.http.clone();
        let serve = |listener, router| {
            let (stop, abandon, limits) = (stop.clone(), abandon.clone(), http_limits.clone());
            async move {
                let served =
                    vod_infra::http::serve(listener, router, &limits, stop.clone(), abandon).await;
                if served.is_err() {
                    stop.cancel();
                }
                served
            }
        };
        let served = serve(listener, router);
        let chunks = self.chunks.take();
        let chunks_served = async {
            match chunks {
                Some((listener, router)) => serve(listener, router).await,
                None => Ok(()),
            }
        };
        let (consumed, served, chunks_served) = tokio::join!(
            self.consume_until_stopped(&stop, &abandon),
            served,
            chunks_served
        );
        consumed?;
        served?;
        chunks_served
    }

    /// Runs the scheduler and the consumers, connecting again after the broker is lost, until
    /// `shutdown`.
    async fn consume_until_stopped(
        &mut self,
        shutdown: &CancellationToken,
        abandon: &CancellationToken,
    ) -> anyhow::Result<()> {
        let cron = if self.config.scheduler {
            tracing::info!(replica = %self.config.replica_name, "scheduler enabled");
            Some(
                self.scheduler
                    .start(Crons {
                        expire_sessions: &self.config.expire_sessions_cron,
                        lost_replicas: &self.config.lost_replicas_cron,
                        delete_unused_videos: &self.config.delete_unused_videos_cron,
                        purge_events: &self.config.purge_events_cron,
                    })
                    .await?,
            )
        } else {
            None
        };
        let mut backoff = Backoff::doubling(
            millis(self.config.broker_reconnect_backoff_ms),
            millis(self.config.broker_reconnect_max_backoff_ms),
        );
        let mut connection = self.amqp.take();
        while !shutdown.is_cancelled() {
            let broker = match connection.take() {
                Some(broker) => broker,
                None => match self.reconnect(shutdown).await {
                    None => break,
                    Some(Ok(broker)) => {
                        tracing::info!(replica = %self.config.replica_name, "reconnected to the broker");
                        self.handlers.metrics.broker_reconnected();
                        backoff.reset();
                        self.current_broker.replace(broker.connection.clone());
                        broker
                    }
                    Some(Err(error)) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            replica = %self.config.replica_name,
                            error = %format!("{error:#}"),
                            retry_in_ms = wait.as_millis(),
                            "broker unreachable"
                        );
                        wait_or_stop(wait, shutdown).await;
                        continue;
                    }
                },
            };
            let consumed = self.consume(&broker, shutdown, abandon).await;
            // Closing hands every unacknowledged delivery back to the broker; a connection that
            // cannot close in time is dropped, which does the same.
            let closed = broker.connection.close(200, "shutting down".into());
            if vod_infra::shutdown::unless_abandoned(abandon, closed)
                .await
                .is_none()
            {
                tracing::warn!(replica = %self.config.replica_name, "broker connection dropped without a close");
            }
            if let Err(error) = consumed {
                if shutdown.is_cancelled() {
                    return Err(error);
                }
                self.handlers.metrics.broker_connection_lost();
                let wait = backoff.next_delay();
                tracing::warn!(
                    replica = %self.config.replica_name,
                    error = %format!("{error:#}"),
                    retry_in_ms = wait.as_millis(),
                    "consumers stopped, connecting to the broker again"
                );
                wait_or_stop(wait, shutdown).await;
            }
        }
        if let Some(mut cron) = cron {
            let _ = vod_infra::shutdown::unless_abandoned(abandon, cron.shutdown()).await;
        }
        Ok(())
    }

    /// A new connection with the queues declared; `None` once `shutdown` came. Connecting
    /// may take as long as the connect budget while the broker is away, which a stopping
    /// replica does not wait for.
    async fn reconnect(&self, shutdown: &CancellationToken) -> Option<anyhow::Result<Broker>> {
        let connected = async {
            let amqp =
                vod_infra::amqp::connect(&self.config.amqp, &self.config.replica_name).await?;
            let lost = LossWatch::start(&amqp);
            let setup = amqp.create_channel().await?;
            vod_infra::amqp::declare_queues(&setup, &self.queues).await?;
            anyhow::Ok(Broker {
                connection: Arc::new(amqp),
                lost,
            })
        };
        tokio::select! {
            () = shutdown.cancelled() => None,
            connected = connected => Some(connected),
        }
    }

    /// Runs the consumers on `amqp` until `shutdown` (then `Ok`), until one of them fails or
    /// until the connection is lost; either stops the others.
    async fn consume(
        &self,
        broker: &Broker,
        shutdown: &CancellationToken,
        abandon: &CancellationToken,
    ) -> anyhow::Result<()> {
        let name = &self.config.replica_name;
        let amqp = &broker.connection;
        let commands_channel =
            vod_infra::amqp::consumer_channel(amqp, self.config.amqp.prefetch).await?;
        let outcomes_channel = vod_infra::amqp::consumer_channel(amqp, 1).await?;
        let progress_channel =
            vod_infra::amqp::consumer_channel(amqp, self.config.progress_prefetch).await?;
        let reply_channel = amqp.create_channel().await?;
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
                    abandon.clone(),
                )
                .await,
            )
        };
        let outcomes = async {
            stop_on_error(
                unless_abandoned(
                    abandon,
                    outcomes::run(
                        outcomes_channel,
                        self.queues.outcomes.clone(),
                        format!("{name}-outcomes"),
                        outcomes::Applying {
                            pg: self.handlers.pg.clone(),
                            routing: self.handlers.routing.clone(),
                            recorder: self.handlers.recorder.clone(),
                            retry_after: millis(self.config.outcome_retry_ms),
                            fflow: self.handlers.fflow.clone(),
                            deleted_video_remove_timeout: self
                                .handlers
                                .deleted_video_remove_timeout,
                        },
                        stop.clone(),
                    ),
                )
                .await,
            )
        };
        let progress = async {
            stop_on_error(
                unless_abandoned(
                    abandon,
                    progress::run(
                        progress_channel,
                        self.queues.progress.clone(),
                        format!("{name}-progress"),
                        self.handlers.pg.clone(),
                        stop.clone(),
                    ),
                )
                .await,
            )
        };
        let webhooks = async {
            match &self.webhooks {
                Some(attempting) => stop_on_error(
                    unless_abandoned(abandon, self.deliver_webhooks(amqp, attempting, &stop)).await,
                ),
                None => Ok(()),
            }
        };
        // A lost connection leaves its consumers waiting forever, not ended.
        let watched = async {
            let check_every = millis(self.config.broker_check_interval_ms);
            stop_on_error(tokio::select! {
                () = stop.cancelled() => Ok(()),
                () = broker.lost.wait(check_every) => {
                    Err(anyhow::anyhow!("the broker connection was lost"))
                }
            })
        };
        tracing::info!(replica = %name, queue = %self.queues.commands, "uploader consuming");
        let (commands, outcomes, progress, webhooks, watched) =
            tokio::join!(commands, outcomes, progress, webhooks, watched);
        watched?;
        webhooks.context("webhook deliveries stopped")?;
        commands.context("commands consumer failed")?;
        outcomes.context("outcomes consumer failed")?;
        progress.context("progress consumer failed")?;
        Ok(())
    }
}

impl App {
    /// Publishes webhook deliveries (the relay) and attempts them, `concurrency` at once,
    /// until `stop` or a broker failure.
    async fn deliver_webhooks(
        &self,
        amqp: &Connection,
        attempting: &Arc<Attempting>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = &self.config.webhooks;
        let relay = Relay {
            pg: self.handlers.pg.clone(),
            queues: self.queues.clone(),
            interval: millis(settings.relay_interval_ms),
            batch: i64::from(settings.relay_batch),
        };
        let relay_channel = vod_infra::amqp::publisher_channel(amqp).await?;
        let mut consumers = Vec::with_capacity(usize::from(settings.concurrency));
        for n in 0..settings.concurrency {
            let channel = vod_infra::amqp::consumer_channel(amqp, 1).await?;
            let subscription = Subscription {
                queue: self.queues.webhooks.clone(),
                consumer_tag: format!("{}-webhooks-{n}", self.config.replica_name),
                what: "webhook deliveries",
            };
            consumers.push(attempting.clone().run(channel, subscription, stop.clone()));
        }
        let (relayed, consumed) = tokio::join!(
            relay.run(relay_channel, stop),
            futures_util::future::join_all(consumers)
        );
        relayed.context("webhook relay failed")?;
        consumed
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()
            .context("webhook consumer failed")?;
        Ok(())
    }
}

/// The webhook deliveries' sender and what its attempts share.
fn webhooks(
    config: &Config,
    pg: &deadpool_postgres::Pool,
    recorder: crate::events::Recorder,
    metrics: WebhookMetrics,
) -> anyhow::Result<Arc<Attempting>> {
    let settings = &config.webhooks;
    let policy = TargetPolicy {
        allow_http: settings.allow_http,
        allow_private: settings.allow_private,
        ..TargetPolicy::default()
    };
    let timeout = millis(settings.timeout_ms);
    Ok(Arc::new(Attempting {
        pg: pg.clone(),
        sender: Sender::new(policy, timeout, settings.max_error_bytes)?,
        schedule: RetrySchedule::new(settings),
        recorder,
        metrics,
        claim_for: timeout + CLAIM_MARGIN,
        disable_after_secs: settings.disable_after_secs,
        retry_after: millis(config.outcome_retry_ms),
    }))
}

/// How long a claim outlasts an attempt's budget.
const CLAIM_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a consumer until it ends, or drops it at the shutdown timeout: the delivery it was
/// handling, unacknowledged, goes back to the queue.
async fn unless_abandoned(
    abandon: &CancellationToken,
    consumer: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    vod_infra::shutdown::unless_abandoned(abandon, consumer)
        .await
        .unwrap_or(Ok(()))
}

async fn wait_or_stop(wait: std::time::Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.cancelled() => {}
    }
}
