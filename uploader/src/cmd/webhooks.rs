//! The commands about webhook endpoints and deliveries asked for by hand; what they write is in
//! `crate::webhooks`.

use anyhow::Context;
use vod_contracts::commands::{
    CreateWebhook, DeleteWebhook, QueueDeliveries, RotateWebhookSecret, UpdateWebhook,
    WebhookDeleted,
};
use vod_contracts::webhook::{Redelivered, SecretRotated, WebhookCreated, WebhookView};

use super::Handle;
use crate::handlers::{HandlerError, Handlers};
use crate::webhooks::{deliveries, endpoints};

impl Handle for CreateWebhook {
    async fn handle(self, handlers: &Handlers) -> Result<WebhookCreated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let created = endpoints::create(&tx, &self).await??;
        tx.commit().await.context("failed to commit the webhook")?;
        tracing::info!(project_id = %self.project_id, webhook_id = %self.webhook_id, "webhook endpoint created");
        Ok(created)
    }
}

impl Handle for UpdateWebhook {
    async fn handle(self, handlers: &Handlers) -> Result<WebhookView, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        let updated = endpoints::update(&client, &self).await??;
        tracing::info!(project_id = %self.project_id, webhook_id = %self.webhook_id, "webhook endpoint updated");
        Ok(updated)
    }
}

impl Handle for DeleteWebhook {
    async fn handle(self, handlers: &Handlers) -> Result<WebhookDeleted, HandlerError> {
        let client = handlers.pg.get().await.context("no database connection")?;
        if !endpoints::delete(&client, self.project_id, self.webhook_id).await? {
            return Err(deliveries::webhook_not_found(self.webhook_id).into());
        }
        tracing::info!(project_id = %self.project_id, webhook_id = %self.webhook_id, "webhook endpoint deleted");
        Ok(WebhookDeleted {})
    }
}

impl Handle for RotateWebhookSecret {
    async fn handle(self, handlers: &Handlers) -> Result<SecretRotated, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let rotated =
            endpoints::rotate(&tx, self.project_id, self.webhook_id, self.overlap_secs).await??;
        tx.commit()
            .await
            .context("failed to commit the rotated secret")?;
        tracing::info!(project_id = %self.project_id, webhook_id = %self.webhook_id, "webhook secret rotated");
        Ok(rotated)
    }
}

impl Handle for QueueDeliveries {
    async fn handle(self, handlers: &Handlers) -> Result<Redelivered, HandlerError> {
        let mut client = handlers.pg.get().await.context("no database connection")?;
        let tx = client.transaction().await.context("failed to begin")?;
        let deliveries = deliveries::queue(&tx, self.project_id, &self.deliver).await??;
        tx.commit()
            .await
            .context("failed to commit the deliveries")?;
        tracing::info!(project_id = %self.project_id, deliveries = deliveries.len(), "webhook deliveries queued by hand");
        Ok(Redelivered { deliveries })
    }
}
