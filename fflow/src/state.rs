//! What the HTTP handlers and the replica's background tasks share. Nothing below the routes
//! takes it: the encode pipeline gets its [`EncodeContext`], the sessions their registry.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::context::EncodeContext;
use crate::holder_check::HolderCheck;
use crate::metrics::FflowMetrics;
use crate::outcomes::Publisher;
use crate::session::Sessions;

pub struct AppState {
    pub config: Arc<Config>,
    /// This replica's address, e.g. `http://fflow:4050/r1/`.
    pub address: String,
    pub sessions: Arc<Sessions>,
    pub tracker: TaskTracker,
    /// The broker connection behind `encode.sink`, for readiness and shutdown.
    pub publisher: Arc<Publisher>,
    pub encode: Arc<EncodeContext>,
    /// Cancelled at shutdown; every session's token is a child of it.
    pub stopping: CancellationToken,
    pub metrics: FflowMetrics,
    /// This replica's spool, `{spool_dir}/{replica_id}`.
    pub spool: PathBuf,
    /// `/readyz`'s check of holder, which remembers the last login.
    pub holder_check: HolderCheck,
}
