//! Serving an axum router the same way in every service.

use std::net::SocketAddr;

use std::future::IntoFuture;

use anyhow::Context;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` is cancelled, then lets requests in flight finish until `abandon`
/// fires (see [`crate::shutdown::abandon_after`]): a slow upload or a stalled download must not
/// keep a stopping service alive. TCP_NODELAY is set: small responses (playlists, JSON)
/// otherwise wait for delayed ACKs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(error = %error, "failed to set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .into_future();
    match crate::shutdown::unless_abandoned(&abandon, server).await {
        Some(served) => served.context("http server failed"),
        None => {
            tracing::warn!("requests still in flight at the shutdown timeout are cut off");
            Ok(())
        }
    }
}
