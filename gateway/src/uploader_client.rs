//! Request/response with the uploader over AMQP.
//!
//! Requests go to the commands queue through the default exchange; replies come back on a
//! queue of our own, matched to the waiting caller by `correlation_id`; each connection
//! declares a reply queue with a new unique name, exclusive to it.
//!
//! When the connection is lost (see `vod_infra::amqp::connect`), or the broker ends the reply
//! consumer, the task `connect` returns fails the requests waiting on it, and opens a new
//! connection with backoff, declaring the queues and a new reply queue, which requests use
//! from then on. Until then they fail at once with `Unavailable`, so the gateway never needs a
//! restart to reach the broker again.

use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vod_contracts::commands::{
    encode_chunk, ChunkHeader, ChunkReply, JsonRequest, Reject, Reply, Request,
};
use vod_infra::amqp::LossWatch;
use vod_infra::backoff::Backoff;
use vod_infra::config::AmqpSettings;

pub use crate::metrics::BrokerMetrics;

/// Requests are transient: the client is answered only from the uploader's reply, so a request
/// the broker loses is a timeout the client retries, never a lost offset. Writing every chunk to
/// the broker's disk as well costs a third of an upload's throughput (BENCHMARKS.md).
const TRANSIENT: u8 = 1;

/// How often a request waiting for its confirmation or reply checks that the connection is up,
/// and how often the connection is checked for having been lost.
const CONNECTION_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a request to the uploader did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("uploader rejected the request: {0}")]
    Rejected(Reject),
    #[error("uploader did not answer in time")]
    Timeout,
    #[error("uploader is unavailable: {0}")]
    Unavailable(String),
    /// The reply is not one to the request sent (another `type`, or a body that does not
    /// decode as the request's reply): the gateway and the uploader disagree on the contract.
    #[error("unexpected reply from the uploader: {0}")]
    UnexpectedReply(String),
}

/// How the client behaves; `Config::uploader_client` reads it from the gateway's settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long a request may take, publish to reply.
    pub rpc_timeout: Duration,
    /// After a connection is lost for good, the wait before connecting again, doubling up to
    /// `reconnect_max_backoff` while the broker cannot be reached.
    pub reconnect_backoff: Duration,
    pub reconnect_max_backoff: Duration,
    pub metrics: BrokerMetrics,
}

type PendingReplies = Mutex<HashMap<String, oneshot::Sender<Result<ReplyMessage, CallError>>>>;

/// A reply as it came, before it is read as the reply to its request.
struct ReplyMessage {
    /// The AMQP `type`: the uploader sends the `type` of the request it answers.
    message_type: Option<String>,
    body: Vec<u8>,
}

impl ReplyMessage {
    /// Reads the reply to an `R`; one of another `type` or shape is a typed error.
    fn read<R: Request>(self) -> Result<R::Reply, CallError> {
        let expected = R::KIND.message_type();
        if self.message_type.as_deref() != Some(expected) {
            return Err(CallError::UnexpectedReply(format!(
                "a reply of type {:?} to a {expected} request",
                self.message_type
            )));
        }
        let reply = serde_json::from_slice::<Reply<R::Reply>>(&self.body).map_err(|err| {
            CallError::UnexpectedReply(format!("malformed reply to a {expected} request: {err}"))
        })?;
        Result::from(reply).map_err(CallError::Rejected)
    }
}

/// A cheap-to-clone handle on the connection to the broker.
#[derive(Clone)]
pub struct UploaderClient {
    shared: Arc<Shared>,
}

struct Shared {
    /// The connection requests use; `None` while one lost for good is being replaced.
    link: RwLock<Option<Arc<Link>>>,
    settings: AmqpSettings,
    options: ClientOptions,
    /// Cancelled by `close`: nothing connects again.
    closing: CancellationToken,
}

/// One connection to the broker with its publisher channel and reply queue. Replies to the
/// requests sent on it come back only on it.
struct Link {
    connection: Connection,
    /// Whether the connection was lost.
    lost_connection: LossWatch,
    publisher: Channel,
    commands_queue: String,
    reply_queue: String,
    pending: PendingReplies,
    /// Set once the connection is given up: requests still waiting on it fail at once.
    lost: AtomicBool,
}

