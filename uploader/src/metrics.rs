//! What an uploader replica counts. The registry is the replica's own, built in `App::build`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use vod_contracts::commands::{CommandKind, RejectCode};
use vod_infra::metrics::{buckets, histogram, Registry};

/// What a status belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Video,
    Flow,
    Session,
}

impl Entity {
    fn as_str(self) -> &'static str {
        match self {
            Entity::Video => "video",
            Entity::Flow => "flow",
            Entity::Session => "session",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub entity: String,
    pub from: String,
    pub to: String,
}

/// Status changes written, by entity and statuses; `from` is `NONE` for a creation.
#[derive(Clone, Debug, Default)]
pub struct StateTransitions(Family<TransitionLabels, Counter>);

impl StateTransitions {
    pub fn record(&self, entity: Entity, from: &str, to: &str) {
        self.0
            .get_or_create(&TransitionLabels {
                entity: entity.as_str().to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The command's `type`, or `chunk`.
    pub kind: String,
    /// `ok`, or the reject code the gateway was sent.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectLabels {
    /// The project's name (unique).
    pub project: String,
}

/// A project's usage as `project_usage_now` shows it, for `/metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectUsage {
    pub project: String,
    pub bytes_received: i64,
    pub uploads_completed: i64,
    pub encoded_seconds: f64,
    pub stored_bytes: i64,
    pub open_uploads: i64,
}

/// The usage counters of each project, read from the database when scraped.
#[derive(Clone, Debug, Default)]
struct ProjectGauges {
    bytes_received: Family<ProjectLabels, Gauge>,
    uploads_completed: Family<ProjectLabels, Gauge>,
    encoded_seconds: Family<ProjectLabels, Gauge<f64, AtomicU64>>,
    stored_bytes: Family<ProjectLabels, Gauge>,
    open_uploads: Family<ProjectLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
    pub result: String,
}

#[derive(Clone, Debug)]
pub struct UploaderMetrics {
    pub transitions: StateTransitions,
    commands: Family<CommandLabels, Counter>,
    chunk_duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    sessions_expired: Counter,
    unused_videos: Family<ResultLabels, Counter>,
    scheduler_runs: Family<JobLabels, Counter>,
    queue_messages: Family<QueueLabels, Gauge>,
    broker_connections_lost: Counter,
    broker_reconnections: Counter,
    projects: ProjectGauges,
}

/// The `kind` of a message that could not be decoded.
pub const INVALID_KIND: &str = "invalid";
pub const CHUNK_KIND: &str = CommandKind::Chunk.name();

impl UploaderMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            transitions: StateTransitions::default(),
            commands: Family::default(),
            chunk_duration: Family::new_with_constructor(|| histogram(buckets::LATENCY_SECONDS)),
            sessions_expired: Counter::default(),
            unused_videos: Family::default(),
            scheduler_runs: Family::default(),
            queue_messages: Family::default(),
            broker_connections_lost: Counter::default(),
            broker_reconnections: Counter::default(),
            projects: ProjectGauges::default(),
        };
        registry.register(
            "state_transitions",
            "Status changes of videos, flows and upload sessions, by entity, from and to",
            metrics.transitions.0.clone(),
        );
        registry.register(
            "commands",
            "Commands and chunks handled, by kind and result",
            metrics.commands.clone(),
        );
        registry.register(
            "chunk_duration_seconds",
            "Time to handle a chunk, delivery to reply, by result",
            metrics.chunk_duration.clone(),
        );
        registry.register(
            "scheduler_sessions_expired",
            "Upload sessions the scheduler expired",
            metrics.sessions_expired.clone(),
        );
        registry.register(
            "scheduler_unused_videos",
            "Unused videos the scheduler deleted, or kept because their files on holder could \
             not be removed, by result",
            metrics.unused_videos.clone(),
        );
        registry.register(
            "scheduler_runs",
            "Scheduler job runs, by job and result",
            metrics.scheduler_runs.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages ready in each queue, read when scraped",
            metrics.queue_messages.clone(),
        );
        registry.register(
            "broker_connections_lost",
            "Broker connections lost (or given up because the broker ended a consumer)",
            metrics.broker_connections_lost.clone(),
        );
        registry.register(
            "broker_reconnections",
            "Broker connections opened again after one was lost for good",
            metrics.broker_reconnections.clone(),
        );
        let projects = &metrics.projects;
        registry.register(
            "project_bytes_received",
            "Bytes received by the project's uploads since its usage started, read when scraped",
            projects.bytes_received.clone(),
        );
        registry.register(
            "project_uploads_completed",
            "Uploads of the project whose every byte arrived, read when scraped",
            projects.uploads_completed.clone(),
        );
        registry.register(
            "project_encoded_seconds",
            "Seconds of video encoded for the project (duration x renditions), read when scraped",
            projects.encoded_seconds.clone(),
        );
        registry.register(
            "project_stored_bytes",
            "Bytes the project's presentations hold on holder, read when scraped",
            projects.stored_bytes.clone(),
        );
        registry.register(
            "project_open_uploads",
            "Uploads of the project open now, read when scraped",
            projects.open_uploads.clone(),
        );
        metrics
    }

