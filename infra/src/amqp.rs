//! RabbitMQ connections and the queues every service declares the same way.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ConnectionStatus,
    Event,
};
use secrecy::ExposeSecret;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use vod_contracts::queues::QueueNames;

use crate::backoff::Backoff;
use crate::config::{millis, AmqpSettings};

/// Connects, trying again with backoff while the broker cannot be reached: `connect_attempts`
/// more times, waiting `connect_backoff_ms` first and doubling up to `connect_max_backoff_ms`,
/// each attempt given `connect_timeout_ms` (lapin 4.12 has been seen never to answer a connect
/// whose server reset the connection during the handshake, as a broker still starting or a
/// proxy in front of one that is away does).
///
/// lapin's automatic recovery stays off: it has been seen to leave a recovering connection
/// "reconnecting" for good, even once the broker was back, with its consumers silent. A lost
/// connection is therefore lost for good, at once: lapin marks it errored, sends an error
/// event, and its consumers yield one error and never end. Each service watches for that
/// ([`LossWatch`]) and connects again itself, with its channels and consumers; deliveries it
/// had not acknowledged come again, so every handler must be idempotent.
pub async fn connect(settings: &AmqpSettings, connection_name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default()
        // One try per attempt: the attempts are counted and spaced here.
        .configure_backoff(|backoff| backoff.with_max_times(0))
        .with_connection_name(connection_name.into());
    let per_attempt = millis(settings.connect_timeout_ms);
    let max_wait = millis(settings.connect_max_backoff_ms);
    let mut waits = Backoff::doubling(millis(settings.connect_backoff_ms).min(max_wait), max_wait);
    let mut attempts_left = settings.connect_attempts;
    loop {
        let connecting = Connection::connect(settings.url.expose_secret(), properties.clone());
        let failure = match tokio::time::timeout(per_attempt, connecting).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => anyhow::Error::new(error),
            Err(_) => anyhow::anyhow!("no answer within {} ms", per_attempt.as_millis()),
        };
        if attempts_left == 0 {
            return Err(failure.context("failed to connect to rabbitmq"));
        }
        attempts_left -= 1;
        let wait = waits.next_delay();
        tracing::debug!(error = %failure, retry_in_ms = wait.as_millis(), "broker not reached yet");
        tokio::time::sleep(wait).await;
    }
}

/// Tells when a connection is lost: lapin's error event says so at once, and a status of
/// errored or closed (a connection closed on purpose) counts as well. lapin sends the same
/// event when the broker closes one of the connection's channels with an error; the services
/// never expect that, so it counts as lost too, and a new connection starts them afresh.
pub struct LossWatch {
    status: ConnectionStatus,
    lost: CancellationToken,
    listener: AbortHandle,
}

impl LossWatch {
    /// Starts listening to `connection`'s events. Start it right after connecting: an event
    /// sent before is not seen (its status still is).
    pub fn start(connection: &Connection) -> Self {
        let lost = CancellationToken::new();
        let mut events = connection.events_listener();
        let told = lost.clone();
        let listener = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if matches!(event, Event::Error(_)) {
                    told.cancel();
                    return;
                }
            }
        });
        Self {
            status: connection.status().clone(),
            lost,
            listener: listener.abort_handle(),
        }
    }

    /// Whether the connection is lost.
    pub fn lost(&self) -> bool {
        self.lost.is_cancelled() || self.status.errored() || self.status.closed()
    }

    /// Resolves once the connection is lost: at once on lapin's event, and at the next check,
    /// every `check_every`, on its status.
    pub async fn wait(&self, check_every: Duration) {
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.lost.cancelled() => return,
                _ = check.tick() => {
                    if self.lost() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for LossWatch {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The queue names of this deployment.
pub fn queue_names(settings: &AmqpSettings) -> QueueNames {
    QueueNames::with_prefix(&settings.queue_prefix)
}

/// Declares the durable queues; every service does it, with the same arguments, before use.
pub async fn declare_queues(channel: &Channel, names: &QueueNames) -> anyhow::Result<()> {
    for queue in names.all() {
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("failed to declare queue {queue}"))?;
    }
    Ok(())
}

/// A channel with publisher confirms on.
pub async fn publisher_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("failed to enable publisher confirms")?;
    Ok(channel)
}

/// A message kept on disk by the broker (AMQP delivery mode 2).
pub const PERSISTENT: u8 = 2;
/// A message the broker may keep in memory only (delivery mode 1).
pub const TRANSIENT: u8 = 1;

/// Publishes a JSON `payload` to `queue` through the default exchange on a channel with
/// publisher confirms: `Ok` once the broker routed it to the queue and confirmed it, an error
/// when it returned it (no such queue) or refused it.
pub async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    delivery_mode: u8,
) -> anyhow::Result<()> {
    let properties = BasicProperties::default()
        .with_delivery_mode(delivery_mode)
        .with_content_type("application/json".into());
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            payload,
            properties,
        )
        .await
        .context("failed to publish")?
        .await
        .context("failed to get the publish confirmed")?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            anyhow::bail!("rabbitmq returned the message: {}", returned.reply_text)
        }
        Confirmation::Nack(None) => anyhow::bail!("rabbitmq refused the message"),
        Confirmation::NotRequested => anyhow::bail!("publisher confirms are off"),
    }
}

/// A channel for consuming with the given prefetch, set before any `basic_consume`.
pub async fn consumer_channel(connection: &Connection, prefetch: u16) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("failed to set prefetch")?;
    Ok(channel)
}

/// Messages ready in each queue, read with a passive declare on a channel of its own (a
/// passive declare of a missing queue closes its channel).
pub async fn queue_depths(
    connection: &Connection,
    queues: &[&str],
) -> anyhow::Result<Vec<(String, u32)>> {
    let channel = connection
        .create_channel()
        .await
        .context("failed to open a channel")?;
    let mut depths = Vec::with_capacity(queues.len());
    for queue in queues {
        let declared = channel
            .queue_declare(
                (*queue).into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("failed to inspect queue {queue}"))?;
        depths.push(((*queue).to_owned(), declared.message_count()));
    }
    let _ = channel.close(200, "OK".into()).await;
    Ok(depths)
}
