//! Deliveries, the webhooks' outbox: made in the transaction of their event (or by hand: a
//! ping, an event sent again), published by the relay, claimed for an attempt by one replica
//! at a time, and settled with the attempt's record. See `migrations/V15__webhooks.sql`.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::json;
use vod_contracts::commands::{Reject, RejectCode, ToDeliver};
use vod_contracts::event::EventType;
use vod_contracts::webhook::{AttemptDelivery, DeliveryQueued, ALL_EVENTS, PING};
use vod_contracts::{DeliveryId, ProjectId, WebhookId};

/// The endpoints of an event: the project's enabled ones that take its type.
const TAKERS: &str = "SELECT id FROM webhook_endpoint \
                      WHERE project_id = $1 AND enabled AND (events @> ARRAY[$2] OR $3 = ANY(events))";

/// Makes a delivery of a new event to each of the project's endpoints that takes it, in the
/// caller's transaction (the event's).
pub async fn fan_out(
    client: &impl GenericClient,
    project_id: ProjectId,
    event_id: &str,
    event_type: EventType,
) -> anyhow::Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO webhook_delivery (id, endpoint_id, event_id, event_type) \
                 SELECT gen_random_uuid(), id, $4, $3 FROM ({TAKERS}) AS takers"
            ),
            &[&project_id.0, &ALL_EVENTS, &event_type.as_str(), &event_id],
        )
        .await
        .with_context(|| format!("failed to queue the deliveries of {event_id}"))?;
    Ok(())
}

/// Makes the deliveries `deliver` asks for, in the caller's transaction.
pub async fn queue(
    client: &impl GenericClient,
    project_id: ProjectId,
    deliver: &ToDeliver,
) -> anyhow::Result<Result<Vec<DeliveryQueued>, Reject>> {
    match deliver {
        ToDeliver::Ping { webhook_id } => {
            let Some(webhook) =
                vod_read_model::find_webhook(client, project_id, *webhook_id).await?
            else {
                return Ok(Err(webhook_not_found(*webhook_id)));
            };
            let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
            let body = json!({
                "id": event_id,
                "type": PING,
                "created_at": Utc::now(),
                "object": {"type": "webhook_endpoint", "id": webhook.id},
                "data": webhook,
            });
            let id = insert(client, *webhook_id, &event_id, PING, Some(&body)).await?;
            Ok(Ok(vec![DeliveryQueued {
                id,
                webhook_id: *webhook_id,
                event_id,
            }]))
        }
        ToDeliver::Event {
            event_id,
            webhook_id,
        } => {
            let Some(event) = vod_read_model::find_event(client, project_id, event_id).await?
            else {
                return Ok(Err(Reject::new(
                    RejectCode::EventNotFound,
                    format!("no event {event_id}"),
                )));
            };
            let event_type = event.event_type.as_str();
            let endpoints: Vec<WebhookId> = match webhook_id {
                Some(webhook_id) => {
                    if vod_read_model::find_webhook(client, project_id, *webhook_id)
                        .await?
                        .is_none()
                    {
                        return Ok(Err(webhook_not_found(*webhook_id)));
                    }
                    vec![*webhook_id]
                }
                None => client
                    .query(TAKERS, &[&project_id.0, &ALL_EVENTS, &event_type])
                    .await
                    .context("failed to read the event's endpoints")?
                    .iter()
                    .map(|row| row.try_get(0).map(WebhookId))
                    .collect::<Result<_, _>>()?,
            };
            let mut queued = Vec::with_capacity(endpoints.len());
            for webhook_id in endpoints {
                let id = insert(client, webhook_id, event_id, event_type, None).await?;
                queued.push(DeliveryQueued {
                    id,
                    webhook_id,
                    event_id: event_id.clone(),
                });
            }
            Ok(Ok(queued))
        }
    }
}

pub fn webhook_not_found(webhook_id: WebhookId) -> Reject {
    Reject::new(
        RejectCode::WebhookNotFound,
        format!("no webhook endpoint {webhook_id}"),
    )
}

async fn insert(
    client: &impl GenericClient,
    webhook_id: WebhookId,
    event_id: &str,
    event_type: &str,
    payload: Option<&serde_json::Value>,
) -> anyhow::Result<DeliveryId> {
    let id = DeliveryId::new();
    client
        .execute(
            "INSERT INTO webhook_delivery (id, endpoint_id, event_id, event_type, payload) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&id.0, &webhook_id.0, &event_id, &event_type, &payload],
        )
        .await
        .context("failed to queue a delivery")?;
    Ok(id)
}

/// A delivery claimed for one attempt.
#[derive(Debug)]
pub struct Claimed {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub url: String,
    /// The endpoint takes deliveries (or this is a ping, sent whatever the endpoint's state).
    pub sendable: bool,
    pub event_id: String,
    pub event_type: String,
    /// What is sent; `None` when the event is past its retention.
    pub body: Option<Vec<u8>>,
    /// The secrets in force, newest first.
    pub secrets: Vec<String>,
    /// Attempts made before this one.
    pub attempts: u32,
    /// Since the delivery was made.
    pub age: Duration,
}

/// What became of a claim.
#[derive(Debug)]
pub enum Claim {
    Claimed(Box<Claimed>),
    /// The message is behind the delivery: it was attempted since, or is settled, or gone.
    Stale,
    /// Another replica is attempting it now.
    Busy,
}

