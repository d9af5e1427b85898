//! Writing a request body to an upload through the uploader: the memory it may hold
//! (`reserve_buffer`), the body cut into pieces as it streams in (`upload_stream`), or passed
//! on piece by piece to a chunk listener (`stream_through`), each piece sent under the
//! request's write lease, and where the upload stands once it is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use axum::body::Body;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;
use vod_contracts::commands::{
    chunk_frame_prefix, ChunkCommit, ChunkHeader, ChunkReply, UnlockUpload,
};
use vod_contracts::{ProjectId, SessionId, WriterId};

use super::lock::{lock_upload, Lock, UnlockLater, Writing};
use crate::body_pace::{paced, Pace};
use crate::chunk_client::ChunkClient;
use crate::error::ApiError;
use crate::metrics::GatewayMetrics;
use crate::state::AppState;
use crate::stream_through::{stream_through, Span};
use crate::tus::{self, Checksum};
use crate::upload_stream::{stream_in_pieces, BodyEnd, Piece, StoreFailed, Storing, Streamed};
use crate::uploader_client::{CallError, UploaderClient};

/// Where a request body goes.
pub struct BodyTarget {
    /// The project of the request, which the write lock is asked for.
    pub project_id: ProjectId,
    pub session_id: SessionId,
    pub offset: u64,
    /// The upload's length, or the largest one allowed while it is deferred.
    pub limit: u64,
    /// Where the body ends, when its length is declared.
    pub ends_at: Option<u64>,
    pub checksum: Option<Checksum>,
}

