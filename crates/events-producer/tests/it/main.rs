//! Integration tests of `events-producer`: Redis against a private `redis-server`
//! (events-testkit), the in-process bus, and the process-wide producer.

mod global;
mod memory;
mod redis;

use events_envelope::{EventEnvelope, EventLevel};
use time::OffsetDateTime;

/// An envelope that survives the wire unchanged: the stream format carries microseconds, so
/// the timestamp is truncated to them.
pub(crate) fn event(event_type: &str, i: usize) -> EventEnvelope {
    let now = OffsetDateTime::now_utc();
    let micros = now.nanosecond() / 1_000 * 1_000;
    let timestamp = now.replace_nanosecond(micros).unwrap_or(now);
    EventEnvelope::new(event_type, "producer-tests")
        .with_timestamp(timestamp)
        .with_level(EventLevel::Workflow)
        .with_domain("tests")
        .with_description(format!("event number {i}"))
        .with_field("i", i)
        .with_field(
            "nested",
            serde_json::json!({"list": [1, "two", null], "flag": true}),
        )
}
