//! On the real broker, through a fault proxy: `LossWatch` sees every lost connection, lapin does
//! not bring one back by itself, and one connect waits out a broker away for less than its
//! budget.

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use secrecy::SecretString;
use vod_infra::amqp::LossWatch;
use vod_infra::config::AmqpSettings;
use vod_infra::testsuite::{FaultProxy, TestWorld};

/// Far more than anything here should take.
const WITHIN: Duration = Duration::from_secs(60);
/// Connections of both kinds, several at once, as a loaded service has.
const CONNECTIONS: usize = 6;

/// Settings that reach the broker through the proxy at `url`, trying `attempts` more times
/// every 100 ms while it is away, each attempt given a second.
fn through(world: &TestWorld, url: &str, attempts: usize) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url.to_owned()),
        connect_attempts: attempts,
        connect_backoff_ms: 100,
        connect_max_backoff_ms: 100,
        connect_timeout_ms: 1_000,
        ..world.amqp()
    }
}

/// A connection with a channel like the services' ones: publishing with confirms (fflow) for
/// even `index`, consuming a queue of its own (the uploaders) for odd ones.
async fn in_use(settings: &AmqpSettings, index: usize) -> (Connection, LossWatch) {
    let connection = vod_infra::amqp::connect(settings, "loss-test")
        .await
        .expect("broker reachable");
    let watch = LossWatch::start(&connection);
    if index.is_multiple_of(2) {
        vod_infra::amqp::publisher_channel(&connection)
            .await
            .expect("channel");
        return (connection, watch);
    }
    let channel = vod_infra::amqp::consumer_channel(&connection, 1)
        .await
        .expect("channel");
    let queue = format!("{}.loss-test.{index}", settings.queue_prefix);
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
            "loss-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consuming");
    (connection, watch)
}

/// `CONNECTIONS` connections in use, opened at once.
async fn connections_in_use(settings: &AmqpSettings) -> Vec<(Connection, LossWatch)> {
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

/// lapin marks a lost connection on a thread of its own, while the steps that tell the
/// connection's users run as tasks on the runtime: the single runtime thread is held here while
/// lapin notices the cut, as a loaded service's would be.
#[tokio::test(flavor = "current_thread")]
async fn every_lost_connection_is_seen_lost_and_stays_lost() {
    let world = TestWorld::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
    let settings = through(&world, &url, 1);
    let connections = connections_in_use(&settings).await;
    assert!(connections.iter().all(|(_, watch)| !watch.lost()));

    proxy.cut();
    std::thread::sleep(Duration::from_secs(2));
    for (_, watch) in &connections {
        tokio::time::timeout(WITHIN, watch.wait(Duration::from_millis(100)))
            .await
            .expect("the loss is seen");
    }
    // lapin's recovery is off: none of them comes back by itself, the services connect again.
    let refused = proxy.refused();
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(proxy.refused(), refused, "nobody tried to reconnect");
    for (connection, watch) in &connections {
        assert!(watch.lost());
        assert!(!connection.status().connected());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_use_is_not_seen_lost() {
    let world = TestWorld::new().await;
    let (_proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
    let settings = through(&world, &url, 1);
    let connections = connections_in_use(&settings).await;
    for (connection, _) in &connections {
        vod_infra::amqp::queue_depths(connection, &[])
            .await
            .expect("a channel opens and closes");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (connection, watch) in &connections {
        assert!(!watch.lost());
        assert!(connection.status().connected());
    }
    // Closed on purpose, a connection counts as lost: nothing comes on it any more.
    let (connection, watch) = &connections[0];
    connection
        .close(200, "OK".into())
        .await
        .expect("connection closed");
    tokio::time::timeout(WITHIN, watch.wait(Duration::from_millis(100)))
        .await
        .expect("the close is seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connect_waits_out_a_broker_away_for_less_than_its_budget() {
    let world = TestWorld::new().await;
    let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
    proxy.cut();
    // Far more attempts than the cut lasts.
    let patient = through(&world, &url, 1_000);
    let connecting =
        tokio::spawn(async move { vod_infra::amqp::connect(&patient, "loss-test").await });
    poll_until("a few refused attempts", || proxy.refused() >= 3).await;
    assert!(!connecting.is_finished());
    proxy.restore();
    let connection = tokio::time::timeout(WITHIN, connecting)
        .await
        .expect("connected within the budget")
        .expect("the connect task ends")
        .expect("broker reachable once back");
    assert!(connection.status().connected());

    // Away for longer than the budget: the connect fails, it does not hang.
    proxy.cut();
    let impatient = through(&world, &url, 2);
    let failed = tokio::time::timeout(WITHIN, vod_infra::amqp::connect(&impatient, "loss-test"))
        .await
        .expect("the connect gives up");
    assert!(failed.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_a_server_that_never_answers_gives_up() {
    let world = TestWorld::new().await;
    // Accepts every connection and never says a word, as a broker hung while starting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let url = format!(
        "amqp://guest:guest@{}/%2f",
        listener.local_addr().expect("address")
    );
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let settings = through(&world, &url, 1);
    let failed = tokio::time::timeout(WITHIN, vod_infra::amqp::connect(&settings, "loss-test"))
        .await
        .expect("the connect gives up");
    let error = format!("{:#}", failed.expect_err("nobody answered"));
    assert!(error.contains("no answer within 1000 ms"), "{error}");
    accepted.abort();
}