pub struct Stored {
    pub streamed: Streamed,
    /// Where the upload stands: the staged bytes of a checksummed body count only once
    /// committed.
    committed: u64,
    pub checksum_mismatch: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Stored {
    pub fn uploaded_bytes(&self) -> u64 {
        self.committed
    }
}

/// Sends the body to the uploader in pieces of at most `chunk_size_bytes`: streamed to a chunk
/// listener one piece after another when they are configured (a checksummed body excepted),
/// else through the broker `chunks_in_flight` at a time. The upload's write lock is asked for
/// at once, while the first piece is read, and the last piece gives it back; a request whose last piece did not get through
/// gives it back on its own. It runs as its own task so that the bytes received before a client
/// goes away are still stored when the request itself is dropped.
pub async fn store_body(
    state: &AppState,
    target: BodyTarget,
    body: Body,
) -> Result<Stored, StoreFailed<ApiError>> {
    let cutting = Cutting {
        piece_size: state.config.chunk_size_bytes,
        in_flight: state.config.chunks_in_flight,
        pace: state.config.body_pace(),
    };
    let offset = target.offset;
    // A body streamed to a chunk listener holds no piece; one sent through the broker (or
    // checked whole against its checksum) holds its pieces in flight.
    let chunks = state.chunks.clone();
    let streaming = chunks.is_some() && target.checksum.is_none();
    let buffering = if streaming {
        None
    } else {
        reserve_buffer(state, &target)
            .await
            .map_err(|error| StoreFailed {
                uploaded_bytes: offset,
                error,
            })?
    };
    let answer_within = state.config.rpc_timeout();
    let uploader = state.uploader.clone();
    let metrics = state.metrics.clone();
    let publishing = state.publishing.clone();
    let lock_wait_ms = state.config.lock_wait_ms;
    let lock_wait = Duration::from_millis(lock_wait_ms);
    let unlock_later = UnlockLater::from_state(state);
    let storing = state.body_tasks.spawn(async move {
        let _buffering = buffering;
        let writer = WriterId::new();
        let session_id = target.session_id;
        let ask_lock = {
            let uploader = uploader.clone();
            let project_id = target.project_id;
            move || {
                lock_upload(
                    uploader.clone(),
                    project_id,
                    session_id,
                    writer,
                    offset,
                    lock_wait,
                )
                .instrument(tracing::Span::current())
            }
        };
        // A streamed body's first piece takes the lock in its own request, waiting as
        // `LockUpload` does while another request holds it, which saves a round trip through
        // the broker per PATCH; a body sent through the broker asks for it as it starts.
        let lock = if streaming {
            Lock::Held(None)
        } else {
            Lock::Asked(tokio::spawn(ask_lock()))
        };
        let writing = Writing {
            publishing,
            lock: tokio::sync::Mutex::new(lock),
            released: AtomicBool::new(false),
            expires_at: Mutex::new(None),
        };
        let via = Via {
            uploader: &uploader,
            chunks: chunks.as_deref(),
            metrics: &metrics,
            answer_within,
            lock_wait_ms: streaming.then_some(lock_wait_ms),
        };
        let stored = stream_body(via, target, writer, cutting, body, &writing).await;
        // A body that stored no piece asks for the lock here: a refusal (another offset, a
        // closed upload, another writer) is then the answer.
        let stored_none = stored
            .as_ref()
            .is_ok_and(|stored| stored.streamed.uploaded_bytes == offset);
        let locked = if streaming && stored_none {
            ask_lock().await
        } else {
            writing.locked().await
        };
        if locked.is_ok() && !writing.released.load(Ordering::Acquire) {
            if let Err(error) = uploader
                .call(&UnlockUpload { session_id, writer })
                .await
            {
                // The answer does not wait: the client is told what happened to its bytes now.
                tracing::warn!(%session_id, error = %error, "write lock not given back, trying again");
                unlock_later.spawn(uploader.clone(), session_id, writer);
            }
        }
        let mut stored = stored?;
        let lock_expiry = locked.map_err(|error| StoreFailed {
            uploaded_bytes: offset,
            error,
        })?;
        stored.expires_at = stored.expires_at.or(lock_expiry);
        Ok(stored)
    }.instrument(tracing::Span::current()));
    storing.await.unwrap_or_else(|err| {
        Err(StoreFailed {
            uploaded_bytes: offset,
            error: ApiError::Internal(anyhow!("upload body task failed: {err}")),
        })
    })
}

/// Reserves the memory of the body's pieces in flight (less when the body is shorter) from
/// `GATEWAY_MAX_BUFFERED_BYTES`, shared by every request, so that the gateway's memory does not
/// grow with the number of uploads. Waits up to `GATEWAY_BUFFER_WAIT_MS`, then answers 503.
async fn reserve_buffer(
    state: &AppState,
    target: &BodyTarget,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let most = state.config.body_buffer_bytes() as u64;
    let bytes = target
        .ends_at
        .map_or(most, |end| end.saturating_sub(target.offset).min(most));
    if bytes == 0 {
        return Ok(None);
    }
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    let wait = Duration::from_millis(state.config.buffer_wait_ms);
    match tokio::time::timeout(wait, state.buffers.clone().acquire_many_owned(bytes)).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        Ok(Err(_)) => Err(ApiError::Unavailable("the gateway is stopping".to_owned())),
        Err(_) => {
            state.metrics.buffer_wait_timed_out();
            Err(ApiError::Busy(format!(
                "no memory to receive the body within {} ms: too many uploads at once",
                wait.as_millis()
            )))
        }
    }
}

/// How a body is cut and sent.
#[derive(Clone, Copy)]
struct Cutting {
    /// `GATEWAY_CHUNK_SIZE_BYTES`
    piece_size: usize,
    /// `GATEWAY_CHUNKS_IN_FLIGHT`; a body with a checksum is sent one piece at a time.
    in_flight: usize,
    /// `GATEWAY_BODY_IDLE_TIMEOUT_MS` and the `GATEWAY_BODY_MIN_BYTES_PER_SEC` floor.
    pace: Pace,
}

