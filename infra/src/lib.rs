//! Plumbing shared by the vod services: typed configuration from the environment, PostgreSQL,
//! Redis and RabbitMQ connections with their timeouts, migrations, telemetry, HTTP serving,
//! metrics, readiness, shutdown, shared bearer tokens, the free-space reserve of a disk, and the addresses a request
//! to a user's URL may reach. Nothing here knows what a
//! video is.

pub mod amqp;
pub mod backoff;
pub mod bearer;
pub mod config;
pub mod consume;
pub mod free_space;
pub mod http;
pub mod metrics;
pub mod postgres;
pub mod public_target;
pub mod readiness;
pub mod redis;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testsuite")]
pub mod testsuite;
