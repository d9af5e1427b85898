//! The commands queue: read which command each delivery is from its `type`, run that
//! command's handler (`cmd/`), reply to the gateway with the same `type`, then ack.
//! Deliveries run concurrently up to the channel's prefetch. At shutdown the consumer stops
//! taking deliveries and lets those in flight finish until `abandon` fires; one abandoned then
//! is dropped unacknowledged and comes again to another replica, which handlers allow.

use std::sync::Arc;
use std::time::Instant;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicPublishOptions, BasicRejectOptions,
};
use lapin::{BasicProperties, Channel};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::field::Empty;
use tracing::Instrument;
use vod_contracts::commands::{
    CancelDirectUpload, CommandKind, CreateApiKey, CreateDirectUpload, CreateFinalUpload,
    CreatePartialUpload, CreateProject, CreateUpload, CreateVideo, CreateWebhook, DeclareLength,
    DeleteVideo, DeleteWebhook, LockUpload, QueueDeliveries, Reject, RejectCode, Reply,
    RevokeApiKey, RotateWebhookSecret, SetProjectQuotas, TerminateUpload, TouchApiKeys,
    UnlockUpload, UpdateVideo, UpdateWebhook,
};
use vod_infra::consume::{Deliveries, Subscription};

use crate::cmd::{self, Handle};
use crate::handlers::{HandlerError, Handlers};
use crate::metrics::INVALID_KIND;

pub async fn run(
    channel: Channel,
    reply_channel: Channel,
    queue: String,
    consumer_tag: String,
    handlers: Arc<Handlers>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    let subscription = Subscription {
        queue,
        consumer_tag,
        what: "commands",
    };
    let mut deliveries = Deliveries::start(&channel, &subscription).await?;
    let in_flight = TaskTracker::new();
    loop {
        let delivery = match deliveries.next(&shutdown).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break,
            Err(ended) => {
                in_flight.close();
                in_flight.wait().await;
                return Err(ended);
            }
        };
        let handlers = handlers.clone();
        let reply_channel = reply_channel.clone();
        let abandon = abandon.clone();
        in_flight.spawn(async move {
            let handled = handle_delivery(delivery, &handlers, &reply_channel);
            if vod_infra::shutdown::unless_abandoned(&abandon, handled)
                .await
                .is_none()
            {
                tracing::warn!("command abandoned at shutdown, it will come again");
            }
        });
    }
    // The broker stops sending; deliveries it sent but nobody took go back at the close.
    let cancelled = channel.basic_cancel(
        subscription.consumer_tag.as_str().into(),
        BasicCancelOptions::default(),
    );
    if let Some(Err(error)) = vod_infra::shutdown::unless_abandoned(&abandon, cancelled).await {
        tracing::debug!(error = %error, "commands consumer not cancelled");
    }
    in_flight.close();
    in_flight.wait().await;
    Ok(())
}

async fn handle_delivery(mut delivery: Delivery, handlers: &Handlers, reply_channel: &Channel) {
    let started = Instant::now();
    let message_type = delivery
        .properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str().to_owned());
    // The handlers name the upload's flow and video on this span once they know them.
    let span = tracing::info_span!(
        "command",
        kind = Empty,
        session_id = Empty,
        flow_id = Empty,
        video_id = Empty,
    );
    let body = std::mem::take(&mut delivery.data);
    let (kind, answer) = match message_type
        .as_deref()
        .and_then(CommandKind::from_message_type)
    {
        Some(kind) => (kind.name(), dispatch(kind, body, handlers, &span).await),
        None => (
            INVALID_KIND,
            Answer::from(Err::<(), _>(invalid(format!(
                "unknown message type {message_type:?}"
            )))),
        ),
    };
    handlers
        .metrics
        .handled(kind, answer.result, started.elapsed());
    if let Err(error) = send_reply(&delivery, reply_channel, message_type, answer.body).await {
        // The gateway is gone or the broker is; the work is done and idempotent, so the
        // delivery is acked anyway and a resend is answered from the database.
        tracing::warn!(error = %error, "reply not sent");
    }
    if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %error, "delivery not acked, it will come again");
        let _ = delivery.reject(BasicRejectOptions { requeue: true }).await;
    }
}

