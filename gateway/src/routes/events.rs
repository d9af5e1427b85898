//! `/v1/events`: the project's event log, the polling counterpart of webhooks, and sending an
//! event to the webhooks again.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{QueueDeliveries, ToDeliver};
use vod_contracts::event::{is_event_id, EventList, EventType, EventView};
use vod_contracts::webhook::Redelivered;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::events;
use crate::read_model::ReadError;
use crate::state::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// The query as documented: taken as text, so that a bad value is answered
/// `validation_failed` naming its field.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The id of the last event already read: the page starts after it. Without it, the page
    /// starts at the oldest event kept.
    #[param(value_type = Option<String>, pattern = "^evt_[0-9a-f]{32}$")]
    after: Option<String>,
    /// How many events at most, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only events of these types, comma-separated without blanks (e.g.
    /// `video.ready,video.failed`). The pattern lists every type
    /// (`a_type_list_is_what_the_pattern_says` keeps it equal to `EventType::ALL`).
    #[param(
        value_type = Option<String>,
        rename = "type",
        pattern = "^(video\\.created|video\\.upload\\.created|video\\.upload\\.completed|video\\.upload\\.expired|video\\.upload\\.cancelled|video\\.processing|video\\.ready|video\\.failed|video\\.updated|video\\.deleted|direct_upload\\.created|direct_upload\\.asset_created|direct_upload\\.cancelled|webhook_endpoint\\.disabled)(,(video\\.created|video\\.upload\\.created|video\\.upload\\.completed|video\\.upload\\.expired|video\\.upload\\.cancelled|video\\.processing|video\\.ready|video\\.failed|video\\.updated|video\\.deleted|direct_upload\\.created|direct_upload\\.asset_created|direct_upload\\.cancelled|webhook_endpoint\\.disabled))*$"
    )]
    #[serde(rename = "type")]
    types: Option<String>,
}

/// `GET /v1/events`'s query, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct EventsPage {
    after: Option<String>,
    limit: i64,
    types: Vec<EventType>,
}

impl<S: Send + Sync> FromRequestParts<S> for EventsPage {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<EventsQuery>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
        EventsPage::parse(query)
    }
}

impl EventsPage {
    fn parse(query: EventsQuery) -> Result<Self, ApiError> {
        if let Some(after) = &query.after {
            if !is_event_id(after) {
                return Err(ApiError::validation(
                    "after",
                    format!("after {after:?} is not an event id (evt_ and 32 hex digits)"),
                ));
            }
        }
        let limit = match query.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    ApiError::validation(
                        "limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let types = match query.types.as_deref() {
            None => Vec::new(),
            Some(text) => parse_types(text)?,
        };
        Ok(Self {
            after: query.after,
            limit,
            types,
        })
    }
}

