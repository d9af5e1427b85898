//! Reports how far an encode is on the progress queue: once as ffmpeg starts (so the flow shows
//! how the encode started), then at most once per `progress_interval_ms` while the percentage
//! grows. A report that cannot be published is dropped; the next one says more.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vod_contracts::fflow::EncodeTarget;
use vod_contracts::outcome::{EncodeProgress, EncodeStart};

use crate::outcome_sink::OutcomeSink;
use crate::session::Session;

/// Reports to `sink`, every `interval` at most, until `encoded` (how far into the source ffmpeg
/// is) is dropped with the encode. `duration_seconds` is the source's length, 0 when unknown.
#[allow(clippy::too_many_arguments)]
pub async fn report(
    sink: &dyn OutcomeSink,
    interval: Duration,
    session: &Session,
    target: EncodeTarget,
    started: EncodeStart,
    duration_seconds: f64,
    mut encoded: watch::Receiver<Duration>,
) {
    let mut last_sent: Option<u8> = None;
    loop {
        let percent = percent(*encoded.borrow_and_update(), duration_seconds);
        if last_sent.is_none_or(|last| percent > last) {
            let progress = EncodeProgress {
                video_id: target.video_id,
                flow_id: target.flow_id,
                session_id: session.session_id,
                started,
                percent,
            };
            match sink.publish_progress(&progress).await {
                Ok(()) => tracing::debug!(percent, "progress reported"),
                Err(err) => {
                    tracing::debug!(percent, error = %format!("{err:#}"), "progress not reported")
                }
            }
            last_sent = Some(percent);
        }
        let next_report = Instant::now() + interval;
        loop {
            tokio::select! {
                changed = encoded.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(next_report) => break,
            }
        }
    }
}

/// Whole percent of the source encoded, at most 99: 100 is what a ready flow shows.
pub fn percent(encoded: Duration, duration_seconds: f64) -> u8 {
    if !(duration_seconds.is_finite() && duration_seconds > 0.0) {
        return 0;
    }
    let share = encoded.as_secs_f64() / duration_seconds * 100.0;
    share.floor().clamp(0.0, 99.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_grows_with_the_encoded_time_and_stops_at_99() {
        assert_eq!(percent(Duration::ZERO, 10.0), 0);
        assert_eq!(percent(Duration::from_millis(2_500), 10.0), 25);
        assert_eq!(percent(Duration::from_millis(9_999), 10.0), 99);
        assert_eq!(percent(Duration::from_secs(12), 10.0), 99);
        assert_eq!(percent(Duration::from_secs(3), 0.0), 0);
        assert_eq!(percent(Duration::from_secs(3), f64::NAN), 0);
    }
}
