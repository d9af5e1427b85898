//! A chunk is framed rather than JSON: its header is read from the frame, and its payload is
//! passed on as a slice of the frame, not copied. What is done with it stays in
//! `Handlers::chunk`.

use bytes::Bytes;
use tracing::Instrument;
use vod_contracts::commands::{decode_chunk, ChunkReply, CommandKind, Reject, RejectCode};

use crate::chunks::ChunkBody;
use crate::handlers::{HandlerError, Handlers};

pub async fn handle_chunk(
    frame: Vec<u8>,
    handlers: &Handlers,
    span: &tracing::Span,
) -> Result<ChunkReply, HandlerError> {
    let (header, payload_len) = decode_chunk(&frame)
        .map(|(header, payload)| (header, payload.len()))
        .map_err(|error| {
            Reject::new(
                RejectCode::InvalidCommand,
                format!("chunk is not valid: {error}"),
            )
        })?;
    span.record("kind", CommandKind::Chunk.name());
    span.record("session_id", tracing::field::display(header.session_id));
    let frame = Bytes::from(frame);
    let payload = frame.slice(frame.len() - payload_len..);
    handlers
        .chunk(header, ChunkBody::Whole(payload))
        .instrument(span.clone())
        .await
}
