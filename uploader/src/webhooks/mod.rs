//! Webhooks: a project's endpoints receive its events, signed, at least once.
//!
//! Every event's transaction makes a delivery per endpoint that takes it (`deliveries.rs`,
//! the outbox); the relay (`relay.rs`) publishes deliveries to the broker; a consumer
//! (`attempt.rs`) makes each attempt through `sender.rs` (public addresses only, signed by
//! `signature.rs`) and, when it fails, leaves the delivery to the relay again with a delay
//! from `schedule.rs`, which the broker keeps in a retry queue. `endpoints.rs` writes the
//! endpoints and their secrets for the commands (`cmd/webhooks.rs`).

mod attempt;
pub mod deliveries;
pub mod endpoints;
mod metrics;
mod relay;
mod schedule;
mod sender;
mod signature;

pub use attempt::Attempting;
pub use metrics::WebhookMetrics;
pub use relay::Relay;
pub use schedule::RetrySchedule;
pub use sender::Sender;
