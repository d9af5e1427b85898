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
    /// Webhook deliveries to attempt, competed for by uploader replicas; the retry queues
    /// ([`QueueNames::webhook_retry`]) dead-letter into it.
    pub webhooks: String,
}

impl QueueNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            commands: format!("{prefix}.commands"),
            outcomes: format!("{prefix}.outcomes"),
            progress: format!("{prefix}.progress"),
            webhooks: format!("{prefix}.webhooks"),
        }
    }

    /// The queue where a delivery waits `delay_ms` before it goes back to `webhooks`: one
    /// queue per delay, since a message's own TTL expires only at the head of its queue.
    pub fn webhook_retry(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}", self.webhooks)
    }

    /// Every queue, to declare or delete them all.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.commands,
            &self.outcomes,
            &self.progress,
            &self.webhooks,
        ]
    }
}

/// The prefix used when none is configured.
pub const DEFAULT_QUEUE_PREFIX: &str = "vod";
