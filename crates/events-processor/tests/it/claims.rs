//! Entries delivered again next to new ones: the optimistic batch claims them all up front
//! (`WriteTx::mark_processed_all`), and only the new ones reach the pipeline.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events_envelope::EventEnvelope;
use events_pipeline::{Cartridge, LocalBoxFuture, Pipeline, PipelineContext};

use crate::common::*;

/// Records the id of every event that reaches the pipeline (first, before dedup).
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<String>>);

impl Cartridge for Seen {
    fn name(&self) -> &str {
        "seen"
    }

    fn process<'a>(
        &'a self,
        event: EventEnvelope,
        _ctx: &'a mut PipelineContext<'_, '_>,
    ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.id.clone());
        Box::pin(async move { Ok(Some(event)) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_old_and_new_entries_runs_only_the_new_ones() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Embedded).await?;
    let events = workload(600, 23);
    let (first, second) = events.split_at(300);
    let mut model = Model::default();

    let running = spawn_standard(&harness, "c1");
    let first_ids = harness.emit(first).await?;
    harness
        .wait_processed(300, Duration::from_secs(120))
        .await?;
    running.stop().await?;
    model.apply_all(first);
    let logged_before = model.logged.len();

    // The transport forgets how far the group got (a restored backup, a reset offset): the
    // last 150 entries come again, and the first batch of 200 (`fast_config`) mixes them with
    // 50 new ones, so claim chunks meet existing claims and are claimed again one by one.
    let rewind_to = first_ids[149].clone();
    harness
        .db
        .write(move |tx| tx.set_consumer_offset(STREAM, "event-processor", &rewind_to))
        .await?;
    harness.emit(second).await?;
    let seen = Arc::new(Seen::default());
    let mut pipeline = Pipeline::standard(false);
    pipeline.insert(0, seen.clone());
    let sink = Arc::new(RecordingSink::default());
    let running = spawn(
        &harness,
        harness.source("c1", Duration::from_secs(30)),
        fast_config(),
        pipeline,
        vec![sink.clone()],
        Arc::new(test_catalog()),
    );
    harness
        .wait_processed(600, Duration::from_secs(120))
        .await?;
    running.stop().await?;
    model.apply_all(second);

    // As sets: the workload repeats some event ids on purpose (duplicate emits), and a batch
    // holding one runs again under per-entry savepoints, so an id may reach the pipeline twice.
    let seen: BTreeSet<String> = seen
        .0
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let expected: BTreeSet<String> = second.iter().map(|e| e.id.clone()).collect();
    let rewound_only: BTreeSet<&String> = first[150..]
        .iter()
        .map(|e| &e.id)
        .filter(|id| !expected.contains(*id))
        .collect();
    assert!(
        !rewound_only.is_empty(),
        "the rewind delivers old entries again"
    );
    assert_eq!(
        seen,
        expected,
        "exactly the new entries reached the pipeline; none of the {} delivered again",
        rewound_only.len()
    );
    assert_eq!(harness.processed_count().await?, 600);
    assert_matches_model(&harness.db, &model, true).await?;
    let pushed = sink.events.lock().map(|e| e.len()).unwrap_or(0);
    assert_eq!(
        pushed,
        model.logged.len() - logged_before,
        "pushes for the new entries' events only"
    );
    assert_eq!(harness.db.list_dead_letters(0, 10).await?.len(), 0);
    Ok(())
}
