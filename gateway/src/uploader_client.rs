//! Request/response with the uploader over AMQP.
//!
//! Requests go to the commands queue through the default exchange; replies come back on a
//! queue of our own, matched to the waiting caller by `correlation_id`. The reply queue has a
//! client-chosen unique name rather than a server-generated one: after a lost connection lapin
//! redeclares it by name, and the broker refuses client declarations of `amq.gen-*` names.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;
use vod_contracts::commands::{
    encode_chunk, Ack, ChunkHeader, Command, Reject, Reply, CHUNK_MESSAGE_TYPE,
    COMMAND_MESSAGE_TYPE,
};
use vod_infra::config::AmqpSettings;

/// Requests are transient: the client is answered only from the uploader's reply, so a request
/// the broker loses is a timeout the client retries, never a lost offset. Writing every chunk to
/// the broker's disk as well costs a third of an upload's throughput (BENCHMARKS.md).
const TRANSIENT: u8 = 1;

/// How often a request waiting for its confirmation or reply checks that the connection is up.
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
}

type PendingReplies = Mutex<HashMap<String, oneshot::Sender<Result<Reply, CallError>>>>;

/// A cheap-to-clone handle on the connection to the broker.
#[derive(Clone)]
pub struct UploaderClient {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    publisher: Channel,
    commands_queue: String,
    reply_queue: String,
    pending: PendingReplies,
    rpc_timeout: Duration,
}

impl UploaderClient {
    /// Connects, declares the queues and starts consuming replies. The returned task ends when
    /// the connection is closed.
    pub async fn connect(
        settings: &AmqpSettings,
        rpc_timeout: Duration,
    ) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let connection = vod_infra::amqp::connect(settings, "gateway").await?;
        let names = vod_infra::amqp::queue_names(settings);
        let publisher = vod_infra::amqp::publisher_channel(&connection).await?;
        vod_infra::amqp::declare_queues(&publisher, &names).await?;

        let replies_channel = connection
            .create_channel()
            .await
            .context("failed to open the replies channel")?;
        let reply_queue = format!(
            "{}.gateway-replies.{}",
            settings.queue_prefix,
            Uuid::new_v4()
        );
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

        let client = Self {
            inner: Arc::new(Inner {
                connection,
                publisher,
                commands_queue: names.commands,
                reply_queue,
                pending: Mutex::new(HashMap::new()),
                rpc_timeout,
            }),
        };
        let task = tokio::spawn(client.clone().dispatch_replies(replies));
        Ok((client, task))
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connection.status().connected()
    }

    /// Closes the connection; the reply task ends and waiting callers get `Unavailable`.
    pub async fn close(&self) {
        if let Err(error) = self.inner.connection.close(200, "OK".into()).await {
            tracing::debug!(error = %error, "amqp connection was already closed");
        }
    }

    pub async fn call(&self, command: &Command) -> Result<Ack, CallError> {
        let body = serde_json::to_vec(command)
            .map_err(|err| CallError::Unavailable(format!("command does not serialize: {err}")))?;
        self.request(COMMAND_MESSAGE_TYPE, body, None).await
    }

    pub async fn send_chunk(&self, header: &ChunkHeader, payload: &[u8]) -> Result<Ack, CallError> {
        self.send_chunk_frame(encode_chunk(header, payload), None)
            .await
    }

    /// Sends a chunk framed with [`encode_chunk`]. The caller drops the payload it framed
    /// first, and the frame is freed once it is written to the broker: while the reply is
    /// awaited, a piece costs no memory here. `slot` is given back at the same moment.
    pub async fn send_chunk_frame(
        &self,
        frame: Vec<u8>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Ack, CallError> {
        self.request(CHUNK_MESSAGE_TYPE, frame, slot).await
    }

    /// Publishes `body` as a request and waits for its reply. `body` is dropped as soon as it is
    /// written to the broker, not held until the reply, and `slot` with it.
    async fn request(
        &self,
        message_type: &str,
        body: Vec<u8>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Ack, CallError> {
        let deadline = Instant::now() + self.inner.rpc_timeout;
        let correlation_id = Uuid::new_v4().to_string();
        let (reply_sender, reply_receiver) = oneshot::channel();
        self.pending().insert(correlation_id.clone(), reply_sender);
        let _forget_on_exit = ForgetPending {
            client: self,
            correlation_id: &correlation_id,
        };

        let properties = BasicProperties::default()
            .with_type(message_type.into())
            .with_delivery_mode(TRANSIENT)
            .with_reply_to(self.inner.reply_queue.as_str().into())
            .with_correlation_id(correlation_id.as_str().into())
            .with_expiration(self.inner.rpc_timeout.as_millis().to_string().into());
        let confirm = self
            .inner
            .publisher
            .basic_publish(
                "".into(),
                self.inner.commands_queue.as_str().into(),
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

        let reply = tokio::time::timeout_at(deadline, self.while_connected(reply_receiver))
            .await
            .map_err(|_| CallError::Timeout)??
            .map_err(|_| CallError::Unavailable("reply consumer stopped".to_owned()))??;
        Result::from(reply).map_err(CallError::Rejected)
    }

    /// `waiting`, or `Unavailable` as soon as the connection is lost. A confirmation or a reply
    /// is not coming while the broker is away (lapin settles pending confirmations only once it
    /// has reconnected, and the reply queue goes with the connection), and waiting for it would
    /// hold the client until the timeout. lapin's recovery waits at least a second before it
    /// reconnects, so checking the connection more often than that sees every loss.
    async fn while_connected<T>(&self, waiting: impl Future<Output = T>) -> Result<T, CallError> {
        let mut waiting = std::pin::pin!(waiting);
        let mut check = tokio::time::interval(CONNECTION_CHECK_INTERVAL);
        loop {
            tokio::select! {
                done = &mut waiting => return Ok(done),
                _ = check.tick() => {
                    if !self.is_connected() {
                        return Err(CallError::Unavailable(
                            "the connection to the broker was lost".to_owned(),
                        ));
                    }
                }
            }
        }
    }

    async fn dispatch_replies(self, mut replies: Consumer) {
        while let Some(delivery) = replies.next().await {
            match delivery {
                Ok(delivery) => {
                    let Some(correlation_id) = delivery.properties.correlation_id().as_ref() else {
                        tracing::warn!("reply without correlation id dropped");
                        continue;
                    };
                    let Some(waiting) = self.pending().remove(correlation_id.as_str()) else {
                        tracing::debug!(correlation_id = %correlation_id, "reply for nobody");
                        continue;
                    };
                    let reply = serde_json::from_slice::<Reply>(&delivery.data).map_err(|err| {
                        tracing::warn!(error = %err, "malformed reply from the uploader");
                        CallError::Unavailable(format!("malformed reply: {err}"))
                    });
                    let _ = waiting.send(reply);
                }
                Err(error) => {
                    tracing::warn!(error = %error, "reply consumer failed");
                    self.fail_pending(&error.to_string());
                }
            }
        }
        self.fail_pending("reply consumer ended");
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
    ) -> MutexGuard<'_, HashMap<String, oneshot::Sender<Result<Reply, CallError>>>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a request from the pending map however its caller stops waiting.
struct ForgetPending<'a> {
    client: &'a UploaderClient,
    correlation_id: &'a str,
}

impl Drop for ForgetPending<'_> {
    fn drop(&mut self) {
        self.client.pending().remove(self.correlation_id);
    }
}
