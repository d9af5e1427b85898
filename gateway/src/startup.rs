use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{ACCESS_CONTROL_REQUEST_METHOD, RETRY_AFTER};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Extension, Router};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vod_infra::config::{millis, HttpLimits};

use crate::auth::{self, KeyCache};
use crate::chunk_client::ChunkClient;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::GatewayMetrics;
use crate::openapi::{self, ApiDoc};
use crate::routes::{
    admin, direct_uploads, docs, events, health, keys, uploads, usage, videos, webhooks,
};
use crate::state::AppState;
use crate::tus;
use crate::uploader_client::UploaderClient;

pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    pool: Pool,
    uploader: UploaderClient,
    body_tasks: TaskTracker,
    stopping: CancellationToken,
    /// Hands replies to their requests and connects again after the broker connection is lost
    /// for good; it ends once the client is closed.
    broker_supervisor: JoinHandle<()>,
    shutdown_timeout_ms: u64,
    http_limits: HttpLimits,
}

impl App {
    /// Checks the configuration, connects to the broker, and binds the listener. The database
    /// is reached lazily, so the gateway starts while PostgreSQL is still coming up.
    pub async fn build(mut config: Config) -> anyhow::Result<App> {
        config.validate().context("invalid gateway configuration")?;
        let pool = vod_infra::postgres::pool(&config.postgres)?;
        let mut registry = vod_infra::metrics::registry("gateway");
        let metrics = GatewayMetrics::register(&mut registry);
        let (uploader, broker_supervisor) =
            UploaderClient::connect(&config.amqp, config.uploader_client(metrics.broker.clone()))
                .await?;
        let chunks = ChunkClient::new(config.chunk_client())?.map(Arc::new);
        let (listener, local_addr) = vod_infra::http::bind(&config.listen_addr).await?;
        config.public_url = Some(config.public_base(local_addr));
        let body_tasks = TaskTracker::new();
        let shutdown_timeout_ms = config.shutdown_timeout_ms;
        let http_limits = config.http.clone();
        let stopping = CancellationToken::new();
        let publishing = Arc::new(Semaphore::new(config.publishing_chunks_max));
        let buffers = Arc::new(Semaphore::new(config.max_buffered_bytes));
        let keys = Arc::new(KeyCache::new(
            millis(config.api_key_cache_ms),
            config.api_key_cache_max,
        ));
        let state = AppState {
            publishing,
            buffers,
            config: Arc::new(config),
            pool: pool.clone(),
            uploader: uploader.clone(),
            chunks,
            body_tasks: body_tasks.clone(),
            metrics,
            keys,
            metrics_registry: Arc::new(registry),
            stopping: stopping.clone(),
        };
        tracing::info!(addr = %local_addr, "gateway listening");
        Ok(App {
            listener,
            local_addr,
            router: router(state),
            pool,
            uploader,
            body_tasks,
            stopping,
            broker_supervisor,
            shutdown_timeout_ms,
            http_limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, lets requests in flight finish within the shutdown timeout,
    /// then closes the connections.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let timeout = millis(self.shutdown_timeout_ms);
        let abandon = vod_infra::shutdown::abandon_after(&shutdown, timeout);
        let _stop_timer = abandon.clone().drop_guard();
        let served = vod_infra::http::serve(
            self.listener,
            self.router,
            &self.http_limits,
            shutdown,
            abandon.clone(),
        )
        .await;
        self.stopping.cancel();
        self.body_tasks.close();
        if vod_infra::shutdown::unless_abandoned(&abandon, self.body_tasks.wait())
            .await
            .is_none()
        {
            tracing::warn!(
                bodies = self.body_tasks.len(),
                "upload bodies still being stored at the shutdown timeout are cut off"
            );
        }
        self.uploader.close().await;
        if let Err(error) = self.broker_supervisor.await {
            tracing::warn!(error = %error, "broker connection task panicked");
        }
        self.pool.close();
        served
    }
}

/// Every route of the gateway, each registered with `routes!` from its handler's
/// `#[utoipa::path]`, so that the OpenAPI document lists exactly what is served. Add routes
/// here and only this way; `gateway/tests/openapi.rs` fails for a route the document lacks.
fn documented_routes() -> OpenApiRouter<AppState> {
    let tus_routes = OpenApiRouter::new()
        .routes(routes!(uploads::options, uploads::create))
        .routes(routes!(
            uploads::options_upload,
            uploads::head,
            uploads::patch,
            uploads::terminate
        ))
        .routes(routes!(uploads::options_direct, uploads::create_direct))
        .routes(routes!(
            uploads::options_direct_upload,
            uploads::head_direct,
            uploads::patch_direct,
            uploads::terminate_direct
        ))
        // Upload bodies are streamed in bounded pieces, never collected.
        .layer(DefaultBodyLimit::disable())
        .layer(SetResponseHeaderLayer::overriding(
            tus::TUS_RESUMABLE,
            HeaderValue::from_static(tus::SUPPORTED_VERSION),
        ));
    let video_routes = OpenApiRouter::new()
        .routes(routes!(videos::create, videos::list))
        .routes(routes!(videos::show, videos::update, videos::delete));
    let direct_upload_routes = OpenApiRouter::new()
        .routes(routes!(direct_uploads::create, direct_uploads::list))
        .routes(routes!(direct_uploads::show, direct_uploads::cancel));
    let key_routes = OpenApiRouter::new()
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke));
    let webhook_routes = OpenApiRouter::new()
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries));
    let admin_routes = OpenApiRouter::new()
        .routes(routes!(admin::create_project, admin::list_projects))
        .routes(routes!(admin::update_project))
        .routes(routes!(admin::create_key));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(docs::openapi_json))
        .routes(routes!(docs::page))
        .routes(routes!(docs::asset))
        .merge(tus_routes)
        .merge(video_routes)
        .merge(direct_upload_routes)
        .merge(key_routes)
        .routes(routes!(usage::show))
        .routes(routes!(events::list))
        .routes(routes!(events::show))
        .routes(routes!(events::redeliver))
        .merge(webhook_routes)
        .merge(admin_routes)
}

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    let (routes, mut document) = documented_routes().split_for_parts();
    openapi::list_error_codes(&mut document);
    openapi::describe_tus(&mut document, &state.config);
    openapi::secure(&mut document);
    let retry_after = state.config.retry_after_secs;
    let http_metrics = state.metrics.http.clone();
    let api = routes
        .fallback(|| async { ApiError::RouteNotFound })
        // axum still adds `Allow`.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // The tus routes lift the limit for themselves.
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes))
        .layer(Extension(docs::Document(Arc::new(document))))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            http_metrics,
            vod_infra::metrics::track_http,
        ))
        .layer(middleware::map_response_with_state(
            retry_after,
            add_retry_after,
        ));
    // Server errors are logged with their cause where they are answered.
    with_cors(api).layer(TraceLayer::new_for_http().on_failure(()))
}

