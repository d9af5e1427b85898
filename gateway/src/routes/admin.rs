//! `/v1/admin/...`: the operator's API, with the admin token: projects and their first keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::{Validate, ValidationError};
use vod_contracts::access::{KeyCreated, ProjectList, ProjectView};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{CreateProject, ProjectCreated};
use vod_contracts::ProjectId;

use super::json::ValidJson;
use super::keys::{issue_key, CreateKeyRequest};
use crate::auth::{store, Admin};
use crate::error::ApiError;
use crate::plain_text::{check_plain_text, Lines};
use crate::state::AppState;

/// `POST /v1/admin/projects`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CreateProjectRequest {
    /// Unique; 1 to 100 characters, one line.
    #[validate(
        required(message = "name is required"),
        length(min = 1, max = 100, message = "name must be 1 to 100 characters"),
        custom(function = "valid_name")
    )]
    #[schema(required = true, min_length = 1, max_length = 100)]
    name: Option<String>,
}

fn valid_name(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(ValidationError::new("name").with_message("name must not be blank".into()));
    }
    check_plain_text(name, Lines::Single)
        .map_err(|err| ValidationError::new("name").with_message(format!("name {err}").into()))
}

/// `POST /v1/admin/projects`.
#[utoipa::path(
    post,
    path = "/v1/admin/projects",
    operation_id = "create_project",
    tag = "admin",
    summary = "Make a project",
    request_body = CreateProjectRequest,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The project.", body = ProjectView),
        (status = 400, description = "`validation_failed` (`name`), `invalid_json`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no admin token, or another one.", body = ErrorBody),
        (status = 409, description = "`project_name_taken`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn create_project(
    State(state): State<AppState>,
    _: Admin,
    ValidJson(request): ValidJson<CreateProjectRequest>,
) -> Result<Response, ApiError> {
    let name = request.name.unwrap_or_default().trim().to_owned();
    let ProjectCreated {
        project_id,
        created_at,
    } = state
        .uploader
        .call(&CreateProject { name: name.clone() })
        .await?;
    tracing::info!(%project_id, "project created");
    let view = ProjectView {
        id: project_id,
        name,
        created_at,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/admin/projects`.
#[utoipa::path(
    get,
    path = "/v1/admin/projects",
    operation_id = "list_projects",
    tag = "admin",
    summary = "Every project, oldest first",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The projects.", body = ProjectList),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn list_projects(State(state): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let projects = store::list_projects(&state.pool).await?;
    Ok(Json(ProjectList { projects }).into_response())
}

/// `POST /v1/admin/projects/{id}/keys`.
#[utoipa::path(
    post,
    path = "/v1/admin/projects/{id}/keys",
    operation_id = "create_project_key",
    tag = "admin",
    summary = "Make an API key of a project",
    description = "The answer holds the whole key, once: only its hash is kept.",
    params(("id" = uuid::Uuid, Path, description = "The project's id.")),
    request_body = CreateKeyRequest,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "The key, with its secret.", body = KeyCreated),
        (status = 400, description = "`validation_failed` (`scopes` or `name`), `invalid_json`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`project_not_found`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let project_id: ProjectId = id.parse().map_err(|_| ApiError::ProjectNotFound)?;
    store::find_project(&state.pool, project_id)
        .await?
        .ok_or(ApiError::ProjectNotFound)?;
    issue_key(&state, project_id, request).await
}
