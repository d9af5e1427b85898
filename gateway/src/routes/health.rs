use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use vod_infra::readiness::{self, Readiness};

use crate::startup::AppState;

/// 200 when the database answers and the broker connection is up, else 503.
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = vod_infra::postgres::is_reachable(&state.pool).await;
    let broker = state.uploader.is_connected();
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "database": database, "broker": broker })),
    )
}

/// Each dependency and whether it answers: 200 when all do, 503 naming the others.
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