/// Any 503, and a 507 (no room to store bytes now), tells the client when to come back.
async fn add_retry_after(State(retry_after_secs): State<u64>, mut response: Response) -> Response {
    let status = response.status();
    if (status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::INSUFFICIENT_STORAGE)
        && !response.headers().contains_key(RETRY_AFTER)
    {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    }
    response
}

/// `X-HTTP-Method-Override` on a `POST` (tus, for clients that cannot send `PATCH` or
/// `DELETE`) replaces the method before routing.
fn override_method(request: &mut Request) {
    if request.method() != Method::POST {
        return;
    }
    let overridden = request
        .headers()
        .get(tus::X_HTTP_METHOD_OVERRIDE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Method::from_bytes(value.trim().to_ascii_uppercase().as_bytes()).ok());
    if let Some(method) = overridden {
        *request.method_mut() = method;
    }
}

/// CORS for browser tus clients. tower-http answers every `OPTIONS` itself as a preflight, so
/// an `OPTIONS` that is not a preflight (tus discovery) goes around it to the tus handler. A
/// direct upload's URL goes around it too: its CORS names its one origin, not `*`.
fn with_cors(api: Router) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::POST,
            Method::GET,
            Method::HEAD,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(tus::CORS_REQUEST_HEADERS)
        .expose_headers(tus::CORS_EXPOSED_HEADERS);
    let with_cors = cors.layer(api.clone());
    Router::new().fallback_service(tower::service_fn(move |mut request: Request| {
        let plain = api.clone();
        let with_cors = with_cors.clone();
        async move {
            override_method(&mut request);
            let is_plain_options = request.method() == Method::OPTIONS
                && !request
                    .headers()
                    .contains_key(ACCESS_CONTROL_REQUEST_METHOD);
            // A direct upload's URL allows its own origin only (`auth::direct`).
            let is_direct_upload_url = request
                .uri()
                .path()
                .strip_prefix(crate::direct_uploads::URL_PREFIX)
                .is_some_and(|rest| rest.starts_with('/'));
            if is_plain_options || is_direct_upload_url {
                plain.oneshot(request).await
            } else {
                with_cors
                    .oneshot(request)
                    .await
                    .map(IntoResponse::into_response)
            }
        }
    }))
}
