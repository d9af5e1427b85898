//! The stack survives its dependencies going away and coming back: RabbitMQ, Redis, holder's
//! FTP and PostgreSQL, each cut off through a fault proxy in front of it. Meanwhile the gateway
//! answers 503 with `Retry-After` instead of hanging; afterwards the upload resumes from the
//! offset HEAD reports, every offset the client was told is still there, and the stitched
//! source is byte for byte the file sent.

use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::redis;
use reqwest::{Response, StatusCode};
use tokio::sync::mpsc;
use vod_contracts::{FlowStatus, SessionId, VideoStatus};
use vod_tests::media::generate_clip;
use vod_tests::tus::{header_u64, metadata, Upload, OFFSET_OCTET_STREAM, TUS_VERSION};
use vod_tests::{poll_until, Proxied, Stack, StackOptions, TestEnv};

/// The tests of this file run one at a time: each cuts connections a whole stack shares and
/// waits on its clients to connect again, and nine stacks doing so at once in one process on
/// two cores made one of them fail (with an older way of noticing a lost broker connection;
/// not tried in parallel since).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Far more than any answer should take; a request still waiting then is hanging.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Small enough that a PATCH of the test clip is several pieces on the commands queue.
const CHUNK_SIZE_BYTES: usize = 16 * 1024;

/// A tus client that carries on through an outage the way a well-behaved one does: after a
/// failed PATCH it asks HEAD (until the gateway can answer) where the upload stands and resends
/// from there. It checks that no offset it was told ever goes back.
struct Client<'a> {
    stack: &'a Stack,
    upload: Upload,
    bytes: &'a [u8],
    piece_len: usize,
    /// The highest offset the gateway told, by a PATCH or a HEAD.
    told: u64,
}

enum Sent {
    Stored,
    /// 503 with `Retry-After`.
    Unavailable,
    /// 409: locked by an earlier request, or the offset moved; HEAD tells where to resume.
    Conflict,
}

