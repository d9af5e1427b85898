use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use tracing::warn;

use super::Files;
use crate::error::ApiError;
use vod_infra::readiness::{Dependency, Readiness};

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

/// 200 while the root can be read, so holder can serve and store files.
pub async fn healthz(State(files): State<Arc<Files>>) -> Result<Json<Health>, ApiError> {
    match tokio::fs::read_dir(&files.root).await {
        Ok(_) => Ok(Json(Health { status: "ok" })),
        Err(err) => {
            warn!(root = %files.root.display(), error = %err, "root is not readable");
            Err(ApiError::StorageUnavailable)
        }
    }
}

/// holder depends on its root alone.
pub async fn readyz(State(files): State<Arc<Files>>) -> Readiness {
    let root = Dependency {
        name: "root",
        reachable: tokio::fs::read_dir(&files.root).await.is_ok(),
    };
    Readiness::of(vec![root])
}