impl UploaderClient {
    /// Connects, declares the queues and starts consuming replies. The returned task hands
    /// replies to their callers and replaces a connection lost for good; it ends after `close`.
    pub async fn connect(
        settings: &AmqpSettings,
        options: ClientOptions,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let (link, replies) = Link::open(settings).await?;
        let client = Self {
            shared: Arc::new(Shared {
                link: RwLock::new(Some(link.clone())),
                settings: settings.clone(),
                options,
                closing: CancellationToken::new(),
            }),
        };
        let task = tokio::spawn(client.clone().supervise(link, replies));
        Ok((client, task))
    }

    /// The connection is up and not given up.
    pub fn is_connected(&self) -> bool {
        self.link().is_some_and(|link| link.is_usable())
    }

    /// Closes the connection for good; the task `connect` returned ends, and waiting callers
    /// get `Unavailable`.
    pub async fn close(&self) {
        self.shared.closing.cancel();
        let link = self
            .shared
            .link
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(link) = link {
            link.give_up("the gateway is stopping");
            link.close().await;
        }
    }

    /// Sends a request and waits for its reply, which is of the request's own reply type.
    pub async fn call<R: JsonRequest>(&self, request: &R) -> Result<R::Reply, CallError> {
        let body = serde_json::to_vec(request)
            .map_err(|err| CallError::Unavailable(format!("command does not serialize: {err}")))?;
        self.request::<R>(body.into(), None).await
    }

    pub async fn send_chunk(
        &self,
        header: &ChunkHeader,
        payload: &[u8],
    ) -> Result<ChunkReply, CallError> {
        self.send_chunk_frame(encode_chunk(header, payload).into(), None)
            .await
    }

    /// Sends a chunk framed as [`encode_chunk`] does. The caller keeps no other share of the
    /// frame, which is freed once it is written to the broker: while the reply is awaited, a
    /// piece costs no memory here. `slot` is given back at the same moment.
    pub async fn send_chunk_frame(
        &self,
        frame: Bytes,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<ChunkReply, CallError> {
        self.request::<ChunkHeader>(frame, slot).await
    }

    async fn request<R: Request>(
        &self,
        body: Bytes,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<R::Reply, CallError> {
        let Some(link) = self.link() else {
            return Err(CallError::Unavailable(
                "connecting to the broker again".to_owned(),
            ));
        };
        link.request(
            R::KIND.message_type(),
            body,
            self.shared.options.rpc_timeout,
            slot,
        )
        .await?
        .read::<R>()
    }

    fn link(&self) -> Option<Arc<Link>> {
        self.shared
            .link
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Hands out replies until the connection is lost for good, then connects again with
    /// backoff, until `close`.
    async fn supervise(self, link: Arc<Link>, replies: Consumer) {
        let closing = &self.shared.closing;
        let options = &self.shared.options;
        let mut backoff =
            Backoff::doubling(options.reconnect_backoff, options.reconnect_max_backoff);
        let mut connected = Some((link, replies));
        while !closing.is_cancelled() {
            let (link, replies) = match connected.take() {
                Some(connected) => connected,
                None => match self.reconnect().await {
                    Some(Ok(opened)) => {
                        backoff.reset();
                        opened
                    }
                    Some(Err(error)) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            error = %format!("{error:#}"),
                            retry_in_ms = wait.as_millis(),
                            "broker unreachable"
                        );
                        wait_or_stop(wait, closing).await;
                        continue;
                    }
                    None => break,
                },
            };
            let Some(reason) = link.dispatch_replies(replies, closing).await else {
                break;
            };
            self.forget(&link);
            link.give_up(&reason);
            options.metrics.connection_lost();
            let wait = backoff.next_delay();
            tracing::warn!(
                reason,
                retry_in_ms = wait.as_millis(),
                "broker connection lost for good, connecting again"
            );
            // What is left of it (channels the broker may still hold) is closed aside: a broker
            // that does not answer must not hold up the new connection.
            tokio::spawn(async move { link.close().await });
            wait_or_stop(wait, closing).await;
        }
    }

    /// Opens a new connection and makes it the one requests use. `None` once closing.
    async fn reconnect(&self) -> Option<anyhow::Result<(Arc<Link>, Consumer)>> {
        let closing = &self.shared.closing;
        let opened = tokio::select! {
            _ = closing.cancelled() => return None,
            opened = Link::open(&self.shared.settings) => opened,
        };
        let (link, replies) = match opened {
            Ok(opened) => opened,
            Err(error) => return Some(Err(error)),
        };
        {
            // Checked under the lock `close` takes: a connection opened as the gateway stops is
            // never handed to requests, and `close` never misses one.
            let mut current = self
                .shared
                .link
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !closing.is_cancelled() {
                *current = Some(link.clone());
                drop(current);
                self.shared.options.metrics.reconnected();
                tracing::info!("connected to the broker again");
                return Some(Ok((link, replies)));
            }
        }
        tokio::spawn(async move { link.close().await });
        None
    }

    /// Stops handing out `link` to requests, unless it was replaced already.
    fn forget(&self, link: &Arc<Link>) {
        let mut current = self
            .shared
            .link
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            *current = None;
        }
    }
}

