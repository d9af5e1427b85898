//! Cutting a request body into bounded pieces while it streams in.
//!
//! A tus client may send a whole file in one PATCH, and a broker message must stay small, so the
//! body is read into one buffer of at most one piece, the piece is stored, and only then is more
//! of the body read. Memory stays at about one piece however large the body is.

use bytes::{Bytes, BytesMut};
use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How the body ended, once everything that arrived was stored.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The whole body was stored.
    Complete,
    /// The body went past the upload's length; the bytes up to it were stored.
    TooLong,
    /// The client's stream broke; what had arrived was stored.
    Interrupted(String),
    /// The store confirmed another offset than the one the pieces reached, so the rest of the
    /// body would not fit there.
    Diverged,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Streamed {
    /// The offset the store confirmed last.
    pub uploaded_bytes: u64,
    pub end: BodyEnd,
    /// With [`Storing::HoldingLast`]: the body's last bytes, not stored, starting at
    /// `uploaded_bytes` (unless the body ended otherwise than complete).
    pub held: Bytes,
}

/// Bytes kept free in front of every piece, for a header the store puts before its bytes.
pub const PIECE_ROOM: usize = 512;

/// One piece of the body, read into a buffer with [`PIECE_ROOM`] free bytes in front of it, so
/// that a store can put a header before the bytes without copying them.
#[derive(Debug)]
pub struct Piece {
    buffer: BytesMut,
    room: usize,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.buffer.len() - self.room
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buffer[self.room..]
    }

    /// The piece's bytes with `prefix` right before them. Written into the room in front, or,
    /// for a longer prefix, copied together into a new buffer.
    pub fn with_prefix(mut self, prefix: &[u8]) -> Bytes {
        if prefix.len() > self.room {
            let mut framed = BytesMut::with_capacity(prefix.len() + self.len());
            framed.extend_from_slice(prefix);
            framed.extend_from_slice(self.bytes());
            return framed.freeze();
        }
        let start = self.room - prefix.len();
        self.buffer[start..self.room].copy_from_slice(prefix);
        self.buffer.freeze().slice(start..)
    }

    /// The piece's bytes alone.
    pub fn into_bytes(self) -> Bytes {
        self.buffer.freeze().slice(self.room..)
    }
}

impl From<Bytes> for Piece {
    fn from(bytes: Bytes) -> Self {
        Self {
            buffer: BytesMut::from(bytes),
            room: 0,
        }
    }
}

/// Storing a piece failed; `uploaded_bytes` were confirmed before.
#[derive(Debug)]
pub struct StoreFailed<E> {
    pub uploaded_bytes: u64,
    pub error: E,
}

/// How the pieces of a body are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storing {
    /// Up to this many pieces are being stored at once: a piece is sent while those before it
    /// are still on their way, and each is stored at the offset the ones before it reach.
    /// Every piece is stored, the last one included.
    Pipelined(usize),
    /// One piece at a time, and the last one is not stored but handed back in
    /// [`Streamed::held`], for a caller that must check the whole body before it commits.
    HoldingLast,
}