impl<'a> Client<'a> {
    async fn start(stack: &'a Stack, bytes: &'a [u8], pieces: usize) -> Client<'a> {
        Client {
            upload: stack.create_upload(bytes.len() as u64, "clip.mp4").await,
            stack,
            bytes,
            piece_len: bytes.len().div_ceil(pieces),
            told: 0,
        }
    }

    fn is_complete(&self) -> bool {
        self.told == self.bytes.len() as u64
    }

    fn next_piece(&self) -> Vec<u8> {
        let start = self.told as usize;
        let end = (start + self.piece_len).min(self.bytes.len());
        self.bytes[start..end].to_vec()
    }

    /// PATCHes the next piece from the offset last told.
    async fn send_next_piece(&mut self) -> Sent {
        let piece = self.next_piece();
        let response = answered(
            "PATCH",
            self.stack.patch(&self.upload.location, self.told, piece),
        )
        .await;
        self.sent(response).await
    }

    /// PATCHes the next piece in two halves; `between` runs once the gateway has stored part of
    /// the first half, while the request is still open.
    async fn send_next_piece_cut_by(&mut self, between: impl FnOnce()) -> Sent {
        let piece = self.next_piece();
        assert!(
            piece.len() > 2 * CHUNK_SIZE_BYTES,
            "the piece spans several chunks"
        );
        let (first, second) = piece.split_at(piece.len() / 2);
        let (body, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|frame| (frame, receiver))
        });
        let request = self
            .stack
            .http
            .patch(&self.upload.location)
            .header("Tus-Resumable", TUS_VERSION)
            .header("Content-Type", OFFSET_OCTET_STREAM)
            .header("Upload-Offset", self.told.to_string())
            .header("Content-Length", piece.len().to_string())
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        let request = tokio::spawn(tokio::time::timeout(ANSWER_WITHIN * 2, request));
        body.send(Ok(Bytes::copy_from_slice(first)))
            .await
            .expect("the request reads its body");
        let from = self.told;
        let stored = poll_until(
            "the gateway to store part of the PATCH",
            ANSWER_WITHIN,
            || async {
                let offset = self.stack.offset(&self.upload.location).await;
                (offset > from).then_some(offset)
            },
        )
        .await;
        self.now_at(stored);
        between();
        // The request may already have failed and stopped reading.
        let _ = body.send(Ok(Bytes::copy_from_slice(second))).await;
        drop(body);
        let response = request
            .await
            .expect("the request task ends")
            .expect("the PATCH is answered instead of hanging")
            .expect("the gateway answers");
        self.sent(response).await
    }

    async fn sent(&mut self, response: Response) -> Sent {
        match response.status() {
            StatusCode::NO_CONTENT => {
                self.now_at(header_u64(&response, "upload-offset"));
                Sent::Stored
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_retry_after(&response);
                Sent::Unavailable
            }
            StatusCode::CONFLICT => Sent::Conflict,
            status => panic!(
                "PATCH at {} answered {status}: {:?}",
                self.told,
                response.text().await
            ),
        }
    }

    fn now_at(&mut self, offset: u64) {
        assert!(
            offset >= self.told,
            "the gateway told offset {} and now says {offset}",
            self.told
        );
        self.told = offset;
    }

    /// HEAD, until the gateway answers (each refusal a 503 with `Retry-After`).
    async fn resume(&mut self) {
        let location = self.upload.location.clone();
        let offset = poll_until("HEAD to answer", Duration::from_secs(120), || async {
            let response = answered("HEAD", head(self.stack, &location)).await;
            match response.status() {
                StatusCode::OK => Some(header_u64(&response, "upload-offset")),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_retry_after(&response);
                    None
                }
                status => panic!("HEAD answered {status}"),
            }
        })
        .await;
        self.now_at(offset);
    }

    /// Sends the rest, resuming after every failure, until the upload is complete: well within
    /// the uploader's writer lease (two minutes), so a write lock left behind by a PATCH the
    /// outage cut off must have been given back.
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !self.is_complete() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upload did not complete; it stands at {}",
                self.told
            );
            match self.send_next_piece().await {
                Sent::Stored => {}
                Sent::Unavailable | Sent::Conflict => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.resume().await;
                }
            }
        }
    }
}

async fn answered<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(ANSWER_WITHIN, request)
        .await
        .unwrap_or_else(|_| panic!("{what} was not answered within {ANSWER_WITHIN:?}"))
}

async fn head(stack: &Stack, location: &str) -> Response {
    stack
        .http
        .head(location)
        .header("Tus-Resumable", TUS_VERSION)
        .send()
        .await
        .expect("gateway answers")
}

fn assert_retry_after(response: &Response) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|seconds| seconds > 0),
        "a 503 says when to retry: {:?}",
        response.headers()
    );
}

async fn create_upload_status(stack: &Stack) -> Response {
    answered(
        "POST",
        stack
            .http
            .post(stack.url("/v1/uploads"))
            .header("Tus-Resumable", TUS_VERSION)
            .header("Upload-Length", "1000")
            .header("Upload-Metadata", metadata(&[("filename", "during.mp4")]))
            .send(),
    )
    .await
    .expect("gateway answers")
}

fn clip(env: &TestEnv) -> Vec<u8> {
    let path = env.dir.path().join("clip.mp4");
    generate_clip(&path, 4, "320x240");
    let bytes = std::fs::read(&path).expect("clip");
    assert!(
        bytes.len() > 8 * CHUNK_SIZE_BYTES,
        "the clip is {} bytes, too small to cut mid-upload",
        bytes.len()
    );
    bytes
}

fn options(proxied: Proxied) -> StackOptions {
    StackOptions {
        chunk_size_bytes: CHUNK_SIZE_BYTES,
        proxied,
        ..StackOptions::default()
    }
}

/// The spool directory a replica keeps for a session.
fn spool_of(stack: &Stack, replica_address: &str, session_id: SessionId) -> std::path::PathBuf {
    let replica_id = replica_address
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .expect("the address ends in the replica id");
    stack
        .fflow_spool
        .join(replica_id)
        .join(session_id.to_string())
}

