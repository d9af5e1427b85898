//! `vod_infra::http::serve` bounds what clients hold: a connection that does not finish its
//! headers in time is closed unanswered, connections over the limit are closed at once, and a
//! stop still lets the request in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vod_infra::config::HttpLimits;

/// Upper bound of anything a test waits for; a server that never closes fails the test here.
const DEADLINE: Duration = Duration::from_secs(20);

const PARTIAL_HEADERS: &[u8] = b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: ";
const WHOLE_REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn serve(router: Router, limits: HttpLimits) -> Served {
    let (listener, addr) = vod_infra::http::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let shutdown = CancellationToken::new();
    let abandon = CancellationToken::new();
    let task = tokio::spawn({
        let (shutdown, abandon) = (shutdown.clone(), abandon.clone());
        async move { vod_infra::http::serve(listener, router, &limits, shutdown, abandon).await }
    });
    Served {
        addr,
        shutdown,
        abandon,
        task,
    }
}

fn hello() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

/// Everything the server sends until it closes the connection (a reset counts as a close).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .expect("the server closes the connection");
        match read {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Sends a whole request on a new connection and returns what came back.
async fn request(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    // A connection the server closed at once may refuse the write: it then answered nothing.
    if stream.write_all(WHOLE_REQUEST).await.is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned()
}

fn is_answered_hello(response: &str) -> bool {
    response.starts_with("HTTP/1.1 200") && response.ends_with("hello")
}

#[tokio::test]
async fn partial_headers_are_closed_unanswered_after_the_header_read_timeout() {
    let served = serve(
        hello(),
        HttpLimits {
            header_read_timeout_ms: 300,
            max_connections: 16,
        },
    )
    .await;

    let mut slow = TcpStream::connect(served.addr).await.expect("connects");
    slow.write_all(PARTIAL_HEADERS).await.expect("sends");
    let received = read_until_closed(&mut slow).await;
    assert!(
        received.is_empty(),
        "a client that never finished its headers got an answer: {:?}",
        String::from_utf8_lossy(&received)
    );

    let response = request(served.addr).await;
    assert!(is_answered_hello(&response), "{response:?}");
    served.shutdown.cancel();
    served.task.await.expect("server task").expect("served");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_unanswered_until_one_ends() {
    let served = serve(
        hello(),
        HttpLimits {
            header_read_timeout_ms: 60_000,
            max_connections: 2,
        },
    )
    .await;

    // Two clients hold the only two connections, sending their headers slowly.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(served.addr).await.expect("connects");
        stream.write_all(PARTIAL_HEADERS).await.expect("sends");
        holders.push(stream);
    }
    // Connections are accepted in order, so this one comes after both.
    let response = request(served.addr).await;
    assert!(
        response.is_empty(),
        "a connection over the limit was answered: {response:?}"
    );

    drop(holders.pop());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let response = request(served.addr).await;
        if is_answered_hello(&response) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed connection slot was never given to a new client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A stop waits for a connection still sending its headers, up to its header-read timeout.
    drop(holders);
    served.shutdown.cancel();
    served.task.await.expect("server task").expect("served");
}

#[tokio::test]
async fn a_request_in_flight_is_answered_after_the_stop_and_idle_connections_close() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let router = Router::new().route(
        "/hello",
        get({
            let (release, started) = (release.clone(), started.clone());
            || async move {
                started.notify_one();
                release.notified().await;
                "hello"
            }
        }),
    );
    let served = serve(router, HttpLimits::default()).await;

    let mut idle = TcpStream::connect(served.addr).await.expect("connects");
    let in_flight = tokio::spawn(request(served.addr));
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .expect("the request reaches its handler");

    served.shutdown.cancel();
    let received = read_until_closed(&mut idle).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    release.notify_one();
    let response = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("answered")
        .expect("client task");
    assert!(is_answered_hello(&response), "{response:?}");
    tokio::time::timeout(DEADLINE, served.task)
        .await
        .expect("the server stops once its requests are answered")
        .expect("server task")
        .expect("served");
    assert!(
        TcpStream::connect(served.addr).await.is_err(),
        "a stopped server takes no connection"
    );
}

#[tokio::test]
async fn a_request_still_running_when_abandoned_is_cut_off() {
    let started = Arc::new(Notify::new());
    let router = Router::new().route(
        "/hello",
        get({
            let started = started.clone();
            || async move {
                started.notify_one();
                std::future::pending::<&'static str>().await
            }
        }),
    );
    let served = serve(router, HttpLimits::default()).await;

    let mut stream = TcpStream::connect(served.addr).await.expect("connects");
    stream.write_all(WHOLE_REQUEST).await.expect("sends");
    tokio::time::timeout(DEADLINE, started.notified())
        .await
        .expect("the request reaches its handler");
    served.shutdown.cancel();
    served.abandon.cancel();
    tokio::time::timeout(DEADLINE, served.task)
        .await
        .expect("the server stops when abandoned")
        .expect("server task")
        .expect("served");
    let received = read_until_closed(&mut stream).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
}