/// Streams `body` into pieces of at most `piece_size` bytes, starting at `offset` of an upload
/// of `total` bytes. `store(offset, piece, last)` returns the upload's confirmed length after
/// it; `last` says that no piece follows: the body ended (or broke), or the piece reaches
/// `ends_at`, where the body says it ends (its `Content-Length`), or the upload's end. A full
/// piece is sent at once, not held back to learn whether more follows: a client that stalls
/// keeps what it sent.
///
/// Pieces sent together are answered in order. Once one fails or confirms another offset than
/// it should reach, no more are sent, those on their way are waited for, and the result names
/// the last offset confirmed.
pub async fn stream_in_pieces<B, BodyError, S, F, StoreError>(
    mut body: B,
    offset: u64,
    total: u64,
    piece_size: usize,
    storing: Storing,
    ends_at: Option<u64>,
    mut store: S,
) -> Result<Streamed, StoreFailed<StoreError>>
where
    B: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    BodyError: Display,
    S: FnMut(u64, Piece, bool) -> F,
    F: Future<Output = Result<u64, StoreError>>,
{
    let mut pieces = Pieces {
        offset,
        total,
        ends_at,
        piece_size: piece_size.max(1),
        buffer: BytesMut::new(),
    };
    let mut sent = Sent {
        limit: match storing {
            Storing::Pipelined(limit) => limit.max(1),
            Storing::HoldingLast => 1,
        },
        pending: FuturesOrdered::new(),
        confirmed: offset,
        stopped: None,
    };
    let end = 'body: loop {
        let next = tokio::select! {
            biased;
            Some(answer) = sent.pending.next() => {
                sent.answered(answer);
                if sent.stopped.is_some() {
                    break 'body BodyEnd::Complete;
                }
                continue;
            }
            // More of the body is read only while there is room for another piece: a request
            // holds at most its pieces in flight, the one being filled counted.
            next = body.next(), if sent.pending.len() < sent.limit => next,
        };
        let mut frame = match next {
            None => break BodyEnd::Complete,
            Some(Err(error)) => break BodyEnd::Interrupted(error.to_string()),
            Some(Ok(frame)) => frame,
        };
        while !frame.is_empty() {
            let room = pieces.room();
            if room == 0 {
                break 'body BodyEnd::TooLong;
            }
            if pieces.buffer.is_empty() {
                // The next piece's memory is taken once its first bytes come, not before.
                pieces.reserve_next();
            }
            let taken = frame.split_to(room.min(frame.len()));
            pieces.buffer.extend_from_slice(&taken);
            if pieces.room() == 0 {
                if !sent.make_room().await {
                    break 'body BodyEnd::Complete;
                }
                pieces.send(&mut store, &mut sent, false);
            }
        }
    };
    if storing == Storing::HoldingLast {
        sent.drain().await;
        let held = pieces.take().into_bytes();
        return sent.result(end, held);
    }
    if sent.make_room().await {
        pieces.send(&mut store, &mut sent, true);
    }
    sent.drain().await;
    sent.result(end, Bytes::new())
}

/// Why no more pieces are sent before the body ends.
enum Stopped<E> {
    Failed(E),
    /// A piece was confirmed at another offset than the one it should reach.
    Diverged,
}

/// The pieces on their way to the store, answered in the order they were sent.
struct Sent<F: Future<Output = Result<u64, E>>, E> {
    limit: usize,
    pending: FuturesOrdered<Expecting<F>>,
    /// The offset the store confirmed last.
    confirmed: u64,
    stopped: Option<Stopped<E>>,
}

impl<F, E> Sent<F, E>
where
    F: Future<Output = Result<u64, E>>,
{
    /// Waits until one more piece may be sent; false once nothing more is to be sent.
    async fn make_room(&mut self) -> bool {
        while self.stopped.is_none() && self.pending.len() >= self.limit {
            match self.pending.next().await {
                Some(answer) => self.answered(answer),
                None => break,
            }
        }
        self.stopped.is_none()
    }

    async fn drain(&mut self) {
        while let Some(answer) = self.pending.next().await {
            self.answered(answer);
        }
    }

    fn answered(&mut self, (expected, answer): (u64, Result<u64, E>)) {
        match answer {
            Ok(confirmed) => {
                self.confirmed = confirmed;
                if confirmed != expected && self.stopped.is_none() {
                    self.stopped = Some(Stopped::Diverged);
                }
            }
            Err(error) => {
                if !matches!(self.stopped, Some(Stopped::Failed(_))) {
                    self.stopped = Some(Stopped::Failed(error));
                }
            }
        }
    }

    fn result(self, end: BodyEnd, held: Bytes) -> Result<Streamed, StoreFailed<E>> {
        let end = match self.stopped {
            Some(Stopped::Failed(error)) => {
                return Err(StoreFailed {
                    uploaded_bytes: self.confirmed,
                    error,
                })
            }
            Some(Stopped::Diverged) => BodyEnd::Diverged,
            None => end,
        };
        Ok(Streamed {
            uploaded_bytes: self.confirmed,
            end,
            held,
        })
    }
}

/// A piece's store, with the offset it should reach.
struct Expecting<F> {
    expected: u64,
    store: Pin<Box<F>>,
}