/// The replica that is not `address`.
fn other_replica<'s>(stack: &'s Stack, address: &str) -> &'s str {
    stack
        .fflow_addresses
        .iter()
        .find(|other| other.as_str() != address)
        .expect("two replicas")
}

/// A gateway that sends bodies through the broker, a piece per message, as it does without
/// the uploaders' chunk listeners.
fn bodies_through_the_broker(config: &mut gateway::Config) {
    config.uploader_chunks_urls.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_survives_the_broker_connection_dropping_and_coming_back() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        // Every service with its default settings, but bodies on the broker.
        StackOptions {
            configure_gateway: bodies_through_the_broker,
            ..options(Proxied {
                amqp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    let broker = stack.proxies.amqp();
    let sent = client.send_next_piece_cut_by(|| broker.cut()).await;
    assert!(
        matches!(sent, Sent::Unavailable),
        "a PATCH the broker went away under is answered 503"
    );
    client.resume().await;
    let response = create_upload_status(&stack).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&response);
    assert!(matches!(client.send_next_piece().await, Sent::Unavailable));
    client.resume().await;

    broker.restore();
    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

/// With bodies streamed to the chunk listeners, a PATCH needs no broker: its first piece takes
/// the write lock in its own request, its last gives it back. A PATCH under way when the
/// broker goes away stores its whole body, and the next ones are stored too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_patches_need_no_broker() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        options(Proxied {
            amqp: true,
            ..Proxied::default()
        }),
    )
    .await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    let broker = stack.proxies.amqp();
    let sent = client.send_next_piece_cut_by(|| broker.cut()).await;
    assert!(
        matches!(sent, Sent::Stored),
        "a PATCH holding its lock stores its body without the broker"
    );
    assert_eq!(client.told, 2 * client.piece_len as u64);
    assert!(
        matches!(client.send_next_piece().await, Sent::Stored),
        "a PATCH starting while the broker is away is stored"
    );
    assert_eq!(client.told, 3 * client.piece_len as u64);

    broker.restore();
    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

/// Whether the gateway's `/readyz` counts the broker reachable.
async fn gateway_sees_the_broker(stack: &Stack) -> bool {
    let response = answered("GET /readyz", stack.http.get(stack.url("/readyz")).send())
        .await
        .expect("gateway answers");
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_retry_after(&response);
    }
    let readiness: serde_json::Value = response.json().await.expect("readiness JSON");
    assert_eq!(
        status == StatusCode::OK,
        readiness["ready"] == true,
        "{readiness}"
    );
    readiness["dependencies"]
        .as_array()
        .and_then(|dependencies| {
            dependencies
                .iter()
                .find(|dependency| dependency["name"] == "broker")
        })
        .and_then(|broker| broker["reachable"].as_bool())
        .unwrap_or_else(|| panic!("/readyz names the broker: {readiness}"))
}