/// Claims the delivery `message` asks for, for `hold` (at least the attempt's budget), when
/// no attempt is under way and the message is the delivery's current one.
///
/// `queued` is not asked for: the message may arrive before the relay that published it
/// commits. The relay's row lock makes the claim wait for that commit.
pub async fn claim(
    client: &impl GenericClient,
    message: AttemptDelivery,
    hold: Duration,
) -> anyhow::Result<Claim> {
    let attempts = i32::try_from(message.attempts).unwrap_or(i32::MAX);
    let hold_secs = hold.as_secs_f64();
    let row = client
        .query_opt(
            "UPDATE webhook_delivery SET claimed_until = now() + make_interval(secs => $3) \
             WHERE id = $1 AND status = 'pending' AND attempts = $2 \
               AND (claimed_until IS NULL OR claimed_until < now()) \
             RETURNING endpoint_id, event_id, event_type, payload, \
                       extract(epoch FROM now() - created_at)::float8",
            &[&message.delivery_id.0, &attempts, &hold_secs],
        )
        .await
        .context("failed to claim a delivery")?;
    let Some(row) = row else {
        let current = client
            .query_opt(
                "SELECT 1 FROM webhook_delivery \
                 WHERE id = $1 AND status = 'pending' AND attempts = $2",
                &[&message.delivery_id.0, &attempts],
            )
            .await
            .context("failed to read a delivery")?;
        return Ok(if current.is_some() {
            Claim::Busy
        } else {
            Claim::Stale
        });
    };
    let webhook_id = WebhookId(row.try_get(0)?);
    let event_id: String = row.try_get(1)?;
    let event_type: String = row.try_get(2)?;
    let payload: Option<serde_json::Value> = row.try_get(3)?;
    let age_secs: f64 = row.try_get(4)?;
    let endpoint = client
        .query_one(
            "SELECT project_id, url, enabled FROM webhook_endpoint WHERE id = $1",
            &[&webhook_id.0],
        )
        .await
        .context("failed to read the delivery's endpoint")?;
    let project_id = ProjectId(endpoint.try_get(0)?);
    let enabled: bool = endpoint.try_get(2)?;
    let body = match payload {
        Some(payload) => Some(serde_json::to_vec(&payload)?),
        None => vod_read_model::find_event(client, project_id, &event_id)
            .await?
            .map(|event| serde_json::to_vec(&event))
            .transpose()?,
    };
    Ok(Claim::Claimed(Box::new(Claimed {
        id: message.delivery_id,
        webhook_id,
        url: endpoint.try_get(1)?,
        sendable: enabled || event_type == PING,
        event_id,
        event_type,
        body,
        secrets: secrets_in_force(client, webhook_id).await?,
        attempts: message.attempts,
        age: Duration::from_secs_f64(age_secs.max(0.0)),
    })))
}

async fn secrets_in_force(
    client: &impl GenericClient,
    webhook_id: WebhookId,
) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT secret FROM webhook_secret \
             WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > now()) \
             ORDER BY created_at DESC",
            &[&webhook_id.0],
        )
        .await
        .context("failed to read the endpoint's secrets")?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(anyhow::Error::from))
        .collect()
}

/// One attempt, as the delivery log shows it.
#[derive(Debug)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency: Duration,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
}

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Attempted again after this many milliseconds.
    RetryIn(u64),
    Failed,
}

/// Records the attempt (the `attempts + 1`th) and what follows it, and gives the claim back.
pub async fn settle(
    client: &impl GenericClient,
    claimed: &Claimed,
    attempt: &Attempt,
    next: Next,
) -> anyhow::Result<()> {
    let number = i32::try_from(claimed.attempts.saturating_add(1)).unwrap_or(i32::MAX);
    let latency_ms = i32::try_from(attempt.latency.as_millis()).unwrap_or(i32::MAX);
    let status_code = attempt.status_code.map(i32::from);
    client
        .execute(
            "INSERT INTO webhook_attempt \
                 (delivery_id, number, attempted_at, status_code, latency_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &claimed.id.0,
                &number,
                &attempt.attempted_at,
                &status_code,
                &latency_ms,
                &attempt.error,
            ],
        )
        .await
        .context("failed to record an attempt")?;
    let (status, retry_delay_ms) = match next {
        Next::Delivered => ("delivered", 0),
        Next::Failed => ("failed", 0),
        Next::RetryIn(delay) => ("pending", i64::try_from(delay).unwrap_or(i64::MAX)),
    };
    client
        .execute(
            "UPDATE webhook_delivery SET attempts = $2, status = $3, claimed_until = NULL, \
                 queued = ($3 <> 'pending'), retry_delay_ms = $4, \
                 finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END \
             WHERE id = $1",
            &[&claimed.id.0, &number, &status, &retry_delay_ms],
        )
        .await
        .context("failed to settle a delivery")?;
    Ok(())
}

/// Deletes finished deliveries older than `retention_secs`, at most `batch`; returns how many.
pub async fn purge_finished(
    client: &impl GenericClient,
    retention_secs: u64,
    batch: i64,
) -> anyhow::Result<u64> {
    crate::retention::delete_older(
        client,
        "DELETE FROM webhook_delivery WHERE id IN ( \
             SELECT id FROM webhook_delivery \
             WHERE finished_at < now() - make_interval(secs => $1) \
             ORDER BY finished_at LIMIT $2)",
        retention_secs,
        batch,
    )
    .await
    .context("failed to delete old deliveries")
}