impl<F: Future> Future for Expecting<F> {
    type Output = (u64, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let expected = self.expected;
        self.store
            .as_mut()
            .poll(cx)
            .map(|answer| (expected, answer))
    }
}

struct Pieces {
    /// Where the buffered bytes start.
    offset: u64,
    total: u64,
    ends_at: Option<u64>,
    piece_size: usize,
    buffer: BytesMut,
}

impl Pieces {
    /// The size the current piece grows to: a full piece, or what is left of the upload.
    fn limit(&self) -> usize {
        let left = self.total.saturating_sub(self.offset);
        usize::try_from(left).map_or(self.piece_size, |left| left.min(self.piece_size))
    }

    /// Bytes buffered for the current piece.
    fn buffered(&self) -> usize {
        self.buffer.len().saturating_sub(PIECE_ROOM)
    }

    fn room(&self) -> usize {
        self.limit().saturating_sub(self.buffered())
    }

    fn reserve_next(&mut self) {
        let limit = self.limit();
        self.buffer.reserve(PIECE_ROOM + limit);
        self.buffer.resize(PIECE_ROOM, 0);
    }

    /// The buffered piece, taken whole, not split off: the buffer keeps no share of the
    /// piece's memory, which is freed as soon as the store is done with it.
    fn take(&mut self) -> Piece {
        let buffer = std::mem::take(&mut self.buffer);
        let room = if buffer.is_empty() { 0 } else { PIECE_ROOM };
        Piece { buffer, room }
    }

