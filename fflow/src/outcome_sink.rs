//! Where an encode reports to: its outcome, and how far it is. The broker in a replica
//! ([`crate::outcomes::Publisher`]); memory in tests, so the encode pipeline runs without one.

use futures_util::future::BoxFuture;
use vod_contracts::outcome::{EncodeOutcome, EncodeProgress};

pub trait OutcomeSink: Send + Sync {
    /// One attempt to hand the outcome on for good; the caller retries until it succeeds.
    fn publish_outcome<'a>(
        &'a self,
        outcome: &'a EncodeOutcome,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// One attempt to report progress; a report that fails is dropped.
    fn publish_progress<'a>(
        &'a self,
        progress: &'a EncodeProgress,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Keeps what is published, for tests to read.
#[cfg(test)]
#[derive(Default)]
pub struct MemorySink {
    pub outcomes: std::sync::Mutex<Vec<EncodeOutcome>>,
    pub progress: std::sync::Mutex<Vec<EncodeProgress>>,
}

#[cfg(test)]
impl MemorySink {
    pub fn outcomes(&self) -> Vec<EncodeOutcome> {
        self.outcomes.lock().unwrap().clone()
    }

    pub fn progress(&self) -> Vec<EncodeProgress> {
        self.progress.lock().unwrap().clone()
    }
}

#[cfg(test)]
impl OutcomeSink for MemorySink {
    fn publish_outcome<'a>(
        &'a self,
        outcome: &'a EncodeOutcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.outcomes.lock().unwrap().push(outcome.clone());
        Box::pin(async { Ok(()) })
    }

    fn publish_progress<'a>(
        &'a self,
        progress: &'a EncodeProgress,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.progress.lock().unwrap().push(progress.clone());
        Box::pin(async { Ok(()) })
    }
}
