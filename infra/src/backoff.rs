//! The waits between tries of something that may work later: a first delay, doubling up to a
//! bound. Every retry and reconnect loop of the services takes its delays from here, so that
//! they all grow the same way and their figures stay configuration.

use std::time::Duration;

/// Delays that start at `first` and double after each one, never above `max`. A `first` above
/// `max` is waited once as configured; the doubling is what the bound caps.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// `first`, `2 × first`, … up to `max`.
    pub fn doubling(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// `first`, `2 × first`, … without a bound: for a loop whose number of tries is bounded.
    pub fn doubling_unbounded(first: Duration) -> Self {
        Self::doubling(first, Duration::MAX)
    }

    /// The delay to wait now; the following one doubles it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts again from the first delay, once what was retried worked.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn first_delays(backoff: &mut Backoff, count: usize) -> Vec<Duration> {
        (0..count).map(|_| backoff.next_delay()).collect()
    }

    #[test]
    fn delays_double_up_to_the_bound() {
        let mut backoff = Backoff::doubling(ms(1_000), ms(30_000));
        assert_eq!(
            first_delays(&mut backoff, 7),
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000].map(ms)
        );
    }

    #[test]
    fn a_first_delay_above_the_bound_is_waited_once() {
        let mut backoff = Backoff::doubling(ms(500), ms(200));
        assert_eq!(first_delays(&mut backoff, 3), [500, 200, 200].map(ms));
    }

    #[test]
    fn reset_starts_from_the_first_delay_again() {
        let mut backoff = Backoff::doubling(ms(250), ms(5_000));
        first_delays(&mut backoff, 4);
        backoff.reset();
        assert_eq!(first_delays(&mut backoff, 2), [250, 500].map(ms));
    }

    #[test]
    fn unbounded_delays_saturate_instead_of_overflowing() {
        let mut backoff = Backoff::doubling_unbounded(ms(500));
        assert_eq!(
            first_delays(&mut backoff, 4),
            [500, 1_000, 2_000, 4_000].map(ms)
        );
        let mut huge = Backoff::doubling_unbounded(Duration::MAX / 2 + ms(1));
        huge.next_delay();
        assert_eq!(huge.next_delay(), Duration::MAX);
    }
}
