//! `/v1/webhooks`: a project's webhook endpoints, their secrets and their delivery log. The
//! uploaders deliver; see `uploader/src/webhooks/`.

use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::Validate;
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{
    CreateWebhook, DeleteWebhook, QueueDeliveries, RotateWebhookSecret, ToDeliver, UpdateWebhook,
};
use vod_contracts::webhook::{
    check_event_filter, DeliveryList, DeliveryQueued, EventFilterSchema, SecretRotated,
    WebhookCreated, WebhookList, WebhookView, ALL_EVENTS,
};
use vod_contracts::WebhookId;

use super::json::{not_null, ValidJson};
use super::page::{Page, PageQuery};
use super::videos::valid_description;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::read_model::ReadError;
use crate::state::AppState;

const MAX_DESCRIPTION_CHARS: u64 = 500;
/// The longest overlap a rotation may ask for: 7 days.
const MAX_OVERLAP_SECS: u64 = 7 * 24 * 3600;

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CreateWebhookRequest {
    /// Where events are posted: `https` (or `http` where the operator allows it), resolving
    /// to public addresses only.
    #[schema(max_length = 2048, example = "https://app.example/hooks/vod")]
    url: String,
    /// The event types to send, or `["*"]` (the default) for every type.
    #[schema(value_type = Option<EventFilterSchema>, nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    events: Option<Vec<String>>,
    /// For the project's own use; at most 500 characters, without control characters other
    /// than line breaks and tabs, or bidirectional formatting characters.
    #[schema(
        nullable = false,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
    )]
    #[serde(default, deserialize_with = "not_null")]
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "description must be at most 500 characters"),
        custom(function = "valid_description")
    )]
    description: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`: each field present is changed, each absent one kept.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct UpdateWebhookRequest {
    #[schema(nullable = false, max_length = 2048)]
    #[serde(default, deserialize_with = "not_null")]
    url: Option<String>,
    #[schema(value_type = Option<EventFilterSchema>, nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    events: Option<Vec<String>>,
    #[schema(
        nullable = false,
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
    )]
    #[serde(default, deserialize_with = "not_null")]
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "description must be at most 500 characters"),
        custom(function = "valid_description")
    )]
    description: Option<String>,
    /// `true` enables an endpoint (also one vod disabled for failing); `false` disables it.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "not_null")]
    enabled: Option<bool>,
}

/// `POST /v1/webhooks/{id}/rotate-secret`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotateQuery {
    /// Seconds the replaced secrets keep signing beside the new one, 0 to 604800; the
    /// operator's default (24 hours) when left out.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 604800)]
    overlap_seconds: Option<String>,
}

/// The URL as it is stored, if the target policy accepts it and what it resolves to.
async fn checked_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    let settings = &state.config.webhooks;
    let policy = settings.policy();
    let refused = |message: String| ApiError::validation("url", format!("url refused: {message}"));
    let parsed = vod_infra::public_target::check_url(url, &policy)
        .map_err(|refusal| refused(refusal.to_string()))?;
    let resolve_timeout = vod_infra::config::millis(settings.resolve_timeout_ms);
    tokio::time::timeout(
        resolve_timeout,
        vod_infra::public_target::resolve_public(&parsed, &policy),
    )
    .await
    .map_err(|_| refused(format!("{url} did not resolve in time")))?
    .map_err(|refusal| refused(refusal.to_string()))?;
    Ok(parsed.to_string())
}

fn checked_events(events: Vec<String>) -> Result<Vec<String>, ApiError> {
    check_event_filter(&events).map_err(|message| ApiError::validation("events", message))?;
    Ok(events)
}

/// `POST /v1/webhooks`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "create_webhook",
    tag = "webhooks",
    summary = "Add a webhook endpoint",
    description = "The project's events of the types in `events` are posted to `url` from \
        then on, each signed in `Vod-Signature` with the answer's `secret`, which is shown \
        this once. A URL is refused when it is not `https` (unless the operator allows \
        `http`), carries credentials, or resolves to a loopback, private, link-local or \
        metadata address; its addresses are checked again at every delivery.",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "The endpoint, with its signing secret.", body = WebhookCreated, headers(
            ("Location" = String, description = "`/v1/webhooks/{id}`."),
        )),
        (status = 400, description = "`validation_failed` (`url`, `events` or `description` in `field`, the reason in `message`), `invalid_json`, `invalid_request`.", body = ErrorBody),
        (status = 409, description = "`webhook_limit_reached`: the project has as many endpoints as allowed.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(request): ValidJson<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let events = checked_events(
        request
            .events
            .unwrap_or_else(|| vec![ALL_EVENTS.to_owned()]),
    )?;
    let url = checked_url(&state, &request.url).await?;
    let max = state.config.webhooks.max_per_project;
    if count(&state, &caller).await? >= i64::from(max) {
        return Err(ApiError::WebhookLimitReached(format!(
            "the project has {max} webhook endpoints, the most allowed; delete one first"
        )));
    }
    let webhook_id = WebhookId::new();
    let created = state
        .uploader
        .call(&CreateWebhook {
            project_id: caller.project_id,
            webhook_id,
            url,
            events,
            description: request.description.unwrap_or_default(),
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %webhook_id, "webhook endpoint created");
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/v1/webhooks/{webhook_id}"))],
        Json(created),
    )
        .into_response())
}

async fn count(state: &AppState, caller: &Caller) -> Result<i64, ApiError> {
    let client = state.pool.get().await.map_err(ReadError::from)?;
    let row = client
        .query_one(
            "SELECT count(*) FROM webhook_endpoint WHERE project_id = $1",
            &[&caller.project_id.0],
        )
        .await
        .map_err(ReadError::from)?;
    Ok(row.try_get(0).map_err(ReadError::from)?)
}

/// `GET /v1/webhooks?limit=&offset=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    summary = "List webhook endpoints, newest first",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of endpoints, without their secrets.", body = WebhookList),
        (status = 400, description = "`validation_failed` (`limit` or `offset` in `field`), `invalid_request`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Page { limit, offset }: Page,
) -> Result<Response, ApiError> {
    let client = state.pool.get().await.map_err(ReadError::from)?;
    let webhooks = vod_read_model::list_webhooks(&client, caller.project_id, limit, offset)
        .await
        .map_err(ReadError::from)?;
    Ok(Json(WebhookList { webhooks }).into_response())
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    summary = "A webhook endpoint",
    description = "Its secret is not shown again: rotate it to get a new one.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 200, description = "The endpoint.", body = WebhookView),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
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
    let webhook_id = parse_id(&id)?;
    let client = state.pool.get().await.map_err(ReadError::from)?;
    let webhook = vod_read_model::find_webhook(&client, caller.project_id, webhook_id)
        .await
        .map_err(ReadError::from)?
        .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(webhook).into_response())
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "update_webhook",
    tag = "webhooks",
    summary = "Change a webhook endpoint's URL, events or description, or enable or disable it",
    description = "Fields left out keep their value. A new URL is checked as at creation.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id.")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint as it is now.", body = WebhookView),
        (status = 400, description = "`validation_failed` (`url`, `events` or `description` in `field`), `invalid_json`, `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<UpdateWebhookRequest>,
) -> Result<Response, ApiError> {
    let webhook_id = parse_id(&id)?;
    let events = request.events.map(checked_events).transpose()?;
    let url = match request.url {
        Some(url) => Some(checked_url(&state, &url).await?),
        None => None,
    };
    let webhook = state
        .uploader
        .call(&UpdateWebhook {
            project_id: caller.project_id,
            webhook_id,
            url,
            events,
            description: request.description,
            enabled: request.enabled,
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %webhook_id, "webhook endpoint updated");
    Ok(Json(webhook).into_response())
}

/// `DELETE /v1/webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "delete_webhook",
    tag = "webhooks",
    summary = "Delete a webhook endpoint",
    description = "Nothing more is posted to it; its delivery log goes with it.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let webhook_id = parse_id(&id)?;
    state
        .uploader
        .call(&DeleteWebhook {
            project_id: caller.project_id,
            webhook_id,
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %webhook_id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "rotate_webhook_secret",
    tag = "webhooks",
    summary = "Give a webhook endpoint a new signing secret",
    description = "The new secret signs every delivery from now on; the secrets it replaces \
        sign beside it (a second `v1` in `Vod-Signature`) until `previous_secrets_expire_at`, \
        so that the receiver can switch without missing a delivery.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id."), RotateQuery),
    responses(
        (status = 200, description = "The new secret, shown this once.", body = SecretRotated),
        (status = 400, description = "`validation_failed` (`overlap_seconds` in `field`), `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<RotateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let webhook_id = parse_id(&id)?;
    let Query(query) =
        query.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    let overlap_secs = match query.overlap_seconds {
        None => state.config.webhooks.rotation_overlap_secs,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|secs| *secs <= MAX_OVERLAP_SECS)
            .ok_or_else(|| {
                ApiError::validation(
                    "overlap_seconds",
                    "overlap_seconds must be a whole number from 0 to 604800",
                )
            })?,
    };
    let rotated = state
        .uploader
        .call(&RotateWebhookSecret {
            project_id: caller.project_id,
            webhook_id,
            overlap_secs,
        })
        .await?;
    tracing::info!(project_id = %caller.project_id, %webhook_id, "webhook secret rotated");
    Ok(Json(rotated).into_response())
}

/// `POST /v1/webhooks/{id}/test`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    operation_id = "test_webhook",
    tag = "webhooks",
    summary = "Send a `ping` event to a webhook endpoint",
    description = "Delivered like any event (signed, retried), to an endpoint enabled or not; \
        its attempts appear in the endpoint's delivery log.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id.")),
    responses(
        (status = 202, description = "The ping is queued.", body = DeliveryQueued),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let webhook_id = parse_id(&id)?;
    let queued = state
        .uploader
        .call(&QueueDeliveries {
            project_id: caller.project_id,
            deliver: ToDeliver::Ping { webhook_id },
        })
        .await?;
    let delivery = queued
        .deliveries
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a ping queued no delivery")))?;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}

/// `GET /v1/webhooks/{id}/deliveries?limit=&offset=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    summary = "A webhook endpoint's delivery log, newest first",
    description = "Each delivery (an event sent to this endpoint) with its status and every \
        attempt: when, the receiver's status code, the latency and the error.",
    params(("id" = uuid::Uuid, Path, description = "The endpoint's id."), PageQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryList),
        (status = 400, description = "`validation_failed` (`limit` or `offset` in `field`), `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Page { limit, offset }: Page,
) -> Result<Response, ApiError> {
    let webhook_id = parse_id(&id)?;
    let client = state.pool.get().await.map_err(ReadError::from)?;
    let deliveries =
        vod_read_model::list_deliveries(&client, caller.project_id, webhook_id, limit, offset)
            .await
            .map_err(ReadError::from)?
            .ok_or(ApiError::WebhookNotFound)?;
    Ok(Json(DeliveryList { deliveries }).into_response())
}

pub(super) fn parse_id(id: &str) -> Result<WebhookId, ApiError> {
    id.parse().map_err(|_| ApiError::WebhookNotFound)
}
