use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

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
