//! The JSON consumer loop on the real broker: each delivery is settled as its handler answers,
//! a message that is not valid is dropped, and a consumer the broker ends is an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use vod_infra::consume::{consume_json, Settle, Subscription};
use vod_infra::testsuite::TestWorld;

/// Far more than anything here should take.
const WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
struct Message {
    name: String,
}

async fn broker(world: &TestWorld) -> (Connection, String) {
    let connection = vod_infra::amqp::connect(&world.amqp(), "consume-test")
        .await
        .expect("broker reachable");
    let setup = connection.create_channel().await.expect("channel");
    vod_infra::amqp::declare_queues(&setup, &world.queues())
        .await
        .expect("queues declared");
    (connection, world.queues().outcomes)
}

async fn publish(channel: &Channel, queue: &str, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .expect("published")
        .await
        .expect("confirmed");
}

fn subscription(queue: &str) -> Subscription {
    Subscription {
        queue: queue.to_owned(),
        consumer_tag: "consume-test".to_owned(),
        what: "test messages",
    }
}

async fn ready_in(connection: &Connection, queue: &str) -> u32 {
    let depths = vod_infra::amqp::queue_depths(connection, &[queue])
        .await
        .expect("queue inspected");
    depths.first().map_or(0, |(_, ready)| *ready)
}

async fn consumers_of(channel: &Channel, queue: &str) -> u32 {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue inspected");
    declared.consumer_count()
}

#[tokio::test]
async fn deliveries_are_acked_dropped_or_requeued_as_the_handler_answers() {
    let world = TestWorld::new().await;
    let (connection, queue) = broker(&world).await;
    let publisher = vod_infra::amqp::publisher_channel(&connection)
        .await
        .expect("channel");
    for body in [
        &br#"{"name": "ack"}"#[..],
        br#"{"name": "requeue"}"#,
        b"not json",
        br#"{"name": "drop"}"#,
    ] {
        publish(&publisher, &queue, body).await;
    }
    let consuming = vod_infra::amqp::consumer_channel(&connection, 1)
        .await
        .expect("channel");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let handled = {
        let seen = seen.clone();
        let shutdown = shutdown.clone();
        move |message: Message| {
            let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let again = seen.contains(&message.name);
            seen.push(message.name.clone());
            let settle = match message.name.as_str() {
                "requeue" if !again => Settle::RequeueAfter(Duration::from_millis(10)),
                "drop" => Settle::Drop,
                _ => Settle::Ack,
            };
            // A requeued message may come again before or after those behind it.
            let requeued_twice = seen.iter().filter(|name| *name == "requeue").count() == 2;
            if requeued_twice && seen.iter().any(|name| name == "drop") {
                shutdown.cancel();
            }
            std::future::ready(settle)
        }
    };
    let consumed = tokio::time::timeout(
        WITHIN,
        consume_json(&consuming, &subscription(&queue), &shutdown, handled),
    )
    .await
    .expect("the requeued message comes again");
    assert!(consumed.is_ok(), "{consumed:?}");
    let mut seen = seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    seen.sort();
    assert_eq!(seen, ["ack", "drop", "requeue", "requeue"]);
    assert_eq!(ready_in(&connection, &queue).await, 0);
}

#[tokio::test]
async fn a_consumer_the_broker_ends_is_an_error() {
    let world = TestWorld::new().await;
    let (connection, queue) = broker(&world).await;
    let consuming = vod_infra::amqp::consumer_channel(&connection, 1)
        .await
        .expect("channel");
    let shutdown = CancellationToken::new();
    let consumer = subscription(&queue);
    let consumed = consume_json(&consuming, &consumer, &shutdown, |_: Message| {
        std::future::ready(Settle::Ack)
    });
    let deleted = async {
        let other = connection.create_channel().await.expect("channel");
        let deadline = tokio::time::Instant::now() + WITHIN;
        while consumers_of(&other, &queue).await == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never consuming");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Deleting the queue makes the broker cancel its consumers.
        other
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("queue deleted");
    };
    let (consumed, ()) = tokio::time::timeout(WITHIN, async { tokio::join!(consumed, deleted) })
        .await
        .expect("the consumer ends");
    assert!(consumed.is_err());
}
