//! When a failed delivery is tried again: exponential backoff with jitter, from a finite set
//! of delays, since each delay is a retry queue of its own on the broker.

use std::time::Duration;

use crate::config::WebhookSettings;

/// The delays between attempts, and how long a delivery is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    first_ms: u64,
    max_ms: u64,
    jitter_steps: u32,
    period: Duration,
}

impl RetrySchedule {
    pub fn new(settings: &WebhookSettings) -> Self {
        Self {
            first_ms: settings.retry_first_ms,
            max_ms: settings.retry_max_ms,
            jitter_steps: settings.retry_jitter_steps.max(1),
            period: Duration::from_secs(settings.retry_period_secs),
        }
    }

    /// The delay after `failed` attempts (1 or more) failed: the first delay doubled after
    /// each failure up to the largest, stretched by `jitter` (any number, taken modulo the
    /// steps) eighths.
    pub fn delay_ms(&self, failed: u32, jitter: u32) -> u64 {
        let doublings = failed.saturating_sub(1).min(63);
        let base = self
            .first_ms
            .checked_shl(doublings)
            .filter(|delay| *delay >> doublings == self.first_ms)
            .map_or(self.max_ms, |delay| delay.min(self.max_ms));
        let step = u64::from(jitter % self.jitter_steps);
        base.saturating_add(base / 8 * step)
    }

    /// The delay before the next attempt, when one is due: `None` once it would come after
    /// the retry period, counted from the delivery's creation `age` ago.
    pub fn next(&self, failed: u32, age: Duration, jitter: u32) -> Option<u64> {
        let delay = self.delay_ms(failed, jitter);
        (age + Duration::from_millis(delay) <= self.period).then_some(delay)
    }
}

/// A random jitter step.
pub fn random_jitter() -> u32 {
    let mut bytes = [0u8; 4];
    // Without randomness, no jitter: the delay is still right.
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(&WebhookSettings {
            retry_first_ms: 1_000,
            retry_max_ms: 10_000,
            retry_jitter_steps: 4,
            retry_period_secs: 60,
            ..WebhookSettings::default()
        })
    }

    #[test]
    fn delays_double_up_to_the_largest() {
        let delays: Vec<u64> = (1..=6)
            .map(|failed| schedule().delay_ms(failed, 0))
            .collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(schedule().delay_ms(500, 0), 10_000);
    }

    #[test]
    fn jitter_stretches_a_delay_by_whole_eighths() {
        let stretched: Vec<u64> = (0..5)
            .map(|jitter| schedule().delay_ms(2, jitter))
            .collect();
        assert_eq!(stretched, [2_000, 2_250, 2_500, 2_750, 2_000]);
    }

    #[test]
    fn no_attempt_comes_after_the_period() {
        assert_eq!(schedule().next(1, Duration::from_secs(58), 0), Some(1_000));
        assert_eq!(
            schedule().next(1, Duration::from_secs(59) + Duration::from_millis(1), 0),
            None
        );
    }

    #[test]
    fn a_schedule_has_few_delays_so_few_retry_queues() {
        let mut delays: Vec<u64> = (1..100)
            .flat_map(|failed| (0..4).map(move |jitter| schedule().delay_ms(failed, jitter)))
            .collect();
        delays.sort_unstable();
        delays.dedup();
        assert!(delays.len() <= 20, "{delays:?}");
    }
}
