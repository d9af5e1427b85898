//! Prometheus metrics. Each service builds its own [`Registry`] in `App::build` and hands the
//! metrics to the code that counts; nothing is global, so several services share a process (as
//! in the end-to-end tests) without mixing their figures. `GET /metrics` renders the registry in
//! the OpenMetrics text format, which Prometheus scrapes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use prometheus_client;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets, explicit for every histogram.
pub mod buckets {
    /// Request and message handling, in seconds: 1 ms to a minute.
    pub const LATENCY_SECONDS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    /// Media seconds encoded per wall-clock second.
    pub const ENCODE_SPEED: &[f64] = &[0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0];
}

/// A histogram with the given upper bounds.
pub fn histogram(bounds: &[f64]) -> Histogram {
    Histogram::new(bounds.iter().copied())
}

/// A registry whose metric names all start with `{prefix}_`.
pub fn registry(prefix: &str) -> Registry {
    Registry::with_prefix(prefix)
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> Response {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %error, "metrics not encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
        )],
        text,
    )
        .into_response()
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    render(&registry)
}

/// `GET /metrics` serving `registry`; merge it into the service's router.
pub fn route(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequestLabels {
    /// The route template (`/v1/uploads/{id}`), never the raw path, so the label stays bounded.
    pub route: String,
    /// One of the methods of RFC 9110 and `PATCH`, else [`OTHER_METHOD`]: a client names any
    /// method it likes, and each new one would be a new series.
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    pub route: String,
}

/// HTTP requests by route template, method and status, and their durations.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<HttpRequestLabels, Counter>,
    duration: Family<HttpRouteLabels, Histogram, fn() -> Histogram>,
}

/// The label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The label of a request whose method is none of the standard ones.
pub const OTHER_METHOD: &str = "OTHER";

/// The method's label: the standard methods by name, any other as [`OTHER_METHOD`].
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => OTHER_METHOD,
    }
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| histogram(buckets::LATENCY_SECONDS)),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (headers), by route template",
            metrics.duration.clone(),
        );
        metrics
    }

    pub fn observe(&self, route: &str, method: &str, status: StatusCode, seconds: f64) {
        self.requests
            .get_or_create(&HttpRequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.as_u16(),
            })
            .inc();
        self.duration
            .get_or_create(&HttpRouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }
}

/// Middleware counting every request; add it with `Router::layer` (inside the routing, where
/// the matched route is known): `router.layer(axum::middleware::from_fn_with_state(metrics,
/// track_http))`.
pub async fn track_http(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        &route,
        method,
        response.status(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_prefix_labels_and_buckets() {
        let mut registry = registry("svc");
        let http = HttpMetrics::register(&mut registry);
        http.observe("/v1/items/{id}", "GET", StatusCode::OK, 0.003);
        http.observe("/v1/items/{id}", "GET", StatusCode::OK, 0.2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                "svc_http_requests_total{route=\"/v1/items/{id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "svc_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/items/{id}\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::GET), "GET");
        for invented in ["FOO", "get", "X-ANYTHING", "PROPFIND"] {
            let method = Method::from_bytes(invented.as_bytes()).expect("a method token");
            assert_eq!(method_label(&method), OTHER_METHOD, "{invented}");
        }
    }
}
