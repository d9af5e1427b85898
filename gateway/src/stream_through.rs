//! Passing a request body on as it streams in, for a store that takes a piece's bytes while
//! they arrive (the uploaders' chunk listeners). Each piece of at most `piece_size` bytes is
//! sent as soon as its first bytes come, and its request reads the client's body itself, frame
//! by frame, up to the piece's end: the gateway holds no piece, and no task stands between the
//! two connections. The next piece starts once one is answered. The outcome reads as
//! `upload_stream::stream_in_pieces`'s does.

use std::fmt::Display;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use crate::upload_stream::{BodyEnd, StoreFailed, Streamed};

/// A piece about to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceStart {
    pub offset: u64,
    /// The most it carries: a full piece, or what is left of the upload or of the body's
    /// declared length. A body that ends (or breaks) sooner makes it shorter.
    pub max_len: u64,
    /// It reaches the upload's end or the body's declared end: no piece follows. A body that
    /// ends sooner is not known to end until it does, when its last piece is on its way.
    pub last: bool,
}

/// Where a body goes: from `offset` of an upload of `total` bytes, in pieces of at most
/// `piece_size`, ending at `ends_at` when its length is declared.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub offset: u64,
    pub total: u64,
    pub piece_size: usize,
    pub ends_at: Option<u64>,
}

/// The client's body, shared by the piece reading it and the loop that starts the next one.
struct Shared<B> {
    body: B,
    /// Bytes of the last frame read past a piece's end: the next piece's first.
    carried: Option<Bytes>,
    /// How the body ended, once it did.
    end: Option<BodyEnd>,
    /// Bytes the current piece handed on.
    piece_sent: u64,
}

/// The frames of one piece, read from the client's body by whoever polls them (the piece's
/// request) up to the piece's end or the body's.
pub struct PieceFrames<B> {
    shared: Arc<Mutex<Shared<B>>>,
    left: u64,
    /// Told once the piece's body is over.
    done: Option<oneshot::Sender<()>>,
}

impl<B> PieceFrames<B> {
    fn over(&mut self) -> Poll<Option<io::Result<Bytes>>> {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        Poll::Ready(None)
    }
}

impl<B, E> Stream for PieceFrames<B>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.left == 0 {
            return this.over();
        }
        let shared = this.shared.clone();
        let mut shared = lock(&shared);
        let mut frame = match shared.carried.take() {
            Some(frame) => frame,
            None if shared.end.is_some() => return this.over(),
            None => match poll_frame(&mut shared, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(frame)) => frame,
                Poll::Ready(None) => return this.over(),
            },
        };
        let take = usize::try_from(this.left).map_or(frame.len(), |left| left.min(frame.len()));
        let rest = frame.split_off(take);
        if !rest.is_empty() {
            shared.carried = Some(rest);
        }
        shared.piece_sent += take as u64;
        this.left -= take as u64;
        Poll::Ready(Some(Ok(frame)))
    }
}

/// The body's next frame that is not empty; `None` once it ended, which `end` then says how.
fn poll_frame<B, E>(shared: &mut Shared<B>, cx: &mut Context<'_>) -> Poll<Option<Bytes>>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    loop {
        match shared.body.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                shared.end = Some(BodyEnd::Complete);
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(error))) => {
                shared.end = Some(BodyEnd::Interrupted(error.to_string()));
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Ok(frame))) if frame.is_empty() => continue,
            Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(frame)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Streams `body` over `span` through pieces sent by `send(start, frames)`, which returns the
