//! A custom cartridge plugged into the pipeline next to the built-ins, run in-process.
//!
//! ```text
//! cargo run -p events-examples --example custom_cartridge
//! ```
//!
//! No daemon and no Redis: everything runs inside this process on an in-memory database,
//! with the same pieces `events-daemon` wires together (embedded stream → `Processor` →
//! `Pipeline` → SQLite). Two user cartridges run before the built-in dedup and projection:
//!
//! * `RedactFields` replaces sensitive payload fields (`card_number`) before anything is
//!   stored, so neither the event log nor the notification ever holds them;
//! * `EscalateRepeatedFailures` raises a payment failure to BUSINESS level from the third
//!   attempt on, so it reaches people (Telegram, dashboards) instead of staying operational.
//!
//! A cartridge gets the event by value and returns `Ok(Some(event))` to pass it on (changed
//! or not), `Ok(None)` to drop it, or an error (`CartridgeError::Invalid` dead-letters the
//! event at once, other errors are retried). It runs inside the batch's SQLite transaction
//! (`ctx.tx`), so anything it writes commits together with the projection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use events_envelope::{
    EventCatalog, EventEnvelope, EventLevel, EventSchema, NotificationLifecycle,
};
use events_pipeline::{Cartridge, LocalBoxFuture, NotificationPush, Pipeline, PipelineContext};
use events_processor::{EmbeddedConfig, EmbeddedSource, Processor, ProcessorConfig, PushSink};
use events_producer::Producer;
use events_storage::{EventDb, NotificationFilter};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Replaces the named payload fields with `"[redacted]"`.
struct RedactFields {
    fields: Vec<&'static str>,
}

impl Cartridge for RedactFields {
    fn name(&self) -> &str {
        "redact-fields"
    }

    fn process<'a>(
        &'a self,
        mut event: EventEnvelope,
        _ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            for field in &self.fields {
                if let Some(value) = event.payload.get_mut(*field) {
                    *value = Value::String("[redacted]".to_owned());
                }
            }
            Ok(Some(event))
        })
    }
}

/// Raises `acme.payment.failed` to BUSINESS once `attempt` reaches `threshold`.
struct EscalateRepeatedFailures {
    threshold: u64,
}

impl Cartridge for EscalateRepeatedFailures {
    fn name(&self) -> &str {
        "escalate-repeated-failures"
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        _ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            let attempt = event
                .payload
                .get("attempt")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if event.event == "acme.payment.failed"
                && attempt >= self.threshold
                && event.level < EventLevel::Business
            {
                let description = format!("{} (escalated: attempt {attempt})", event.description);
                return Ok(Some(
                    event
                        .with_level(EventLevel::Business)
                        .with_description(description),
                ));
            }
            Ok(Some(event))
        })
    }
}

/// Prints what the processor pushes after each commit (the daemon sends this to WebSocket
/// clients, SSE and webhooks).
struct PrintSink;

impl PushSink for PrintSink {
    fn notification(&self, push: &NotificationPush) {
        let what = if push.was_created {
            "created"
        } else {
            "updated"
        };
        println!(
            "  push: notification {} {what} by {}",
            push.notification_id, push.event_type
        );
    }

    fn event(&self, seq: i64, event: &EventEnvelope) {
        println!(
            "  push: event #{seq} {} stored at level {}",
            event.event, event.level
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The catalog: built-ins plus one schema of our own that creates actionable notifications.
    let mut catalog = EventCatalog::builtin();
    catalog.register(
        EventSchema::new(
            "acme.payment.failed",
            "A payment attempt failed",
            EventLevel::Operational,
            "acme",
        )
        .with_idempotency_fields(["payment_id", "attempt"])
        .with_lifecycle(NotificationLifecycle::creates())
        .with_actionable(true),
    )?;

    // The standard pipeline (dedup → notification projector) with ours in front of it.
    let mut pipeline = Pipeline::standard(false);
    pipeline.insert(
        0,
        Arc::new(RedactFields {
            fields: vec!["card_number"],
        }),
    );
    pipeline.insert(1, Arc::new(EscalateRepeatedFailures { threshold: 3 }));
    println!("pipeline: {:?}", pipeline.names());

    let db = EventDb::open_in_memory()
        .await
        .context("opening the in-memory database")?;
    let source = EmbeddedSource::new(db.clone(), EmbeddedConfig::default());
    let producer = source.producer();
    let processor = Processor::new(
        ProcessorConfig::default(),
        source,
        db.clone(),
        Arc::new(catalog),
        pipeline,
        vec![Arc::new(PrintSink)],
    );
    let cancel = CancellationToken::new();
    let running = tokio::spawn(processor.run(cancel.clone()));

    let mut batch: Vec<EventEnvelope> = (1..=3)
        .map(|attempt| {
            EventEnvelope::new("acme.payment.failed", "checkout")
                .with_level(EventLevel::Operational)
                .with_domain("acme")
                .with_description(format!("payment p-17 declined (attempt {attempt})"))
                .with_field("payment_id", "p-17")
                .with_field("attempt", attempt)
                .with_field("card_number", "4111 1111 1111 1111")
        })
        .collect();
    // A re-sent attempt 3 (new envelope id, same payment_id + attempt): the catalog's
    // idempotency key is the same, so dedup drops it and no fourth notification appears.
    let mut resent = batch[2].clone();
    resent.id = events_envelope::new_event_id();
    batch.push(resent);
    println!(
        "emitting {} events (the last one a re-send of the third)",
        batch.len()
    );
    producer.emit_batch(batch).await?;

    // Wait (bounded) until the processor has committed all of them.
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let page = db.list_notifications(NotificationFilter::default()).await?;
            if page.total >= 3 {
                return anyhow::Ok(page);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .context("the processor did not project the events within 10 s")??;

    println!("\nnotifications in the database (newest first):");
    for n in &page.notifications {
        println!(
            "  #{} {:<14} {} — card_number = {}",
            n.id,
            n.level.name(),
            n.description,
            n.payload.get("card_number").unwrap_or(&Value::Null)
        );
    }

    cancel.cancel();
    running.await??;
    Ok(())
}
