//! holder's HTTP side: the published tree for players, and a health check.

mod health;
mod static_files;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::media::CachePolicy;
use crate::metrics::HolderMetrics;
use crate::store::Store;

pub struct Files {
    store: Store,
    cache: CachePolicy,
    metrics: HolderMetrics,
}

pub fn router(config: &Config, store: Store, metrics: HolderMetrics) -> anyhow::Result<Router> {
    let files = Arc::new(Files {
        store,
        cache: CachePolicy::new(config.segment_max_age_secs, config.playlist_max_age_secs),
        metrics,
    });
    let cors = cors_layer(&config.cors_allow_origin)?;
    Ok(Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(static_files::serve)
        .with_state(files)
        .layer(cors)
        .layer(TraceLayer::new_for_http()))
}

/// Players run on other origins and fetch segments with `Range`.
fn cors_layer(allow_origin: &str) -> anyhow::Result<CorsLayer> {
    let allow_origin = if allow_origin.trim() == "*" {
        AllowOrigin::any()
    } else {
        let origins = allow_origin
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(HeaderValue::from_str)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("invalid HOLDER_CORS_ALLOW_ORIGIN {allow_origin:?}"))?;
        AllowOrigin::list(origins)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([header::RANGE])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
        ])
        .max_age(Duration::from_secs(86_400)))
}
