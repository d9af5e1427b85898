//! One loop that consumes a queue of JSON messages: it takes a delivery at a time, decodes it,
//! hands it to the caller's handler and settles the delivery as the handler answers.
//!
//! It stops when told to, and fails when the broker ends the consumer, so that its service
//! connects again and consumes anew. A lost connection is not seen here (lapin's consumer then
//! neither ends nor receives again): the service's [`LossWatch`](crate::amqp::LossWatch) tells.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What becomes of a handled delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Done with: the broker forgets it.
    Ack,
    /// Never to be handled: the broker drops it.
    Drop,
    /// Not handled now: it goes back to its queue after this long, which keeps a failing
    /// message from spinning while what it needs is away.
    RequeueAfter(Duration),
}

/// Where a consumer reads, and the name it goes by in the logs and to the broker.
pub struct Subscription {
    pub queue: String,
    pub consumer_tag: String,
    /// What the queue carries, as the logs say it: "outcomes", "progress reports".
    pub what: &'static str,
}

/// The deliveries of one consumer, taken one at a time until a stop.
pub struct Deliveries {
    consumer: Consumer,
    what: &'static str,
}

impl Deliveries {
    /// Starts consuming `subscription`'s queue on `channel`, whose prefetch is set already
    /// (see [`consumer_channel`](crate::amqp::consumer_channel)).
    pub async fn start(channel: &Channel, subscription: &Subscription) -> anyhow::Result<Self> {
        let consumer = channel
            .basic_consume(
                subscription.queue.as_str().into(),
                subscription.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("failed to consume {}", subscription.what))?;
        Ok(Self {
            consumer,
            what: subscription.what,
        })
    }

    /// The next delivery, `None` once `shutdown`, or an error once the broker ended the
    /// consumer (so that the service consumes again rather than idle unseen).
    pub async fn next(&mut self, shutdown: &CancellationToken) -> anyhow::Result<Option<Delivery>> {
        let what = self.what;
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                next = self.consumer.next() => next,
            };
            match delivery {
                Some(Ok(delivery)) => return Ok(Some(delivery)),
                // The connection or the channel was lost: the service's connection watch
                // stops this consumer and consumes again on a new connection.
                Some(Err(error)) => tracing::warn!(error = %error, "{what} consumer interrupted"),
                None => anyhow::bail!("the broker closed the {what} consumer"),
            }
        }
    }
}

/// Consumes `subscription`'s queue on `channel` (its prefetch already set) one delivery at a
/// time until `shutdown` (then `Ok`), or until the broker ends the consumer (an error). A
/// message that is not valid JSON of `M` is dropped; every other one is settled as `handle`
/// answers.
pub async fn consume_json<M, H, Handled>(
    channel: &Channel,
    subscription: &Subscription,
    shutdown: &CancellationToken,
    mut handle: H,
) -> anyhow::Result<()>
where
    M: DeserializeOwned,
    H: FnMut(M) -> Handled,
    Handled: Future<Output = Settle>,
{
    let what = subscription.what;
    let mut deliveries = Deliveries::start(channel, subscription).await?;
    while let Some(delivery) = deliveries.next(shutdown).await? {
        let settle = match serde_json::from_slice::<M>(&delivery.data) {
            Ok(message) => handle(message).await,
            Err(error) => {
                tracing::error!(error = %error, "{what}: message is not valid, dropping it");
                Settle::Drop
            }
        };
        settle_delivery(&delivery, settle).await;
    }
    Ok(())
}

/// Settles `delivery`; a delivery the broker could not be told about comes again, which every
/// handler allows.
async fn settle_delivery(delivery: &Delivery, settle: Settle) {
    let settled = match settle {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Drop => delivery.reject(BasicRejectOptions { requeue: false }).await,
        Settle::RequeueAfter(wait) => {
            tokio::time::sleep(wait).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            delivery.nack(requeue).await
        }
    };
    if let Err(error) = settled {
        tracing::debug!(error = %error, ?settle, "delivery not settled, it will come again");
    }
}