/// Where a body's pieces go: through the broker, or to the uploaders' chunk listeners.
#[derive(Clone, Copy)]
struct Via<'a> {
    uploader: &'a UploaderClient,
    chunks: Option<&'a ChunkClient>,
    metrics: &'a GatewayMetrics,
    /// How long a piece's answer may take once its bytes are sent.
    answer_within: Duration,
    /// Set when a streamed piece takes the write lock itself: how long it waits while another
    /// request holds it.
    lock_wait_ms: Option<u64>,
}

async fn stream_body(
    via: Via<'_>,
    target: BodyTarget,
    writer: WriterId,
    cutting: Cutting,
    body: Body,
    writing: &Writing,
) -> Result<Stored, StoreFailed<ApiError>> {
    let BodyTarget {
        project_id: _,
        session_id,
        offset: base,
        limit,
        ends_at,
        checksum,
    } = target;
    let staged = checksum.is_some();
    let hasher = checksum
        .as_ref()
        .map(|checksum| Arc::new(Mutex::new(Some(checksum.algorithm.hasher()))));
    let hashing = hasher.clone();
    let received = via.metrics.clone();
    let frames = paced(body.into_data_stream(), cutting.pace).map(move |frame| {
        match &frame {
            Ok(bytes) => received.bytes_received(bytes.len()),
            Err(broke) => received.body_cut_short(broke.reason()),
        }
        if let (Ok(bytes), Some(hasher)) = (&frame, &hashing) {
            if let Some(hasher) = lock(hasher).as_mut() {
                hasher.update(bytes);
            }
        }
        frame
    });
    let streamed = match via.chunks {
        Some(chunks) if !staged => {
            let span = Span {
                offset: base,
                total: limit,
                piece_size: cutting.piece_size,
                ends_at,
            };
            stream_through(
                frames,
                span,
                via.answer_within,
                || ApiError::from(CallError::Timeout),
                |start, frames| async move {
                    let target = PieceTarget {
                        session_id,
                        writer,
                        offset: start.offset,
                        commit: ChunkCommit::Immediate,
                        release: start.last,
                        lock_wait_ms: via.lock_wait_ms,
                    };
                    send_streamed(chunks, via.metrics, target, start.max_len, frames, writing).await
                },
            )
            .await?
        }
        _ => {
            stream_in_pieces(
                frames,
                base,
                limit,
                cutting.piece_size,
                if staged {
                    Storing::HoldingLast
                } else {
                    Storing::Pipelined(cutting.in_flight)
                },
                ends_at,
                move |offset, piece, last| async move {
                    let target = if staged {
                        PieceTarget {
                            session_id,
                            writer,
                            offset,
                            commit: ChunkCommit::Stage { base },
                            release: false,
                            lock_wait_ms: None,
                        }
                    } else {
                        PieceTarget {
                            session_id,
                            writer,
                            offset,
                            commit: ChunkCommit::Immediate,
                            release: last,
                            lock_wait_ms: None,
                        }
                    };
                    send_piece(via, target, piece, writing).await
                },
            )
            .await?
        }
    };
    let expires_at = || *lock(&writing.expires_at);
    let Some(checksum) = checksum else {
        let committed = streamed.uploaded_bytes;
        return Ok(Stored {
            streamed,
            committed,
            checksum_mismatch: false,
            expires_at: expires_at(),
        });
    };
    // Staged bytes count only when the whole body arrived and hashes right.
    let not_committed = |streamed, checksum_mismatch| Stored {
        streamed,
        committed: base,
        checksum_mismatch,
        expires_at: None,
    };
    if streamed.end != BodyEnd::Complete {
        return Ok(not_committed(streamed, false));
    }
    let digest = hasher
        .and_then(|hasher| lock(&hasher).take())
        .map(tus::ChecksumHasher::finalize);
    if digest.as_deref() != Some(checksum.digest.as_slice()) {
        tracing::info!(%session_id, offset = base, "body does not match its checksum, discarded");
        return Ok(not_committed(streamed, true));
    }
    let target = PieceTarget {
        session_id,
        writer,
        offset: streamed.uploaded_bytes,
        commit: ChunkCommit::CommitStaged { base },
        release: true,
        lock_wait_ms: None,
    };
    let committed = send_piece(via, target, streamed.held.clone().into(), writing)
        .await
        .map_err(|error| StoreFailed {
            uploaded_bytes: base,
            error,
        })?;
    Ok(Stored {
        streamed,
        committed,
        checksum_mismatch: false,
        expires_at: expires_at(),
    })
}

