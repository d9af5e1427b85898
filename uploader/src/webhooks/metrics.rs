//! What webhook deliveries count: attempts by result, their latency, deliveries that failed
//! for good, and endpoints disabled.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use vod_infra::metrics::{buckets, histogram, Registry};

use super::deliveries::{Attempt, Next};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    attempts: Family<ResultLabels, Counter>,
    latency: Histogram,
    deliveries: Family<ResultLabels, Counter>,
    endpoints_disabled: Counter,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            attempts: Family::default(),
            latency: histogram(buckets::LATENCY_SECONDS),
            deliveries: Family::default(),
            endpoints_disabled: Counter::default(),
        };
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts, by result: success, or the failure's kind \
             (status, no_answer, refused)",
            metrics.attempts.clone(),
        );
        registry.register(
            "webhook_attempt_duration_seconds",
            "Time from sending a webhook to the receiver's status",
            metrics.latency.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries settled, by result: delivered or failed",
            metrics.deliveries.clone(),
        );
        registry.register(
            "webhook_endpoints_disabled",
            "Webhook endpoints disabled because their deliveries kept failing",
            metrics.endpoints_disabled.clone(),
        );
        metrics
    }

    pub fn attempted(&self, attempt: &Attempt, next: Next) {
        let result = match (&attempt.error, attempt.status_code) {
            (None, _) => "success",
            (Some(_), Some(_)) => "status",
            (Some(_), None) if attempt.latency.is_zero() => "refused",
            (Some(_), None) => "no_answer",
        };
        self.attempts
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        if !attempt.latency.is_zero() {
            self.latency.observe(attempt.latency.as_secs_f64());
        }
        let settled = match next {
            Next::Delivered => "delivered",
            Next::Failed => "failed",
            Next::RetryIn(_) => return,
        };
        self.deliveries
            .get_or_create(&ResultLabels {
                result: settled.to_owned(),
            })
            .inc();
    }

    pub fn endpoint_disabled(&self) {
        self.endpoints_disabled.inc();
    }
}
