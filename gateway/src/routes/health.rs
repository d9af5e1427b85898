use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use crate::startup::AppState;

/// What `/healthz` reports.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// PostgreSQL answers.
    database: bool,
    /// The connection to RabbitMQ is up.
    broker: bool,
}

/// 200 when the database answers and the broker connection is up, else 503.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "service",
    summary = "Whether the gateway can do its work",
    responses(
        (status = 200, description = "The database answers and the broker connection is up.", body = Health,
            example = json!({"database": true, "broker": true})),
        (status = 503, description = "A dependency is down; the body says which.", body = Health,
            headers(("Retry-After" = u64, description = "Seconds to wait.")),
            example = json!({"database": false, "broker": true})),
    ),
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database = vod_infra::postgres::is_reachable(&state.pool).await;
    let broker = state.uploader.is_connected();
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Health { database, broker }))
}