/// Where one piece goes.
struct PieceTarget {
    session_id: SessionId,
    writer: WriterId,
    offset: u64,
    commit: ChunkCommit,
    /// No piece of the request follows: this one gives the write lock back.
    release: bool,
    lock_wait_ms: Option<u64>,
}

impl PieceTarget {
    /// The header of a piece of `len` bytes (at most, when streamed).
    fn header(&self, len: u64) -> ChunkHeader {
        ChunkHeader {
            session_id: self.session_id,
            offset: self.offset,
            len,
            writer: Some(self.writer),
            commit: self.commit,
            release: self.release,
            lock_wait_ms: self.lock_wait_ms,
        }
    }
}

/// Sends one piece, once the request holds the write lock; returns where it took the upload
/// (or its staged bytes).
async fn send_piece(
    via: Via<'_>,
    target: PieceTarget,
    piece: Piece,
    writing: &Writing,
) -> Result<u64, ApiError> {
    writing.locked().await?;
    let header = target.header(piece.len() as u64);
    let reply = match via.chunks {
        Some(chunks) => chunks.send(&header, piece.into_bytes().into()).await,
        None => {
            let frame = piece.with_prefix(&chunk_frame_prefix(&header));
            let slot = writing.publishing.clone().acquire_owned().await.ok();
            via.uploader.send_chunk_frame(frame, slot).await
        }
    };
    answered(via.metrics, &header, reply, writing)
}

/// Sends one piece to a chunk listener while its frames arrive, once the request holds the
/// write lock; returns where it took the upload.
async fn send_streamed(
    chunks: &ChunkClient,
    metrics: &GatewayMetrics,
    target: PieceTarget,
    max_len: u64,
    frames: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    writing: &Writing,
) -> Result<u64, ApiError> {
    writing.locked().await?;
    let header = target.header(max_len);
    let reply = chunks
        .send(&header, reqwest::Body::wrap_stream(frames))
        .await;
    answered(metrics, &header, reply, writing)
}

/// What a piece's reply means for the request.
fn answered(
    metrics: &GatewayMetrics,
    header: &ChunkHeader,
    reply: Result<ChunkReply, CallError>,
    writing: &Writing,
) -> Result<u64, ApiError> {
    let reply = match reply {
        Ok(reply) => {
            metrics.chunk_accepted();
            reply
        }
        Err(error) => {
            let error = ApiError::from(error);
            metrics.chunk_rejected(error.code());
            return Err(error);
        }
    };
    match reply {
        ChunkReply::Stored {
            uploaded_bytes,
            expires_at,
            ..
        } => {
            tracing::debug!(session_id = %header.session_id, offset = header.offset, len = header.len, uploaded_bytes, "chunk stored");
            *lock(&writing.expires_at) = expires_at;
            writing.released.store(header.release, Ordering::Release);
            Ok(uploaded_bytes)
        }
        ChunkReply::Staged { staged_to } => Ok(staged_to),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn log_body_end(session_id: SessionId, streamed: &Streamed) {
    let uploaded_bytes = streamed.uploaded_bytes;
    match &streamed.end {
        BodyEnd::Complete => {}
        BodyEnd::TooLong => {
            tracing::info!(%session_id, uploaded_bytes, "upload body longer than the upload")
        }
        BodyEnd::Interrupted(reason) => {
            tracing::info!(%session_id, uploaded_bytes, reason = %reason, "upload body interrupted, received bytes kept")
        }
        BodyEnd::Diverged => {
            tracing::warn!(%session_id, uploaded_bytes, "uploader confirmed another offset, body cut short")
        }
    }
}
