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

/// 200 while the store can be read, so holder can serve and store files.
pub async fn healthz(State(files): State<Arc<Files>>) -> Result<Json<Health>, ApiError> {
    match files.store.reachable().await {
        Ok(()) => Ok(Json(Health { status: "ok" })),
        Err(err) => {
            warn!(store = %files.store.describe(), error = %err, "store is not readable");
            Err(ApiError::StorageUnavailable)
        }
    }
}

/// holder depends on its store alone.
pub async fn readyz(State(files): State<Arc<Files>>) -> Readiness {
    let store = Dependency {
        name: "store",
        reachable: files.store.reachable().await.is_ok(),
    };
    Readiness::of(vec![store])
}
