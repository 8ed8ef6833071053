//! Metric names recorded through the `metrics` facade. The daemon installs the exporter
//! (Prometheus text on `/metrics`); without one, recording is a no-op.

/// Counter: events appended to the event log.
pub const PROCESSED: &str = "events_processed_total";
/// Counter: events dropped as duplicates (dedup, or an event id already logged).
pub const DROPPED_DUPLICATE: &str = "events_dropped_duplicate_total";
/// Counter: notification creations/changes projected.
pub const PROJECTED: &str = "notifications_projected_total";
/// Counter: entries dead-lettered.
pub const DEAD_LETTERED: &str = "events_dead_lettered_total";
/// Counter: pending entries found trimmed from the Redis stream and acked.
pub const TRIMMED_PENDING: &str = "events_trimmed_pending_total";
/// Counter: batches committed on the careful path (a savepoint per entry) because an entry
/// of the optimistic attempt needed its own writes undone.
pub const CAREFUL_BATCHES: &str = "processor_careful_batches_total";
/// Histogram: seconds from decoding a batch to its ack.
pub const BATCH_SECONDS: &str = "processor_batch_seconds";
/// Gauge: entries in the stream not yet processed by the group.
pub const CONSUMER_LAG: &str = "processor_consumer_lag";

/// Register descriptions of every metric (call once after installing a recorder).
pub fn describe() {
    metrics::describe_counter!(PROCESSED, "events appended to the event log");
    metrics::describe_counter!(DROPPED_DUPLICATE, "events dropped as duplicates");
    metrics::describe_counter!(PROJECTED, "notification creations and changes projected");
    metrics::describe_counter!(DEAD_LETTERED, "stream entries dead-lettered");
    metrics::describe_counter!(
        TRIMMED_PENDING,
        "pending entries trimmed from the stream before processing"
    );
    metrics::describe_counter!(
        CAREFUL_BATCHES,
        "batches re-run with a savepoint per entry after an entry failed"
    );
    metrics::describe_histogram!(
        BATCH_SECONDS,
        metrics::Unit::Seconds,
        "time to process and commit one batch"
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "stream entries not yet processed by the consumer group"
    );
}
