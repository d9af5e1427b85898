use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use vod_infra::config::{millis, HttpLimits};

use crate::config::Config;
use crate::ftp::FtpServer;
use crate::metrics::HolderMetrics;
use crate::routes;
use crate::store::Store;

pub struct App {
    http_listener: TcpListener,
    http_addr: SocketAddr,
    ftp_listener: TcpListener,
    ftp_addr: SocketAddr,
    router: Router,
    ftp: FtpServer,
    shutdown_timeout_ms: u64,
    http_limits: HttpLimits,
}

impl App {
    /// Opens the store (creating the root if missing; a bucket that cannot be used stops
    /// holder here) and binds both listeners. Clients may connect as soon as this returns:
    /// their connections wait until `run_until_stopped` serves them.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let store = Store::open(&config).await?;

        let mut registry = vod_infra::metrics::registry("holder");
        let metrics = HolderMetrics::register(&mut registry);
        let router = routes::router(&config, store.clone(), metrics.clone())?
            .merge(vod_infra::metrics::route(std::sync::Arc::new(registry)));
        let ftp = FtpServer::new(&config, store.clone(), metrics)?;
        let (http_listener, http_addr) = vod_infra::http::bind(&config.http_addr).await?;
        let ftp_listener = TcpListener::bind(&config.ftp_addr)
            .await
            .with_context(|| format!("failed to bind {}", config.ftp_addr))?;
        let ftp_addr = ftp_listener.local_addr()?;
        info!(%http_addr, %ftp_addr, store = %store.describe(), "holder listening");
        Ok(App {
            http_listener,
            http_addr,
            ftp_listener,
            ftp_addr,
            router,
            ftp,
            shutdown_timeout_ms: config.shutdown_timeout_ms,
            http_limits: config.http,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn ftp_addr(&self) -> SocketAddr {
        self.ftp_addr
    }

    /// The free-space reserve of FTP uploads, which a running server's tests may change.
    pub fn free_space(&self) -> vod_infra::free_space::FreeSpaceReserve {
        self.ftp.free_space()
    }

    /// Serves HTTP and FTP until `shutdown` is cancelled or one of them fails, which stops the
    /// other too; requests and transfers in flight then get the shutdown timeout and the FTP
    /// grace to finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop = shutdown.child_token();
        let abandon = vod_infra::shutdown::abandon_after(&stop, millis(self.shutdown_timeout_ms));
        let _stop_timer = abandon.clone().drop_guard();
        let http = {
            let stop = stop.clone();
            async move {
                let result = vod_infra::http::serve(
                    self.http_listener,
                    self.router,
                    &self.http_limits,
                    stop.clone(),
                    abandon,
                )
                .await;
                stop.cancel();
                result
            }
        };
        let ftp = {
            let stop = stop.clone();
            async move {
                let result = self.ftp.serve(self.ftp_listener, stop.clone()).await;
                stop.cancel();
                result
            }
        };
        let (http, ftp) = tokio::join!(http, ftp);
        info!("holder stopped");
        http.and(ftp)
    }
}
