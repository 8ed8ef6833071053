//! Metric names and helpers (recorded through the `metrics` facade; the daemon installs
//! the Prometheus exporter).

use std::time::Duration;

/// Counter `deliveries_total{target, outcome}`: attempts by target (`webhook`, `telegram`)
/// and outcome (`success`, `failure`, `gone`, `refused`, `rate_limited`).
pub const DELIVERIES_TOTAL: &str = "deliveries_total";
/// Histogram `delivery_attempt_seconds{target}`: latency of one attempt.
pub const DELIVERY_ATTEMPT_SECONDS: &str = "delivery_attempt_seconds";
/// Gauge `delivery_outbox_depth{target}`: pending rows in the outbox.
pub const DELIVERY_OUTBOX_DEPTH: &str = "delivery_outbox_depth";

pub(crate) fn attempt(target: &'static str, outcome: &'static str, latency: Duration) {
    metrics::counter!(DELIVERIES_TOTAL, "target" => target, "outcome" => outcome).increment(1);
    metrics::histogram!(DELIVERY_ATTEMPT_SECONDS, "target" => target).record(latency.as_secs_f64());
}

pub(crate) fn depth(target: &'static str, depth: i64) {
    metrics::gauge!(DELIVERY_OUTBOX_DEPTH, "target" => target).set(depth as f64);
}
