//! Events, as `GET /v1/events` shows them: what happened to a project's videos and direct
//! uploads, recorded by the uploader in the transaction of the change.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::status::{status_enum, UnknownStatus};

status_enum!(
    /// What an event reports.
    EventType {
        /// A video was made (`POST /v1/videos`, or an upload without `video_id`).
        VideoCreated => "video.created",
        /// An upload (a flow of the video) was created.
        VideoUploadCreated => "video.upload.created",
        /// The last byte of an upload arrived.
        VideoUploadCompleted => "video.upload.completed",
        /// An upload received nothing for too long and was given up.
        VideoUploadExpired => "video.upload.expired",
        /// An upload was terminated (tus `DELETE`, or its video deleted).
        VideoUploadCancelled => "video.upload.cancelled",
        /// A flow started processing.
        VideoProcessing => "video.processing",
        /// A flow is ready: the video plays.
        VideoReady => "video.ready",
        /// A flow failed, with the reason.
        VideoFailed => "video.failed",
        /// The video's title, description or passthrough changed.
        VideoUpdated => "video.updated",
        /// The video was deleted; `data` is the video as it was.
        VideoDeleted => "video.deleted",
        /// A direct upload was made.
        DirectUploadCreated => "direct_upload.created",
        /// A direct upload's URL created its upload and video.
        DirectUploadAssetCreated => "direct_upload.asset_created",
        /// A direct upload was cancelled.
        DirectUploadCancelled => "direct_upload.cancelled",
        /// A webhook endpoint was disabled because its deliveries kept failing.
        WebhookEndpointDisabled => "webhook_endpoint.disabled",
    }
);

impl EventType {
    /// What an event of this type is about.
    pub fn object_type(self) -> ObjectType {
        match self {
            EventType::DirectUploadCreated
            | EventType::DirectUploadAssetCreated
            | EventType::DirectUploadCancelled => ObjectType::DirectUpload,
            EventType::WebhookEndpointDisabled => ObjectType::WebhookEndpoint,
            _ => ObjectType::Video,
        }
    }
}

status_enum!(
    /// What an event is about.
    ObjectType {
        Video => "video",
        DirectUpload => "direct_upload",
        WebhookEndpoint => "webhook_endpoint",
    }
);

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventObject {
    #[serde(rename = "type")]
    pub object_type: ObjectType,
    pub id: Uuid,
}

/// `GET /v1/events/{id}`, one element of `GET /v1/events`, and the body of a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// `evt_` and 32 hex digits; a delivery sent again keeps it.
    #[cfg_attr(feature = "openapi", schema(pattern = "^evt_[0-9a-f]{32}$"))]
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    pub object: EventObject,
    /// For a video's event, the video as `GET /v1/videos/{id}` showed it at that moment, with
    /// what the type adds: `flow_id` (the flow concerned), `reason` (`video.failed`,
    /// `video.upload.expired`), `encode_path` (`video.processing`). For a direct upload's, the
    /// direct upload as `GET /v1/direct-uploads/{id}` shows it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// `GET /v1/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventList {
    /// In the order they happened, oldest first.
    pub events: Vec<EventView>,
    /// The id to pass as `after` for the next page: the last event's, or `after` itself when
    /// there is nothing new (`null` when there was neither).
    pub next_after: Option<String>,
}

/// An event id: `evt_` and 32 lowercase hex digits.
pub fn is_event_id(text: &str) -> bool {
    text.strip_prefix("evt_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_spelling() {
        for event_type in EventType::ALL {
            assert_eq!(
                event_type.as_str().parse::<EventType>().ok(),
                Some(*event_type)
            );
        }
        assert!("video.exploded".parse::<EventType>().is_err());
    }

    #[test]
    fn direct_upload_events_are_about_direct_uploads() {
        assert_eq!(
            EventType::DirectUploadCancelled.object_type(),
            ObjectType::DirectUpload
        );
        assert_eq!(EventType::VideoReady.object_type(), ObjectType::Video);
    }

    #[test]
    fn event_ids_are_evt_and_32_hex_digits() {
        assert!(is_event_id("evt_0123456789abcdef0123456789abcdef"));
        assert!(!is_event_id("evt_0123456789ABCDEF0123456789abcdef"));
        assert!(!is_event_id("evt_0123"));
        assert!(!is_event_id("0123456789abcdef0123456789abcdef"));
    }
}
