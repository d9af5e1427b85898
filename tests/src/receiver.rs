//! A webhook receiver for the tests: a real HTTP server on a local port that records every
//! request and answers each path as the test scripted it (a status, a redirect, a stall, an
//! endless body), `200` once the script is used up.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinHandle;
use vod_contracts::webhook::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER};

use crate::{poll_until, StackOptions};

/// A stack whose gateway accepts receivers on local `http` URLs, and whose uploaders deliver
/// to them and retry within a second.
pub fn local_options() -> StackOptions {
    StackOptions {
        configure_gateway: local_targets,
        configure_uploader: local_quick_delivery,
        ..StackOptions::default()
    }
}

/// The gateway accepts the test's receiver on a local port.
pub fn local_targets(config: &mut gateway::Config) {
    config.webhooks.allow_http = true;
    config.webhooks.allow_private = true;
}

/// The uploaders deliver to local receivers, with the default schedule.
pub fn local_delivery(config: &mut uploader::Config) {
    config.webhooks.allow_http = true;
    config.webhooks.allow_private = true;
}

/// The uploaders deliver to a local receiver, retry within a second and give up an attempt
/// after 1.5 s.
pub fn local_quick_delivery(config: &mut uploader::Config) {
    local_delivery(config);
    let webhooks = &mut config.webhooks;
    webhooks.retry_first_ms = 200;
    webhooks.retry_max_ms = 800;
    webhooks.relay_interval_ms = 50;
    webhooks.timeout_ms = 1_500;
}

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// `302` to this URL.
    Redirect(String),
    /// Nothing until this long has passed, then `200`.
    Stall(Duration),
    /// `200` with a body that never ends.
    Flood,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub event_id: String,
    pub event_type: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON delivery")
    }

    /// Whether `Vod-Signature` holds a `v1` that `secret` made over `"<t>.<body>"`.
    pub fn signed_by(&self, secret: &str) -> bool {
        let Some(timestamp) = self.signature_timestamp() else {
            return false;
        };
        let expected = sign(secret, &timestamp, &self.body);
        self.signatures().any(|v1| v1 == expected)
    }

    /// The `t=` of `Vod-Signature`.
    pub fn signature_timestamp(&self) -> Option<String> {
        self.signature
            .split(',')
            .find_map(|part| part.strip_prefix("t="))
            .map(str::to_owned)
    }

    /// Every `v1=` of `Vod-Signature`.
    pub fn signatures(&self) -> impl Iterator<Item = &str> {
        self.signature
            .split(',')
            .filter_map(|part| part.strip_prefix("v1="))
    }
}

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed by the secret's text, computed
/// here independently of the uploader's code.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    scripts: Mutex<HashMap<String, VecDeque<Answer>>>,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let addr = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// The URL of `path` (one segment).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next requests to `path` get these answers, in order.
    pub fn script(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        self.shared
            .scripts
            .lock()
            .expect("scripts")
            .entry(path.to_owned())
            .or_default()
            .extend(answers);
    }

    /// What `path` got, oldest first.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .expect("received")
            .iter()
            .filter(|received| received.path == path)
            .cloned()
            .collect()
    }

    /// What `path` got, once `done` says it is enough.
    pub async fn wait_for(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        poll_until(what, Duration::from_secs(60), || async {
            let received = self.received(path);
            done(&received).then_some(received)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = shared
        .scripts
        .lock()
        .expect("scripts")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    shared.received.lock().expect("received").push(Received {
        path,
        event_id: header(EVENT_ID_HEADER),
        event_type: header(EVENT_TYPE_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: body.to_vec(),
    });
    match answer {
        None => StatusCode::OK.into_response(),
        Some(Answer::Status(code)) => StatusCode::from_u16(code)
            .expect("a status code")
            .into_response(),
        Some(Answer::Redirect(to)) => (StatusCode::FOUND, [("location", to)]).into_response(),
        Some(Answer::Stall(time)) => {
            tokio::time::sleep(time).await;
            StatusCode::OK.into_response()
        }
        Some(Answer::Flood) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let endless =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            Response::new(Body::from_stream(endless))
        }
    }
}
