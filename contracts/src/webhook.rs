//! Webhook endpoints and their deliveries, as the public JSON API shows them, and the message
//! that asks an uploader to attempt a delivery.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::status::{status_enum, UnknownStatus};
use crate::{DeliveryId, WebhookId};

/// In an endpoint's `events`: every type, those added later too.
pub const ALL_EVENTS: &str = "*";

/// The type of the event `POST /v1/webhooks/{id}/test` sends.
pub const PING: &str = "ping";

/// The prefix of a signing secret; 64 hex digits (256 random bits) follow it.
pub const SECRET_PREFIX: &str = "whsec_";

/// The headers of a delivery.
pub const EVENT_ID_HEADER: &str = "Vod-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Vod-Event-Type";
pub const SIGNATURE_HEADER: &str = "Vod-Signature";

/// Why vod disabled an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// Its deliveries failed for longer than the configured period, without a success.
    Failing,
}

impl DisabledReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Failing => "failing",
        }
    }
}

/// `GET /v1/webhooks/{id}`: an endpoint, without its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    pub id: WebhookId,
    pub url: String,
    /// The event types it receives; `["*"]` is every type.
    pub events: Vec<String>,
    pub description: String,
    /// A disabled endpoint receives nothing (its pending deliveries fail) until enabled again
    /// by `PATCH`.
    pub enabled: bool,
    /// Set when vod disabled it: `failing`.
    pub disabled_reason: Option<DisabledReason>,
    /// Since when its deliveries fail without a success in between; `null` while they succeed.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/webhooks`: the endpoint, and its signing secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` and 64 hex digits: the HMAC-SHA256 key of `Vod-Signature`.
    pub secret: String,
}

/// `GET /v1/webhooks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretRotated {
    /// The new secret, shown this once.
    pub secret: String,
    /// Until when the secrets it replaces sign deliveries too (a second `v1` in
    /// `Vod-Signature`).
    pub previous_secrets_expire_at: DateTime<Utc>,
}

status_enum!(
    /// Where a delivery stands.
    DeliveryStatus {
        /// Not delivered yet; attempted again after a failure until the retry period ends.
        Pending => "pending",
        /// A 2xx answered an attempt.
        Delivered => "delivered",
        /// Every attempt failed until the retry period ended, or the endpoint was disabled or
        /// is gone.
        Failed => "failed",
    }
);

/// One attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub number: u32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status; `null` when it did not answer.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// Why the attempt failed; `null` when it succeeded.
    pub error: Option<String>,
}

/// One event sent to one endpoint, with its attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    /// `Vod-Event-Id`, the same on every attempt.
    pub event_id: String,
    /// An event type, or `ping`.
    pub event_type: String,
    pub status: DeliveryStatus,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

/// `GET /v1/webhooks/{id}/deliveries`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// A delivery made by `POST /v1/webhooks/{id}/test` or `POST /v1/events/{id}/redeliver`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryQueued {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: String,
}

/// `POST /v1/events/{id}/redeliver`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Redelivered {
    pub deliveries: Vec<DeliveryQueued>,
}

/// The message that asks an uploader to attempt a delivery, once `attempts` attempts were
/// made: a copy whose number is behind the delivery's is stale and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptDelivery {
    pub delivery_id: DeliveryId,
    pub attempts: u32,
}

/// The schema of an endpoint's `events`: `["*"]`, or known event types, each once.
#[cfg(feature = "openapi")]
pub struct EventFilterSchema;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for EventFilterSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        let everything = ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([ALL_EVENTS])),
            )
            .min_items(Some(1))
            .max_items(Some(1))
            .description(Some("Every type, those added later too."));
        let types = ArrayBuilder::new()
            .items(EventType::schema())
            .min_items(Some(1))
            .max_items(Some(EventType::ALL.len()))
            .unique_items(true)
            .description(Some("These types, each once."));
        OneOfBuilder::new().item(everything).item(types).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for EventFilterSchema {}

/// What an endpoint's `events` may hold: `*` alone, or known event types, each once.
pub fn check_event_filter(events: &[String]) -> Result<(), String> {
    if events.is_empty() {
        return Err("events must name at least one event type, or \"*\"".to_owned());
    }
    if events.iter().any(|event| event == ALL_EVENTS) {
        if events.len() > 1 {
            return Err("events: \"*\" stands alone".to_owned());
        }
        return Ok(());
    }
    for (at, event) in events.iter().enumerate() {
        event
            .parse::<EventType>()
            .map_err(|UnknownStatus(_)| format!("events: {event:?} is not an event type"))?;
        if events[..at].contains(event) {
            return Err(format!("events: {event:?} is named twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn an_event_filter_names_known_types_once_or_everything() {
        assert!(check_event_filter(&events(&["*"])).is_ok());
        assert!(check_event_filter(&events(&["video.ready", "video.failed"])).is_ok());
        let unknown = check_event_filter(&events(&["video.ready", "video.exploded"]));
        assert!(unknown
            .expect_err("an unknown type is refused")
            .contains("video.exploded"));
        assert!(check_event_filter(&events(&[])).is_err());
        assert!(check_event_filter(&events(&["*", "video.ready"])).is_err());
        assert!(check_event_filter(&events(&["video.ready", "video.ready"])).is_err());
        assert!(check_event_filter(&events(&["ping"])).is_err());
    }
}
