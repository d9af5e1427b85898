//! Sends one delivery: a `POST` of the event to a URL a user gave, which may reach only
//! public addresses (`vod_infra::public_target`). The client connects only to addresses its
//! resolver checked at that moment (so a name that resolves elsewhere since it was accepted is
//! refused: DNS rebinding), follows no redirect, uses no proxy, and reads nothing of the
//! answer but its status, all within one timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use vod_contracts::webhook::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER};
use vod_infra::public_target::{self, TargetPolicy};

use super::deliveries::{Attempt, Claimed};
use super::signature;

/// The client every delivery of a replica goes through.
#[derive(Clone, Debug)]
pub struct Sender {
    client: reqwest::Client,
    policy: TargetPolicy,
    max_error_bytes: usize,
}

impl Sender {
    pub fn new(
        policy: TargetPolicy,
        timeout: Duration,
        max_error_bytes: usize,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicResolver { policy }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(2)
            .build()?;
        Ok(Self {
            client,
            policy,
            max_error_bytes,
        })
    }

    /// One attempt of `claimed`: a 2xx is a success; anything else, or no answer, an error.
    pub async fn attempt(&self, claimed: &Claimed, body: Vec<u8>) -> Attempt {
        let attempted_at = Utc::now();
        let started = Instant::now();
        let (status_code, error) = match self.send(claimed, body).await {
            Ok(status) if status.is_success() => (Some(status.as_u16()), None),
            Ok(status) if status.is_redirection() => (
                Some(status.as_u16()),
                Some(format!(
                    "the receiver answered {status}; redirects are not followed"
                )),
            ),
            Ok(status) => (
                Some(status.as_u16()),
                Some(format!("the receiver answered {status}")),
            ),
            Err(error) => (None, Some(error)),
        };
        Attempt {
            attempted_at,
            status_code,
            latency: started.elapsed(),
            error: error.map(|error| self.bounded(error)),
        }
    }

    async fn send(&self, claimed: &Claimed, body: Vec<u8>) -> Result<reqwest::StatusCode, String> {
        let url = public_target::check_url(&claimed.url, &self.policy)
            .map_err(|refused| refused.to_string())?;
        // A name is checked by the resolver as the client connects; an address in the URL
        // never reaches a resolver, so it is checked here.
        if let Some(host) = url.host() {
            if !matches!(host, url::Host::Domain(_)) {
                public_target::resolve_public(&url, &self.policy)
                    .await
                    .map_err(|refused| refused.to_string())?;
            }
        }
        let signature = signature::header(&claimed.secrets, Utc::now().timestamp(), &body);
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("vod-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(EVENT_ID_HEADER, &claimed.event_id)
            .header(EVENT_TYPE_HEADER, &claimed.event_type)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|error| describe(&error))?;
        // The body is never read: dropping the answer closes its connection.
        Ok(response.status())
    }

    fn bounded(&self, mut error: String) -> String {
        if error.len() > self.max_error_bytes {
            let mut end = self.max_error_bytes;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
        }
        error
    }
}

/// The error with its causes, which name a refused address.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Resolves a name to addresses the policy accepts, or refuses it.
#[derive(Debug)]
struct PublicResolver {
    policy: TargetPolicy,
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                if let Some(kind) = public_target::refusal(address.ip(), &policy) {
                    let refused = public_target::Refused::Address {
                        host: host.clone(),
                        address: address.ip(),
                        kind,
                    };
                    return Err(refused.to_string().into());
                }
            }
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}
