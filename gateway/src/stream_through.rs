//! Passing a request body on as it streams in, for a store that takes a piece's bytes while
//! they arrive (the uploaders' chunk listeners). Each piece of at most `piece_size` bytes is
//! sent as soon as its first bytes come, its frames forwarded as they arrive, and the next piece
//! starts once it is answered: the gateway holds no piece, only the few frames on their way.
//! The outcome reads as `upload_stream::stream_in_pieces`'s does.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::upload_stream::{BodyEnd, StoreFailed, Streamed};

/// Frames of the body between the client and a piece's request: enough to keep both sides
/// busy, few enough that a request holds almost no memory.
const FRAMES_IN_FLIGHT: usize = 16;

/// The frames of one piece, as they arrive.
pub struct PieceFrames(mpsc::Receiver<io::Result<Bytes>>);

impl Stream for PieceFrames {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

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

/// Streams `body` over `span` through pieces sent by `send(start, frames)`, which returns the upload's confirmed length once the piece is stored.
/// A piece's answer is waited for at most `answer_within` after its last frame
/// (`timed_out()` is the error then). Once a piece fails, or is confirmed at another offset
/// than it reached, nothing more is sent and the result names the last offset confirmed.
pub async fn stream_through<B, BodyError, S, F, StoreError>(
    mut body: B,
    span: Span,
    answer_within: Duration,
    timed_out: impl Fn() -> StoreError,
    mut send: S,
) -> Result<Streamed, StoreFailed<StoreError>>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    BodyError: Display,
    S: FnMut(PieceStart, PieceFrames) -> F,
    F: Future<Output = Result<u64, StoreError>>,
{
    let Span {
        offset,
        total,
        piece_size,
        ends_at,
    } = span;
    let mut confirmed = offset;
    let mut carried: Option<Bytes> = None;
    let streamed = |uploaded_bytes, end| Streamed {
        uploaded_bytes,
        end,
        held: Bytes::new(),
    };
    loop {
        let first = match carried.take() {
            Some(frame) => frame,
            None => match next_frame(&mut body).await {
                Next::Frame(frame) => frame,
                Next::End(end) => return Ok(streamed(confirmed, end)),
            },
        };
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
        let (frames, receiver) = mpsc::channel(FRAMES_IN_FLIGHT);
        let mut answer = pin!(send(start, PieceFrames(receiver)));
        let pumped = {
            let mut pumping = pin!(pump(&mut body, first, max_len, frames));
            tokio::select! {
                pumped = &mut pumping => pumped,
                // Answered before its body was all sent: refused, or cut off on its way.
                answered = &mut answer => {
                    let answered = answered.map_err(|error| StoreFailed {
                        uploaded_bytes: confirmed,
                        error,
                    })?;
                    return Ok(streamed(answered, BodyEnd::Diverged));
                }
            }
        };
        let Pumped { sent, rest, end } = pumped;
        let answered = tokio::time::timeout(answer_within, answer)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
            .map_err(|error| StoreFailed {
                uploaded_bytes: confirmed,
                error,
            })?;
        let expected = confirmed + sent;
        confirmed = answered;
        if answered != expected {
            return Ok(streamed(confirmed, BodyEnd::Diverged));
        }
        if let Some(end) = end {
            return Ok(streamed(confirmed, end));
        }
        carried = rest;
    }
}

/// What was forwarded of one piece.
struct Pumped {
    sent: u64,
    /// Bytes of the last frame past the piece: the next piece's first.
    rest: Option<Bytes>,
    /// How the body ended, if it did while this piece was forwarded.
    end: Option<BodyEnd>,
}

/// Forwards frames of `body`, starting with `first`, until `max_len` bytes went or the body
/// ended; dropping `frames` at the end ends the piece's request body.
async fn pump<B, E>(
    body: &mut B,
    mut frame: Bytes,
    max_len: u64,
    frames: mpsc::Sender<io::Result<Bytes>>,
) -> Pumped
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut sent = 0u64;
    loop {
        let take =
            usize::try_from(max_len - sent).map_or(frame.len(), |left| left.min(frame.len()));
        let rest = frame.split_off(take);
        sent += take as u64;
        if frames.send(Ok(frame)).await.is_err() {
            // The request is gone; its answer says why.
            return Pumped {
                sent,
                rest: None,
                end: None,
            };
        }
        if !rest.is_empty() {
            return Pumped {
                sent,
                rest: Some(rest),
                end: None,
            };
        }
        if sent == max_len {
            return Pumped {
                sent,
                rest: None,
                end: None,
            };
        }
        frame = match next_frame(body).await {
            Next::Frame(next) => next,
            Next::End(end) => {
                return Pumped {
                    sent,
                    rest: None,
                    end: Some(end),
                }
            }
        };
    }
}

enum Next {
    Frame(Bytes),
    End(BodyEnd),
}

/// The body's next frame that is not empty, or how it ended.
async fn next_frame<B, E>(body: &mut B) -> Next
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    loop {
        match body.next().await {
            None => return Next::End(BodyEnd::Complete),
            Some(Err(error)) => return Next::End(BodyEnd::Interrupted(error.to_string())),
            Some(Ok(frame)) if frame.is_empty() => continue,
            Some(Ok(frame)) => return Next::Frame(frame),
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
            move |start, frames: PieceFrames| {
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
            |start: PieceStart, frames: PieceFrames| {
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
            |start: PieceStart, frames: PieceFrames| async move {
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
            |_, frames: PieceFrames| async move {
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
