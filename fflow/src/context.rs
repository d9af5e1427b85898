//! What the encode pipeline needs from its replica, and nothing more. It holds no listener and
//! no broker connection of its own: its outcomes go to an [`OutcomeSink`], so the pipeline runs
//! in tests with the sink in memory.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::join::PartSources;
use crate::metrics::FflowMetrics;
use crate::outcome_sink::OutcomeSink;
use crate::sandbox::Sandbox;

pub struct EncodeContext {
    pub config: Arc<Config>,
    /// Builds every ffmpeg and ffprobe command.
    pub sandbox: Sandbox,
    /// This replica's address, e.g. `http://fflow:4050/r1/`; an outcome carries it.
    pub address: String,
    /// Bounds the encodes running at once.
    pub encodes: Semaphore,
    pub metrics: FflowMetrics,
    pub sink: Arc<dyn OutcomeSink>,
    /// Cancelled at shutdown.
    pub stopping: CancellationToken,
    /// Where the parts of a concatenated upload are fetched from.
    pub parts: PartSources,
}
