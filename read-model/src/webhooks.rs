//! Webhook endpoints and their deliveries as `GET /v1/webhooks/{id}` and
//! `GET /v1/webhooks/{id}/deliveries` show them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;
use vod_contracts::webhook::{
    AttemptView, DeliveryStatus, DeliveryView, DisabledReason, WebhookView,
};
use vod_contracts::{DeliveryId, ProjectId, WebhookId};

use crate::ViewError;

const WEBHOOK_COLUMNS: &str = "id, url, events, description, enabled, disabled_reason, \
                               failing_since, created_at, updated_at";

/// The endpoint if it is the project's.
pub async fn find_webhook(
    client: &impl GenericClient,
    project_id: ProjectId,
    webhook_id: WebhookId,
) -> Result<Option<WebhookView>, ViewError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoint WHERE id = $1 AND project_id = $2"
            ),
            &[&webhook_id.0, &project_id.0],
        )
        .await?;
    row.as_ref().map(webhook).transpose()
}

/// Newest first.
pub async fn list_webhooks(
    client: &impl GenericClient,
    project_id: ProjectId,
    limit: i64,
    offset: i64,
) -> Result<Vec<WebhookView>, ViewError> {
    let rows = client
        .query(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoint WHERE project_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            &[&project_id.0, &limit, &offset],
        )
        .await?;
    rows.iter().map(webhook).collect()
}

fn webhook(row: &tokio_postgres::Row) -> Result<WebhookView, ViewError> {
    let disabled_reason: Option<String> = row.try_get(5)?;
    Ok(WebhookView {
        id: WebhookId(row.try_get(0)?),
        url: row.try_get(1)?,
        events: row.try_get(2)?,
        description: row.try_get(3)?,
        enabled: row.try_get(4)?,
        // The schema allows no other reason.
        disabled_reason: disabled_reason.map(|_| DisabledReason::Failing),
        failing_since: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}

/// The endpoint's deliveries, newest first, each with its attempts; `None` when the
/// endpoint is not the project's.
pub async fn list_deliveries(
    client: &impl GenericClient,
    project_id: ProjectId,
    webhook_id: WebhookId,
    limit: i64,
    offset: i64,
) -> Result<Option<Vec<DeliveryView>>, ViewError> {
    if find_webhook(client, project_id, webhook_id)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT id, event_id, event_type, status, created_at, finished_at \
             FROM webhook_delivery WHERE endpoint_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            &[&webhook_id.0, &limit, &offset],
        )
        .await?;
    let ids: Vec<Uuid> = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut attempts = attempts_of(client, &ids).await?;
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get(0)?;
            let status: String = row.try_get(3)?;
            Ok(DeliveryView {
                id: DeliveryId(id),
                webhook_id,
                event_id: row.try_get(1)?,
                event_type: row.try_get(2)?,
                status: status.parse().unwrap_or(DeliveryStatus::Failed),
                created_at: row.try_get(4)?,
                finished_at: row.try_get(5)?,
                attempts: attempts.remove(&id).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, ViewError>>()
        .map(Some)
}

/// The attempts of each delivery, oldest first.
async fn attempts_of(
    client: &impl GenericClient,
    delivery_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<AttemptView>>, ViewError> {
    let rows = client
        .query(
            "SELECT delivery_id, number, attempted_at, status_code, latency_ms, error \
             FROM webhook_attempt WHERE delivery_id = ANY($1) ORDER BY delivery_id, number",
            &[&delivery_ids],
        )
        .await?;
    let mut attempts: HashMap<Uuid, Vec<AttemptView>> = HashMap::new();
    for row in &rows {
        let number: i32 = row.try_get(1)?;
        let attempted_at: DateTime<Utc> = row.try_get(2)?;
        let status_code: Option<i32> = row.try_get(3)?;
        let latency_ms: i32 = row.try_get(4)?;
        attempts
            .entry(row.try_get(0)?)
            .or_default()
            .push(AttemptView {
                number: u32::try_from(number).unwrap_or_default(),
                attempted_at,
                status_code: status_code.and_then(|code| u16::try_from(code).ok()),
                latency_ms: u64::try_from(latency_ms).unwrap_or_default(),
                error: row.try_get(5)?,
            });
    }
    Ok(attempts)
}
