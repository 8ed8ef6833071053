//! When pushes leave: right after the commit, not after the batch's transport round trips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events_processor::{
    Checkpoint, DeadLetterRecord, EmbeddedConfig, EmbeddedSource, Processor, Source, SourceEntry,
};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// The embedded source, except that reading ahead never returns: the transport stopped
/// answering while the batch it delivered was being committed (a Redis that hangs).
struct StalledReadAhead(EmbeddedSource);

impl Source for StalledReadAhead {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn checkpoint(&self) -> Checkpoint {
        self.0.checkpoint()
    }

    async fn read_batch(&mut self, max: usize) -> events_processor::Result<Vec<SourceEntry>> {
        self.0.read_batch(max).await
    }

    async fn read_ahead(
        &mut self,
        _max: usize,
    ) -> events_processor::Result<Option<Vec<SourceEntry>>> {
        std::future::pending().await
    }

    async fn ack(&mut self, ids: &[String]) -> events_processor::Result<()> {
        self.0.ack(ids).await
    }

    fn retry_later(&mut self, ids: &[String], delay: Duration) {
        self.0.retry_later(ids, delay);
    }

    async fn publish_dead_letters(
        &mut self,
        letters: &[DeadLetterRecord],
    ) -> events_processor::Result<()> {
        self.0.publish_dead_letters(letters).await
    }

    fn is_connected(&self) -> bool {
        self.0.is_connected()
    }

    async fn lag(&mut self) -> events_processor::Result<Option<u64>> {
        self.0.lag().await
    }
}

/// Clients see a committed batch even while the transport work that overlaps the commit
/// (acks, reading ahead) is stuck: pushes wait for the commit only.
#[tokio::test]
async fn pushes_leave_after_the_commit_without_waiting_for_the_transport() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Embedded).await?;
    harness.emit(&workload(100, 11)).await?;
    let sink = Arc::new(RecordingSink::default());
    let source = StalledReadAhead(EmbeddedSource::new(
        harness.db.clone(),
        EmbeddedConfig::default(),
    ));
    let processor = Processor::new(
        fast_config(),
        source,
        harness.db.clone(),
        Arc::new(test_catalog()),
        standard_pipeline(vec![]),
        vec![sink.clone()],
    );
    let task = tokio::spawn(processor.run(CancellationToken::new()));

    let deadline = Instant::now() + Duration::from_secs(30);
    let (logged, pushed_events, pushed_notifications) = loop {
        let logged = count(&harness.db, "SELECT COUNT(*) FROM events").await?;
        let pushed_events = sink.events.lock().map(|e| e.len()).unwrap_or_default();
        let pushed_notifications = sink
            .notifications
            .lock()
            .map(|n| n.len())
            .unwrap_or_default();
        if (logged > 0 && usize::try_from(logged)? == pushed_events) || Instant::now() > deadline {
            break (logged, pushed_events, pushed_notifications);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // the run loop waits for the stalled read forever: it cannot stop gracefully
    task.abort();

    assert!(logged > 0, "the batch was never committed");
    assert_eq!(
        pushed_events,
        usize::try_from(logged)?,
        "every committed event is pushed although the transport is stuck"
    );
    assert!(
        pushed_notifications > 0,
        "the committed notifications are pushed too"
    );
    Ok(())
}