async fn gateway_counter(stack: &Stack, name: &str) -> f64 {
    stack.metrics(&stack.gateway_url).await.sum(name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_connects_again_after_losing_its_broker_connection() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        // Every service with its default settings, but bodies on the broker, so that a PATCH
        // needs it (a streamed one does not: `streamed_patches_need_no_broker`).
        StackOptions {
            configure_gateway: bodies_through_the_broker,
            ..options(Proxied {
                amqp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    let broker = stack.proxies.amqp();
    broker.cut();
    poll_until(
        "the gateway to count its broker connection lost",
        Duration::from_secs(60),
        || async {
            (gateway_counter(&stack, "gateway_broker_connections_lost_total").await >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert!(
        !gateway_sees_the_broker(&stack).await,
        "/readyz reports the broker unready while the gateway connects again"
    );
    assert!(matches!(client.send_next_piece().await, Sent::Unavailable));
    let response = create_upload_status(&stack).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&response);
    client.resume().await;

    broker.restore();
    poll_until(
        "the gateway to reach the broker again",
        Duration::from_secs(120),
        || async { gateway_sees_the_broker(&stack).await.then_some(()) },
    )
    .await;
    assert!(
        gateway_counter(&stack, "gateway_broker_reconnections_total").await >= 1.0,
        "the gateway opened a new connection"
    );
    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

/// The uploaders look at their connection every 100 ms and, once it is lost, connect again
/// every 100 ms to 500 ms, each connect trying once more after 100 ms (by default: every second;
/// after 1 s doubling up to 30 s; for about half a minute, from 500 ms doubling up to 5 s).
fn uploaders_reconnect_quickly(config: &mut uploader::Config) {
    config.amqp.connect_attempts = 1;
    config.amqp.connect_backoff_ms = 100;
    config.amqp.connect_max_backoff_ms = 100;
    config.broker_check_interval_ms = 100;
    config.broker_reconnect_backoff_ms = 100;
    config.broker_reconnect_max_backoff_ms = 500;
}

/// As `uploaders_reconnect_quickly`, for fflow's publishing connection.
fn fflow_reconnects_quickly(config: &mut fflow::Config) {
    config.amqp.connect_attempts = 1;
    config.amqp.connect_backoff_ms = 100;
    config.amqp.connect_max_backoff_ms = 100;
    config.broker_check_interval_ms = 100;
    config.publish_backoff_ms = 100;
    config.publish_max_backoff_ms = 500;
}

/// A counter of each service at `base_urls`, in their order.
async fn counters(stack: &Stack, base_urls: &[String], name: &str) -> Vec<f64> {
    let mut values = Vec::with_capacity(base_urls.len());
    for base_url in base_urls {
        values.push(stack.metrics(base_url).await.sum(name, &[]));
    }
    values
}

/// Waits until the counter `name` of every service at `base_urls` is at least 1.
async fn poll_until_each_counted(stack: &Stack, what: &str, base_urls: &[String], name: &str) {
    poll_until(what, Duration::from_secs(120), || async {
        let values = counters(stack, base_urls, name).await;
        values.iter().all(|value| *value >= 1.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaders_and_fflow_connect_again_after_losing_their_broker_connections() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_uploader: uploaders_reconnect_quickly,
            configure_fflow: fflow_reconnects_quickly,
            // Bodies on the broker, so that a PATCH needs it.
            configure_gateway: bodies_through_the_broker,
            ..options(Proxied {
                amqp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    assert_eq!(stack.uploader_urls.len(), 2, "two uploaders");
    assert_eq!(stack.fflow_urls.len(), 2, "two fflow replicas");
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    // The uploaders' consumers neither end nor receive again: only the connection tells.
    let broker = stack.proxies.amqp();
    broker.cut();
    poll_until_each_counted(
        &stack,
        "every uploader to count its broker connection lost",
        &stack.uploader_urls,
        "uploader_broker_connections_lost_total",
    )
    .await;
    poll_until_each_counted(
        &stack,
        "every fflow replica to count its broker connection lost",
        &stack.fflow_urls,
        "fflow_broker_connections_lost_total",
    )
    .await;
    assert!(matches!(client.send_next_piece().await, Sent::Unavailable));
    client.resume().await;

    broker.restore();
    poll_until_each_counted(
        &stack,
        "every uploader to connect to the broker again",
        &stack.uploader_urls,
        "uploader_broker_reconnections_total",
    )
    .await;
    poll_until_each_counted(
        &stack,
        "every fflow replica to connect to the broker again",
        &stack.fflow_urls,
        "fflow_broker_reconnections_total",
    )
    .await;
    // The rest of the upload goes through uploaders consuming on their new connections, its
    // replies through their new reply channels, and the outcome through fflow's new one.
    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flushed_routing_cache_is_rebuilt_from_postgres_and_chunks_stay_on_their_replica() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, options(Proxied::default())).await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));
    let session_id = client.upload.session_id;
    let replica = Stack::recorded_replica(&env, session_id)
        .await
        .expect("the first chunk routed the session");
    let route_key = format!("{}:session:{session_id}:fflow", env.redis_prefix);
    let mut redis = env.redis_connection().await;
    let cached: Option<String> = redis::cmd("GET")
        .arg(&route_key)
        .query_async(&mut redis)
        .await
        .expect("redis answers");
    assert_eq!(cached.as_deref(), Some(replica.as_str()));

    // Redis restarted empty, as far as this test's keys go: other tests share the server.
    let flushed = flush_keys(&mut redis, &format!("{}:*", env.redis_prefix)).await;
    assert!(flushed >= 1);

    assert!(matches!(client.send_next_piece().await, Sent::Stored));
    let rebuilt: Option<String> = redis::cmd("GET")
        .arg(&route_key)
        .query_async(&mut redis)
        .await
        .expect("redis answers");
    assert_eq!(
        rebuilt.as_deref(),
        Some(replica.as_str()),
        "the route is cached again, from postgres"
    );
    client.finish().await;
    let other = other_replica(&stack, &replica);
    assert!(
        !spool_of(&stack, other, session_id).exists(),
        "no chunk went to the other replica"
    );
    assert_eq!(
        Stack::recorded_replica(&env, session_id).await.as_deref(),
        Some(replica.as_str()),
        "the session kept its replica"
    );
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

/// Deletes the keys matching `pattern`; returns how many.
async fn flush_keys(redis: &mut deadpool_redis::Connection, pattern: &str) -> usize {
    let mut cursor = 0u64;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .expect("redis answers");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(redis)
                .await
                .expect("redis answers");
            deleted += keys.len();
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_go_on_from_postgres_while_redis_is_unreachable() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        options(Proxied {
            redis: true,
            ..Proxied::default()
        }),
    )
    .await;
    let bytes = clip(&env);
    let mut started = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(started.send_next_piece().await, Sent::Stored));

    stack.proxies.redis().cut();
    // An upload routed before the cut carries on, and a new one is routed without Redis.
    let mut created = Client::start(&stack, &bytes, 4).await;
    for client in [&mut started, &mut created] {
        for _ in 0..2 {
            assert!(
                matches!(client.send_next_piece().await, Sent::Stored),
                "Redis is only a cache: a chunk is stored without it"
            );
        }
    }

    stack.proxies.redis().restore();
    for client in [&mut started, &mut created] {
        client.finish().await;
    }
    for client in [&started, &created] {
        let session_id = client.upload.session_id;
        let replica = Stack::recorded_replica(&env, session_id)
            .await
            .expect("routed");
        let other = other_replica(&stack, &replica);
        assert!(
            !spool_of(&stack, other, session_id).exists(),
            "no chunk of {session_id} went to the other replica"
        );
        stack
            .assert_ready_with_source(client.upload.video_id, &bytes)
            .await;
    }
    stack.assert_running();
    stack.shutdown().await;
}

/// fflow's FTP retries, configured small: 8 attempts 250 ms, 500 ms, ... apart (about 30 s
/// in all).
fn patient_ftp(config: &mut fflow::Config) {
    config.holder.attempts = 8;
    config.holder.backoff_ms = 250;
}

/// Three attempts, 100 ms and 200 ms apart.
fn impatient_ftp(config: &mut fflow::Config) {
    config.holder.attempts = 3;
    config.holder.backoff_ms = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_back_within_the_retries_receives_the_presentation() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_fflow: patient_ftp,
            ..options(Proxied {
                holder_ftp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    let bytes = clip(&env);
    let holder = stack.proxies.holder_ftp();
    holder.cut();
    let mut client = Client::start(&stack, &bytes, 2).await;
    client.finish().await;

    poll_until("fflow to try holder", Duration::from_secs(120), || async {
        (holder.refused() >= 1).then_some(())
    })
    .await;
    holder.restore();

    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    let video = stack.video(client.upload.video_id).await;
    let playback = video.playback.expect("playback URLs once ready");
    stack.fetch(&playback.hls).await;
    stack.fetch(&playback.dash).await;
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_away_past_the_retries_fails_the_flow_with_a_reason_naming_it() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_fflow: impatient_ftp,
            ..options(Proxied {
                holder_ftp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    let bytes = clip(&env);
    stack.proxies.holder_ftp().cut();
    let mut client = Client::start(&stack, &bytes, 2).await;
    client.finish().await;

    let video = stack.wait_until_settled(client.upload.video_id).await;
    assert_eq!(video.status, VideoStatus::Failed, "{video:#?}");
    let flow = &video.flows[0];
    assert_eq!(flow.status, FlowStatus::Failed);
    let reason = flow.error.as_deref().unwrap_or_default();
    assert!(
        reason.contains("holder"),
        "the reason names holder: {reason}"
    );
    assert!(
        stack.proxies.holder_ftp().refused() >= 3,
        "every attempt was made"
    );
    if let Some(source_sha256) = flow.source_sha256.as_deref() {
        assert_eq!(source_sha256, vod_tests::sha256_hex(&bytes));
    }
    assert_eq!(flow.uploaded_bytes, bytes.len() as u64);
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_survives_postgres_going_away_and_coming_back() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        options(Proxied {
            postgres: true,
            ..Proxied::default()
        }),
    )
    .await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    let postgres = stack.proxies.postgres();
    let sent = client.send_next_piece_cut_by(|| postgres.cut()).await;
    assert!(
        matches!(sent, Sent::Unavailable),
        "a PATCH the database went away under is answered 503"
    );
    assert!(matches!(client.send_next_piece().await, Sent::Unavailable));
    let response = answered("HEAD", head(&stack, &client.upload.location)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&response);
    let response = create_upload_status(&stack).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_retry_after(&response);

    postgres.restore();
    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaders_consume_again_after_the_broker_ends_their_consumers_for_good() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(&env, options(Proxied::default())).await;
    let bytes = clip(&env);
    let mut client = Client::start(&stack, &bytes, 4).await;
    assert!(matches!(client.send_next_piece().await, Sent::Stored));

    // Deleting the queue makes the broker cancel every consumer of it: the uploaders must
    // connect and consume anew.
    let connection = lapin::Connection::connect(
        &vod_infra::testsuite::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("broker reachable");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_delete(env.queues().commands.as_str().into(), Default::default())
        .await
        .expect("the commands queue is deleted");
    let _ = connection.close(200, "done".into()).await;

    client.finish().await;
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encode_that_ends_while_the_broker_is_away_is_reported_once_it_is_back() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_fflow: patient_ftp,
            ..options(Proxied {
                amqp: true,
                holder_ftp: true,
                ..Proxied::default()
            })
        },
    )
    .await;
    let bytes = clip(&env);
    // holder away holds the encode back until the broker is away too.
    let holder = stack.proxies.holder_ftp();
    holder.cut();
    let mut client = Client::start(&stack, &bytes, 2).await;
    client.finish().await;
    poll_until("fflow to try holder", Duration::from_secs(120), || async {
        (holder.refused() >= 1).then_some(())
    })
    .await;
    let broker = stack.proxies.amqp();
    broker.cut();
    holder.restore();

    let video = stack.video(client.upload.video_id).await;
    let master = stack
        .holder_root
        .join(vod_contracts::layout::presentation_dir(
            client.upload.video_id,
            video.flows[0].id,
        ))
        .join(vod_contracts::layout::HLS_MASTER);
    poll_until(
        "the presentation on holder",
        Duration::from_secs(120),
        || async { master.exists().then_some(()) },
    )
    .await;
    let db = env.db().await;
    let status: String = db
        .query_one(
            "SELECT status FROM flow WHERE id = $1",
            &[&video.flows[0].id.0],
        )
        .await
        .expect("flow row")
        .get(0);
    assert_eq!(status, "PROCESSING", "the outcome cannot have arrived yet");

    broker.restore();
    stack
        .assert_ready_with_source(client.upload.video_id, &bytes)
        .await;
    stack.assert_running();
    stack.shutdown().await;
}
