use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use vod_infra::readiness::{self, Readiness};

use crate::state::AppState;

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

/// Each dependency and whether it answers: 200 when all do, 503 naming the others.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "service",
    summary = "Whether every dependency of the gateway answers",
    responses(
        (status = 200, description = "The database and the broker answer.", body = Readiness,
            example = json!({"ready": true, "dependencies": [
                {"name": "database", "reachable": true}, {"name": "broker", "reachable": true}]})),
        (status = 503, description = "A dependency does not answer; the body names it.",
            body = Readiness,
            headers(("Retry-After" = u64, description = "Seconds to wait.")),
            example = json!({"ready": false, "dependencies": [
                {"name": "database", "reachable": false}, {"name": "broker", "reachable": true}]})),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Readiness {
    let timeout = vod_infra::config::millis(state.config.readiness_timeout_ms);
    let database = readiness::check(
        "database",
        timeout,
        vod_infra::postgres::is_reachable(&state.pool),
    );
    let broker = readiness::check("broker", timeout, async { state.uploader.is_connected() });
    let (database, broker) = tokio::join!(database, broker);
    Readiness::of(vec![database, broker])
}

/// The gateway's metrics in the Prometheus (OpenMetrics) text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "service",
    summary = "Counters and histograms for Prometheus",
    responses(
        (status = 200, description = "Every metric of this gateway, names prefixed `gateway_`.",
            content_type = "application/openmetrics-text", body = String),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    vod_infra::metrics::render(&state.metrics_registry)
}
