//! Slowloris against the whole stack: a client that trickles its request headers is closed
//! unanswered by every HTTP listener (gateway, holder, both fflow replicas, both uploaders'
//! operators' listeners) once the header-read timeout is over, and the listener goes on
//! serving everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use vod_tests::{Stack, StackOptions, TestEnv};

const HEADER_READ_TIMEOUT_MS: u64 = 500;

/// Far longer than the timeout: a listener still holding the client then has none.
const DEADLINE: Duration = Duration::from_secs(30);

/// Opens a connection to `base` and sends a request's headers a byte every 100 ms, never
/// finishing them; returns what the server sent before it closed the connection.
async fn trickle_headers(base: &str) -> Vec<u8> {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vod\r\nX-Slow: ")
        .await
        .expect("sends");
    let deadline = Instant::now() + DEADLINE;
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "{base} still holds a client that never finished its headers"
        );
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if stream.write_all(b"x").await.is_err() {
                    return received;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_closes_a_client_that_trickles_its_headers() {
    let env = TestEnv::new().await;
    let stack = Stack::spawn_with(
        &env,
        StackOptions {
            configure_gateway: |config| config.http.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS,
            configure_uploader: |config| {
                config.http.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS
            },
            configure_fflow: |config| config.http.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS,
            configure_holder: |config| config.http.header_read_timeout_ms = HEADER_READ_TIMEOUT_MS,
            ..StackOptions::default()
        },
    )
    .await;

    let mut listeners = vec![stack.gateway_url.clone(), stack.holder_url.clone()];
    listeners.extend(stack.fflow_urls.iter().cloned());
    listeners.extend(stack.uploader_urls.iter().cloned());
    assert_eq!(listeners.len(), 6);
    let cut = futures_util::future::join_all(listeners.iter().map(|base| trickle_headers(base)));
    for (base, received) in listeners.iter().zip(cut.await) {
        assert!(
            received.is_empty(),
            "{base} answered a request whose headers never ended: {:?}",
            String::from_utf8_lossy(&received)
        );
        let health = stack
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("the listener still serves");
        assert_eq!(health.status(), 200, "{base}");
    }
    stack.shutdown().await;
}
