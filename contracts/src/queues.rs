//! Names of the AMQP queues. Every name derives from one prefix, so that a deployment (or a
//! test) can run beside another on the same broker without sharing messages.

/// The queues of one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueNames {
    /// Gateway → uploader requests (commands and chunks), competed for by uploader replicas.
    pub commands: String,
    /// fflow → uploader encode outcomes.
    pub outcomes: String,
    /// fflow → uploader encode progress reports.
    pub progress: String,
}

impl QueueNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            commands: format!("{prefix}.commands"),
            outcomes: format!("{prefix}.outcomes"),
            progress: format!("{prefix}.progress"),
        }
    }

    /// Every queue, to declare or delete them all.
    pub fn all(&self) -> [&str; 3] {
        [&self.commands, &self.outcomes, &self.progress]
    }
}

/// The prefix used when none is configured.
pub const DEFAULT_QUEUE_PREFIX: &str = "vod";