/// A comma-separated list of event types; an unknown one is named.
pub fn parse_types(text: &str) -> Result<Vec<EventType>, ApiError> {
    text.split(',')
        .map(|name| {
            name.parse::<EventType>().map_err(|_| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::validation(
                    "type",
                    format!(
                        "unknown event type {:?}; the types are {}",
                        name,
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// `GET /v1/events?after=&limit=&type=`.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "list_events",
    tag = "events",
    summary = "The project's events, in the order they happened",
    description = "Every change to the project's videos and direct uploads is recorded as an \
        event in the transaction that makes it, so none is lost and none is recorded twice. \
        Pass the last id read as `after` to read on: a page never skips an event, even one \
        whose change committed after later ones. Events are kept for the retention the \
        operator configured (30 days by default).",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events, oldest first.", body = EventList),
        (status = 400, description = "`validation_failed` (`after`: not an event id; `limit`; \
            `type`: an unknown type, named), `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`event_not_found`: `after` names no event of the \
            project (never, or no longer: past the retention).", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    page: EventsPage,
) -> Result<Response, ApiError> {
    let events = events::list(
        &state.pool,
        caller.project_id,
        page.after.as_deref(),
        &page.types,
        page.limit,
    )
    .await?
    .ok_or_else(|| {
        ApiError::EventNotFound(format!(
            "after names no event of the project: {} (never, or no longer: events are kept \
             for a limited time)",
            page.after.as_deref().unwrap_or_default()
        ))
    })?;
    let next_after = events.last().map(|event| event.id.clone()).or(page.after);
    Ok(Json(EventList { events, next_after }).into_response())
}

/// `GET /v1/events/{id}`.
#[utoipa::path(
    get,
    path = "/v1/events/{id}",
    operation_id = "get_event",
    tag = "events",
    summary = "One event",
    params(("id" = String, Path, description = "The event's id.", pattern = "^evt_[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "The event.", body = EventView),
        (status = 404, description = "`event_not_found`: no such event of the project (or no longer).", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::EventNotFound(format!("no such event: {id}"));
    if !is_event_id(&id) {
        return Err(not_found());
    }
    let event = events::find(&state.pool, caller.project_id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(event).into_response())
}

/// `POST /v1/events/{id}/redeliver`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RedeliverQuery {
    /// Only to this endpoint (enabled or not); without it, to every enabled endpoint of the
    /// project that takes the event's type.
    #[param(value_type = Option<uuid::Uuid>)]
    webhook_id: Option<String>,
}

/// `POST /v1/events/{id}/redeliver`.
#[utoipa::path(
    post,
    path = "/v1/events/{id}/redeliver",
    operation_id = "redeliver_event",
    tag = "events",
    summary = "Send an event to webhook endpoints again",
    description = "Each endpoint gets a new delivery of the same event (the same `id` and \
        `Vod-Event-Id`), with attempts and retries of its own.",
    params(
        ("id" = String, Path, description = "The event's id.", pattern = "^evt_[0-9a-f]{32}$"),
        RedeliverQuery,
    ),
    responses(
        (status = 202, description = "The deliveries queued (none when no endpoint takes the event).", body = Redelivered),
        (status = 400, description = "`invalid_request`.", body = ErrorBody),
        (status = 404, description = "`event_not_found` (no such event of the project, or no longer), `webhook_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<RedeliverQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    if !is_event_id(&id) {
        return Err(ApiError::EventNotFound(format!("no such event: {id}")));
    }
    let webhook_id = query
        .webhook_id
        .as_deref()
        .map(super::webhooks::parse_id)
        .transpose()?;
    // An event that is not the project's (or no longer kept) is told at once, without a
    // command; the uploader checks again in the transaction that queues the deliveries.
    let client = state.pool.get().await.map_err(ReadError::from)?;
    if vod_read_model::find_event(&client, caller.project_id, &id)
        .await
        .map_err(ReadError::from)?
        .is_none()
    {
        return Err(ApiError::EventNotFound(format!("no such event: {id}")));
    }
    drop(client);
    let redelivered = state
        .uploader
        .call(&QueueDeliveries {
            project_id: caller.project_id,
            deliver: ToDeliver::Event {
                event_id: id,
                webhook_id,
            },
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(redelivered)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(after: Option<&str>, limit: Option<&str>, types: Option<&str>) -> EventsQuery {
        EventsQuery {
            after: after.map(str::to_owned),
            limit: limit.map(str::to_owned),
            types: types.map(str::to_owned),
        }
    }

    fn refused_field(result: Result<EventsPage, ApiError>) -> (String, String) {
        match result {
            Err(ApiError::ValidationFailed { field, message }) => (field, message),
            other => panic!("expected a validation failure, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_type_is_refused_by_name() {
        let (field, message) = refused_field(EventsPage::parse(query(
            None,
            None,
            Some("video.ready,video.exploded"),
        )));
        assert_eq!(field, "type");
        assert!(message.contains("\"video.exploded\""), "{message}");
    }

    #[test]
    fn types_are_comma_separated() {
        let page =
            EventsPage::parse(query(None, None, Some("video.ready,video.failed"))).expect("valid");
        assert_eq!(
            page.types,
            vec![EventType::VideoReady, EventType::VideoFailed]
        );
        assert_eq!(page.limit, DEFAULT_LIMIT);
        for refused in ["", "video.ready,", "video.ready, video.failed"] {
            assert_eq!(
                refused_field(EventsPage::parse(query(None, None, Some(refused)))).0,
                "type",
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_type_list_is_what_the_pattern_says() {
        use utoipa::IntoParams;
        let documented = EventsQuery::into_params(|| None)
            .into_iter()
            .find(|param| param.name == "type")
            .expect("a type parameter");
        let documented = serde_json::to_value(&documented).expect("JSON");
        let pattern = documented["schema"]["pattern"].as_str().expect("a pattern");
        let pattern = regex::Regex::new(pattern).expect("a regular expression");
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        for event_type in &all {
            assert!(pattern.is_match(event_type), "{event_type}");
        }
        assert!(pattern.is_match(&all.join(",")));
        for refused in [
            "",
            "video.exploded",
            "video.ready,",
            "video.ready, video.failed",
        ] {
            assert!(!pattern.is_match(refused), "{refused:?}");
        }
        let parsed = parse_types(&all.join(",")).expect("every type");
        assert_eq!(parsed, EventType::ALL);
    }

    #[test]
    fn a_malformed_cursor_or_limit_is_refused() {
        assert_eq!(
            refused_field(EventsPage::parse(query(Some("evt_1"), None, None))).0,
            "after"
        );
        for limit in ["0", "1001", "ten"] {
            assert_eq!(
                refused_field(EventsPage::parse(query(None, Some(limit), None))).0,
                "limit"
            );
        }
    }
}