impl Link {
    /// Connects, declares the queues and a reply queue of its own, and consumes it.
    async fn open(settings: &AmqpSettings) -> anyhow::Result<(Arc<Link>, Consumer)> {
        let connection = vod_infra::amqp::connect(settings, "gateway").await?;
        let lost_connection = LossWatch::start(&connection);
        match Self::set_up(connection, lost_connection, settings).await {
            Ok(opened) => Ok(opened),
            Err((connection, error)) => {
                let _ = connection.close(200, "OK".into()).await;
                Err(error)
            }
        }
    }

    async fn set_up(
        connection: Connection,
        lost_connection: LossWatch,
        settings: &AmqpSettings,
    ) -> Result<(Arc<Link>, Consumer), (Connection, anyhow::Error)> {
        let names = vod_infra::amqp::queue_names(settings);
        let reply_queue = format!(
            "{}.gateway-replies.{}",
            settings.queue_prefix,
            Uuid::new_v4()
        );
        let channels = async {
            let publisher = vod_infra::amqp::publisher_channel(&connection).await?;
            vod_infra::amqp::declare_queues(&publisher, &names).await?;
            let replies_channel = connection
                .create_channel()
                .await
                .context("failed to open the replies channel")?;
            replies_channel
                .queue_declare(
                    reply_queue.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .context("failed to declare the reply queue")?;
            let replies = replies_channel
                .basic_consume(
                    reply_queue.as_str().into(),
                    "gateway-replies".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        exclusive: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .context("failed to consume the reply queue")?;
            anyhow::Ok((publisher, replies))
        };
        let (publisher, replies) = match channels.await {
            Ok(channels) => channels,
            Err(error) => return Err((connection, error)),
        };
        let link = Arc::new(Link {
            connection,
            lost_connection,
            publisher,
            commands_queue: names.commands,
            reply_queue,
            pending: Mutex::new(HashMap::new()),
            lost: AtomicBool::new(false),
        });
        Ok((link, replies))
    }

    fn is_usable(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.connection.status().connected()
    }

    /// The connection was lost (or closed): it never comes back.
    fn is_gone(&self) -> bool {
        self.lost_connection.lost()
    }

    /// Marks the connection lost and fails the requests waiting on it.
    fn give_up(&self, reason: &str) {
        self.lost.store(true, Ordering::SeqCst);
        self.fail_pending(reason);
    }

    async fn close(&self) {
        if let Err(error) = self.connection.close(200, "OK".into()).await {
            tracing::debug!(error = %error, "amqp connection was already closed");
        }
    }

    /// Publishes `body` as a request and waits for its reply. `body` is dropped as soon as it is
    /// written to the broker, not held until the reply, and `slot` with it.
    async fn request(
        &self,
        message_type: &str,
        body: Bytes,
        rpc_timeout: Duration,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<ReplyMessage, CallError> {
        let deadline = Instant::now() + rpc_timeout;
        let correlation_id = Uuid::new_v4().to_string();
        let (reply_sender, reply_receiver) = oneshot::channel();
        self.pending().insert(correlation_id.clone(), reply_sender);
        let _forget_on_exit = ForgetPending {
            link: self,
            correlation_id: &correlation_id,
        };

        let properties = BasicProperties::default()
            .with_type(message_type.into())
            .with_delivery_mode(TRANSIENT)
            .with_reply_to(self.reply_queue.as_str().into())
            .with_correlation_id(correlation_id.as_str().into())
            .with_expiration(rpc_timeout.as_millis().to_string().into());
        let confirm = self
            .publisher
            .basic_publish(
                "".into(),
                self.commands_queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await
            .map_err(|err| CallError::Unavailable(format!("publish failed: {err}")))?;
        // lapin has written its copy of the body to the socket by now.
        drop(body);
        drop(slot);
        let confirmation = tokio::time::timeout_at(deadline, self.while_connected(confirm))
            .await
            .map_err(|_| CallError::Timeout)??
            .map_err(|err| CallError::Unavailable(format!("publish not confirmed: {err}")))?;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(_)) => {
                return Err(CallError::Unavailable(
                    "request was returned unroutable".to_owned(),
                ))
            }
            Confirmation::Nack(_) => {
                return Err(CallError::Unavailable(
                    "broker refused the request".to_owned(),
                ))
            }
        }

        tokio::time::timeout_at(deadline, self.while_connected(reply_receiver))
            .await
            .map_err(|_| CallError::Timeout)??
            .map_err(|_| CallError::Unavailable("reply consumer stopped".to_owned()))?
    }

    /// `waiting`, or `Unavailable` as soon as the connection is lost or given up. A
    /// confirmation or a reply is not coming on a lost connection (the reply queue goes with
    /// it), and waiting for it would hold the client until the timeout.
    async fn while_connected<T>(&self, waiting: impl Future<Output = T>) -> Result<T, CallError> {
        let mut waiting = std::pin::pin!(waiting);
        let mut check = tokio::time::interval(CONNECTION_CHECK_INTERVAL);
        loop {
            tokio::select! {
                done = &mut waiting => return Ok(done),
                _ = check.tick() => {
                    if !self.is_usable() {
                        return Err(CallError::Unavailable(
                            "the connection to the broker was lost".to_owned(),
                        ));
                    }
                }
            }
        }
    }

    /// Hands each reply to its caller until the connection is lost for good, and says why; or
    /// until `closing`, then `None`. A lost connection does not end its consumers
    /// (they yield one error and then nothing), so its status is watched as well.
    async fn dispatch_replies(
        &self,
        mut replies: Consumer,
        closing: &CancellationToken,
    ) -> Option<String> {
        let mut check = tokio::time::interval(CONNECTION_CHECK_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = closing.cancelled() => return None,
                delivery = replies.next() => match delivery {
                    Some(Ok(delivery)) => self.deliver(delivery),
                    Some(Err(error)) => {
                        // The connection or the channel was lost, and these replies with it.
                        tracing::warn!(error = %error, "reply consumer failed");
                        self.fail_pending(&error.to_string());
                    }
                    None => return Some("the broker ended the reply consumer".to_owned()),
                },
                _ = check.tick() => {
                    if self.is_gone() {
                        return Some("the connection to the broker was lost".to_owned());
                    }
                }
            }
        }
    }

    fn deliver(&self, delivery: Delivery) {
        let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
            tracing::warn!("reply without correlation id dropped");
            return;
        };
        let Some(waiting) = self.pending().remove(correlation_id.as_str()) else {
            tracing::debug!(correlation_id = %correlation_id, "reply for nobody");
            return;
        };
        let message_type = delivery
            .properties
            .kind()
            .as_ref()
            .map(|kind| kind.as_str().to_owned());
        let _ = waiting.send(Ok(ReplyMessage {
            message_type,
            body: delivery.data,
        }));
    }

