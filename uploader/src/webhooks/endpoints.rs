//! Writes of webhook endpoints and their secrets, in the caller's transaction; the gateway
//! checked the URL against its target policy and the event filter's form.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use vod_contracts::commands::{CreateWebhook, Reject, RejectCode, UpdateWebhook};
use vod_contracts::event::EventType;
use vod_contracts::webhook::{
    check_event_filter, DisabledReason, SecretRotated, WebhookCreated, WebhookView,
};
use vod_contracts::{ProjectId, WebhookId};

use super::deliveries::webhook_not_found;
use super::signature::new_secret;
use crate::events::Recorder;

/// Stores the endpoint with a new secret, and answers both.
pub async fn create(
    client: &impl GenericClient,
    command: &CreateWebhook,
) -> anyhow::Result<Result<WebhookCreated, Reject>> {
    if let Err(message) = check_event_filter(&command.events) {
        return Ok(Err(Reject::new(RejectCode::InvalidCommand, message)));
    }
    let inserted = client
        .execute(
            "INSERT INTO webhook_endpoint (id, project_id, url, events, description) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            &[
                &command.webhook_id.0,
                &command.project_id.0,
                &command.url,
                &command.events,
                &command.description,
            ],
        )
        .await
        .context("failed to store a webhook endpoint")?;
    if inserted == 0 {
        // A redelivered command: the endpoint and its secret were made, and the secret is
        // not shown twice.
        return Ok(Err(Reject::new(
            RejectCode::InvalidCommand,
            format!("webhook endpoint {} exists already", command.webhook_id),
        )));
    }
    let secret = add_secret(client, command.webhook_id).await?;
    let webhook = shown(client, command.project_id, command.webhook_id).await?;
    Ok(Ok(WebhookCreated { webhook, secret }))
}

/// Changes what `command` gives; enabling clears why it was disabled and its failing time.
pub async fn update(
    client: &impl GenericClient,
    command: &UpdateWebhook,
) -> anyhow::Result<Result<WebhookView, Reject>> {
    if let Some(events) = &command.events {
        if let Err(message) = check_event_filter(events) {
            return Ok(Err(Reject::new(RejectCode::InvalidCommand, message)));
        }
    }
    let updated = client
        .execute(
            "UPDATE webhook_endpoint SET \
                 url = COALESCE($3, url), \
                 events = COALESCE($4, events), \
                 description = COALESCE($5, description), \
                 enabled = COALESCE($6, enabled), \
                 disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END, \
                 failing_since = CASE WHEN $6 AND NOT enabled THEN NULL ELSE failing_since END, \
                 updated_at = now() \
             WHERE id = $1 AND project_id = $2",
            &[
                &command.webhook_id.0,
                &command.project_id.0,
                &command.url,
                &command.events,
                &command.description,
                &command.enabled,
            ],
        )
        .await
        .context("failed to update a webhook endpoint")?;
    if updated == 0 {
        return Ok(Err(webhook_not_found(command.webhook_id)));
    }
    Ok(Ok(
        shown(client, command.project_id, command.webhook_id).await?
    ))
}

/// Deletes the endpoint with its secrets and deliveries; `false` when it is not the
/// project's.
pub async fn delete(
    client: &impl GenericClient,
    project_id: ProjectId,
    webhook_id: WebhookId,
) -> anyhow::Result<bool> {
    let deleted = client
        .execute(
            "DELETE FROM webhook_endpoint WHERE id = $1 AND project_id = $2",
            &[&webhook_id.0, &project_id.0],
        )
        .await
        .context("failed to delete a webhook endpoint")?;
    Ok(deleted > 0)
}