/// upload's confirmed length once the piece is stored. A piece's answer is waited for at most
/// `answer_within` after its body is over (`timed_out()` is the error then). Once a piece
/// fails, or is confirmed at another offset than it reached, nothing more is sent and the
/// result names the last offset confirmed.
pub async fn stream_through<B, BodyError, S, F, StoreError>(
    body: B,
    span: Span,
    answer_within: Duration,
    timed_out: impl Fn() -> StoreError,
    mut send: S,
) -> Result<Streamed, StoreFailed<StoreError>>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    BodyError: Display,
    S: FnMut(PieceStart, PieceFrames<B>) -> F,
    F: Future<Output = Result<u64, StoreError>>,
{
    let Span {
        offset,
        total,
        piece_size,
        ends_at,
    } = span;
    let shared = Arc::new(Mutex::new(Shared {
        body,
        carried: None,
        end: None,
        piece_sent: 0,
    }));
    let mut confirmed = offset;
    let streamed = |uploaded_bytes, end| Streamed {
        uploaded_bytes,
        end,
        held: Bytes::new(),
    };
    loop {
        // A piece is sent only once there are bytes for it.
        let more = poll_fn(|cx| {
            let mut shared = lock(&shared);
            if shared.carried.is_some() {
                return Poll::Ready(true);
            }
            if shared.end.is_some() {
                return Poll::Ready(false);
            }
            poll_frame(&mut shared, cx).map(|frame| {
                shared.carried = frame;
                shared.carried.is_some()
            })
        })
        .await;
        if !more {
            let end = lock(&shared).end.take().unwrap_or(BodyEnd::Complete);
            return Ok(streamed(confirmed, end));
        }
        let max_len = total
            .saturating_sub(confirmed)
            .min(piece_size.max(1) as u64)
            .min(ends_at.map_or(u64::MAX, |end| end.saturating_sub(confirmed)));
        if max_len == 0 {
            return Ok(streamed(confirmed, BodyEnd::TooLong));
        }
        let reaches = confirmed + max_len;
        let start = PieceStart {
            offset: confirmed,
            max_len,
            last: reaches == total || ends_at == Some(reaches),
        };
        lock(&shared).piece_sent = 0;
        let (done, over) = oneshot::channel();
        let frames = PieceFrames {
            shared: shared.clone(),
            left: max_len,
            done: Some(done),
        };
        let mut answer = pin!(send(start, frames));
        // The answer comes once the piece's body is over: read to its end, or dropped by a
        // request that ended sooner (refused, or cut off on its way). It is waited for at
        // most `answer_within` from then.
        let early = tokio::select! {
            biased;
            _ = over => None,
            answered = &mut answer => Some(answered),
        };
        let answered = match early {
            Some(answered) => answered,
            None => tokio::time::timeout(answer_within, answer)
                .await
                .unwrap_or_else(|_| Err(timed_out())),
        }
        .map_err(|error| StoreFailed {
            uploaded_bytes: confirmed,
            error,
        })?;
        let (sent, end) = {
            let mut shared = lock(&shared);
            (shared.piece_sent, shared.end.take())
        };
        let expected = confirmed + sent;
        confirmed = answered;
        if answered != expected {
            return Ok(streamed(confirmed, BodyEnd::Diverged));
        }
        if let Some(end) = end {
            return Ok(streamed(confirmed, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::stream;

    use super::*;

    /// Every piece stored: where it started, its bytes, whether it was said to be the last.
    type Stored = Arc<Mutex<Vec<(PieceStart, Vec<u8>)>>>;

    fn frames(data: &[u8], frame_size: usize) -> Vec<Result<Bytes, String>> {
        data.chunks(frame_size)
            .map(|frame| Ok(Bytes::copy_from_slice(frame)))
            .collect()
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn span(offset: u64, total: u64, piece_size: usize) -> Span {
        Span {
            offset,
            total,
            piece_size,
            ends_at: None,
        }
    }

    async fn run(
        items: Vec<Result<Bytes, String>>,
        offset: u64,
        total: u64,
        piece_size: usize,
        ends_at: Option<u64>,
    ) -> (
        Result<Streamed, StoreFailed<String>>,
        Vec<(PieceStart, Vec<u8>)>,
    ) {
        let stored = Stored::default();
        let recording = stored.clone();
        let streamed = stream_through(
            stream::iter(items),
            Span {
                offset,
                total,
                piece_size,
                ends_at,
            },
            Duration::from_secs(5),
            || "timed out".to_owned(),
            move |start, frames: PieceFrames<_>| {
                let recording = recording.clone();
                async move {
                    let bytes: Vec<u8> = frames
                        .map(|frame| frame.expect("a frame").to_vec())
                        .concat()
                        .await;
                    let end = start.offset + bytes.len() as u64;
                    recording.lock().expect("lock").push((start, bytes));
                    Ok(end)
                }
            },
        )
        .await;
        let stored = stored.lock().expect("lock").clone();
        (streamed, stored)
    }

    #[tokio::test]
    async fn pieces_are_bounded_ordered_complete_and_the_last_is_marked() {
        let data = body(300 * 1024 + 17);
        let total = data.len() as u64;
        let (streamed, stored) = run(frames(&data, 10_000), 0, total, 64 * 1024, Some(total)).await;
        let streamed = streamed.expect("stored");
        assert_eq!(streamed.end, BodyEnd::Complete);
        assert_eq!(streamed.uploaded_bytes, total);
        assert_eq!(stored.len(), 5);
        let mut offset = 0;
        for (index, (start, bytes)) in stored.iter().enumerate() {
            assert_eq!(start.offset, offset);
            assert!(bytes.len() as u64 <= start.max_len && start.max_len <= 64 * 1024);
            assert_eq!(start.last, index == 4, "piece {index}");
            offset += bytes.len() as u64;
        }
        let joined: Vec<u8> = stored.into_iter().flat_map(|(_, bytes)| bytes).collect();
        assert_eq!(joined, data);
    }

    #[tokio::test]
    async fn a_body_past_the_length_stores_what_fits_then_stops() {
        let data = body(150);
        let (streamed, stored) = run(frames(&data, 32), 1_000, 1_100, 64, None).await;
        let streamed = streamed.expect("stored");
        assert_eq!(streamed.end, BodyEnd::TooLong);
        assert_eq!(streamed.uploaded_bytes, 1_100);
        let offsets: Vec<u64> = stored.iter().map(|(start, _)| start.offset).collect();
        assert_eq!(offsets, [1_000, 1_064]);
        let joined: Vec<u8> = stored.into_iter().flat_map(|(_, bytes)| bytes).collect();
        assert_eq!(joined, data[..100]);
    }

    #[tokio::test]
    async fn an_interrupted_body_keeps_what_arrived_in_a_shorter_piece() {
        let data = body(100);
        let mut items = frames(&data, 30);
        items.push(Err("connection reset".to_owned()));
        let (streamed, stored) = run(items, 0, 1_000, 64, None).await;
        let streamed = streamed.expect("stored");
        assert_eq!(
            streamed.end,
            BodyEnd::Interrupted("connection reset".to_owned())
        );
        assert_eq!(streamed.uploaded_bytes, 100);
        let sizes: Vec<(usize, u64, bool)> = stored
            .iter()
            .map(|(start, bytes)| (bytes.len(), start.max_len, start.last))
            .collect();
        assert_eq!(sizes, [(64, 64, false), (36, 64, false)]);
    }

    #[tokio::test]
    async fn an_empty_body_sends_nothing() {
        let (streamed, stored) = run(Vec::new(), 10, 100, 64, Some(10)).await;
        assert_eq!(streamed.expect("stored").uploaded_bytes, 10);
        assert!(stored.is_empty());
    }

    #[tokio::test]
    async fn a_refusal_before_the_body_is_sent_stops_it_at_the_offset_confirmed() {
        let data = body(200);
        let mut calls = 0;
        let failure = stream_through(
            stream::iter(frames(&data, 50)),
            span(0, 200, 64),
            Duration::from_secs(5),
            || "timed out".to_owned(),
            |start: PieceStart, frames: PieceFrames<_>| {
                calls += 1;
                let call = calls;
                async move {
                    if call == 2 {
                        // Refused without reading its body.
                        drop(frames);
                        return Err("refused".to_owned());
                    }
                    let len = frames
                        .map(|frame| frame.expect("frame").len())
                        .fold(0, |sum, len| async move { sum + len })
                        .await;
                    Ok(start.offset + len as u64)
                }
            },
        )
        .await
        .expect_err("the second piece is refused");
        assert_eq!(failure.uploaded_bytes, 64);
        assert_eq!(failure.error, "refused");
    }

    #[tokio::test]
    async fn a_piece_confirmed_elsewhere_stops_the_body() {
        let data = body(200);
        let streamed = stream_through(
            stream::iter(frames(&data, 50)),
            span(0, 200, 64),
            Duration::from_secs(5),
            || "timed out".to_owned(),
            |start: PieceStart, frames: PieceFrames<_>| async move {
                let _ = frames.count().await;
                // Another request moved the upload further.
                Ok::<_, String>(start.offset + 1_000)
            },
        )
        .await
        .expect("answered");
        assert_eq!(streamed.end, BodyEnd::Diverged);
        assert_eq!(streamed.uploaded_bytes, 1_000);
    }

    #[tokio::test]
    async fn an_answer_that_does_not_come_after_the_body_times_out() {
        let data = body(10);
        let failure = stream_through(
            stream::iter(frames(&data, 5)),
            span(0, 10, 64),
            Duration::from_millis(50),
            || "timed out".to_owned(),
            |_, frames: PieceFrames<_>| async move {
                let _ = frames.count().await;
                std::future::pending::<Result<u64, String>>().await
            },
        )
        .await
        .expect_err("no answer");
        assert_eq!(
            (failure.uploaded_bytes, failure.error.as_str()),
            (0, "timed out")
        );
    }
}
