//! Serving an axum router the same way in every service, with bounds on what clients may hold.
//!
//! `axum::serve` gives hyper no timer, so hyper applies no header-read timeout, and it accepts
//! every connection: a client sending its headers a byte at a time keeps a connection (and a
//! task) for as long as it likes, and enough of them exhaust the process. Every listener is
//! therefore served here, on hyper's HTTP/1 connections with tokio's timer, under the
//! service's [`HttpLimits`].

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpLimits;

/// Pause after a failed accept (out of file descriptors, ...) so the loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Connections refused over the limit are logged at most this often, so a flood does not
/// flood the log too.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets requests in flight
/// finish until `abandon` fires (see [`crate::shutdown::abandon_after`]): a slow upload or a
/// stalled download must not keep a stopping service alive; idle connections close at once.
///
/// A connection must send each request's whole header within
/// `limits.header_read_timeout_ms` (counted from the connection's start, then from each
/// answer), or it is closed unanswered. At most `limits.max_connections` are served at once;
/// one accepted beyond that is closed at once, unanswered, rather than left waiting in the
/// backlog where it would hold a client that cannot tell it from a dead server.
/// TCP_NODELAY is set: small responses (playlists, JSON) otherwise wait for delayed ACKs.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
    abandon: CancellationToken,
) -> anyhow::Result<()> {
    let mut connections = http1::Builder::new();
    connections
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    let server = Server {
        connections,
        router,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        tasks: TaskTracker::new(),
        // Cut when abandoned, and when this future is dropped: no connection outlives it.
        cut: abandon.child_token(),
    };
    let _cut_on_drop = server.cut.clone().drop_guard();
    match crate::shutdown::unless_abandoned(&abandon, server.run(listener, shutdown)).await {
        Some(()) => Ok(()),
        None => {
            tracing::warn!("requests still in flight at the shutdown timeout are cut off");
            Ok(())
        }
    }
}

struct Server {
    connections: http1::Builder,
    router: Router,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    cut: CancellationToken,
}

impl Server {
    async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let mut refusals = Refusals::default();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(error = %error, "failed to accept an http connection");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                },
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => self.spawn(stream, slot, &shutdown),
                Err(_) => {
                    // Dropping the stream closes it before a byte is read or written.
                    refusals.refused(peer);
                }
            }
        }
        drop(listener);
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn spawn(&self, stream: TcpStream, slot: OwnedSemaphorePermit, shutdown: &CancellationToken) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "failed to set TCP_NODELAY");
        }
        let connection = self.connections.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(self.router.clone()),
        );
        let (shutdown, cut) = (shutdown.clone(), self.cut.clone());
        self.tasks.spawn(async move {
            let _slot = slot;
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    // Finishes the request in flight, if any, then closes.
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        served = connection.as_mut() => served,
                        () = cut.cancelled() => Ok(()),
                    }
                }
                () = cut.cancelled() => Ok(()),
            };
            if let Err(error) = served {
                // A client that went away, or one too slow to send its headers.
                tracing::debug!(error = %error, "http connection ended with an error");
            }
        });
    }
}

/// Counts connections refused over the limit and logs them now and then.
#[derive(Default)]
struct Refusals {
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn refused(&mut self, peer: SocketAddr) {
        self.since_logged += 1;
        tracing::debug!(%peer, "http connection refused: connection limit reached");
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                refused = self.since_logged,
                "http connections refused: connection limit reached"
            );
            self.since_logged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}
