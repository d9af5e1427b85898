//! Publishes encode outcomes on the outcomes queue and progress reports on the progress queue,
//! with publisher confirms.
//!
//! A lost connection is dead for good (see `vod_infra::amqp::connect`). The next publish then
//! opens a new one, and [`Publisher::keep_connected`] does so before any publish needs it.

use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;
use vod_contracts::outcome::{EncodeOutcome, EncodeProgress};
use vod_contracts::queues::QueueNames;
use vod_infra::amqp::{LossWatch, PERSISTENT, TRANSIENT};
use vod_infra::backoff::Backoff;
use vod_infra::config::AmqpSettings;

use crate::metrics::FflowMetrics;
use crate::outcome_sink::OutcomeSink;

pub struct Publisher {
    settings: AmqpSettings,
    connection_name: String,
    queues: QueueNames,
    timeout: Duration,
    link: tokio::sync::Mutex<Link>,
    metrics: FflowMetrics,
}

#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    /// Tells when `connection` is lost.
    lost_connection: Option<LossWatch>,
    channel: Option<Channel>,
    /// The last connection was lost: the next one opened is a reconnection.
    lost: bool,
}

impl Publisher {
    /// Connects and declares the queues, so that a replica that cannot reach the broker does
    /// not start.
    pub async fn connect(
        settings: &AmqpSettings,
        connection_name: String,
        timeout: Duration,
        metrics: FflowMetrics,
    ) -> anyhow::Result<Self> {
        let publisher = Self {
            settings: settings.clone(),
            connection_name,
            queues: vod_infra::amqp::queue_names(settings),
            timeout,
            link: tokio::sync::Mutex::new(Link::default()),
            metrics,
        };
        publisher
            .open_channel(&mut *publisher.link.lock().await)
            .await?;
        Ok(publisher)
    }

    /// One attempt: published, routed and confirmed by the broker, or an error.
    pub async fn publish(&self, outcome: &EncodeOutcome) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(outcome).context("failed to encode the outcome")?;
        self.publish_json(&self.queues.outcomes, &payload, PERSISTENT)
            .await
    }

    /// One attempt, like [`Publisher::publish`]; a report is not kept across a broker restart.
    pub async fn publish_progress(&self, progress: &EncodeProgress) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(progress).context("failed to encode the progress")?;
        self.publish_json(&self.queues.progress, &payload, TRANSIENT)
            .await
    }

    async fn publish_json(
        &self,
        queue: &str,
        payload: &[u8],
        delivery_mode: u8,
    ) -> anyhow::Result<()> {
        let mut link = self.link.lock().await;
        let channel = self.open_channel(&mut link).await?;
        let published = tokio::time::timeout(
            self.timeout,
            vod_infra::amqp::publish_confirmed(&channel, queue, payload, delivery_mode),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("rabbitmq did not confirm in time")));
        if published.is_err() {
            link.channel = None;
        }
        published
    }

    async fn open_channel(&self, link: &mut Link) -> anyhow::Result<Channel> {
        tokio::time::timeout(self.timeout, link.channel(self))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("rabbitmq did not answer in time")))
    }

    /// Until `stopping`, checks every `every` whether the publishing connection was lost,
    /// and then connects again, waiting `backoff` after a failed attempt (doubling up to
    /// `max_backoff`): the replica is ready again as soon as the broker is back, not only at
    /// its next publish.
    pub async fn keep_connected(
        &self,
        every: Duration,
        backoff: Duration,
        max_backoff: Duration,
        stopping: &CancellationToken,
    ) {
        let mut wait = every;
        let mut backoff = Backoff::doubling(backoff, max_backoff);
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopping.cancelled() => return,
            }
            let mut link = self.link.lock().await;
            link.forget_lost_connection(self);
            if link.connection.is_some() {
                wait = every;
                backoff.reset();
                continue;
            }
            let opened = tokio::select! {
                opened = self.open_channel(&mut link) => opened,
                () = stopping.cancelled() => return,
            };
            match opened {
                Ok(_) => {
                    wait = every;
                    backoff.reset();
                }
                Err(error) => {
                    wait = backoff.next_delay();
                    tracing::warn!(
                        error = %format!("{error:#}"),
                        retry_in_ms = wait.as_millis(),
                        "broker unreachable"
                    );
                }
            }
        }
    }

    /// True when the publishing connection is up (publishing reopens it when it is not).
    pub async fn is_connected(&self) -> bool {
        let link = self.link.lock().await;
        link.connection
            .as_ref()
            .is_some_and(|connection| connection.status().connected())
    }

    pub async fn close(&self) {
        let mut link = self.link.lock().await;
        link.channel = None;
        link.lost_connection = None;
        if let Some(connection) = link.connection.take() {
            let _ = connection.close(200, "shutting down".into()).await;
        }
    }
}

impl OutcomeSink for Publisher {
    fn publish_outcome<'a>(
        &'a self,
        outcome: &'a EncodeOutcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.publish(outcome))
    }

    fn publish_progress<'a>(
        &'a self,
        progress: &'a EncodeProgress,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(Publisher::publish_progress(self, progress))
    }
}

impl Link {
    /// The publishing channel, opened again (with its connection if that is gone for good)
    /// after a failure.
    async fn channel(&mut self, publisher: &Publisher) -> anyhow::Result<Channel> {
        if let Some(channel) = &self.channel {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        self.channel = None;
        self.forget_lost_connection(publisher);
        if self.connection.is_none() {
            let connection =
                vod_infra::amqp::connect(&publisher.settings, &publisher.connection_name).await?;
            self.lost_connection = Some(LossWatch::start(&connection));
            if std::mem::take(&mut self.lost) {
                publisher.metrics.broker_reconnected();
                tracing::info!("connected to the broker again");
            }
            self.connection = Some(connection);
        }
        let connection = self.connection.as_ref().context("no rabbitmq connection")?;
        let channel = vod_infra::amqp::publisher_channel(connection).await?;
        vod_infra::amqp::declare_queues(&channel, &publisher.queues).await?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// Drops a lost connection (it never comes back), so that a new one is opened. What is left
    /// of it is closed aside: a broker that does not answer must not hold up the new one.
    fn forget_lost_connection(&mut self, publisher: &Publisher) {
        if !self.lost_connection.as_ref().is_some_and(LossWatch::lost) {
            return;
        }
        if let Some(connection) = self.connection.take() {
            tokio::spawn(async move {
                let _ = connection.close(200, "connection lost".into()).await;
            });
        }
        self.lost_connection = None;
        self.channel = None;
        self.lost = true;
        publisher.metrics.broker_connection_lost();
        tracing::warn!("broker connection lost for good, connecting again");
    }
}
