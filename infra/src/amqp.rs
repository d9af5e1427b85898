//! RabbitMQ connections and the queues every service declares the same way.

use anyhow::Context;
use lapin::options::{BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use vod_contracts::queues::QueueNames;

use crate::config::{millis, AmqpSettings};

/// Connects with automatic recovery switched on: after a lost connection lapin reopens it and its
/// channels, and deliveries come again, so every handler must be idempotent. Recovery stops
/// after the settings' attempts: the connection's status then stays errored for good, and its
/// consumers yield one error and never end, so a service must watch the status to notice.
pub async fn connect(settings: &AmqpSettings, connection_name: &str) -> anyhow::Result<Connection> {
    let attempts = settings.recovery_attempts;
    let first_wait = millis(settings.recovery_backoff_ms);
    let max_wait = millis(settings.recovery_max_backoff_ms).max(first_wait);
    let properties = ConnectionProperties::default()
        .configure_backoff(move |backoff| {
            backoff
                .with_min_delay(first_wait)
                .with_max_delay(max_wait)
                .with_max_times(attempts)
        })
        .enable_auto_recover()
        .with_connection_name(connection_name.into());
    Connection::connect(settings.url.expose_secret(), properties)
        .await
        .context("failed to connect to rabbitmq")
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
