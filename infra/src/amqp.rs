//! RabbitMQ connections and the queues every service declares the same way.

use std::time::{Duration, Instant};

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

/// The longest lapin's recovery waits in all between its attempts: the first backoff, doubled
/// each attempt up to the largest.
fn recovery_budget(settings: &AmqpSettings) -> Duration {
    let max_wait = settings
        .recovery_max_backoff_ms
        .max(settings.recovery_backoff_ms);
    let mut wait = settings.recovery_backoff_ms;
    let mut total: u64 = 0;
    for _ in 0..settings.recovery_attempts {
        total = total.saturating_add(wait);
        wait = wait.saturating_mul(2).min(max_wait);
    }
    millis(total)
}

/// Tells when lapin has given a connection up for good: its recovery ran out of attempts, or it
/// met an error it does not recover from. The status alone does not tell reliably: lapin 4.12
/// marks the connection errored as it gives up, but a recovery step still queued may then set
/// it back to reconnecting or connecting, where it stays with nothing driving it any more (a
/// third of the time under load). lapin sends an error event as it gives up, which the watch
/// listens for; a status of errored or closed counts as well. Under load lapin has also been
/// seen to stay reconnecting without ever sending that event, so a connection that has not
/// been up for longer than lapin's whole backoff budget plus `recovery_stall_ms` counts as
/// given up too: a service then opens a new one, which does no harm even if lapin was, after
/// all, still trying.
pub struct GiveUpWatch {
    status: ConnectionStatus,
    given_up: CancellationToken,
    listener: AbortHandle,
}

/// Since when a connection has not been up, as seen at each look.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Looks at the connection at `now`; true once it has been down for longer than `limit`.
    fn longer_than(&mut self, limit: Duration, connected: bool, now: Instant) -> bool {
        if connected {
            self.since = None;
            return false;
        }
        now.saturating_duration_since(*self.since.get_or_insert(now)) > limit
    }
}

/// How often the watch looks at the connection's status for the stall fallback.
const STALL_CHECK_EVERY: Duration = Duration::from_millis(250);

impl GiveUpWatch {
    /// Starts listening to `connection`'s events. Start it right after connecting: an event
    /// sent before is not seen.
    pub fn start(connection: &Connection, settings: &AmqpSettings) -> Self {
        let given_up = CancellationToken::new();
        let mut events = connection.events_listener();
        let status = connection.status().clone();
        let told = given_up.clone();
        let stalled_after = recovery_budget(settings) + millis(settings.recovery_stall_ms);
        let watched = status.clone();
        let listener = tokio::spawn(async move {
            let mut check = tokio::time::interval(STALL_CHECK_EVERY);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut outage = Outage::default();
            let mut listening = true;
            loop {
                tokio::select! {
                    event = events.next(), if listening => match event {
                        Some(Event::Error(_)) => break,
                        Some(_) => {}
                        None => listening = false,
                    },
                    _ = check.tick() => {
                        if outage.longer_than(stalled_after, watched.connected(), Instant::now()) {
                            tracing::warn!(
                                down_for_ms = stalled_after.as_millis(),
                                "lapin is still not connected after its whole recovery budget, counting the connection as lost"
                            );
                            break;
                        }
                    }
                }
            }
            told.cancel();
        });
        Self {
            status,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovery_budget_doubles_each_wait_up_to_the_largest() {
        let settings = AmqpSettings {
            recovery_attempts: 5,
            recovery_backoff_ms: 100,
            recovery_max_backoff_ms: 300,
            ..AmqpSettings::default()
        };
        assert_eq!(
            recovery_budget(&settings),
            millis(100 + 200 + 300 + 300 + 300)
        );
        let none = AmqpSettings {
            recovery_attempts: 0,
            ..settings
        };
        assert_eq!(recovery_budget(&none), Duration::ZERO);
        // lapin's own figures: about 11 minutes.
        assert_eq!(
            recovery_budget(&AmqpSettings::default()),
            millis(1_000 + 2_000 + 4_000 + 8_000 + 16_000 + 32_000 + 10 * 60_000)
        );
    }

    #[test]
    fn an_outage_counts_from_the_first_look_down_and_ends_when_up_again() {
        let limit = Duration::from_secs(10);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut outage = Outage::default();
        assert!(!outage.longer_than(limit, true, at(0)));
        assert!(!outage.longer_than(limit, false, at(5)));
        assert!(!outage.longer_than(limit, false, at(15)));
        assert!(outage.longer_than(limit, false, at(16)));
        // Up again in between: the next outage counts from its own start.
        assert!(!outage.longer_than(limit, true, at(17)));
        assert!(!outage.longer_than(limit, false, at(20)));
        assert!(!outage.longer_than(limit, false, at(30)));
        assert!(outage.longer_than(limit, false, at(31)));
    }
}
