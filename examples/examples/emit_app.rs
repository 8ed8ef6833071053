//! An application that emits events, depending on `events-producer` only.
//!
//! ```text
//! cargo run -p events-daemon                                  # in one terminal
//! cargo run -p events-examples --example emit_app             # over HTTP to the daemon
//!
//! cargo run -p events-daemon -- --redis-url redis://127.0.0.1:6379
//! EVENTS_REDIS_URL=redis://127.0.0.1:6379 cargo run -p events-examples --example emit_app
//! ```
//!
//! This is all an application needs: `events-producer` (which re-exports the envelope type)
//! in its `Cargo.toml`, one producer created at start-up, and `emit` calls. The producer is
//! held as `Arc<dyn Producer>`, so switching transport (Redis, HTTP to a daemon, the
//! in-process `MemoryBus` in tests) is a start-up decision, not a code change.
//!
//! It shows: building envelopes with the `with_*` setters, emitting one event, emitting a
//! batch (pipelined), the global producer for code far from `main`, and telling a bad event
//! (`Error::Invalid`, a bug — do not retry) from a transport problem (`is_transient()`,
//! retry later; the processor deduplicates by envelope id, so a retry never doubles an event).

use std::sync::Arc;

use events_envelope::EventLevel;
use events_producer::{
    Error, EventEnvelope, HttpProducer, HttpProducerConfig, Producer, RedisProducer,
    RedisProducerConfig, emit_event, set_global_producer,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let producer = connect().await?;

    // 1. One event. Level, domain and description tell people how much to care; the payload
    //    carries the data (a JSON object). `job_id` makes re-sends of the same event cheap
    //    to recognise for consumers.
    let started = EventEnvelope::new("demo.job.started", "emit-app")
        .with_domain("demo")
        .with_description("nightly export started")
        .with_field("job_id", "export-2026-01-31");
    let receipt = producer.emit(started.clone()).await?;
    println!(
        "emitted {} id={} stream_id={}",
        started.event, receipt.id, receipt.stream_id
    );

    // 2. A batch: validated as a whole first, then sent in one pipelined round trip.
    //    `caused_by` links them to the start event (same correlation id, causation = its id).
    let progress: Vec<EventEnvelope> = (1..=3)
        .map(|step| {
            EventEnvelope::new("demo.job.progressed", "emit-app")
                .with_domain("demo")
                .with_field("job_id", "export-2026-01-31")
                .with_field("percent", step * 25)
                .caused_by(&started)
        })
        .collect();
    let receipts = producer.emit_batch(progress).await?;
    println!(
        "emitted a batch of {} progress events, last stream_id={}",
        receipts.len(),
        receipts[2].stream_id
    );

    // 3. The global producer: set once in `main`, used from anywhere without passing it around.
    set_global_producer(Arc::clone(&producer));
    let done = emit_event(
        EventEnvelope::new("demo.job.completed", "emit-app")
            .with_level(EventLevel::Workflow)
            .with_domain("demo")
            .with_field("job_id", "export-2026-01-31")
            .caused_by(&started),
    )
    .await?;
    println!(
        "emitted demo.job.completed through the global producer, stream_id={}",
        done.stream_id
    );

    // 4. A bad event is refused before anything is sent, with the field at fault.
    match producer
        .emit(EventEnvelope::new("NotDotted", "emit-app"))
        .await
    {
        Err(Error::Invalid { source, .. }) => println!("refused as expected: {source}"),
        Err(err) if err.is_transient() => println!("transport trouble, would retry later: {err}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}

/// The producer for this run: Redis when `EVENTS_REDIS_URL` is set, otherwise HTTP to the
/// daemon at `EVENTS_URL` (default `http://127.0.0.1:7400`, token from `EVENTS_TOKEN`).
async fn connect() -> anyhow::Result<Arc<dyn Producer>> {
    if let Ok(url) = std::env::var("EVENTS_REDIS_URL") {
        println!("connecting to redis at {url}");
        return Ok(Arc::new(
            RedisProducer::connect(RedisProducerConfig::new(url)).await?,
        ));
    }
    let url = std::env::var("EVENTS_URL").unwrap_or_else(|_| "http://127.0.0.1:7400".to_owned());
    println!("posting to the daemon at {url}");
    let mut config = HttpProducerConfig::new(url);
    config.token = std::env::var("EVENTS_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    Ok(Arc::new(HttpProducer::new(config)?))
}