/// Gives the endpoint a new secret; those it had expire `overlap_secs` from now (or earlier,
/// when they were to expire earlier already).
pub async fn rotate(
    client: &impl GenericClient,
    project_id: ProjectId,
    webhook_id: WebhookId,
    overlap_secs: u64,
) -> anyhow::Result<Result<SecretRotated, Reject>> {
    let owned = client
        .query_opt(
            "SELECT 1 FROM webhook_endpoint WHERE id = $1 AND project_id = $2 FOR UPDATE",
            &[&webhook_id.0, &project_id.0],
        )
        .await
        .context("failed to read a webhook endpoint")?;
    if owned.is_none() {
        return Ok(Err(webhook_not_found(webhook_id)));
    }
    let overlap = overlap_secs as f64;
    let row = client
        .query_one(
            "WITH expired AS ( \
                 UPDATE webhook_secret \
                 SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), \
                                        now() + make_interval(secs => $2)) \
                 WHERE endpoint_id = $1) \
             SELECT now() + make_interval(secs => $2)",
            &[&webhook_id.0, &overlap],
        )
        .await
        .context("failed to expire the endpoint's secrets")?;
    let secret = add_secret(client, webhook_id).await?;
    Ok(Ok(SecretRotated {
        secret,
        previous_secrets_expire_at: row.try_get(0)?,
    }))
}

async fn add_secret(client: &impl GenericClient, webhook_id: WebhookId) -> anyhow::Result<String> {
    let secret = new_secret()?;
    client
        .execute(
            "INSERT INTO webhook_secret (endpoint_id, secret) VALUES ($1, $2)",
            &[&webhook_id.0, &secret],
        )
        .await
        .context("failed to store a signing secret")?;
    Ok(secret)
}

async fn shown(
    client: &impl GenericClient,
    project_id: ProjectId,
    webhook_id: WebhookId,
) -> anyhow::Result<WebhookView> {
    vod_read_model::find_webhook(client, project_id, webhook_id)
        .await?
        .with_context(|| format!("webhook endpoint {webhook_id} vanished in its transaction"))
}

/// Locks the endpoint's row for a change of its own fields, if it is still there.
pub async fn lock(client: &impl GenericClient, webhook_id: WebhookId) -> anyhow::Result<()> {
    client
        .query_opt(
            "SELECT 1 FROM webhook_endpoint WHERE id = $1 FOR NO KEY UPDATE",
            &[&webhook_id.0],
        )
        .await
        .context("failed to lock an endpoint")?;
    Ok(())
}

/// A delivery to the endpoint succeeded: it is failing no more.
pub async fn succeeded(client: &impl GenericClient, webhook_id: WebhookId) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE webhook_endpoint SET failing_since = NULL \
             WHERE id = $1 AND failing_since IS NOT NULL",
            &[&webhook_id.0],
        )
        .await
        .context("failed to clear an endpoint's failing time")?;
    Ok(())
}

/// An attempt to the endpoint failed: it is failing from now if it was not, and is disabled,
/// with an event saying so, once it has been failing for `disable_after_secs`. `true` when
/// this disabled it.
pub async fn failed(
    client: &impl GenericClient,
    webhook_id: WebhookId,
    disable_after_secs: u64,
    recorder: &Recorder,
) -> anyhow::Result<bool> {
    let disable_after = disable_after_secs as f64;
    let row = client
        .query_opt(
            "UPDATE webhook_endpoint SET failing_since = COALESCE(failing_since, now()) \
             WHERE id = $1 \
             RETURNING project_id, \
                       enabled AND failing_since <= now() - make_interval(secs => $2)",
            &[&webhook_id.0, &disable_after],
        )
        .await
        .context("failed to record an endpoint failing")?;
    let Some(row) = row else {
        return Ok(false);
    };
    let due: bool = row.try_get(1)?;
    if !due {
        return Ok(false);
    }
    let disabled = client
        .execute(
            "UPDATE webhook_endpoint \
             SET enabled = false, disabled_reason = $2, updated_at = now() \
             WHERE id = $1 AND enabled",
            &[&webhook_id.0, &DisabledReason::Failing.as_str()],
        )
        .await
        .context("failed to disable an endpoint")?;
    if disabled == 0 {
        return Ok(false);
    }
    let project_id = ProjectId(row.try_get(0)?);
    recorder
        .webhook_event(
            client,
            project_id,
            webhook_id,
            EventType::WebhookEndpointDisabled,
        )
        .await?;
    Ok(true)
}
