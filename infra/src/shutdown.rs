//! One cancellation token for the whole process, cancelled on SIGINT or SIGTERM, and the
//! bound on how long a service may take to stop after it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A token cancelled `timeout` after `shutdown` is: a stopping service finishes its work in
/// flight until then, and abandons what is left when it fires. Cancel the returned token once
/// stopped, which also ends the timer.
pub fn abandon_after(shutdown: &CancellationToken, timeout: Duration) -> CancellationToken {
    let abandon = CancellationToken::new();
    let (shutdown, fire) = (shutdown.clone(), abandon.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = fire.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(timeout) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "shutdown timeout reached, abandoning the work still in flight"
                );
                fire.cancel();
            }
            () = fire.cancelled() => {}
        }
    });
    abandon
}

/// Runs `work` to its end, unless `abandon` fires first; `None` when it was abandoned (and
/// dropped).
pub async fn unless_abandoned<T>(
    abandon: &CancellationToken,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        output = work => Some(output),
        () = abandon.cancelled() => None,
    }
}