    /// Replies to requests in flight are lost with the connection: fail them now rather than
    /// letting them wait for their timeout.
    fn fail_pending(&self, reason: &str) {
        for (_, waiting) in self.pending().drain() {
            let _ = waiting.send(Err(CallError::Unavailable(reason.to_owned())));
        }
    }

    fn pending(
        &self,
    ) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Result<ReplyMessage, CallError>>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Waits `delay`, or less if the client is closing.
async fn wait_or_stop(delay: Duration, closing: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = closing.cancelled() => {}
    }
}

/// Removes a request from the pending map however its caller stops waiting.
struct ForgetPending<'a> {
    link: &'a Link,
    correlation_id: &'a str,
}

impl Drop for ForgetPending<'_> {
    fn drop(&mut self) {
        self.link.pending().remove(self.correlation_id);
    }
}

#[cfg(test)]
mod tests {
    //! On the real broker: a connection lost for good is replaced, the requests waiting on it
    //! fail instead of hanging, and the client stops cleanly whatever it is doing.
    use lapin::options::{BasicAckOptions, QueueDeleteOptions};
    use lapin::types::ShortString;
    use secrecy::SecretString;
    use vod_contracts::commands::{CreateVideo, LockUpload, VideoCreated};
    use vod_contracts::{SessionId, VideoId, WriterId};
    use vod_infra::testsuite::{FaultProxy, TestWorld};

    use super::*;

