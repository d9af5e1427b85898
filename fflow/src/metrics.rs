//! What an fflow replica counts. The registry is the replica's own, built in `App::build`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use vod_contracts::fflow::FflowErrorCode;
use vod_contracts::EncodePath;
use vod_infra::metrics::{buckets, histogram, HttpMetrics, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// `streaming` or `after_upload`.
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// A stable kind, see [`failure_kind`].
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug)]
pub struct FflowMetrics {
    pub http: HttpMetrics,
    ffmpeg_active: Gauge,
    encodes_started: Family<PathLabels, Counter>,
    encodes_succeeded: Counter,
    encodes_failed: Family<FailureLabels, Counter>,
    encode_speed: Histogram,
    bytes_spooled: Counter,
    chunks_refused: Family<FailureLabels, Counter>,
    ftp_uploads: Family<ResultLabels, Counter>,
    ftp_files: Counter,
    ftp_bytes: Counter,
    broker_connections_lost: Counter,
    broker_reconnections: Counter,
}

impl FflowMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: HttpMetrics::register(registry),
            ffmpeg_active: Gauge::default(),
            encodes_started: Family::default(),
            encodes_succeeded: Counter::default(),
            encodes_failed: Family::default(),
            encode_speed: histogram(buckets::ENCODE_SPEED),
            bytes_spooled: Counter::default(),
            chunks_refused: Family::default(),
            ftp_uploads: Family::default(),
            ftp_files: Counter::default(),
            ftp_bytes: Counter::default(),
            broker_connections_lost: Counter::default(),
            broker_reconnections: Counter::default(),
        };
        registry.register(
            "ffmpeg_active",
            "ffmpeg encode processes running",
            metrics.ffmpeg_active.clone(),
        );
        registry.register(
            "encodes_started",
            "Encodes started, by path (streaming while the upload arrives, or after it)",
            metrics.encodes_started.clone(),
        );
        registry.register(
            "encodes_succeeded",
            "Encodes whose presentation was stored and reported ready",
            metrics.encodes_succeeded.clone(),
        );
        registry.register(
            "encodes_failed",
            "Encodes reported failed, by reason",
            metrics.encodes_failed.clone(),
        );
        registry.register(
            "encode_speed",
            "Media seconds encoded per wall-clock second, encodes of a complete upload",
            metrics.encode_speed.clone(),
        );
        registry.register(
            "bytes_spooled",
            "Upload bytes received into the spool",
            metrics.bytes_spooled.clone(),
        );
        registry.register(
            "chunks_refused",
            "Chunks not written to the spool, by the error code answered (insufficient_storage: \
             the disk is down to its free-space reserve)",
            metrics.chunks_refused.clone(),
        );
        registry.register(
            "ftp_uploads",
            "Attempts to store a presentation on holder, by result",
            metrics.ftp_uploads.clone(),
        );
        registry.register(
            "ftp_files_uploaded",
            "Files stored on holder",
            metrics.ftp_files.clone(),
        );
        registry.register(
            "ftp_bytes_uploaded",
            "Bytes stored on holder",
            metrics.ftp_bytes.clone(),
        );
        registry.register(
            "broker_connections_lost",
            "Publishing connections lost",
            metrics.broker_connections_lost.clone(),
        );
        registry.register(
            "broker_reconnections",
            "Publishing connections opened again after one was lost for good",
            metrics.broker_reconnections.clone(),
        );
        metrics
    }

    /// Counts one running ffmpeg until the returned guard is dropped.
    pub fn ffmpeg_running(&self) -> FfmpegRunning {
        self.ffmpeg_active.inc();
        FfmpegRunning(self.ffmpeg_active.clone())
    }

    pub fn encode_started(&self, path: EncodePath) {
        let path = match path {
            EncodePath::Streaming => "streaming",
            EncodePath::AfterUpload => "after_upload",
        };
        self.encodes_started
            .get_or_create(&PathLabels {
                path: path.to_owned(),
            })
            .inc();
    }

    pub fn encode_ended(&self, result: &Result<vod_contracts::outcome::MediaFacts, String>) {
        match result {
            Ok(_) => {
                self.encodes_succeeded.inc();
            }
            Err(reason) => {
                self.encodes_failed
                    .get_or_create(&FailureLabels {
                        reason: failure_kind(reason).to_owned(),
                    })
                    .inc();
            }
        }
    }

    pub fn encode_speed(&self, media_seconds: f64, wall_seconds: f64) {
        if media_seconds > 0.0 && wall_seconds > 0.0 {
            self.encode_speed.observe(media_seconds / wall_seconds);
        }
    }

    pub fn spooled(&self, bytes: usize) {
        self.bytes_spooled.inc_by(bytes as u64);
    }

    pub fn chunk_refused(&self, code: &FflowErrorCode) {
        self.chunks_refused
            .get_or_create(&FailureLabels {
                reason: code.as_str().to_owned(),
            })
            .inc();
    }

    pub fn ftp_upload(&self, succeeded: bool) {
        let result = if succeeded { "ok" } else { "error" };
        self.ftp_uploads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn ftp_file(&self, bytes: u64) {
        self.ftp_files.inc();
        self.ftp_bytes.inc_by(bytes);
    }

    pub fn broker_connection_lost(&self) {
        self.broker_connections_lost.inc();
    }

    pub fn broker_reconnected(&self) {
        self.broker_reconnections.inc();
    }
}

/// Decrements the active ffmpeg gauge when dropped, however the encode ends.
pub struct FfmpegRunning(Gauge);

impl Drop for FfmpegRunning {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A bounded label for a failure reason (the reasons are sentences a user reads): `source`
/// (the input cannot be encoded), `stalled`, `timeout`, `holder` (storing failed),
/// `shutdown`, `join` (a concatenated upload's parts), `internal` or `encoder` (ffmpeg refused).
pub fn failure_kind(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    if reason.contains("on holder") {
        "holder"
    } else if reason.contains("stalled") || reason.contains("no progress") {
        "stalled"
    } else if reason.contains("took longer than") {
        "timeout"
    } else if reason.contains("shutting down") {
        "shutdown"
    } else if reason.contains("the encoder failed while") {
        "internal"
    } else if reason.contains("ffmpeg could not encode") {
        "encoder"
    } else if reason.contains("partial upload") || reason.contains("joined upload") {
        "join"
    } else {
        "source"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_map_to_few_stable_kinds() {
        let cases = [
            (
                "could not store the presentation on holder: connection refused",
                "holder",
            ),
            ("the encode took longer than 60 seconds", "timeout"),
            ("the encoder is shutting down", "shutdown"),
            ("the encoder failed while probing", "internal"),
            ("ffmpeg could not encode the file: broken", "encoder"),
            (
                "the encode made no progress for 120 seconds and was stopped",
                "stalled",
            ),
            ("partial upload 5 is gone", "join"),
            ("the joined upload is not whole: short", "join"),
            ("the file has neither picture nor sound", "source"),
        ];
        for (reason, kind) in cases {
            assert_eq!(failure_kind(reason), kind, "{reason}");
        }
    }

    #[test]
    fn the_active_gauge_follows_running_processes() {
        let mut registry = vod_infra::metrics::registry("fflow");
        let metrics = FflowMetrics::register(&mut registry);
        let first = metrics.ffmpeg_running();
        let second = metrics.ffmpeg_running();
        assert_eq!(metrics.ffmpeg_active.get(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.ffmpeg_active.get(), 0);
    }
}
