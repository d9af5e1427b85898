//! holder's FTP side: fflow uploads presentations into the root with the one configured account.
//!
//! holder accepts control connections itself, on the listener bound in `App::build`, and hands
//! each to libunftp (`Server::service`). So port 0 works, the port is known before serving
//! starts, and connections made right after `build` wait in the backlog instead of being refused.
//! What must outlive a connection (the failed-login lockout) is therefore held here, not in
//! libunftp's `Server`. With a certificate configured, sessions must switch to TLS before they
//! log in or transfer.

mod admitted;
mod auth;
mod bucket;
mod lockout;
mod session_storage;
mod storage;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{ActivePassiveMode, FtpsRequired, PassiveHost};
use libunftp::{Server, ServerBuilder, ServerError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};
use unftp_core::auth::DefaultUser;
use vod_infra::free_space::FreeSpaceReserve;

use self::auth::{GuardedAccount, SingleAccount};
use self::lockout::{LockoutPolicy, LoginLockout};
use self::session_storage::SessionStorage;
use crate::config::Config;
use crate::metrics::HolderMetrics;
use crate::store::{Place, Store};

/// Pause after a failed accept (out of file descriptors, ...) so the loop does not spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

pub struct FtpServer {
    store: Store,
    account: Arc<GuardedAccount>,
    /// Certificate chain and key files, read as each session starts (so replacing them
    /// renews the certificate without a restart).
    ftps: Option<(PathBuf, PathBuf)>,
    passive_host: PassiveHost,
    passive_ports: RangeInclusive<u16>,
    idle_timeout_secs: u64,
    shutdown_grace: Duration,
    metrics: HolderMetrics,
    /// The free space uploads leave on the root's disk (`HOLDER_MIN_FREE_BYTES`); none with a
    /// bucket.
    space: FreeSpaceReserve,
}

impl FtpServer {
    /// Fails when the FTPS certificate or key cannot be used.
    pub fn new(config: &Config, store: Store, metrics: HolderMetrics) -> anyhow::Result<Self> {
        let passive_host = match config.passive_host.trim() {
            "" => PassiveHost::FromConnection,
            host => PassiveHost::from(host),
        };
        let space = match store.place() {
            Place::Directory(root) => FreeSpaceReserve::new(root, config.min_free_bytes),
            Place::Bucket(_) => FreeSpaceReserve::new(std::env::temp_dir(), 0),
        };
        let account = GuardedAccount::new(
            SingleAccount::new(config.ftp_user.clone(), config.ftp_password.clone()),
            LoginLockout::new(LockoutPolicy {
                max_failures: config.ftp_max_failed_logins,
                lockout: config.ftp_lockout(),
            }),
            config.ftp_failed_login_delay(),
            metrics.clone(),
        );
        let server = Self {
            store,
            account: Arc::new(account),
            ftps: config
                .ftps_files()
                .map(|(cert, key)| (cert.to_owned(), key.to_owned())),
            passive_host,
            passive_ports: config.passive_ports(),
            idle_timeout_secs: config.ftp_idle_timeout_secs,
            shutdown_grace: Duration::from_secs(config.ftp_shutdown_grace_secs),
            metrics,
            space,
        };
        server
            .session_server()
            .map_err(|error| anyhow::anyhow!("failed to set up the ftp server: {error}"))?;
        if server.ftps.is_some() {
            info!("ftp sessions must use TLS");
        }
        Ok(server)
    }

    pub fn free_space(&self) -> FreeSpaceReserve {
        self.space.clone()
    }

    /// libunftp serves one connection per `Server`, so each session gets its own, all built
    /// from the same settings. Passive ports: libunftp tries random ports of the range until one
    /// binds, so servers sharing the range (replicas, parallel tests) do not collide.
    fn session_server(&self) -> Result<Server<SessionStorage, DefaultUser>, ServerError> {
        let (store, space, metrics) =
            (self.store.clone(), self.space.clone(), self.metrics.clone());
        let builder = ServerBuilder::with_authenticator(
            Box::new(move || SessionStorage::open(&store, space.clone(), metrics.clone())),
            self.account.clone(),
        )
        .greeting("holder ready")
        .passive_host(self.passive_host.clone())
        .passive_ports(self.passive_ports.clone())
        .active_passive_mode(ActivePassiveMode::PassiveOnly)
        .idle_session_timeout(self.idle_timeout_secs)
        .notify_data(self.metrics.ftp_listener())
        .notify_presence(self.metrics.ftp_presence_listener());
        match &self.ftps {
            Some((cert, key)) => builder
                .ftps(cert.clone(), key.clone())
                .ftps_required(FtpsRequired::All, FtpsRequired::All)
                .build(),
            None => builder.build(),
        }
    }

    /// Serves until `shutdown`, then gives open sessions the grace period to finish their
    /// transfers and closes the rest.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let sessions = TaskTracker::new();
        let close_sessions = CancellationToken::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(error = %err, "failed to accept ftp connection");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                },
            };
            let server = match self.session_server() {
                Ok(server) => server,
                Err(err) => {
                    error!(%peer, error = %err, "failed to set up ftp session");
                    continue;
                }
            };
            if let Err(err) = stream.set_nodelay(true) {
                debug!(%peer, error = %err, "failed to set tcp_nodelay on ftp connection");
            }
            let close = close_sessions.clone();
            sessions.spawn(async move {
                debug!(%peer, "ftp session opened");
                tokio::select! {
                    result = server.service(stream) => {
                        if let Err(err) = result {
                            warn!(%peer, error = %err, "ftp session failed");
                        }
                    }
                    // Dropping the session drops libunftp's shutdown notifier, which ends the
                    // control loop.
                    () = close.cancelled() => {}
                }
                debug!(%peer, "ftp session closed");
            });
        }
        drop(listener);
        sessions.close();
        if tokio::time::timeout(self.shutdown_grace, sessions.wait())
            .await
            .is_err()
        {
            info!(
                sessions = sessions.len(),
                "closing ftp sessions still open after the grace period"
            );
            close_sessions.cancel();
            sessions.wait().await;
        }
        info!("ftp server stopped");
        Ok(())
    }
}
