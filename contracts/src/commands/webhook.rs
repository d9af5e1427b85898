//! A project's webhook endpoints, and deliveries asked for by hand. The gateway checked every
//! URL against its target policy; the uploader makes the signing secrets.

use serde::{Deserialize, Serialize};

use super::json_request;
use crate::webhook::{Redelivered, SecretRotated, WebhookCreated, WebhookView};
use crate::{ProjectId, WebhookId};

/// Store an endpoint with a new signing secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateWebhook {
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    pub url: String,
    /// Checked by `webhook::check_event_filter`.
    pub events: Vec<String>,
    pub description: String,
}

/// Change what is given of an endpoint of the project; enabling it clears why it was
/// disabled and since when it failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateWebhook {
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Delete an endpoint of the project with its secrets and deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeleteWebhook {
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeleted {}

/// Give an endpoint a new signing secret; the ones it had sign beside it for
/// `overlap_secs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotateWebhookSecret {
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    pub overlap_secs: u64,
}

/// What to deliver again, or for the first time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToDeliver {
    /// A `ping` to one endpoint, enabled or not.
    Ping { webhook_id: WebhookId },
    /// An event of the log to one endpoint, or to every enabled endpoint that takes its type.
    Event {
        event_id: String,
        webhook_id: Option<WebhookId>,
    },
}

/// Queue deliveries of the project, as new deliveries with attempts of their own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueDeliveries {
    pub project_id: ProjectId,
    pub deliver: ToDeliver,
}

json_request!(CreateWebhook, CreateWebhook => WebhookCreated);
json_request!(UpdateWebhook, UpdateWebhook => WebhookView);
json_request!(DeleteWebhook, DeleteWebhook => WebhookDeleted);
json_request!(RotateWebhookSecret, RotateWebhookSecret => SecretRotated);
json_request!(QueueDeliveries, QueueDeliveries => Redelivered);
