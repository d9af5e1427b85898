//! The webhooks queue's consumer: one attempt per message. It claims the delivery (so that a
//! copy of the message, published twice by a relay that stopped before its commit, waits or
//! is dropped), sends it without holding a database connection, and settles it: delivered,
//! retried after a delay (the relay publishes it to that delay's retry queue), or failed once
//! the retry period is over or the endpoint is disabled or gone.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Pool;
use lapin::Channel;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vod_contracts::webhook::AttemptDelivery;
use vod_infra::consume::{consume_json, Settle, Subscription};

use super::deliveries::{self, Attempt, Claim, Claimed, Next};
use super::endpoints;
use super::metrics::WebhookMetrics;
use super::schedule::{random_jitter, RetrySchedule};
use super::sender::Sender;
use crate::events::Recorder;

/// What every attempt of a replica shares.
pub struct Attempting {
    pub pg: Pool,
    pub sender: Sender,
    pub schedule: RetrySchedule,
    pub recorder: Recorder,
    pub metrics: WebhookMetrics,
    /// How long a claim lasts: the attempt's budget and a margin.
    pub claim_for: Duration,
    pub disable_after_secs: u64,
    /// When a database or a claim stands in the way, the message comes back after this.
    pub retry_after: Duration,
}

impl Attempting {
    pub async fn run(
        self: Arc<Self>,
        channel: Channel,
        subscription: Subscription,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        consume_json(
            &channel,
            &subscription,
            &shutdown,
            |message: AttemptDelivery| {
                let span = tracing::debug_span!(
                    "webhook",
                    delivery_id = %message.delivery_id,
                    attempts = message.attempts,
                );
                let this = self.clone();
                async move {
                    match this.handle(message).await {
                        Ok(settle) => settle,
                        Err(error) => {
                            tracing::warn!(
                                delivery_id = %message.delivery_id,
                                error = %format!("{error:#}"),
                                "webhook attempt not settled, trying again"
                            );
                            Settle::RequeueAfter(this.retry_after)
                        }
                    }
                }
                .instrument(span)
            },
        )
        .await
    }

    async fn handle(&self, message: AttemptDelivery) -> anyhow::Result<Settle> {
        let claimed = {
            let client = self.pg.get().await.context("no database connection")?;
            deliveries::claim(&client, message, self.claim_for).await?
        };
        let claimed = match claimed {
            Claim::Claimed(claimed) => claimed,
            Claim::Stale => return Ok(Settle::Ack),
            Claim::Busy => return Ok(Settle::RequeueAfter(self.retry_after)),
        };
        let attempt = match (&claimed.body, claimed.sendable) {
            (Some(body), true) => self.sender.attempt(&claimed, body.clone()).await,
            (None, _) => refused("the event is past its retention"),
            (_, false) => refused("the endpoint is disabled"),
        };
        let next = self.next(&claimed, &attempt);
        self.metrics.attempted(&attempt, next);
        let mut client = self.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        // The endpoint before its delivery, the order in which deleting an endpoint locks
        // them, so that a deletion and an attempt wait for each other instead of deadlocking.
        endpoints::lock(&tx, claimed.webhook_id).await?;
        deliveries::settle(&tx, &claimed, &attempt, next).await?;
        if claimed.sendable {
            if attempt.error.is_none() {
                endpoints::succeeded(&tx, claimed.webhook_id).await?;
            } else if endpoints::failed(
                &tx,
                claimed.webhook_id,
                self.disable_after_secs,
                &self.recorder,
            )
            .await?
            {
                self.metrics.endpoint_disabled();
                tracing::warn!(webhook_id = %claimed.webhook_id, "webhook endpoint disabled: its deliveries keep failing");
            }
        }
        tx.commit().await.context("failed to commit an attempt")?;
        tracing::info!(
            delivery_id = %claimed.id,
            webhook_id = %claimed.webhook_id,
            event_id = %claimed.event_id,
            attempt = claimed.attempts + 1,
            status = ?attempt.status_code,
            latency_ms = attempt.latency.as_millis() as u64,
            next = ?next,
            error = attempt.error.as_deref().unwrap_or(""),
            "webhook attempt"
        );
        Ok(Settle::Ack)
    }

    fn next(&self, claimed: &Claimed, attempt: &Attempt) -> Next {
        if attempt.error.is_none() {
            return Next::Delivered;
        }
        if claimed.body.is_none() || !claimed.sendable {
            return Next::Failed;
        }
        self.schedule
            .next(claimed.attempts + 1, claimed.age, random_jitter())
            .map_or(Next::Failed, Next::RetryIn)
    }
}

/// An attempt not made, and why.
fn refused(why: &str) -> Attempt {
    Attempt {
        attempted_at: chrono::Utc::now(),
        status_code: None,
        latency: Duration::ZERO,
        error: Some(why.to_owned()),
    }
}
