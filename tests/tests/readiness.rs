//! `/readyz` follows the dependencies: a service whose database becomes unreachable turns
//! unready, naming the database, and ready again once it is back.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vod_infra::testsuite::FaultProxy;
use vod_tests::{poll_until, TestEnv};

/// Polls `{base}/readyz` until its status is `status`; returns the body.
async fn wait_for_readyz(http: &reqwest::Client, base: &str, status: u16) -> Value {
    poll_until(
        &format!("{base}/readyz to answer {status}"),
        Duration::from_secs(30),
        || async {
            let response = http.get(format!("{base}/readyz")).send().await.ok()?;
            if response.status().as_u16() != status {
                return None;
            }
            response.json::<Value>().await.ok()
        },
    )
    .await
}

fn reachable(body: &Value, dependency: &str) -> Option<bool> {
    body["dependencies"]
        .as_array()?
        .iter()
        .find(|entry| entry["name"] == dependency)?["reachable"]
        .as_bool()
}

/// Cuts the database behind the service at `base` and restores it, checking `/readyz` at
/// each step.
async fn readyz_follows_the_database(proxy: &FaultProxy, base: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let ready = wait_for_readyz(&http, base, 200).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(reachable(&ready, "database"), Some(true), "{ready}");

    proxy.cut();
    let unready = wait_for_readyz(&http, base, 503).await;
    assert_eq!(unready["ready"], false, "{unready}");
    assert_eq!(reachable(&unready, "database"), Some(false), "{unready}");
    assert_eq!(
        reachable(&unready, "broker"),
        Some(true),
        "only the database is named unreachable: {unready}"
    );

    proxy.restore();
    let ready = wait_for_readyz(&http, base, 200).await;
    assert_eq!(reachable(&ready, "database"), Some(true), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_is_unready_while_its_database_is_unreachable() {
    vod_infra::telemetry::init("warn");
    let env = TestEnv::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&env.postgres_url).await;
    let mut config = gateway::Config::for_tests(&url, &env.queue_prefix);
    config.amqp = env.amqp();
    config.postgres.timeout_ms = 1_000;
    let app = gateway::App::build(config).await.expect("gateway starts");
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));

    readyz_follows_the_database(&proxy, &base).await;

    stop.cancel();
    running
        .await
        .expect("gateway task")
        .expect("gateway stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploader_is_unready_while_its_database_is_unreachable() {
    vod_infra::telemetry::init("warn");
    let env = TestEnv::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&env.postgres_url).await;
    let mut postgres = env.postgres();
    postgres.url = SecretString::from(url);
    postgres.timeout_ms = 1_000;
    let config = uploader::Config {
        listen_addr: "127.0.0.1:0".to_owned(),
        postgres,
        redis: env.redis(),
        amqp: env.amqp(),
        replica_name: "uploader-readiness".to_owned(),
        fflow_token: SecretString::from("readiness-token"),
        ..uploader::Config::default()
    };
    let app = uploader::App::build(config).await.expect("uploader starts");
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));

    readyz_follows_the_database(&proxy, &base).await;
    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("uploader answers");
    assert_eq!(health.status(), 200, "alive while connected to the broker");

    stop.cancel();
    running
        .await
        .expect("uploader task")
        .expect("uploader stops cleanly");
}