/// Runs the command a message is, by its kind.
async fn dispatch(
    kind: CommandKind,
    body: Vec<u8>,
    handlers: &Handlers,
    span: &tracing::Span,
) -> Answer {
    match kind {
        CommandKind::CreateVideo => handle_command::<CreateVideo>(&body, handlers, span).await,
        CommandKind::CreateUpload => handle_command::<CreateUpload>(&body, handlers, span).await,
        CommandKind::CreatePartialUpload => {
            handle_command::<CreatePartialUpload>(&body, handlers, span).await
        }
        CommandKind::CreateFinalUpload => {
            handle_command::<CreateFinalUpload>(&body, handlers, span).await
        }
        CommandKind::TerminateUpload => {
            handle_command::<TerminateUpload>(&body, handlers, span).await
        }
        CommandKind::DeclareLength => handle_command::<DeclareLength>(&body, handlers, span).await,
        CommandKind::LockUpload => handle_command::<LockUpload>(&body, handlers, span).await,
        CommandKind::UnlockUpload => handle_command::<UnlockUpload>(&body, handlers, span).await,
        CommandKind::CreateProject => handle_command::<CreateProject>(&body, handlers, span).await,
        CommandKind::CreateApiKey => handle_command::<CreateApiKey>(&body, handlers, span).await,
        CommandKind::RevokeApiKey => handle_command::<RevokeApiKey>(&body, handlers, span).await,
        CommandKind::TouchApiKeys => handle_command::<TouchApiKeys>(&body, handlers, span).await,
        CommandKind::UpdateVideo => handle_command::<UpdateVideo>(&body, handlers, span).await,
        CommandKind::DeleteVideo => handle_command::<DeleteVideo>(&body, handlers, span).await,
        CommandKind::CreateDirectUpload => {
            handle_command::<CreateDirectUpload>(&body, handlers, span).await
        }
        CommandKind::CancelDirectUpload => {
            handle_command::<CancelDirectUpload>(&body, handlers, span).await
        }
        CommandKind::SetProjectQuotas => {
            handle_command::<SetProjectQuotas>(&body, handlers, span).await
        }
        CommandKind::CreateWebhook => handle_command::<CreateWebhook>(&body, handlers, span).await,
        CommandKind::UpdateWebhook => handle_command::<UpdateWebhook>(&body, handlers, span).await,
        CommandKind::DeleteWebhook => handle_command::<DeleteWebhook>(&body, handlers, span).await,
        CommandKind::RotateWebhookSecret => {
            handle_command::<RotateWebhookSecret>(&body, handlers, span).await
        }
        CommandKind::QueueDeliveries => {
            handle_command::<QueueDeliveries>(&body, handlers, span).await
        }
        CommandKind::Chunk => {
            let handled = cmd::handle_chunk(body, handlers, span).await;
            span.in_scope(|| handled.into())
        }
    }
}

/// Decodes a JSON command and handles it.
async fn handle_command<C: Handle + DeserializeOwned>(
    body: &[u8],
    handlers: &Handlers,
    span: &tracing::Span,
) -> Answer {
    span.record("kind", C::KIND.name());
    let command = match serde_json::from_slice::<C>(body) {
        Ok(command) => command,
        Err(error) => {
            return Err::<C::Reply, _>(invalid(format!("command is not valid: {error}"))).into()
        }
    };
    if let Some(session_id) = command.session_id() {
        span.record("session_id", tracing::field::display(session_id));
    }
    let handled = command.handle(handlers).instrument(span.clone()).await;
    span.in_scope(|| handled.into())
}

/// A handled message: the body of its reply, and what it came to for the metrics.
pub(crate) struct Answer {
    pub(crate) body: Vec<u8>,
    pub(crate) result: Result<(), RejectCode>,
}

impl<T: Serialize> From<Result<T, HandlerError>> for Answer {
    /// Faults are logged here, on the message's span when called in it.
    fn from(result: Result<T, HandlerError>) -> Self {
        let reply = Reply::from(result.map_err(HandlerError::into_reject));
        let result = match &reply {
            Reply::Ok(_) => Ok(()),
            Reply::Rejected(reject) => Err(reject.code),
        };
        let body = serde_json::to_vec(&reply).unwrap_or_else(|error| {
            tracing::error!(error = %error, "reply does not serialize");
            let reject = Reject::new(RejectCode::Internal, "the reply does not serialize");
            serde_json::to_vec(&Reply::<()>::Rejected(reject)).unwrap_or_default()
        });
        Answer { body, result }
    }
}

pub(crate) fn invalid(message: String) -> HandlerError {
    HandlerError::Rejected(Reject::new(RejectCode::InvalidCommand, message))
}

/// Publishes the reply to `reply_to`, with the `type` of the request it answers.
async fn send_reply(
    delivery: &Delivery,
    reply_channel: &Channel,
    message_type: Option<String>,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    let Some(reply_to) = delivery.properties.reply_to() else {
        return Ok(());
    };
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(message_type) = message_type {
        properties = properties.with_type(message_type.into());
    }
    if let Some(correlation_id) = delivery.properties.correlation_id() {
        properties = properties.with_correlation_id(correlation_id.clone());
    }
    reply_channel
        .basic_publish(
            "".into(),
            reply_to.clone(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?;
    Ok(())
}
