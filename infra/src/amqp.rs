//! RabbitMQ connections and the queues every service declares the same way.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ConnectionStatus, Event};
use secrecy::ExposeSecret;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use vod_contracts::queues::QueueNames;

use crate::config::{millis, AmqpSettings};

/// Connects with automatic recovery switched on: after a lost connection lapin reopens it and its
/// channels, and deliveries come again, so every handler must be idempotent. Recovery stops
/// after the settings' attempts: the connection is then dead for good, and its consumers yield
/// one error and never end, so a service must watch for it ([`GiveUpWatch`]) to notice.
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

/// Tells when lapin has given a connection up for good: its recovery ran out of attempts, or it
/// met an error it does not recover from. The status alone does not tell reliably: lapin 4.12
/// marks the connection errored as it gives up, but a recovery step still queued may then set
/// it back to reconnecting or connecting, where it stays with nothing driving it any more (a
/// third of the time under load). lapin sends an error event as it gives up, and only then,
/// which the watch listens for; a status of errored or closed counts as well.
pub struct GiveUpWatch {
    status: ConnectionStatus,
    given_up: CancellationToken,
    listener: AbortHandle,
}

impl GiveUpWatch {
    /// Starts listening to `connection`'s events. Start it right after connecting: an event
    /// sent before is not seen.
    pub fn start(connection: &Connection) -> Self {
        let given_up = CancellationToken::new();
        let mut events = connection.events_listener();
        let told = given_up.clone();
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
            given_up,
            listener: listener.abort_handle(),
        }
    }

    /// Whether the connection is lost for good; one lapin is still recovering is not.
    pub fn given_up(&self) -> bool {
        self.given_up.is_cancelled() || self.status.errored() || self.status.closed()
    }

    /// Resolves once the connection is lost for good: at once on lapin's event, and at the
    /// next check, every `check_every`, on its status.
    pub async fn wait(&self, check_every: Duration) {
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.given_up.cancelled() => return,
                _ = check.tick() => {
                    if self.given_up() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for GiveUpWatch {
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
