//! The gateway reaches RabbitMQ through a TCP proxy that the test cuts and restores: while the
//! broker is unreachable requests answer 503 at once, and once it is back the gateway
//! recovers its connection and reply queue by itself.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use support::{error_body, header, http, Gateway, TestEnv, UploaderDouble};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `host:port` of the test broker, from its URL.
fn broker_address(url: &str) -> String {
    let without_scheme = url.trim_start_matches("amqp://");
    let host_part = without_scheme
        .rsplit_once('@')
        .map_or(without_scheme, |(_, rest)| rest);
    host_part.split('/').next().unwrap_or(host_part).to_owned()
}

struct FlakyProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
}

impl FlakyProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let cut = accept_connections.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let broker = broker_address(&vod_infra::testsuite::amqp_url());
                    let Ok(mut upstream) = TcpStream::connect(broker).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut connections = self.connections.lock().expect("lock");
        connections.cancel();
        *connections = CancellationToken::new();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn health(gateway: &Gateway) -> StatusCode {
    http()
        .get(gateway.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .status()
}

async fn wait_for_health(gateway: &Gateway, wanted: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while health(gateway).await != wanted {
        assert!(Instant::now() < deadline, "healthz never became {wanted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn requests_fail_fast_while_the_broker_is_away_and_work_again_after() {
    let env = TestEnv::new().await;
    let _uploader = UploaderDouble::start(&env).await;
    let proxy = FlakyProxy::start().await;
    let mut config = env.config();
    let broker_url = vod_infra::testsuite::amqp_url();
    let proxied = broker_url.replacen(&broker_address(&broker_url), &proxy.addr.to_string(), 1);
    config.amqp.url = SecretString::from(proxied);
    // Far longer than the HTTP client waits: a request that waited for it would fail the test.
    config.rpc_timeout_ms = 600_000;
    let gateway = Gateway::spawn(config).await;
    let create = || {
        http()
            .post(gateway.url("/v1/videos"))
            .json(&json!({"title": "through the proxy"}))
            .send()
    };
    assert_eq!(create().await.expect("post").status(), StatusCode::CREATED);

    proxy.cut();
    wait_for_health(&gateway, StatusCode::SERVICE_UNAVAILABLE).await;
    let response = create().await.expect("post");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header(&response, "retry-after").is_some());
    assert_eq!(error_body(response).await.code, "service_unavailable");

    proxy.restore();
    wait_for_health(&gateway, StatusCode::OK).await;
    assert_eq!(create().await.expect("post").status(), StatusCode::CREATED);
}
