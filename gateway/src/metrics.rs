//! What the gateway counts: upload bytes received, bodies cut short, pieces the uploader
//! accepted or rejected, broker connections lost for good and opened again, and (through
//! `vod_infra::metrics::HttpMetrics`) every request by route and status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use vod_infra::metrics::{HttpMetrics, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// The stable error `code` the client is answered with.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutShortLabels {
    /// `read_error`, `idle` or `too_slow`.
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    pub http: HttpMetrics,
    pub broker: BrokerMetrics,
    upload_bytes_received: Counter,
    bodies_cut_short: Family<CutShortLabels, Counter>,
    chunks_accepted: Counter,
    chunks_rejected: Family<RejectionLabels, Counter>,
    buffer_waits_timed_out: Counter,
}

/// What the connection to the uploaders counts. A default one counts into no registry.
#[derive(Clone, Debug, Default)]
pub struct BrokerMetrics {
    pub(crate) connections_lost: Counter,
    pub(crate) reconnections: Counter,
}

impl BrokerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "broker_connections_lost",
            "Broker connections lost (or given up because the broker ended the reply consumer)",
            metrics.connections_lost.clone(),
        );
        registry.register(
            "broker_reconnections",
            "Broker connections opened again after one was lost",
            metrics.reconnections.clone(),
        );
        metrics
    }

    pub fn connection_lost(&self) {
        self.connections_lost.inc();
    }

    pub fn reconnected(&self) {
        self.reconnections.inc();
    }
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            http: HttpMetrics::register(registry),
            broker: BrokerMetrics::register(registry),
            upload_bytes_received: Counter::default(),
            bodies_cut_short: Family::default(),
            chunks_accepted: Counter::default(),
            chunks_rejected: Family::default(),
            buffer_waits_timed_out: Counter::default(),
        };
        registry.register(
            "upload_bytes_received",
            "Bytes of upload bodies read from clients",
            metrics.upload_bytes_received.clone(),
        );
        registry.register(
            "upload_bodies_cut_short",
            "Upload bodies that ended before their end, their bytes kept: the connection broke \
             (read_error), nothing came for GATEWAY_BODY_IDLE_TIMEOUT_MS (idle), or less than \
             GATEWAY_BODY_MIN_BYTES_PER_SEC came (too_slow)",
            metrics.bodies_cut_short.clone(),
        );
        registry.register(
            "chunks_accepted",
            "Pieces of upload bodies the uploader stored",
            metrics.chunks_accepted.clone(),
        );
        registry.register(
            "chunks_rejected",
            "Pieces of upload bodies not stored, by the error code the client was given",
            metrics.chunks_rejected.clone(),
        );
        registry.register(
            "body_buffer_waits_timed_out",
            "Requests answered 503 because the memory for bodies (GATEWAY_MAX_BUFFERED_BYTES) \
             stayed taken by other uploads",
            metrics.buffer_waits_timed_out.clone(),
        );
        metrics
    }

    pub fn bytes_received(&self, bytes: usize) {
        self.upload_bytes_received.inc_by(bytes as u64);
    }

    pub fn body_cut_short(&self, reason: &'static str) {
        self.bodies_cut_short
            .get_or_create(&CutShortLabels { reason })
            .inc();
    }

    pub fn chunk_accepted(&self) {
        self.chunks_accepted.inc();
    }

    pub fn buffer_wait_timed_out(&self) {
        self.buffer_waits_timed_out.inc();
    }

    pub fn chunk_rejected(&self, code: &str) {
        self.chunks_rejected
            .get_or_create(&RejectionLabels {
                reason: code.to_owned(),
            })
            .inc();
    }
}
