//! `GET /v1/usage`: the caller's project's usage counters and quotas.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use vod_contracts::access::UsageView;
use vod_contracts::api::ErrorBody;
use vod_contracts::ProjectId;

use crate::auth::{store, Caller};
use crate::error::ApiError;
use crate::read_model::ReadError;
use crate::state::AppState;

/// `GET /v1/usage`.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "show_usage",
    tag = "usage",
    summary = "The caller's project's usage since its counters started, and its quotas",
    description = "Counters kept in the transaction of each change they count: bytes received \
        (open uploads' included), uploads completed, seconds encoded (source duration x \
        renditions) and bytes stored on holder now; with the quotas in force and the uploads \
        open now.",
    responses(
        (status = 200, description = "The usage.", body = UsageView),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`.", body = ErrorBody),
    ),
)]
pub async fn show(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let usage = read_usage(&state.pool, caller.project_id).await?;
    Ok(Json(usage).into_response())
}

async fn read_usage(
    pool: &deadpool_postgres::Pool,
    project_id: ProjectId,
) -> Result<UsageView, ReadError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT u.since, u.bytes_received, u.uploads_completed, u.encoded_seconds, \
                    u.stored_bytes, u.open_uploads, \
                    q.max_stored_bytes, q.max_open_uploads, q.max_uploads_per_hour \
             FROM project_usage_now u JOIN project_quotas q ON q.project_id = u.project_id \
             WHERE u.project_id = $1",
            &[&project_id.0],
        )
        .await?;
    // The schema keeps every counter non-negative.
    let count = |index: usize| -> Result<u64, ReadError> {
        let value: i64 = row.try_get(index)?;
        Ok(u64::try_from(value).unwrap_or_default())
    };
    Ok(UsageView {
        since: row.try_get(0)?,
        bytes_received: count(1)?,
        uploads_completed: count(2)?,
        encoded_seconds: row.try_get(3)?,
        stored_bytes: count(4)?,
        open_uploads: count(5)?,
        quotas: store::quotas_at(&row, 6)?,
    })
}
