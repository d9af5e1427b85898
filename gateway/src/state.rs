//! What every handler shares. A leaf: the routes and the upload store import it, and it
//! imports none of them, so they do not depend on the start-up that builds it.

use std::sync::Arc;

use deadpool_postgres::Pool;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::cache::KeyCache;
use crate::chunk_client::ChunkClient;
use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::uploader_client::UploaderClient;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub uploader: UploaderClient,
    /// The uploaders' chunk listeners, when configured: bodies are streamed there instead of
    /// through the broker.
    pub chunks: Option<Arc<ChunkClient>>,
    /// Upload bodies being stored; they finish even when their request is dropped.
    pub body_tasks: TaskTracker,
    pub metrics: GatewayMetrics,
    /// Keys verified lately.
    pub keys: Arc<KeyCache>,
    /// What `/metrics` renders.
    pub metrics_registry: Arc<Registry>,
    /// Cancelled once the gateway stops serving: write locks still being given back are left
    /// to run out by themselves.
    pub stopping: CancellationToken,
    /// Chunks being published at once, see [`Config::publishing_chunks_max`].
    pub publishing: Arc<Semaphore>,
    /// Bytes of request bodies held at once, see [`Config::max_buffered_bytes`].
    pub buffers: Arc<Semaphore>,
}
