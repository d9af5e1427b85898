//! The uploader owns Video, Flow and UploadSession state.
//!
//! Several replicas compete for the commands queue. Each chunk is checked against PostgreSQL,
//! forwarded to the fflow replica that owns its session (found through Redis, with PostgreSQL
//! keeping the durable copy), and only then counted. fflow's encode outcomes come back on the
//! outcomes queue and finish the flow; its progress reports on the progress queue. One replica
//! may also run the scheduler. An HTTP listener serves `/healthz`, `/readyz` and `/metrics`; another,
//! when the gateway's token is configured, takes chunks streamed over HTTP instead of the broker.

mod chunk_listener;
mod chunks;
mod cmd;
pub mod config;
mod consumer;
mod deletion;
mod direct_uploads;
pub mod events;
mod fflow_client;
mod handlers;
mod http;
pub mod metrics;
mod outage;
mod outcomes;
mod progress;
mod projects;
mod quotas;
mod retention;
mod routing;
pub mod scheduler;
mod startup;
mod store;
pub mod transitions;
mod webhooks;

pub use config::Config;
pub use startup::App;
