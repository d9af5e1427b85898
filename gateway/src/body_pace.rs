//! Ending a request body whose client stopped sending, or sends too slowly to be worth the
//! memory and the write lock it holds.
//!
//! Only the time spent waiting for the client counts: while the gateway itself is busy (its
//! pieces in flight are being stored and it reads nothing), the client is not judged.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyBroke<E> {
    #[error("{0}")]
    Read(E),
    #[error("no bytes of the body came for {} ms", .0.as_millis())]
    Idle(Duration),
    #[error(transparent)]
    TooSlow(TooSlow),
}

impl<E> BodyBroke<E> {
    /// A bounded label of why the body broke.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Read(_) => "read_error",
            Self::Idle(_) => "idle",
            Self::TooSlow(_) => "too_slow",
        }
    }
}

/// A window in which the body brought less than its floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the body sent {received} bytes in {} ms, under the minimum of {bytes_per_sec} bytes per second",
    waited.as_millis()
)]
pub struct TooSlow {
    pub received: u64,
    pub waited: Duration,
    pub bytes_per_sec: u64,
}

/// The slowest a body may come: once `grace` of waiting has passed, each `window` of waiting
/// must bring at least `bytes_per_sec` × `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
    pub grace: Duration,
}

impl MinRate {
    fn required(&self, waited: Duration) -> u64 {
        let bytes = u128::from(self.bytes_per_sec) * waited.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// How long a body may send nothing, and how slowly it may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub idle: Duration,
    pub min_rate: Option<MinRate>,
}

/// `body`, ended by [`BodyBroke::Idle`] once nothing of it has come for `pace.idle` while it
/// was waited for (a client whose connection died without a word), and by
/// [`BodyBroke::TooSlow`] once a window brought less than `pace.min_rate` (a client that
/// keeps the connection alive with a byte now and then). Every byte that came before is
/// handed on first, so the caller keeps it as it keeps those of a broken connection.
pub fn paced<B, E>(body: B, pace: Pace) -> impl Stream<Item = Result<Bytes, BodyBroke<E>>> + Unpin
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let paced = Paced {
        body,
        pace,
        waited: Duration::ZERO,
        window_waited: Duration::ZERO,
        window_bytes: 0,
        too_slow: None,
    };
    Box::pin(futures_util::stream::unfold(
        Some(paced),
        |paced| async move {
            let mut paced = paced?;
            let item = paced.next().await?;
            let goes_on = item.is_ok();
            Some((item, goes_on.then_some(paced)))
        },
    ))
}

struct Paced<B> {
    body: B,
    pace: Pace,
    /// Time spent waiting for the body, in all.
    waited: Duration,
    /// Of that, the part in the current window, and the bytes it brought.
    window_waited: Duration,
    window_bytes: u64,
    /// Judged too slow when the window closed with a frame in hand: told after the frame.
    too_slow: Option<TooSlow>,
}

