//! `/v1/admin/...`: the operator's API, with the admin token: projects and their first keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::{Validate, ValidationError};
use vod_contracts::access::{KeyCreated, ProjectList, ProjectView, QuotaOverrides};
use vod_contracts::api::ErrorBody;
use vod_contracts::commands::{present, CreateProject, ProjectCreated, SetProjectQuotas};
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
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
    )]
    name: Option<String>,
}

fn valid_name(name: &str) -> Result<(), ValidationError> {
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
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn create_project(
    State(state): State<AppState>,
    _: Admin,
    ValidJson(request): ValidJson<CreateProjectRequest>,
) -> Result<Response, ApiError> {
    let name = request.name.unwrap_or_default();
    let ProjectCreated { project_id, .. } = state.uploader.call(&CreateProject { name }).await?;
    tracing::info!(%project_id, "project created");
    // Read back for its quotas in force; the uploader committed it before it answered.
    let view = store::find_project(&state.pool, project_id)
        .await?
        .ok_or(ApiError::ProjectNotFound)?;
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

/// `PATCH /v1/admin/projects/{id}`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct UpdateProjectRequest {
    /// The quotas to change; one left out keeps its value. Read as a value first, so that
    /// only a JSON object is taken for it (serde would take an array for a struct).
    #[schema(value_type = QuotaChange, required = true)]
    quotas: Option<serde_json::Value>,
}

/// A project's own quotas: a number overrides the configured default, `null` goes back to it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct QuotaChange {
    /// Bytes the project's presentations may hold on holder.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    max_stored_bytes: Option<Option<u64>>,
    /// Uploads open at once.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    max_open_uploads: Option<Option<u64>>,
    /// Uploads created per clock hour.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    max_uploads_per_hour: Option<Option<u64>>,
}

impl QuotaChange {
    /// The change, or the first field out of the range the database keeps.
    fn into_overrides(self) -> Result<QuotaOverrides, ApiError> {
        let fields = [
            ("quotas.max_stored_bytes", self.max_stored_bytes),
            ("quotas.max_open_uploads", self.max_open_uploads),
            ("quotas.max_uploads_per_hour", self.max_uploads_per_hour),
        ];
        for (field, value) in fields {
            if value
                .flatten()
                .is_some_and(|value| i64::try_from(value).is_err())
            {
                return Err(ApiError::validation(
                    field,
                    format!("{field} must be at most {}", i64::MAX),
                ));
            }
        }
        Ok(QuotaOverrides {
            max_stored_bytes: self.max_stored_bytes,
            max_open_uploads: self.max_open_uploads,
            max_uploads_per_hour: self.max_uploads_per_hour,
        })
    }
}

/// `PATCH /v1/admin/projects/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/admin/projects/{id}",
    operation_id = "update_project",
    tag = "admin",
    summary = "Change a project's quotas",
    description = "Each quota given overrides the configured default for the project, `null` \
        goes back to the default, one left out stays as it is. The answer shows the quotas in \
        force.",
    params(("id" = uuid::Uuid, Path, description = "The project's id.")),
    request_body = UpdateProjectRequest,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The project with its quotas in force.", body = ProjectView),
        (status = 400, description = "`validation_failed` (`quotas` or one of its fields), `invalid_json`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`project_not_found`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn update_project(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<UpdateProjectRequest>,
) -> Result<Response, ApiError> {
    let project_id: ProjectId = id.parse().map_err(|_| ApiError::ProjectNotFound)?;
    let quotas = match request.quotas {
        Some(quotas @ serde_json::Value::Object(_)) => {
            serde_path_to_error::deserialize::<_, QuotaChange>(quotas).map_err(|error| {
                let field = format!("quotas.{}", error.path());
                let message = format!("{field} must be a non-negative integer or null");
                ApiError::validation(field, message)
            })?
        }
        _ => return Err(ApiError::validation("quotas", "quotas must be an object")),
    }
    .into_overrides()?;
    state
        .uploader
        .call(&SetProjectQuotas { project_id, quotas })
        .await?;
    tracing::info!(%project_id, "project quotas changed");
    let view = store::find_project(&state.pool, project_id)
        .await?
        .ok_or(ApiError::ProjectNotFound)?;
    Ok(Json(view).into_response())
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
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
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
