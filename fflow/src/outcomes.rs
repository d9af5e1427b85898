//! Publishes encode outcomes on the outcomes queue, with publisher confirms.

use std::time::Duration;

use anyhow::Context;
use lapin::options::BasicPublishOptions;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use vod_contracts::outcome::EncodeOutcome;
use vod_infra::config::AmqpSettings;

const PERSISTENT: u8 = 2;

pub struct Publisher {
    settings: AmqpSettings,
    connection_name: String,
    queue: String,
    timeout: Duration,
    link: tokio::sync::Mutex<Link>,
}

#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    channel: Option<Channel>,
}

impl Publisher {
    /// Connects and declares the queues, so that a replica that cannot reach the broker does
    /// not start.
    pub async fn connect(
        settings: &AmqpSettings,
        connection_name: String,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let publisher = Self {
            settings: settings.clone(),
            connection_name,
            queue: vod_infra::amqp::queue_names(settings).outcomes,
            timeout,
            link: tokio::sync::Mutex::new(Link::default()),
        };
        publisher
            .open_channel(&mut *publisher.link.lock().await)
            .await?;
        Ok(publisher)
    }

    /// One attempt: published, routed and confirmed by the broker, or an error.
    pub async fn publish(&self, outcome: &EncodeOutcome) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(outcome).context("failed to encode the outcome")?;
        let mut link = self.link.lock().await;
        let channel = self.open_channel(&mut link).await?;
        let published = tokio::time::timeout(self.timeout, self.publish_on(&channel, &payload))
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

    async fn publish_on(&self, channel: &Channel, payload: &[u8]) -> anyhow::Result<()> {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into());
        let confirmation = channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                properties,
            )
            .await
            .context("failed to publish the outcome")?
            .await
            .context("failed to get the outcome confirmed")?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                anyhow::bail!("rabbitmq returned the outcome: {}", returned.reply_text)
            }
            Confirmation::Nack(None) => anyhow::bail!("rabbitmq refused the outcome"),
            Confirmation::NotRequested => anyhow::bail!("publisher confirms are off"),
        }
    }

    pub async fn close(&self) {
        let mut link = self.link.lock().await;
        link.channel = None;
        if let Some(connection) = link.connection.take() {
            let _ = connection.close(200, "shutting down".into()).await;
        }
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
        let usable = self.connection.as_ref().is_some_and(|connection| {
            let status = connection.status();
            status.connected() || status.connecting() || status.reconnecting()
        });
        if !usable {
            let connection =
                vod_infra::amqp::connect(&publisher.settings, &publisher.connection_name).await?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_ref().context("no rabbitmq connection")?;
        let channel = vod_infra::amqp::publisher_channel(connection).await?;
        vod_infra::amqp::declare_queues(
            &channel,
            &vod_infra::amqp::queue_names(&publisher.settings),
        )
        .await?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }
}
