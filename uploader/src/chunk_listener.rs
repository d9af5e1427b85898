//! The chunk listener: the gateway may send a chunk's bytes here over HTTP instead of through
//! the broker (`PUT /v1/chunks`, see `vod_contracts::commands::CHUNKS_PATH`). The body is
//! passed on to the session's fflow replica as it arrives, so the hops of a chunk overlap
//! instead of following one another, and the broker carries no bytes. What is done with the
//! chunk is `Handlers::chunk`, as for one from the broker; the answer is the JSON of a broker
//! reply. Only requests with the gateway's token (`UPLOADER_CHUNKS_TOKEN`) are admitted, before
//! a byte of the body is read.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tracing::field::Empty;
use tracing::Instrument;
use vod_contracts::commands::{ChunkHeader, CommandKind, CHUNKS_PATH, CHUNK_HEADER};
use vod_infra::bearer::SharedToken;

use crate::chunks::{ChunkBody, StreamedBody};
use crate::consumer::{invalid, Answer};
use crate::handlers::{HandlerError, Handlers};

struct ListenerState {
    handlers: Arc<Handlers>,
    token: SharedToken,
}

pub fn router(handlers: Arc<Handlers>, token: SharedToken) -> Router {
    Router::new()
        .route(CHUNKS_PATH, put(put_chunk))
        .with_state(Arc::new(ListenerState { handlers, token }))
}

async fn put_chunk(
    State(state): State<Arc<ListenerState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.token.admits(&headers) {
        tracing::warn!("chunk refused: no valid token");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "code": "unauthorized",
                "message": "the chunk listener needs the gateway's token as a bearer credential",
            })),
        )
            .into_response();
    }
    let started = Instant::now();
    // The handlers name the upload's flow and video on this span once they know them.
    let span = tracing::info_span!(
        "command",
        kind = CommandKind::Chunk.name(),
        session_id = Empty,
        flow_id = Empty,
        video_id = Empty,
    );
    let handled = match read_header(&headers) {
        Ok(header) => {
            span.record("session_id", tracing::field::display(header.session_id));
            let cut = Arc::new(AtomicBool::new(false));
            let frames = at_most(body.into_data_stream(), header.len, cut.clone());
            let body = ChunkBody::Streamed(Some(StreamedBody {
                body: reqwest::Body::wrap_stream(frames),
                cut,
            }));
            state
                .handlers
                .chunk(header, body)
                .instrument(span.clone())
                .await
        }
        Err(error) => Err(error),
    };
    let answer = span.in_scope(|| Answer::from(handled));
    state
        .handlers
        .metrics
        .handled(CommandKind::Chunk.name(), answer.result, started.elapsed());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

fn read_header(headers: &HeaderMap) -> Result<ChunkHeader, HandlerError> {
    let value = headers
        .get(CHUNK_HEADER)
        .ok_or_else(|| invalid(format!("the {CHUNK_HEADER} header is missing")))?;
    serde_json::from_slice(value.as_bytes())
        .map_err(|error| invalid(format!("the {CHUNK_HEADER} header is not valid: {error}")))
}

/// The body's frames, failing once more than `len` bytes came or the body broke; either sets
/// `cut`.
fn at_most<E: std::fmt::Display>(
    frames: impl Stream<Item = Result<Bytes, E>>,
    len: u64,
    cut: Arc<AtomicBool>,
) -> impl Stream<Item = io::Result<Bytes>> {
    let mut arrived = 0u64;
    frames.map(move |frame| {
        let checked = match frame {
            Ok(bytes) => {
                arrived += bytes.len() as u64;
                if arrived > len {
                    Err(io::Error::other(format!(
                        "the chunk's body is longer than the {len} bytes its header says"
                    )))
                } else {
                    Ok(bytes)
                }
            }
            Err(error) => Err(io::Error::other(format!("the chunk's body broke: {error}"))),
        };
        if checked.is_err() {
            cut.store(true, Ordering::Release);
        }
        checked
    })
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    #[tokio::test]
    async fn a_body_longer_than_its_header_says_is_cut() {
        let cut = Arc::new(AtomicBool::new(false));
        let frames = stream::iter([
            Ok::<_, String>(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"de")),
        ]);
        let read: Vec<_> = at_most(frames, 4, cut.clone()).collect().await;
        assert!(read[0].is_ok() && read[1].is_err());
        assert!(cut.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_body_within_its_length_passes_whole() {
        let cut = Arc::new(AtomicBool::new(false));
        let frames = stream::iter([
            Ok::<_, String>(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"d")),
        ]);
        let read: Vec<_> = at_most(frames, 4, cut.clone()).collect().await;
        assert!(read.iter().all(Result::is_ok));
        assert!(!cut.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_broken_body_is_cut() {
        let cut = Arc::new(AtomicBool::new(false));
        let frames = stream::iter([Ok(Bytes::from_static(b"abc")), Err("reset")]);
        let read: Vec<_> = at_most(frames, 10, cut.clone()).collect().await;
        assert!(read[1].is_err());
        assert!(cut.load(Ordering::Acquire));
    }
}