impl<B, E> Paced<B>
where
    B: Stream<Item = Result<Bytes, E>> + Unpin,
{
    async fn next(&mut self) -> Option<Result<Bytes, BodyBroke<E>>> {
        if let Some(too_slow) = self.too_slow.take() {
            return Some(Err(BodyBroke::TooSlow(too_slow)));
        }
        let mut silent = Duration::ZERO;
        loop {
            let wait = self
                .pace
                .idle
                .saturating_sub(silent)
                .min(self.until_judged());
            let started = Instant::now();
            let next = tokio::time::timeout(wait, self.body.next()).await;
            let waited = started.elapsed();
            silent += waited;
            self.count_wait(waited);
            match next {
                Ok(None) => return None,
                Ok(Some(Err(error))) => return Some(Err(BodyBroke::Read(error))),
                Ok(Some(Ok(frame))) => {
                    if self.waited > self.grace() {
                        self.window_bytes = self.window_bytes.saturating_add(frame.len() as u64);
                    }
                    self.too_slow = self.judge();
                    return Some(Ok(frame));
                }
                Err(_) if silent >= self.pace.idle => {
                    return Some(Err(BodyBroke::Idle(self.pace.idle)))
                }
                Err(_) => {
                    if let Some(too_slow) = self.judge() {
                        return Some(Err(BodyBroke::TooSlow(too_slow)));
                    }
                }
            }
        }
    }

    fn grace(&self) -> Duration {
        self.pace.min_rate.map_or(Duration::ZERO, |rate| rate.grace)
    }

    /// How much more waiting until the current window is judged.
    fn until_judged(&self) -> Duration {
        match self.pace.min_rate {
            None => Duration::MAX,
            Some(rate) if self.waited < rate.grace => (rate.grace - self.waited) + rate.window,
            Some(rate) => rate.window.saturating_sub(self.window_waited),
        }
    }

    /// Adds a wait; windows start once the grace is over.
    fn count_wait(&mut self, waited: Duration) {
        let before = self.waited;
        self.waited += waited;
        let grace = self.grace();
        self.window_waited += self.waited.saturating_sub(grace.max(before));
    }

    /// Closes the window if it is over: too slow, or a new window begins.
    fn judge(&mut self) -> Option<TooSlow> {
        let rate = self.pace.min_rate?;
        if self.waited < rate.grace || self.window_waited < rate.window {
            return None;
        }
        let received = std::mem::take(&mut self.window_bytes);
        let waited = std::mem::take(&mut self.window_waited);
        (received < rate.required(waited)).then_some(TooSlow {
            received,
            waited,
            bytes_per_sec: rate.bytes_per_sec,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    type Item = Result<Bytes, BodyBroke<String>>;

    fn idle_only(idle: Duration) -> Pace {
        Pace {
            idle,
            min_rate: None,
        }
    }

    fn floor(bytes_per_sec: u64, window_ms: u64, grace_ms: u64) -> Pace {
        Pace {
            idle: Duration::from_secs(60),
            min_rate: Some(MinRate {
                bytes_per_sec,
                window: Duration::from_millis(window_ms),
                grace: Duration::from_millis(grace_ms),
            }),
        }
    }

    /// `frames` frames of `size` bytes, one every `every`, then the body ends.
    fn every(
        every: Duration,
        frames: usize,
        size: usize,
    ) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        Box::pin(stream::iter(0..frames).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok(Bytes::from(vec![1u8; size]))
        }))
    }

    async fn all(body: impl Stream<Item = Item> + Unpin) -> (usize, Option<BodyBroke<String>>) {
        let mut body = body;
        let mut bytes = 0;
        while let Some(item) = body.next().await {
            match item {
                Ok(frame) => bytes += frame.len(),
                Err(broke) => {
                    assert!(body.next().await.is_none(), "nothing after the end");
                    return (bytes, Some(broke));
                }
            }
        }
        (bytes, None)
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_ended_after_what_came() {
        let body = stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(stream::pending());
        let (bytes, broke) = all(paced(body, idle_only(Duration::from_millis(50)))).await;
        assert_eq!(bytes, 3);
        let broke = broke.expect("ended");
        assert_eq!(broke.reason(), "idle");
        assert_eq!(broke.to_string(), "no bytes of the body came for 50 ms");
    }

    #[tokio::test]
    async fn a_body_that_keeps_coming_slowly_is_not_ended_by_the_idle_timeout() {
        let body = every(Duration::from_millis(20), 5, 10);
        let (bytes, broke) = all(paced(body, idle_only(Duration::from_secs(30)))).await;
        assert_eq!(bytes, 50);
        assert!(broke.is_none());
    }

    #[tokio::test]
    async fn a_trickle_under_the_floor_is_ended_after_what_came() {
        // 1 byte every 10 ms is 100 bytes a second, under a floor of 10 000.
        let body = stream::iter([Ok(Bytes::from(vec![0u8; 500]))]).chain(every(
            Duration::from_millis(10),
            usize::MAX,
            1,
        ));
        let (bytes, broke) = all(paced(body, floor(10_000, 100, 50))).await;
        assert!(bytes >= 500, "{bytes}");
        let broke = broke.expect("ended");
        assert_eq!(broke.reason(), "too_slow");
        let too_slow = match broke {
            BodyBroke::TooSlow(too_slow) => too_slow,
            other => panic!("expected too slow, got {other:?}"),
        };
        assert_eq!(too_slow.bytes_per_sec, 10_000);
        assert!(too_slow.received < 1_000, "{too_slow:?}");
    }

    #[tokio::test]
    async fn a_silent_body_is_ended_by_the_floor_before_the_idle_timeout() {
        let body = stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(stream::pending());
        let (bytes, broke) = all(paced(body, floor(1_000, 50, 0))).await;
        assert_eq!(bytes, 3);
        assert!(matches!(broke, Some(BodyBroke::TooSlow(_))), "{broke:?}");
    }

    #[tokio::test]
    async fn a_body_over_the_floor_completes() {
        // 1 000 bytes every 10 ms: 100 000 bytes a second over a floor of 1 000.
        let body = every(Duration::from_millis(10), 30, 1_000);
        let (bytes, broke) = all(paced(body, floor(1_000, 50, 0))).await;
        assert_eq!(bytes, 30_000);
        assert!(broke.is_none(), "{broke:?}");
    }

    #[tokio::test]
    async fn a_slow_start_within_the_grace_is_forgiven() {
        let late = stream::once(async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(Bytes::from(vec![0u8; 10]))
        });
        let body = Box::pin(late.chain(every(Duration::from_millis(5), 40, 1_000)));
        let (bytes, broke) = all(paced(body, floor(1_000, 100, 300))).await;
        assert_eq!(bytes, 40_010);
        assert!(broke.is_none(), "{broke:?}");
    }

    #[tokio::test]
    async fn time_the_reader_spends_elsewhere_is_not_the_clients() {
        // Every frame is there at once; the reader takes 30 ms over each, far longer than the
        // window, but it never waits for the client.
        let frames: Vec<Result<Bytes, String>> =
            (0..10).map(|_| Ok(Bytes::from_static(b"x"))).collect();
        let mut body = paced(stream::iter(frames), floor(1_000_000, 10, 0));
        let mut bytes = 0;
        while let Some(item) = body.next().await {
            bytes += item.expect("not ended").len();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(bytes, 10);
    }
}
