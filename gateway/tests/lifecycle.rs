//! Start-up and shutdown of the gateway against the real services.

mod support;

use std::time::Duration;

use gateway::App;
use support::TestEnv;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn gateway_stops_when_its_shutdown_token_is_cancelled() {
    let env = TestEnv::new().await;
    let app = App::build(env.config()).await.expect("build");
    assert_ne!(app.local_addr().port(), 0);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("gateway did not stop")
        .expect("gateway task");
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test]
async fn an_oversized_chunk_size_is_refused_at_start() {
    let env = TestEnv::new().await;
    let mut config = env.config();
    config.chunk_size_bytes = 16 * 1024 * 1024;
    assert!(App::build(config).await.is_err());
}
