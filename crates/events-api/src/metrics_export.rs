//! The Prometheus recorder behind `/metrics`.
//!
//! A `metrics` recorder is process-global by nature (the `counter!` macros of every crate
//! write to it), so it is installed once per process and its handle kept here; every
//! [`crate::AppState`] renders from the same handle.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder the first time it is called and returns its handle;
/// `None` if another recorder was installed first (then `/metrics` answers 503).
pub fn install_metrics_recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                describe();
                Some(handle)
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics recorder not installed; /metrics will be unavailable");
                None
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "events_ingested_total",
        "events accepted by POST /api/events"
    );
    metrics::describe_counter!(
        "events_storage_commits_total",
        "write transactions committed to the database"
    );
    metrics::describe_counter!(
        "events_storage_checkpoints_total",
        "background checkpoints (WAL pages copied back into the database file); the commits of a few milliseconds share one"
    );
    metrics::describe_gauge!("events_ws_connections", "open WebSocket connections");
    metrics::describe_gauge!("events_sse_connections", "open SSE streams");
    metrics::describe_counter!(
        "events_push_dropped_total",
        "pushes dropped because the hub queue was full"
    );
    metrics::describe_counter!(
        "events_push_rows_read_total",
        "notification rows the push hub read itself (the committed row was not handed over, or a later commit overtook it)"
    );
    metrics::describe_counter!(
        "events_ws_slow_client_closed_total",
        "WebSocket clients closed with 1013 for falling behind"
    );
}
