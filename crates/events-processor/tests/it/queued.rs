//! A batch read ahead is queued on the writer behind the batch still committing, and
//! commits only after it: the stream's order holds when the batch in front has to run again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events_envelope::EventEnvelope;
use events_pipeline::{Cartridge, CartridgeError, LocalBoxFuture, PipelineContext};
use events_processor::ProcessorConfig;
use serde_json::json;

use crate::common::*;

/// Not in the catalog: logged, never projected.
const STUMBLE: &str = "test.queued.stumble";

/// Fails each `STUMBLE` event the first time it runs, after a pause on the writer's thread
/// long enough for the processor to read the next batch ahead and queue its transaction.
/// The failure sends the batch in front to its careful second attempt, which the queued
/// batch's transaction now comes before in the writer's queue.
#[derive(Debug, Default)]
struct StumbleOnce {
    seen: Mutex<HashSet<String>>,
}

impl Cartridge for StumbleOnce {
    fn name(&self) -> &str {
        "stumble-once"
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        _ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        Box::pin(async move {
            let first = event.event == STUMBLE
                && self
                    .seen
                    .lock()
                    .map(|mut seen| seen.insert(event.id.clone()))
                    .unwrap_or(false);
            if first {
                // blocks the writer's thread, where cartridges run, as slow user code would
                std::thread::sleep(Duration::from_millis(150));
                return Err(CartridgeError::failed("stumble-once", "first try fails"));
            }
            Ok(Some(event))
        })
    }
}

async fn a_queued_batch_commits_after_the_batch_in_front(kind: Kind) -> anyhow::Result<()> {
    let harness = Harness::new(kind).await?;
    // Batches of two: [create item, stumble], [update the same item, log line], ... The
    // update's batch is read ahead and queued while the create's batch stumbles; run before
    // that batch's second attempt, it would find no notification to update.
    let mut events = Vec::new();
    for k in 0..4 {
        let item = format!("queued-{k}");
        events.push(event(CREATED, json!({"item": item, "status": "new"})));
        events.push(EventEnvelope::new(STUMBLE, "it").with_field("k", k));
        events.push(event(UPDATED, json!({"item": item, "status": "done"})));
        events.push(event(LOGLINE, json!({"line": k})));
    }
    harness.emit(&events).await?;
    let running = spawn(
        &harness,
        harness.source("queued", Duration::from_secs(30)),
        ProcessorConfig {
            batch_size: 2,
            ..fast_config()
        },
        standard_pipeline(vec![Arc::new(StumbleOnce::default())]),
        vec![],
        Arc::new(test_catalog()),
    );
    harness
        .wait_processed(events.len() as i64, Duration::from_secs(60))
        .await?;
    running.stop().await?;

    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await?;
    for notification in table(&harness.db).await? {
        assert_eq!(
            notification.payload.get("status"),
            Some(&json!("done")),
            "{}: the update ran before its create had committed",
            notification.item
        );
    }
    Ok(())
}

/// The embedded source does not queue ahead (`Source::queue_read_ahead`); the order holds
/// all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_batch_read_ahead_commits_after_the_batch_in_front() -> anyhow::Result<()> {
    a_queued_batch_commits_after_the_batch_in_front(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_queued_batch_commits_after_the_batch_in_front() -> anyhow::Result<()> {
    a_queued_batch_commits_after_the_batch_in_front(Kind::Redis).await
}
