//! `/v1/keys`: a project's API keys, managed with a key of the project.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::{Validate, ValidationError};
use vod_contracts::access::{KeyCreated, KeyList, Scope};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{ApiKeyCreated, CreateApiKey, RevokeApiKey};
use vod_contracts::{ApiKeyId, ProjectId};

use super::json::ValidJson;
use crate::auth::key::NewKey;
use crate::auth::{store, Caller};
use crate::error::ApiError;
use crate::plain_text::{check_plain_text, Lines};
use crate::state::AppState;

/// `POST /v1/keys`, `POST /v1/admin/projects/{id}/keys`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CreateKeyRequest {
    /// `read` (`GET`, `HEAD`), `write` (everything else), or both.
    #[validate(
        required(message = "scopes is required"),
        length(min = 1, max = 2, message = "scopes names read, write or both")
    )]
    #[schema(required = true, min_items = 1, max_items = 2)]
    scopes: Option<Vec<Scope>>,
    /// For people: what the key is for. At most 100 characters, one line.
    #[validate(
        length(max = 100, message = "name must be at most 100 characters"),
        custom(function = "valid_name")
    )]
    #[schema(max_length = 100)]
    name: Option<String>,
}

fn valid_name(name: &str) -> Result<(), ValidationError> {
    check_plain_text(name, Lines::Single)
        .map_err(|err| ValidationError::new("name").with_message(format!("name {err}").into()))
}

/// Makes a key of `project_id`: the secret is made here and only its hash leaves the gateway.
pub(super) async fn issue_key(
    state: &AppState,
    project_id: ProjectId,
    request: CreateKeyRequest,
) -> Result<Response, ApiError> {
    let mut scopes = request.scopes.unwrap_or_default();
    scopes.sort();
    scopes.dedup();
    let name = request.name.unwrap_or_default().trim().to_owned();
    let new = NewKey::generate()?;
    let ApiKeyCreated { created_at } = state
        .uploader
        .call(&CreateApiKey {
            project_id,
            key_id: new.id,
            name: name.clone(),
            scopes: scopes.clone(),
            secret_sha256: new.secret_sha256_hex(),
        })
        .await?;
    tracing::info!(%project_id, key_id = %new.id, "api key created");
    let created = KeyCreated {
        id: new.id,
        key: new.key,
        scopes,
        name,
        created_at,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `POST /v1/keys`.
#[utoipa::path(
    post,
    path = "/v1/keys",
    operation_id = "create_key",
    tag = "keys",
    summary = "Make an API key of the caller's project",
    description = "The answer holds the whole key, once: only its hash is kept.",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key, with its secret.", body = KeyCreated),
        (status = 400, description = "`validation_failed` (`scopes` or `name` in `field`), `invalid_json`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `write` scope.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(request): ValidJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    issue_key(&state, caller.project_id, request).await
}

/// `GET /v1/keys`.
#[utoipa::path(
    get,
    path = "/v1/keys",
    operation_id = "list_keys",
    tag = "keys",
    summary = "The caller's project's keys, newest first, without their secrets",
    responses(
        (status = 200, description = "The keys.", body = KeyList),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let keys = store::list_keys(&state.pool, caller.project_id).await?;
    Ok(Json(KeyList { keys }).into_response())
}

/// `DELETE /v1/keys/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    operation_id = "revoke_key",
    tag = "keys",
    summary = "Revoke a key of the caller's project",
    description = "The key is refused from then on: at once on this gateway, and on others \
        once they read it again (their cache time, `GATEWAY_API_KEY_CACHE_MS`).",
    params(("id" = uuid::Uuid, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "Revoked (also when it already was)."),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `write` scope.", body = ErrorBody),
        (status = 404, description = "`key_not_found`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key_id: ApiKeyId = id.parse().map_err(|_| ApiError::KeyNotFound)?;
    state
        .uploader
        .call(&RevokeApiKey {
            project_id: caller.project_id,
            key_id,
        })
        .await?;
    state.keys.forget(key_id);
    tracing::info!(project_id = %caller.project_id, %key_id, "api key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}
