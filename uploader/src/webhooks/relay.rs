//! The relay: publishes the deliveries not yet queued (new ones, and those an attempt left for
//! a retry) to the broker, and marks them queued in the same transaction, so that a delivery
//! is published at least once whatever stops when. A delivery due now goes to the webhooks
//! queue, one to retry to the retry queue of its delay, which dead-letters it to the webhooks
//! queue when the delay is over.
//!
//! Every replica that delivers runs one; they share the rows by `FOR UPDATE SKIP LOCKED`.
//! The rows stay locked while their messages are confirmed by the local broker: they are
//! the relay's alone (no attempt touches an unqueued delivery), so nothing waits on them.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use vod_contracts::queues::QueueNames;
use vod_contracts::webhook::AttemptDelivery;
use vod_contracts::DeliveryId;
use vod_infra::amqp::{publish_confirmed, PERSISTENT};

/// An idle retry queue lives this long past its delay, then the broker deletes it.
const RETRY_QUEUE_SPARE: Duration = Duration::from_secs(24 * 3600);

pub struct Relay {
    pub pg: Pool,
    pub queues: QueueNames,
    pub interval: Duration,
    pub batch: i64,
}

impl Relay {
    /// Publishes until `shutdown` (then `Ok`), or until the broker fails it (an error, so
    /// that the replica connects again); a database failure is logged and tried again.
    pub async fn run(&self, channel: Channel, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut declared = HashSet::new();
        loop {
            match self.publish_batch(&channel, &mut declared).await {
                Ok(Published::Full) => continue,
                Ok(Published::Some) => {}
                Err(Failure::Broker(error)) => return Err(error),
                Err(Failure::Database(error)) => {
                    tracing::warn!(error = %format!("{error:#}"), "webhook relay: database failed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn publish_batch(
        &self,
        channel: &Channel,
        declared: &mut HashSet<u64>,
    ) -> Result<Published, Failure> {
        let mut client = self
            .pg
            .get()
            .await
            .map_err(|e| Failure::Database(e.into()))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| Failure::Database(e.into()))?;
        let rows = tx
            .query(
                "SELECT id, attempts, retry_delay_ms FROM webhook_delivery \
                 WHERE status = 'pending' AND NOT queued \
                 ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
                &[&self.batch],
            )
            .await
            .map_err(|e| Failure::Database(e.into()))?;
        let mut published = Vec::with_capacity(rows.len());
        for row in &rows {
            let message = AttemptDelivery {
                delivery_id: DeliveryId(row.try_get(0).map_err(|e| Failure::Database(e.into()))?),
                attempts: u32::try_from(row.try_get::<_, i32>(1).unwrap_or_default())
                    .unwrap_or_default(),
            };
            let delay_ms =
                u64::try_from(row.try_get::<_, i64>(2).unwrap_or_default()).unwrap_or_default();
            let queue = if delay_ms == 0 {
                self.queues.webhooks.clone()
            } else {
                self.retry_queue(channel, declared, delay_ms)
                    .await
                    .map_err(Failure::Broker)?
            };
            let payload = serde_json::to_vec(&message).map_err(|e| Failure::Database(e.into()))?;
            publish_confirmed(channel, &queue, &payload, PERSISTENT)
                .await
                .map_err(Failure::Broker)?;
            published.push(message.delivery_id.0);
        }
        tx.execute(
            "UPDATE webhook_delivery SET queued = true WHERE id = ANY($1)",
            &[&published],
        )
        .await
        .map_err(|e| Failure::Database(e.into()))?;
        tx.commit().await.map_err(|e| Failure::Database(e.into()))?;
        if !published.is_empty() {
            tracing::debug!(deliveries = published.len(), "webhook deliveries queued");
        }
        Ok(if rows.len() as i64 >= self.batch {
            Published::Full
        } else {
            Published::Some
        })
    }

    /// The retry queue of `delay_ms`, declared once per channel: its messages expire after
    /// the delay into the webhooks queue.
    async fn retry_queue(
        &self,
        channel: &Channel,
        declared: &mut HashSet<u64>,
        delay_ms: u64,
    ) -> anyhow::Result<String> {
        let name = self.queues.webhook_retry(delay_ms);
        if declared.contains(&delay_ms) {
            return Ok(name);
        }
        let spare = u64::try_from(RETRY_QUEUE_SPARE.as_millis()).unwrap_or(u64::MAX);
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms(delay_ms)));
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(ms(delay_ms.saturating_add(spare))),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.queues.webhooks.as_str().into()),
        );
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .with_context(|| format!("failed to declare the retry queue {name}"))?;
        declared.insert(delay_ms);
        Ok(name)
    }
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

enum Published {
    /// A whole batch: there may be more at once.
    Full,
    Some,
}

enum Failure {
    Broker(anyhow::Error),
    Database(anyhow::Error),
}
