//! `GET /readyz`: whether each dependency of a service can be reached right now.
//!
//! The answer is JSON naming every dependency, 200 when all are reachable and 503 otherwise:
//! `{"ready": false, "dependencies": [{"name": "database", "reachable": false}, ...]}`.
//! `/healthz` stays the contract's liveness check; orchestrators route traffic on `/readyz`.

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dependency {
    /// `database`, `broker`, `redis`, `holder`, `spool` or `root`.
    pub name: &'static str,
    /// Whether it answered within the service's readiness timeout.
    pub reachable: bool,
}

/// Runs `probe`, counting it unreachable when it does not answer within `timeout`.
pub async fn check(
    name: &'static str,
    timeout: Duration,
    probe: impl Future<Output = bool>,
) -> Dependency {
    let reachable = tokio::time::timeout(timeout, probe).await.unwrap_or(false);
    if !reachable {
        tracing::debug!(dependency = name, "dependency not reachable");
    }
    Dependency { name, reachable }
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// Every dependency answered.
    pub ready: bool,
    pub dependencies: Vec<Dependency>,
}

impl Readiness {
    pub fn of(dependencies: Vec<Dependency>) -> Self {
        Self {
            ready: dependencies.iter().all(|dependency| dependency.reachable),
            dependencies,
        }
    }
}

impl IntoResponse for Readiness {
    fn into_response(self) -> Response {
        let status = if self.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_unreachable_dependency_makes_the_service_unready() {
        let fine = check("database", Duration::from_secs(1), async { true }).await;
        let slow = check("broker", Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            true
        })
        .await;
        assert!(fine.reachable);
        assert!(!slow.reachable, "a probe past its timeout counts as down");
        let response = Readiness::of(vec![fine.clone()]).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        let readiness = Readiness::of(vec![fine, slow]);
        assert!(!readiness.ready);
        let json = serde_json::to_value(&readiness).expect("serializes");
        assert_eq!(json["dependencies"][1]["name"], "broker");
        assert_eq!(json["dependencies"][1]["reachable"], false);
        assert_eq!(
            readiness.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