    /// Sets the per-project gauges to what was just read.
    pub fn project_usage(&self, usage: &[ProjectUsage]) {
        let gauges = &self.projects;
        for project in usage {
            let labels = ProjectLabels {
                project: project.project.clone(),
            };
            gauges
                .bytes_received
                .get_or_create(&labels)
                .set(project.bytes_received);
            gauges
                .uploads_completed
                .get_or_create(&labels)
                .set(project.uploads_completed);
            gauges
                .encoded_seconds
                .get_or_create(&labels)
                .set(project.encoded_seconds);
            gauges
                .stored_bytes
                .get_or_create(&labels)
                .set(project.stored_bytes);
            gauges
                .open_uploads
                .get_or_create(&labels)
                .set(project.open_uploads);
        }
    }

    /// Counts a handled message; a chunk's handling time goes to the latency histogram.
    pub fn handled(&self, kind: &str, result: Result<(), RejectCode>, elapsed: Duration) {
        let result = result_label(result);
        if kind == CHUNK_KIND {
            self.chunk_duration
                .get_or_create(&ResultLabels {
                    result: result.clone(),
                })
                .observe(elapsed.as_secs_f64());
        }
        self.commands
            .get_or_create(&CommandLabels {
                kind: kind.to_owned(),
                result,
            })
            .inc();
    }

    pub fn sessions_expired(&self, count: usize) {
        self.sessions_expired.inc_by(count as u64);
    }

    /// `result` is `deleted` or `kept`.
    pub fn unused_videos(&self, result: &str, count: usize) {
        self.unused_videos
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc_by(count as u64);
    }

    pub fn scheduler_run(&self, job: &str, succeeded: bool) {
        let result = if succeeded { "ok" } else { "error" };
        self.scheduler_runs
            .get_or_create(&JobLabels {
                job: job.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn broker_connection_lost(&self) {
        self.broker_connections_lost.inc();
    }

    pub fn broker_reconnected(&self) {
        self.broker_reconnections.inc();
    }

    pub fn queue_depth(&self, queue: &str, messages: u32) {
        self.queue_messages
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .set(i64::from(messages));
    }
}

/// `ok`, or the reject code as the gateway reads it.
fn result_label(result: Result<(), RejectCode>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(code) => serde_json::to_value(code)
            .ok()
            .and_then(|code| code.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn chunks_are_timed_and_counted_by_result() {
        let mut registry = vod_infra::metrics::registry("uploader");
        let metrics = UploaderMetrics::register(&mut registry);
        let stored = Ok(());
        let refused = Err(RejectCode::OffsetMismatch);
        metrics.handled(CHUNK_KIND, stored, Duration::from_millis(3));
        metrics.handled(CHUNK_KIND, refused, Duration::from_millis(3));
        metrics.handled("lock_upload", stored, Duration::from_millis(3));
        metrics
            .transitions
            .record(Entity::Flow, "PROCESSING", "READY");
        let text = rendered(&registry);
        for line in [
            "uploader_commands_total{kind=\"chunk\",result=\"offset_mismatch\"} 1",
            "uploader_commands_total{kind=\"lock_upload\",result=\"ok\"} 1",
            "uploader_chunk_duration_seconds_count{result=\"ok\"} 1",
            "uploader_state_transitions_total{entity=\"flow\",from=\"PROCESSING\",to=\"READY\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("chunk_duration_seconds_count{result=\"ok\"} 2"));
    }
}