    /// Sends the buffered piece, if any, to be stored where the pieces before it end.
    fn send<S, F, StoreError>(&mut self, store: &mut S, sent: &mut Sent<F, StoreError>, last: bool)
    where
        S: FnMut(u64, Piece, bool) -> F,
        F: Future<Output = Result<u64, StoreError>>,
    {
        if self.buffered() == 0 {
            return;
        }
        let piece = self.take();
        let expected = self.offset + piece.len() as u64;
        let last = last || self.ends_at == Some(expected) || expected == self.total;
        sent.pending.push_back(Expecting {
            expected,
            store: Box::pin(store(self.offset, piece, last)),
        });
        self.offset = expected;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use futures_util::future::BoxFuture;
    use futures_util::stream;

    use super::*;
    use crate::body_pace::{paced, Pace};

    /// Every piece stored: its offset, its bytes, and whether it was said to be the last.
    type Stored = Arc<Mutex<Vec<(u64, Vec<u8>, bool)>>>;

    fn frames(data: &[u8], frame_size: usize) -> Vec<Result<Bytes, String>> {
        data.chunks(frame_size)
            .map(|frame| Ok(Bytes::copy_from_slice(frame)))
            .collect()
    }

    fn recording_store(
        stored: &Stored,
    ) -> impl FnMut(u64, Piece, bool) -> std::future::Ready<Result<u64, String>> {
        let stored = stored.clone();
        move |offset, piece, last| {
            let end = offset + piece.len() as u64;
            stored
                .lock()
                .expect("lock")
                .push((offset, piece.bytes().to_vec(), last));
            std::future::ready(Ok(end))
        }
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// The stored pieces' bytes joined in the order they were stored.
    fn stored_bytes(stored: &Stored) -> Vec<u8> {
        let stored = stored.lock().expect("lock");
        stored
            .iter()
            .flat_map(|(_, piece, _)| piece.iter().copied())
            .collect()
    }

    #[tokio::test]
    async fn pieces_are_bounded_ordered_and_complete() {
        let data = body(300 * 1024 + 17);
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(frames(&data, 10_000)),
            0,
            data.len() as u64,
            64 * 1024,
            Storing::Pipelined(1),
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.end, BodyEnd::Complete);
        assert_eq!(streamed.uploaded_bytes, data.len() as u64);
        let stored = stored.lock().expect("lock");
        assert_eq!(stored.len(), 5);
        let mut expected_offset = 0;
        let mut joined = Vec::new();
        for (offset, piece, _) in stored.iter() {
            assert_eq!(*offset, expected_offset);
            assert!(piece.len() <= 64 * 1024);
            expected_offset += piece.len() as u64;
            joined.extend_from_slice(piece);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn a_prefix_goes_in_front_of_a_piece_in_place_or_copied_when_longer_than_the_room() {
        let piece = || {
            let mut pieces = Pieces {
                offset: 0,
                total: 100,
                ends_at: None,
                piece_size: 10,
                buffer: BytesMut::new(),
            };
            pieces.reserve_next();
            pieces.buffer.extend_from_slice(b"payload");
            pieces.take()
        };
        assert_eq!(piece().len(), 7);
        assert_eq!(piece().bytes(), b"payload");
        assert_eq!(piece().into_bytes(), &b"payload"[..]);
        let framed = piece().with_prefix(b"head:");
        assert_eq!(framed, &b"head:payload"[..]);
        let long = vec![b'h'; PIECE_ROOM + 1];
        let framed = piece().with_prefix(&long);
        assert_eq!(framed.len(), PIECE_ROOM + 1 + 7);
        assert!(framed.starts_with(&long) && framed.ends_with(b"payload"));
        assert_eq!(
            Piece::from(Bytes::from_static(b"held")).with_prefix(b">"),
            &b">held"[..]
        );
    }

    #[tokio::test]
    async fn pieces_start_at_the_given_offset() {
        let data = body(100);
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(frames(&data, 7)),
            1_000,
            1_100,
            40,
            Storing::Pipelined(1),
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.uploaded_bytes, 1_100);
        let offsets: Vec<u64> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|(offset, _, _)| *offset)
            .collect();
        assert_eq!(offsets, vec![1_000, 1_040, 1_080]);
    }

    #[tokio::test]
    async fn a_body_past_the_length_stores_what_fits_then_stops() {
        let data = body(150);
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(frames(&data, 32)),
            0,
            100,
            64,
            Storing::Pipelined(1),
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.end, BodyEnd::TooLong);
        assert_eq!(streamed.uploaded_bytes, 100);
        let joined: Vec<u8> = stored
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(_, piece, _)| piece.clone())
            .collect();
        assert_eq!(joined, data[..100]);
    }

    #[tokio::test]
    async fn an_interrupted_body_keeps_what_arrived() {
        let data = body(100);
        let mut items = frames(&data, 30);
        items.push(Err("connection reset".to_owned()));
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(items),
            0,
            1_000,
            64,
            Storing::Pipelined(1),
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(
            streamed.end,
            BodyEnd::Interrupted("connection reset".to_owned())
        );
        assert_eq!(streamed.uploaded_bytes, 100);
        let sizes: Vec<usize> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, piece, _)| piece.len())
            .collect();
        assert_eq!(sizes, vec![64, 36]);
    }

    #[tokio::test]
    async fn a_failed_store_reports_what_was_confirmed_before() {
        let data = body(200);
        let mut calls = 0;
        let failure = stream_in_pieces(
            stream::iter(frames(&data, 50)),
            0,
            200,
            64,
            Storing::Pipelined(1),
            None,
            |offset, piece: Piece, _| {
                calls += 1;
                let result = if calls == 2 {
                    Err("nope")
                } else {
                    Ok(offset + piece.len() as u64)
                };
                std::future::ready(result)
            },
        )
        .await
        .expect_err("second piece fails");
        assert_eq!(failure.uploaded_bytes, 64);
        assert_eq!(failure.error, "nope");
    }

    /// Pieces on their way now, the most at once, and how many were on their way as each was
    /// sent (itself included).
    type InFlight = Arc<Mutex<(usize, usize, Vec<usize>)>>;

    /// A store that answers each piece after yielding once, noting how many were on their way,
    /// and failing or confirming another offset where told to.
    fn slow_store(
        in_flight: &InFlight,
        answer: impl Fn(u64, u64) -> Result<u64, &'static str> + Clone + Send + 'static,
    ) -> impl FnMut(u64, Piece, bool) -> BoxFuture<'static, Result<u64, &'static str>> {
        let in_flight = in_flight.clone();
        move |offset, piece, _| {
            let end = offset + piece.len() as u64;
            {
                let mut counts = in_flight.lock().expect("lock");
                counts.0 += 1;
                counts.1 = counts.1.max(counts.0);
                let now = counts.0;
                counts.2.push(now);
            }
            let in_flight = in_flight.clone();
            let answer = answer.clone();
            Box::pin(async move {
                tokio::task::yield_now().await;
                in_flight.lock().expect("lock").0 -= 1;
                answer(offset, end)
            })
        }
    }

    /// 1 000 bytes in frames of `frame_size`, stored in pieces of 64 two at a time by a
    /// [`slow_store`] answering with `answer`.
    async fn two_at_a_time(
        frame_size: usize,
        in_flight: &InFlight,
        answer: impl Fn(u64, u64) -> Result<u64, &'static str> + Clone + Send + 'static,
    ) -> Result<Streamed, StoreFailed<&'static str>> {
        stream_in_pieces(
            stream::iter(frames(&body(1_000), frame_size)),
            0,
            1_000,
            64,
            Storing::Pipelined(2),
            None,
            slow_store(in_flight, answer),
        )
        .await
    }

    #[tokio::test]
    async fn pipelined_pieces_are_sent_while_those_before_are_stored() {
        let in_flight = InFlight::default();
        // Frames of a whole piece: each one read sends a piece.
        let streamed = two_at_a_time(64, &in_flight, |_, end| Ok(end))
            .await
            .expect("stored");
        assert_eq!(streamed.end, BodyEnd::Complete);
        assert_eq!(streamed.uploaded_bytes, 1_000);
        let counts = in_flight.lock().expect("lock");
        assert_eq!(counts.1, 2, "at most two at once");
        assert_eq!(
            counts.2[..2],
            [1, 2],
            "the second piece is sent while the first is stored"
        );
    }

    #[tokio::test]
    async fn a_pipelined_failure_waits_for_the_pieces_after_it_and_reports_the_last_confirmed() {
        let in_flight = InFlight::default();
        // The piece at 128 fails; the one sent after it is refused, as a store refuses a piece
        // past its offset.
        let failure = two_at_a_time(30, &in_flight, |offset, end| match offset {
            128 => Err("nope"),
            192 => Err("offset mismatch"),
            _ => Ok(end),
        })
        .await
        .expect_err("third piece fails");
        assert_eq!(failure.uploaded_bytes, 128);
        assert_eq!(failure.error, "nope");
        assert_eq!(in_flight.lock().expect("lock").0, 0, "none left unanswered");
    }

    #[tokio::test]
    async fn a_pipelined_piece_confirmed_elsewhere_stops_the_body() {
        let in_flight = InFlight::default();
        let streamed = two_at_a_time(30, &in_flight, |offset, end| {
            if offset == 64 {
                Ok(100)
            } else if offset > 64 {
                Err("offset mismatch")
            } else {
                Ok(end)
            }
        })
        .await;
        // The body ends at the offset the store confirmed last: diverged, or, when the piece
        // after the diverged one was already sent, with that piece's refusal.
        let uploaded_bytes = match streamed {
            Ok(streamed) => {
                assert_eq!(streamed.end, BodyEnd::Diverged);
                streamed.uploaded_bytes
            }
            Err(failure) => failure.uploaded_bytes,
        };
        assert_eq!(uploaded_bytes, 100);
        let counts = in_flight.lock().expect("lock");
        assert_eq!(counts.0, 0, "none left unanswered");
        assert!(
            counts.2.len() <= 3,
            "nothing sent once the divergence was known"
        );
    }

    #[tokio::test]
    async fn holding_the_last_piece_stores_only_full_pieces_before_it() {
        let data = body(150);
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(frames(&data, 32)),
            10,
            1_000,
            64,
            Storing::HoldingLast,
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.end, BodyEnd::Complete);
        assert_eq!(streamed.uploaded_bytes, 138);
        assert_eq!(streamed.held, data[128..]);
        let offsets: Vec<u64> = stored
            .lock()
            .expect("lock")
            .iter()
            .map(|(offset, _, _)| *offset)
            .collect();
        assert_eq!(offsets, vec![10, 74]);
    }

    #[tokio::test]
    async fn a_diverging_confirmation_stops_the_stream() {
        let data = body(200);
        let streamed = stream_in_pieces(
            stream::iter(frames(&data, 50)),
            0,
            200,
            64,
            Storing::Pipelined(1),
            None,
            |_, _, _| std::future::ready(Ok::<u64, String>(150)),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.end, BodyEnd::Diverged);
        assert_eq!(streamed.uploaded_bytes, 150);
    }

    fn last_flags(stored: &Stored) -> Vec<bool> {
        stored
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, _, last)| *last)
            .collect()
    }

    #[tokio::test]
    async fn the_piece_reaching_the_declared_end_is_the_last() {
        for (len, expected) in [
            (150, vec![false, false, true]),
            (128, vec![false, true]),
            (20, vec![true]),
        ] {
            let data = body(len);
            let stored = Stored::default();
            stream_in_pieces(
                stream::iter(frames(&data, 32)),
                0,
                1_000,
                64,
                Storing::Pipelined(1),
                Some(len as u64),
                recording_store(&stored),
            )
            .await
            .expect("stored");
            assert_eq!(last_flags(&stored), expected, "a body of {len} bytes");
        }
    }

    #[tokio::test]
    async fn without_a_declared_end_only_a_piece_after_the_body_is_the_last() {
        for (len, expected) in [(150, vec![false, false, true]), (128, vec![false, false])] {
            let data = body(len);
            let stored = Stored::default();
            stream_in_pieces(
                stream::iter(frames(&data, 32)),
                0,
                1_000,
                64,
                Storing::Pipelined(1),
                None,
                recording_store(&stored),
            )
            .await
            .expect("stored");
            assert_eq!(last_flags(&stored), expected, "a body of {len} bytes");
        }
    }

    #[tokio::test]
    async fn the_piece_reaching_the_uploads_end_is_the_last() {
        let data = body(128);
        let stored = Stored::default();
        stream_in_pieces(
            stream::iter(frames(&data, 32)),
            0,
            128,
            64,
            Storing::Pipelined(1),
            None,
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(last_flags(&stored), vec![false, true]);
    }

    #[tokio::test]
    async fn a_piece_cut_short_by_a_break_is_the_last() {
        let data = body(100);
        let mut items = frames(&data, 32);
        items.push(Err("connection reset".to_owned()));
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            stream::iter(items),
            0,
            1_000,
            64,
            Storing::Pipelined(1),
            Some(1_000),
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.uploaded_bytes, 100);
        assert_eq!(last_flags(&stored), vec![false, true]);
    }

    #[tokio::test]
    async fn a_full_piece_is_stored_while_the_body_stalls() {
        let data = body(64);
        let (stored, first_stored) = tokio::sync::oneshot::channel();
        let mut stored = Some(stored);
        let streaming = stream_in_pieces(
            stream::iter(frames(&data, 32)).chain(stream::pending()),
            0,
            1_000,
            64,
            Storing::Pipelined(1),
            Some(1_000),
            move |offset, piece: Piece, last| {
                if let Some(stored) = stored.take() {
                    let _ = stored.send((offset, piece.len(), last));
                }
                std::future::ready(Ok::<u64, String>(offset + piece.len() as u64))
            },
        );
        tokio::select! {
            _ = streaming => panic!("a body that never ends ended"),
            first = first_stored => assert_eq!(first.expect("a piece stored"), (0, 64, false)),
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_ended_and_keeps_what_came() {
        let data = body(100);
        let stored = Stored::default();
        let streamed = stream_in_pieces(
            paced(
                stream::iter(frames(&data, 40)).chain(stream::pending()),
                Pace {
                    idle: Duration::from_millis(50),
                    min_rate: None,
                },
            ),
            0,
            1_000,
            64,
            Storing::Pipelined(1),
            Some(1_000),
            recording_store(&stored),
        )
        .await
        .expect("stored");
        assert_eq!(streamed.uploaded_bytes, 100);
        assert_eq!(
            streamed.end,
            BodyEnd::Interrupted("no bytes of the body came for 50 ms".to_owned())
        );
        assert_eq!(stored_bytes(&stored), data);
        assert_eq!(last_flags(&stored), vec![false, true]);
    }
}
