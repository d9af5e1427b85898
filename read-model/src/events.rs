//! Events as `GET /v1/events/{id}` shows them, and as a webhook delivers them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use vod_contracts::event::{EventObject, EventView, ObjectType};
use vod_contracts::ProjectId;

use crate::ViewError;

/// The columns [`event_view`] reads, in its order.
pub const EVENT_COLUMNS: &str = "id, type, object_type, object_id, created_at, data";

/// One of the project's events.
pub async fn find_event(
    client: &impl GenericClient,
    project_id: ProjectId,
    event_id: &str,
) -> Result<Option<EventView>, ViewError> {
    let row = client
        .query_opt(
            &format!("SELECT {EVENT_COLUMNS} FROM event WHERE id = $1 AND project_id = $2"),
            &[&event_id, &project_id.0],
        )
        .await?;
    row.as_ref().map(event_view).transpose()
}

/// An event from a row of [`EVENT_COLUMNS`].
pub fn event_view(row: &Row) -> Result<EventView, ViewError> {
    let event_type: &str = row.try_get(1)?;
    let object_type: &str = row.try_get(2)?;
    let corrupt = |what: &str| {
        ViewError::CorruptJson(serde::de::Error::custom(format!(
            "unknown {what} in the event table"
        )))
    };
    Ok(EventView {
        id: row.try_get(0)?,
        event_type: event_type.parse().map_err(|_| corrupt("type"))?,
        object: EventObject {
            object_type: object_type
                .parse::<ObjectType>()
                .map_err(|_| corrupt("object type"))?,
            id: row.try_get(3)?,
        },
        created_at: row.try_get::<_, DateTime<Utc>>(4)?,
        data: row.try_get(5)?,
    })
}
