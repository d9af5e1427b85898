//! The events outbox: every event is inserted by the transition that causes it, in the
//! caller's transaction (`transitions.rs`, `direct_uploads.rs`), so that a change committed has
//! exactly its events and a change rolled back has none. A transition that changes nothing (a
//! redelivered command, a late outcome) records nothing.
//!
//! An event's `data` is rendered here, inside that transaction, by the same code that answers
//! `GET /v1/videos/{id}` (`vod_read_model`), so it shows the object as a read at that moment
//! would, with the type's own fields added. The same transaction makes the event's webhook
//! deliveries (`webhooks::deliveries::fan_out`). Retention is `purge_expired`, a scheduler job.

use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use uuid::Uuid;
use vod_contracts::event::EventType;
use vod_contracts::{DirectUploadId, FlowId, ProjectId, VideoId, WebhookId};
use vod_read_model::Deleted;

use crate::metrics::{Entity, StateTransitions};

/// What a transition records beside the rows it changes: the change, counted in
/// `uploader_state_transitions_total`, and its event.
#[derive(Clone, Debug)]
pub struct Recorder {
    transitions: StateTransitions,
    /// The base of playback URLs in an event's video, as the gateway's
    /// (`GATEWAY_HOLDER_PUBLIC_URL`).
    holder_public_url: Arc<str>,
}

/// What a video's event adds to the video.
#[derive(Debug, Default)]
pub struct Details<'a> {
    /// The flow the event is about.
    pub flow_id: Option<FlowId>,
    /// Why it failed or expired.
    pub reason: Option<&'a str>,
}

impl Recorder {
    pub fn new(transitions: StateTransitions, holder_public_url: &str) -> Self {
        Self {
            transitions,
            holder_public_url: holder_public_url.into(),
        }
    }

    /// Counts a status change written.
    pub fn count(&self, entity: Entity, from: &str, to: &str) {
        self.transitions.record(entity, from, to);
    }

    /// Records an event about a video, with the video as it is now in the caller's
    /// transaction (a deleted one too). A video that no longer exists records nothing.
    pub async fn video_event(
        &self,
        client: &impl GenericClient,
        video_id: VideoId,
        event_type: EventType,
        details: Details<'_>,
    ) -> anyhow::Result<()> {
        let Some(row) = client
            .query_opt("SELECT project_id FROM video WHERE id = $1", &[&video_id.0])
            .await
            .context("failed to read the video's project")?
        else {
            return Ok(());
        };
        let project_id = ProjectId(row.try_get(0)?);
        let Some(video) = vod_read_model::find_video(
            client,
            project_id,
            video_id,
            &self.holder_public_url,
            Deleted::Shown,
        )
        .await
        .context("failed to render the event's video")?
        else {
            return Ok(());
        };
        let mut data = match serde_json::to_value(&video)? {
            Value::Object(fields) => fields,
            _ => Map::new(),
        };
        if let Some(flow_id) = details.flow_id {
            if let Some(flow) = video.flows.iter().find(|flow| flow.id == flow_id) {
                data.insert("flow_id".to_owned(), serde_json::to_value(flow_id)?);
                if let Some(path) = flow.encode_path {
                    data.insert("encode_path".to_owned(), serde_json::to_value(path)?);
                }
            }
        }
        if let Some(reason) = details.reason {
            data.insert("reason".to_owned(), Value::from(reason));
        }
        insert(
            client,
            project_id,
            event_type,
            video_id.0,
            Value::Object(data),
        )
        .await
    }

    /// Records an event about a direct upload, as the API shows it now.
    pub async fn direct_upload_event(
        &self,
        client: &impl GenericClient,
        project_id: ProjectId,
        direct_upload_id: DirectUploadId,
        event_type: EventType,
    ) -> anyhow::Result<()> {
        let shown = vod_read_model::find_direct_upload(client, project_id, direct_upload_id)
            .await
            .context("failed to render the event's direct upload")?;
        insert_shown(client, project_id, event_type, direct_upload_id.0, shown).await
    }

    /// Records an event about a webhook endpoint, as the API shows it now.
    pub async fn webhook_event(
        &self,
        client: &impl GenericClient,
        project_id: ProjectId,
        webhook_id: WebhookId,
        event_type: EventType,
    ) -> anyhow::Result<()> {
        let shown = vod_read_model::find_webhook(client, project_id, webhook_id)
            .await
            .context("failed to render the event's webhook endpoint")?;
        insert_shown(client, project_id, event_type, webhook_id.0, shown).await
    }
}

/// Records an event whose `data` is `shown`, the object as the API shows it; none when the
/// object is gone.
async fn insert_shown<T: serde::Serialize>(
    client: &impl GenericClient,
    project_id: ProjectId,
    event_type: EventType,
    object_id: Uuid,
    shown: Option<T>,
) -> anyhow::Result<()> {
    let Some(shown) = shown else {
        return Ok(());
    };
    insert(
        client,
        project_id,
        event_type,
        object_id,
        serde_json::to_value(&shown)?,
    )
    .await
}
/// A new event id: `evt_` and 128 random bits in hex.
fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

async fn insert(
    client: &impl GenericClient,
    project_id: ProjectId,
    event_type: EventType,
    object_id: uuid::Uuid,
    data: Value,
) -> anyhow::Result<()> {
    let event_id = new_event_id();
    client
        .execute(
            "INSERT INTO event (id, project_id, type, object_type, object_id, data) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &event_id,
                &project_id.0,
                &event_type.as_str(),
                &event_type.object_type().as_str(),
                &object_id,
                &data,
            ],
        )
        .await
        .with_context(|| format!("failed to record the event {event_type}"))?;
    crate::webhooks::deliveries::fan_out(client, project_id, &event_id, event_type).await
}

/// Deletes events older than `retention_secs`, at most `batch` of them; returns how many.
pub async fn purge_expired(
    client: &impl GenericClient,
    retention_secs: u64,
    batch: i64,
) -> anyhow::Result<u64> {
    crate::retention::delete_older(
        client,
        "DELETE FROM event WHERE seq IN ( \
             SELECT seq FROM event \
             WHERE created_at < now() - make_interval(secs => $1) \
             ORDER BY created_at LIMIT $2)",
        retention_secs,
        batch,
    )
    .await
    .context("failed to delete expired events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_random_and_well_formed() {
        let first = new_event_id();
        assert!(vod_contracts::event::is_event_id(&first), "{first}");
        assert_ne!(first, new_event_id());
    }
}
