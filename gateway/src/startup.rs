use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    HeaderName, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, options, post};
use axum::{middleware, Router};
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::error::ApiError;
use crate::routes::{health, uploads, videos};
use crate::tus;
use crate::uploader_client::UploaderClient;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub uploader: UploaderClient,
    /// Upload bodies being stored; they finish even when their request is dropped.
    pub body_tasks: TaskTracker,
    /// Cancelled once the gateway stops serving: write locks still being given back are left
    /// to run out by themselves.
    pub stopping: CancellationToken,
}

pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    pool: Pool,
    uploader: UploaderClient,
    body_tasks: TaskTracker,
    stopping: CancellationToken,
    reply_dispatcher: JoinHandle<()>,
}

impl App {
    /// Checks the configuration, connects to the broker, and binds the listener. The database
    /// is reached lazily, so the gateway starts while PostgreSQL is still coming up.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate().context("invalid gateway configuration")?;
        let pool = vod_infra::postgres::pool(&config.postgres)?;
        let (uploader, reply_dispatcher) =
            UploaderClient::connect(&config.amqp, config.rpc_timeout()).await?;
        let (listener, local_addr) = vod_infra::http::bind(&config.listen_addr).await?;
        let body_tasks = TaskTracker::new();
        let stopping = CancellationToken::new();
        let state = AppState {
            config: Arc::new(config),
            pool: pool.clone(),
            uploader: uploader.clone(),
            body_tasks: body_tasks.clone(),
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
            reply_dispatcher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`, lets requests in flight finish, then closes the connections.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let served = vod_infra::http::serve(self.listener, self.router, shutdown).await;
        self.stopping.cancel();
        self.body_tasks.close();
        self.body_tasks.wait().await;
        self.uploader.close().await;
        if let Err(error) = self.reply_dispatcher.await {
            tracing::warn!(error = %error, "reply dispatcher panicked");
        }
        self.pool.close();
        served
    }
}

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    let tus_routes = Router::new()
        .route(
            "/v1/uploads",
            options(uploads::options).post(uploads::create),
        )
        .route(
            "/v1/uploads/{id}",
            options(uploads::options)
                .head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::terminate),
        )
        // Upload bodies are streamed in bounded pieces, never collected.
        .layer(DefaultBodyLimit::disable())
        .layer(SetResponseHeaderLayer::overriding(
            tus::TUS_RESUMABLE,
            HeaderValue::from_static(tus::SUPPORTED_VERSION),
        ));
    let video_routes = Router::new()
        .route("/v1/videos", post(videos::create).get(videos::list))
        .route("/v1/videos/{id}", get(videos::show))
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes));
    let retry_after = state.config.retry_after_secs;
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .merge(tus_routes)
        .merge(video_routes)
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(state)
        .layer(middleware::map_response_with_state(
            retry_after,
            add_retry_after,
        ));
    // Server errors are logged with their cause where they are answered.
    with_cors(api).layer(TraceLayer::new_for_http().on_failure(()))
}

/// Any 503 tells the client when to come back.
async fn add_retry_after(State(retry_after_secs): State<u64>, mut response: Response) -> Response {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE
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
/// an `OPTIONS` that is not a preflight (tus discovery) goes around it to the tus handler.
fn with_cors(api: Router) -> Router {
    let tus_request_headers = [
        tus::TUS_RESUMABLE,
        tus::UPLOAD_OFFSET,
        tus::UPLOAD_LENGTH,
        tus::UPLOAD_DEFER_LENGTH,
        tus::UPLOAD_METADATA,
        tus::UPLOAD_CHECKSUM,
        tus::UPLOAD_CONCAT,
        CONTENT_TYPE,
        CONTENT_LENGTH,
        tus::X_HTTP_METHOD_OVERRIDE,
        HeaderName::from_static("x-requested-with"),
    ];
    let exposed_headers = [
        LOCATION,
        tus::UPLOAD_OFFSET,
        tus::UPLOAD_LENGTH,
        tus::UPLOAD_METADATA,
        tus::UPLOAD_DEFER_LENGTH,
        tus::UPLOAD_EXPIRES,
        tus::UPLOAD_CONCAT,
        tus::TUS_RESUMABLE,
        tus::TUS_VERSION,
        tus::TUS_EXTENSION,
        tus::TUS_MAX_SIZE,
        tus::TUS_CHECKSUM_ALGORITHM,
        tus::VIDEO_ID,
    ];
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
        .allow_headers(tus_request_headers)
        .expose_headers(exposed_headers);
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
            if is_plain_options {
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
