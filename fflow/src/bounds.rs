//! How much media a source may claim for its size. ffmpeg believes a file's timestamps: a
//! 1.4 KB Matroska file with two frames 600 seconds apart probes as 601 seconds and encodes to
//! 18,030 frames. So a source whose probed duration needs fewer than
//! `FFLOW_MIN_SOURCE_BYTES_PER_SECOND` bytes a second, or that is longer than
//! `FFLOW_MAX_SOURCE_SECONDS`, is refused; an encode reads at most its probed duration (with a
//! margin), never more than its bytes can hold; and a streaming encode whose output gets ahead
//! of what its bytes can hold is stopped.

use std::time::Duration;

use crate::config::Config;

/// Seconds past the probed duration an encode may read, and the share of it: streams can run
/// a little past what the container says.
const MARGIN_SECONDS: f64 = 2.0;
const MARGIN_SHARE: f64 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceBounds {
    /// A second of media takes at least this many bytes of the source; 0 turns the check off.
    pub min_bytes_per_second: u64,
    pub max_seconds: u64,
}

/// Why a source's probed duration is not believed.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Implausible {
    #[error(
        "the file says it lasts {seconds:.0} seconds, longer than the {max} seconds a video may last"
    )]
    TooLong { seconds: f64, max: u64 },
    #[error(
        "the file says it lasts {seconds:.0} seconds but holds only {bytes} bytes, less than \
         {min} bytes per second of media: its timestamps are not believable"
    )]
    TooSparse { seconds: f64, bytes: u64, min: u64 },
}

impl SourceBounds {
    pub fn new(config: &Config) -> Self {
        Self {
            min_bytes_per_second: config.min_source_bytes_per_second,
            max_seconds: config.max_source_seconds,
        }
    }

    /// Refuses a source of `bytes` whose probed duration is `seconds` (0 when unknown) when
    /// it is longer than allowed or than its bytes can hold.
    pub fn check(&self, seconds: f64, bytes: u64) -> Result<(), Implausible> {
        if seconds > self.max_seconds as f64 {
            return Err(Implausible::TooLong {
                seconds,
                max: self.max_seconds,
            });
        }
        if seconds > self.seconds_held(bytes) {
            return Err(Implausible::TooSparse {
                seconds,
                bytes,
                min: self.min_bytes_per_second,
            });
        }
        Ok(())
    }

    /// Seconds of media an encode of a source of `bytes` reads at most: its probed duration
    /// with a margin when it is known (and trusted), never more than its bytes hold or than a
    /// video may last.
    pub fn encode_seconds(&self, probed: Option<f64>, bytes: u64) -> f64 {
        let mut limit = (self.max_seconds as f64).min(self.seconds_held(bytes));
        if let Some(probed) = probed.filter(|seconds| seconds.is_finite() && *seconds > 0.0) {
            limit = limit.min(probed * (1.0 + MARGIN_SHARE) + MARGIN_SECONDS);
        }
        limit
    }

    /// Whether `encoded` of output is more than `fed` bytes of source can hold: a stream whose
    /// timestamps leap ahead of its bytes.
    pub fn outruns(&self, encoded: Duration, fed: u64) -> bool {
        encoded.as_secs_f64() > self.seconds_held(fed)
    }

    fn seconds_held(&self, bytes: u64) -> f64 {
        if self.min_bytes_per_second == 0 {
            f64::INFINITY
        } else {
            bytes as f64 / self.min_bytes_per_second as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: SourceBounds = SourceBounds {
        min_bytes_per_second: 256,
        max_seconds: 43_200,
    };

    #[test]
    fn a_tiny_file_claiming_minutes_is_refused() {
        let refused = BOUNDS.check(601.0, 1_431).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the file says it lasts 601 seconds but holds only 1431 bytes, less than 256 bytes \
             per second of media: its timestamps are not believable"
        );
        // A 3-second clip of 40 KB, or a length ffprobe could not tell, is fine.
        assert_eq!(BOUNDS.check(3.0, 40_000), Ok(()));
        assert_eq!(BOUNDS.check(0.0, 10), Ok(()));
    }

    #[test]
    fn a_source_longer_than_allowed_is_refused_whatever_its_size() {
        let refused = BOUNDS.check(50_000.0, u64::MAX).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the file says it lasts 50000 seconds, longer than the 43200 seconds a video may last"
        );
    }

    #[test]
    fn without_a_minimum_rate_only_the_length_is_checked() {
        let bounds = SourceBounds {
            min_bytes_per_second: 0,
            ..BOUNDS
        };
        assert_eq!(bounds.check(601.0, 1_431), Ok(()));
        assert!(!bounds.outruns(Duration::from_secs(10_000), 1));
        assert_eq!(bounds.encode_seconds(None, 1), 43_200.0);
    }

    #[test]
    fn an_encode_reads_the_probed_duration_with_a_margin_within_what_the_bytes_hold() {
        assert_eq!(BOUNDS.encode_seconds(Some(10.0), 1_000_000), 13.0);
        // Unknown or untrusted: what the bytes can hold.
        assert_eq!(BOUNDS.encode_seconds(None, 25_600), 100.0);
        assert_eq!(BOUNDS.encode_seconds(Some(0.0), 25_600), 100.0);
        assert_eq!(BOUNDS.encode_seconds(Some(99.0), 25_600), 100.0);
        assert_eq!(BOUNDS.encode_seconds(None, u64::MAX), 43_200.0);
    }

    #[test]
    fn output_outruns_the_bytes_that_cannot_hold_it() {
        assert!(BOUNDS.outruns(Duration::from_secs(600), 1_431));
        assert!(!BOUNDS.outruns(Duration::from_secs(5), 1_431));
        assert!(!BOUNDS.outruns(Duration::from_secs(600), 1024 * 1024));
    }
}
