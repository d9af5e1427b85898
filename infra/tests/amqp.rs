//! On the real broker, through a fault proxy: `GiveUpWatch` tells a connection lapin gave up on
//! from one it is still recovering.

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use secrecy::SecretString;
use vod_infra::amqp::GiveUpWatch;
use vod_infra::config::AmqpSettings;
use vod_infra::testsuite::{FaultProxy, TestWorld};

/// Far more than anything here should take.
const WITHIN: Duration = Duration::from_secs(60);
/// lapin's give-up races with its own recovery steps; several connections at once make the
/// race show.
const CONNECTIONS: usize = 6;

fn through(world: &TestWorld, url: &str, attempts: usize) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url.to_owned()),
        recovery_attempts: attempts,
        recovery_backoff_ms: 100,
        recovery_max_backoff_ms: 100,
        // Only lapin's own give-up counts here, not the stall fallback.
        recovery_stall_ms: 3_600_000,
        ..world.amqp()
    }
}

/// A connection with a channel like the services' ones: publishing with confirms (fflow) for
/// even `index`, consuming a queue of its own (the uploaders) for odd ones.
async fn in_use(settings: &AmqpSettings, index: usize) -> (Connection, GiveUpWatch) {
    let connection = vod_infra::amqp::connect(settings, "give-up-test")
        .await
        .expect("broker reachable");
    let watch = GiveUpWatch::start(&connection, settings);
    if index.is_multiple_of(2) {
        vod_infra::amqp::publisher_channel(&connection)
            .await
            .expect("channel");
        return (connection, watch);
    }
    let channel = vod_infra::amqp::consumer_channel(&connection, 1)
        .await
        .expect("channel");
    let queue = format!("{}.give-up-test.{index}", settings.queue_prefix);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue declared");
    channel
        .basic_consume(
            queue.as_str().into(),
            "give-up-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consuming");
    (connection, watch)
}

/// `CONNECTIONS` connections in use, opened at once.
async fn connections_in_use(settings: &AmqpSettings) -> Vec<(Connection, GiveUpWatch)> {
    futures_util::future::join_all((0..CONNECTIONS).map(|index| in_use(settings, index))).await
}

async fn poll_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// lapin gives a connection up on a thread of its own, while its recovery steps run as tasks on
/// the runtime. On a busy runtime those steps come late and set the status of a connection
/// already given up back to connecting or reconnecting, where it stays: the status then never
/// tells, the watch still does. The single runtime thread is held here while lapin gives up,
/// as a loaded service's would be.
#[tokio::test(flavor = "current_thread")]
async fn every_connection_lapin_gives_up_is_seen_given_up() {
    let world = TestWorld::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
    let settings = through(&world, &url, 1);
    let connections = connections_in_use(&settings).await;
    assert!(connections.iter().all(|(_, watch)| !watch.given_up()));

    proxy.cut();
    poll_until("lapin to notice the cut", || {
        connections
            .iter()
            .all(|(connection, _)| !connection.status().connected())
    })
    .await;
    std::thread::sleep(Duration::from_secs(2));
    for (_, watch) in &connections {
        tokio::time::timeout(WITHIN, watch.wait(Duration::from_millis(100)))
            .await
            .expect("the give-up is seen");
    }
    // Whatever status lapin left them in, none of them comes back.
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (connection, watch) in &connections {
        assert!(watch.given_up());
        assert!(!connection.status().connected());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lapin_recovers_is_never_seen_given_up() {
    let world = TestWorld::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
    // Far more attempts than the cut lasts.
    let settings = through(&world, &url, 1_000);
    let connections = connections_in_use(&settings).await;

    proxy.cut();
    poll_until("lapin to notice the cut", || {
        connections
            .iter()
            .all(|(connection, _)| !connection.status().connected())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    poll_until("lapin to recover every connection", || {
        assert!(
            connections.iter().all(|(_, watch)| !watch.given_up()),
            "a connection lapin is recovering is not given up"
        );
        connections
            .iter()
            .all(|(connection, _)| connection.status().connected())
    })
    .await;
}
