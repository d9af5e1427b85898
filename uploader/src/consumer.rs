//! The commands queue: decode each delivery, run its handler, reply to the gateway, then ack.
//! Deliveries run concurrently up to the channel's prefetch. At shutdown the consumer stops
//! taking deliveries and lets those in flight finish until `abandon` fires; one abandoned then
//! is dropped unacknowledged and comes again to another replica, which handlers allow.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::field::Empty;
use tracing::Instrument;
use vod_contracts::commands::{
    decode_chunk, Ack, Command, Reject, RejectCode, Reply, CHUNK_MESSAGE_TYPE, COMMAND_MESSAGE_TYPE,
};

use crate::handlers::{HandlerError, Handlers};
use crate::metrics::{command_kind, CHUNK_KIND, INVALID_KIND};

pub async fn run(
    channel: Channel,
    reply_channel: Channel,
    queue: String,
    consumer_tag: String,
    handlers: Arc<Handlers>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let in_flight = TaskTracker::new();
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = consumer.next() => next,
        };
        let delivery = match delivery {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                // The connection or the channel was lost: the replica's connection watch
                // (`startup.rs`) stops this consumer and consumes again on a new connection.
                tracing::warn!(error = %error, "commands consumer interrupted");
                continue;
            }
            None => {
                in_flight.close();
                in_flight.wait().await;
                // The broker cancelled the consumer: the replica connects and consumes again,
                // rather than idle unseen.
                anyhow::bail!("the broker closed the commands consumer");
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
    let cancelled =
        channel.basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default());
    if let Some(Err(error)) = vod_infra::shutdown::unless_abandoned(&abandon, cancelled).await {
        tracing::debug!(error = %error, "commands consumer not cancelled");
    }
    in_flight.close();
    in_flight.wait().await;
    Ok(())
}

async fn handle_delivery(mut delivery: Delivery, handlers: &Handlers, reply_channel: &Channel) {
    let started = Instant::now();
    let kind = delivery
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
    let (kind, result) = match kind.as_deref() {
        Some(CHUNK_MESSAGE_TYPE) => (
            CHUNK_KIND,
            handle_chunk(std::mem::take(&mut delivery.data), handlers, &span).await,
        ),
        Some(COMMAND_MESSAGE_TYPE) => match serde_json::from_slice::<Command>(&delivery.data) {
            Ok(command) => {
                let kind = command_kind(&command);
                span.record("kind", kind);
                if let Some(session_id) = command_session(&command) {
                    span.record("session_id", tracing::field::display(session_id));
                }
                (
                    kind,
                    handlers.command(command).instrument(span.clone()).await,
                )
            }
            Err(error) => (
                INVALID_KIND,
                Err(invalid(format!("command is not valid: {error}"))),
            ),
        },
        other => (
            INVALID_KIND,
            Err(invalid(format!("unknown message type {other:?}"))),
        ),
    };
    let reply = span.in_scope(|| Reply::from(result.map_err(HandlerError::into_reject)));
    handlers.metrics.handled(kind, &reply, started.elapsed());
    if let Err(error) = send_reply(&delivery, reply_channel, &reply).await {
        // The gateway is gone or the broker is; the work is done and idempotent, so the
        // delivery is acked anyway and a resend is answered from the database.
        tracing::warn!(error = %error, "reply not sent");
    }
    if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %error, "delivery not acked, it will come again");
        let _ = delivery.reject(BasicRejectOptions { requeue: true }).await;
    }
}

/// Handles a framed chunk; the payload is passed on as a slice of the frame, not copied.
async fn handle_chunk(
    frame: Vec<u8>,
    handlers: &Handlers,
    span: &tracing::Span,
) -> Result<Ack, HandlerError> {
    let (header, payload_len) = decode_chunk(&frame)
        .map(|(header, payload)| (header, payload.len()))
        .map_err(|error| invalid(format!("chunk is not valid: {error}")))?;
    span.record("kind", CHUNK_KIND);
    span.record("session_id", tracing::field::display(header.session_id));
    let frame = Bytes::from(frame);
    let payload = frame.slice(frame.len() - payload_len..);
    handlers
        .chunk(header, payload)
        .instrument(span.clone())
        .await
}

/// The upload a command is about, when it names one.
fn command_session(command: &Command) -> Option<vod_contracts::SessionId> {
    match command {
        Command::TerminateUpload { session_id }
        | Command::DeclareLength { session_id, .. }
        | Command::LockUpload { session_id, .. }
        | Command::UnlockUpload { session_id, .. } => Some(*session_id),
        Command::CreateVideo { .. }
        | Command::CreateUpload { .. }
        | Command::CreatePartialUpload { .. }
        | Command::CreateFinalUpload { .. } => None,
    }
}

fn invalid(message: String) -> HandlerError {
    HandlerError::Rejected(Reject::new(RejectCode::InvalidCommand, message))
}

async fn send_reply(
    delivery: &Delivery,
    reply_channel: &Channel,
    reply: &Reply,
) -> anyhow::Result<()> {
    let Some(reply_to) = delivery.properties.reply_to() else {
        return Ok(());
    };
    let body = serde_json::to_vec(reply)?;
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
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
