//! The uploader's HTTP listener, for operators only: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lapin::Connection;
use serde_json::json;
use vod_infra::metrics::Registry;
use vod_infra::readiness::{self, Readiness};

use crate::metrics::UploaderMetrics;

pub struct HttpState {
    pub pg: deadpool_postgres::Pool,
    pub redis: deadpool_redis::Pool,
    pub amqp: Arc<Connection>,
    /// The queues whose depth `/metrics` reports.
    pub queues: Vec<String>,
    pub metrics: UploaderMetrics,
    pub registry: Registry,
    /// How long `/readyz` and the queue depth wait for each dependency.
    pub timeout: Duration,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

/// 200 while the replica is connected to the broker, so its consumers take work.
async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    let broker = state.amqp.status().connected();
    let status = if broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "broker": broker }))).into_response()
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Readiness {
    let database = readiness::check(
        "database",
        state.timeout,
        vod_infra::postgres::is_reachable(&state.pg),
    );
    let broker = readiness::check("broker", state.timeout, async {
        state.amqp.status().connected()
    });
    let redis = readiness::check(
        "redis",
        state.timeout,
        vod_infra::redis::is_reachable(&state.redis),
    );
    let (database, broker, redis) = tokio::join!(database, broker, redis);
    Readiness::of(vec![database, broker, redis])
}

/// Reads the queues' depth from the broker, then renders the registry. A broker that does not
/// answer leaves the last depths read.
async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let queues: Vec<&str> = state.queues.iter().map(String::as_str).collect();
    let depths = tokio::time::timeout(
        state.timeout,
        vod_infra::amqp::queue_depths(&state.amqp, &queues),
    )
    .await;
    match depths {
        Ok(Ok(depths)) => {
            for (queue, messages) in depths {
                state.metrics.queue_depth(&queue, messages);
            }
        }
        Ok(Err(error)) => tracing::debug!(error = %format!("{error:#}"), "queue depths not read"),
        Err(_) => tracing::debug!("queue depths not read in time"),
    }
    vod_infra::metrics::render(&state.registry)
}
