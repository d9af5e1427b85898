//! The uploader's HTTP listener, for operators only: `/healthz`, `/readyz` and `/metrics`.

use std::sync::{Arc, PoisonError, RwLock};
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

use crate::metrics::{ProjectUsage, UploaderMetrics};

/// The replica's broker connection of the moment: the replica replaces it when it connects
/// again after an outage.
#[derive(Clone)]
pub struct CurrentBroker(Arc<RwLock<Arc<Connection>>>);

impl CurrentBroker {
    pub fn new(connection: Arc<Connection>) -> Self {
        Self(Arc::new(RwLock::new(connection)))
    }

    pub fn get(&self) -> Arc<Connection> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, connection: Arc<Connection>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = connection;
    }
}

pub struct HttpState {
    pub pg: deadpool_postgres::Pool,
    pub redis: deadpool_redis::Pool,
    pub amqp: CurrentBroker,
    /// The queues whose depth `/metrics` reports.
    pub queues: Vec<String>,
    pub metrics: UploaderMetrics,
    pub registry: Registry,
    /// How long `/readyz` and the queue depth wait for each dependency.
    pub timeout: Duration,
    /// Projects whose usage `/metrics` shows, at most.
    pub max_projects: u32,
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
    let broker = state.amqp.get().status().connected();
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
        state.amqp.get().status().connected()
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
        vod_infra::amqp::queue_depths(&state.amqp.get(), &queues),
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
    let usage =
        tokio::time::timeout(state.timeout, project_usage(&state.pg, state.max_projects)).await;
    match usage {
        Ok(Ok(usage)) => state.metrics.project_usage(&usage),
        Ok(Err(error)) => tracing::debug!(error = %format!("{error:#}"), "project usage not read"),
        Err(_) => tracing::debug!("project usage not read in time"),
    }
    vod_infra::metrics::render(&state.registry)
}

/// The usage of the `limit` most recently created projects.
async fn project_usage(
    pg: &deadpool_postgres::Pool,
    limit: u32,
) -> anyhow::Result<Vec<ProjectUsage>> {
    let client = pg.get().await?;
    let rows = client
        .query(
            "SELECT p.name, u.bytes_received, u.uploads_completed, u.encoded_seconds, \
                    u.stored_bytes, u.open_uploads \
             FROM project p JOIN project_usage_now u ON u.project_id = p.id \
             ORDER BY p.created_at DESC, p.id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ProjectUsage {
                project: row.try_get(0)?,
                bytes_received: row.try_get(1)?,
                uploads_completed: row.try_get(2)?,
                encoded_seconds: row.try_get(3)?,
                stored_bytes: row.try_get(4)?,
                open_uploads: row.try_get(5)?,
            })
        })
        .collect()
}
