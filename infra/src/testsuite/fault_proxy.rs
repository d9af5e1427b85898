//! A TCP proxy in front of a real server that a test can cut and restore: the way to make
//! PostgreSQL, RabbitMQ, Redis or holder unreachable for one test's services without touching
//! the server every other test uses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards every connection to `upstream` until [`FaultProxy::cut`]; then it drops the open
/// connections and refuses new ones (accepts and closes them at once) until
/// [`FaultProxy::restore`].
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    down: AtomicBool,
    /// Connections refused while cut.
    refused: AtomicU64,
    /// Bumped by every cut; connections opened before it end.
    cuts: watch::Sender<u64>,
}

impl FaultProxy {
    /// Listens on a free local port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fault proxy binds a local port");
        let addr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            down: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            cuts: watch::Sender::new(0),
        });
        let acceptor = tokio::spawn(accept(listener, shared.clone()));
        Self {
            addr,
            shared,
            acceptor,
        }
    }

    /// A proxy in front of the server `url` names, and `url` rewritten to go through it.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let upstream = authority(url);
        let proxy = Self::start(&upstream).await;
        let proxied = url.replacen(&upstream, &proxy.addr.to_string(), 1);
        (proxy, proxied)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        self.shared.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// How many connections were refused while cut: a test waits on it to know that a client
    /// tried to reach the server during the cut.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if shared.down.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        let mut cut = shared.cuts.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&shared.upstream).await else {
                return;
            };
            let mut client = client;
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// `host:port` of a URL such as `postgres://user@host:5432/db` or `redis://host:6379`; the
/// port must be written out.
fn authority(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or(after_scheme);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    assert!(
        host_port.contains(':'),
        "the URL {url} must name its port to be proxied"
    );
    host_port.to_owned()
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_skips_the_credentials_and_the_path() {
        assert_eq!(
            authority("postgres://postgres:pw@127.0.0.1:5432/db"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            authority("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(authority("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }
}