    /// Far more than anything here should take; a future still waiting then is hanging.
    const HANG: Duration = Duration::from_secs(60);

    fn options(metrics: &BrokerMetrics) -> ClientOptions {
        ClientOptions {
            // A request that waited for its timeout would fail the test.
            rpc_timeout: Duration::from_secs(600),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_max_backoff: Duration::from_millis(200),
            metrics: metrics.clone(),
        }
    }

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(HANG, future)
            .await
            .unwrap_or_else(|_| panic!("{what} did not happen within {HANG:?}"))
    }

    async fn poll_until(what: &str, mut check: impl FnMut() -> bool) {
        within(what, async {
            while !check() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    fn create_video() -> CreateVideo {
        CreateVideo {
            project_id: vod_contracts::ProjectId::DEFAULT,
            title: "t".to_owned(),
            description: String::new(),
            playback_policy: vod_contracts::PlaybackPolicy::Public,
        }
    }

    /// Answers every request on the commands queue with a new video, as the uploader would
    /// answer `CreateVideo`: with the `type` of the request, or with `reply_type` when given.
    async fn answer_requests(
        settings: &AmqpSettings,
        reply_type: Option<&'static str>,
    ) -> Connection {
        let connection = vod_infra::amqp::connect(settings, "uploader-stand-in")
            .await
            .expect("broker reachable");
        let channel = vod_infra::amqp::consumer_channel(&connection, 1)
            .await
            .expect("channel");
        let names = vod_infra::amqp::queue_names(settings);
        vod_infra::amqp::declare_queues(&channel, &names)
            .await
            .expect("queues declared");
        let mut requests = channel
            .basic_consume(
                names.commands.as_str().into(),
                "uploader-stand-in".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("commands consumed");
        tokio::spawn(async move {
            while let Some(Ok(request)) = requests.next().await {
                let reply = Reply::Ok(VideoCreated {
                    video_id: VideoId::new(),
                });
                let properties = request.properties.clone();
                let message_type = reply_type
                    .map(ShortString::from)
                    .or_else(|| properties.kind().clone())
                    .unwrap_or_else(|| ShortString::from(""));
                if let (Some(reply_to), Some(correlation_id)) =
                    (properties.reply_to(), properties.correlation_id())
                {
                    let _ = channel
                        .basic_publish(
                            "".into(),
                            reply_to.clone(),
                            BasicPublishOptions::default(),
                            &serde_json::to_vec(&reply).expect("reply serializes"),
                            BasicProperties::default()
                                .with_correlation_id(correlation_id.clone())
                                .with_type(message_type),
                        )
                        .await;
                }
                let _ = request.ack(BasicAckOptions::default()).await;
            }
        });
        connection
    }

    fn waiting_requests(client: &UploaderClient) -> usize {
        client.link().map_or(0, |link| link.pending().len())
    }

    fn reply_queue(client: &UploaderClient) -> Option<String> {
        client.link().map(|link| link.reply_queue.clone())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reply_queue_the_broker_ends_fails_its_requests_and_a_new_one_replaces_it() {
        let world = TestWorld::new().await;
        let metrics = BrokerMetrics::default();
        let (client, task) = UploaderClient::connect(&world.amqp(), options(&metrics))
            .await
            .expect("broker reachable");
        let first_queue = reply_queue(&client).expect("connected");

        // Nobody answers yet: the request waits for its reply.
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.call(&create_video()).await }
        });
        poll_until("the request to wait for its reply", || {
            waiting_requests(&client) == 1
        })
        .await;
        // As when an operator deletes it: the broker cancels the consumer. Only its own
        // connection may touch the queue. The client may close this channel on the
        // cancellation before the deletion's answer arrives, so the answer is not awaited as
        // proof: the waiting request failing below is.
        let link = client.link().expect("connected");
        let deleted = link
            .publisher
            .queue_delete(first_queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        if let Err(error) = deleted {
            tracing::info!(%error, "the answer to the deletion did not arrive");
        }
        drop(link);

        let answer = within("the waiting request to fail", waiting)
            .await
            .expect("the request task ends");
        assert!(
            matches!(answer, Err(CallError::Unavailable(_))),
            "{answer:?}"
        );
        poll_until("a new connection", || {
            client.is_connected() && reply_queue(&client).is_some_and(|queue| queue != first_queue)
        })
        .await;
        assert_eq!(metrics.connections_lost.get(), 1);
        assert_eq!(metrics.reconnections.get(), 1);

        let _uploader = answer_requests(&world.amqp(), None).await;
        let answer = within("an answer", client.call(&create_video())).await;
        assert!(matches!(answer, Ok(VideoCreated { .. })), "{answer:?}");

        client.close().await;
        within("the client to stop", task)
            .await
            .expect("the client task ends cleanly");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_connection_is_replaced_once_the_broker_is_back() {
        let world = TestWorld::new().await;
        let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
        let settings = AmqpSettings {
            url: SecretString::from(url),
            connect_attempts: 1,
            connect_backoff_ms: 50,
            connect_max_backoff_ms: 50,
            ..world.amqp()
        };
        let metrics = BrokerMetrics::default();
        let (client, task) = UploaderClient::connect(&settings, options(&metrics))
            .await
            .expect("broker reachable");
        let _uploader = answer_requests(&world.amqp(), None).await;
        let answer = within("an answer", client.call(&create_video())).await;
        assert!(matches!(answer, Ok(VideoCreated { .. })), "{answer:?}");

        proxy.cut();
        poll_until("the connection to be lost", || {
            metrics.connections_lost.get() == 1
        })
        .await;
        assert!(!client.is_connected());
        let answer = within("a refusal", client.call(&create_video())).await;
        assert!(
            matches!(answer, Err(CallError::Unavailable(_))),
            "{answer:?}"
        );
        // Only this client goes through the proxy: it keeps trying while the broker is away.
        let refused = proxy.refused();
        poll_until("the client to try again, and again", || {
            proxy.refused() >= refused + 3
        })
        .await;
        assert!(!client.is_connected());
        assert_eq!(metrics.reconnections.get(), 0);

        proxy.restore();
        poll_until("the client to connect again", || client.is_connected()).await;
        assert_eq!(metrics.reconnections.get(), 1);
        let answer = within("an answer", client.call(&create_video())).await;
        assert!(matches!(answer, Ok(VideoCreated { .. })), "{answer:?}");

        client.close().await;
        within("the client to stop", task)
            .await
            .expect("the client task ends cleanly");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_closed_while_the_broker_is_away_stops_at_once() {
        let world = TestWorld::new().await;
        let (proxy, url) = FaultProxy::in_front_of(&vod_infra::testsuite::amqp_url()).await;
        let settings = AmqpSettings {
            url: SecretString::from(url),
            connect_attempts: 1,
            connect_backoff_ms: 50,
            connect_max_backoff_ms: 50,
            ..world.amqp()
        };
        let metrics = BrokerMetrics::default();
        let (client, task) = UploaderClient::connect(&settings, options(&metrics))
            .await
            .expect("broker reachable");
        proxy.cut();
        poll_until("the connection to be lost", || {
            metrics.connections_lost.get() == 1
        })
        .await;
        client.close().await;
        within("the client to stop", task)
            .await
            .expect("the client task ends cleanly");
        assert!(!client.is_connected());
        let answer = client.call(&create_video()).await;
        assert!(
            matches!(answer, Err(CallError::Unavailable(_))),
            "{answer:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reply_that_is_not_the_one_to_the_request_is_a_typed_error() {
        let world = TestWorld::new().await;
        let metrics = BrokerMetrics::default();
        let (client, task) = UploaderClient::connect(&world.amqp(), options(&metrics))
            .await
            .expect("broker reachable");
        let lock = LockUpload {
            project_id: vod_contracts::ProjectId::DEFAULT,
            session_id: SessionId::new(),
            writer: WriterId::new(),
            offset: 0,
        };

        // The reply names the request, but its body is another request's reply.
        let uploader = answer_requests(&world.amqp(), None).await;
        let answer = within("an answer", client.call(&lock)).await;
        assert!(
            matches!(answer, Err(CallError::UnexpectedReply(_))),
            "{answer:?}"
        );
        let _ = uploader.close(200, "OK".into()).await;

        // The reply is a video's, and says so.
        let _uploader = answer_requests(&world.amqp(), Some("vod.create_video")).await;
        let answer = within("an answer", client.call(&lock)).await;
        assert!(
            matches!(answer, Err(CallError::UnexpectedReply(_))),
            "{answer:?}"
        );
        let answer = within("an answer", client.call(&create_video())).await;
        assert!(matches!(answer, Ok(VideoCreated { .. })), "{answer:?}");

        client.close().await;
        within("the client to stop", task)
            .await
            .expect("the client task ends cleanly");
    }
}
