//! Redis goes away for 5 s mid-run and comes back (AOF on): the processor reconnects,
//! finishes, and nothing is lost or doubled. And a Redis that comes back empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_mid_run_loses_nothing() -> anyhow::Result<()> {
    let harness = Harness::with_redis(Kind::Redis, true).await?;
    let redis = harness
        .redis
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no redis"))?;
    let events = workload(8_000, 21);
    let (first, second) = events.split_at(6_000);
    harness.emit(first).await?;
    let running = spawn_standard(&harness, "c1");
    harness
        .wait_processed(1_000, Duration::from_secs(120))
        .await?;
    let stopped = redis.clone();
    tokio::task::spawn_blocking(move || stopped.stop()).await?;
    let down_since = Instant::now();
    let mut saw_disconnected = false;
    // Down for at least 5 s; longer if the processor was busy committing a batch (on a
    // loaded machine) and has not touched Redis yet, so the status could not know.
    while down_since.elapsed() < Duration::from_secs(5)
        || (!saw_disconnected && down_since.elapsed() < Duration::from_secs(60))
    {
        saw_disconnected |= !running.status.source_connected();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_disconnected, "status reports the outage");
    let restarted = redis.clone();
    tokio::task::spawn_blocking(move || restarted.restart()).await?;
    harness.emit(second).await?;
    harness
        .wait_processed(8_000, Duration::from_secs(180))
        .await?;
    running.stop().await?;

    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await?;
    assert_eq!(harness.redis_pending(), 0);
    assert!(harness.db.list_dead_letters(0, 10).await?.is_empty());
    Ok(())
}

/// Redis restarted without persistence answers NOGROUP: the group is recreated and the
/// processor goes on instead of staying stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_persistence_recreates_group() -> anyhow::Result<()> {
    let harness = Harness::with_redis(Kind::Redis, false).await?;
    let redis = harness
        .redis
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no redis"))?;
    let running = spawn_standard(&harness, "c1");
    let events = workload(2_000, 5);
    harness.emit(&events[..1_000]).await?;
    harness
        .wait_processed(1_000, Duration::from_secs(60))
        .await?;
    let killed = redis.clone();
    // no AOF, SIGKILL: comes back empty
    tokio::task::spawn_blocking(move || {
        killed.kill();
        std::fs::remove_file(killed.data_dir().join("dump.rdb")).ok();
        killed.restart();
    })
    .await?;
    assert_eq!(
        redis.command(&["EXISTS", STREAM]),
        "0",
        "redis came back empty"
    );
    harness.emit(&events[1_000..1_500]).await?;
    harness
        .wait_processed(1_500, Duration::from_secs(120))
        .await?;
    // the stream (and with it the group) deleted under a connected consumer: NOGROUP
    redis.command(&["DEL", STREAM]);
    harness.emit(&events[1_500..]).await?;
    harness
        .wait_processed(2_000, Duration::from_secs(120))
        .await?;
    running.stop().await?;
    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await
}

/// An entry trimmed from the stream while pending (here: deleted while waiting for a
/// retry) is acked and counted, never retried forever nor dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_trimmed_pending_entry_is_acked() -> anyhow::Result<()> {
    use events_envelope::EventEnvelope;
    use events_pipeline::{Cartridge, CartridgeError, LocalBoxFuture, PipelineContext};

    #[derive(Debug)]
    struct AlwaysFails;
    impl Cartridge for AlwaysFails {
        fn name(&self) -> &str {
            "always-fails"
        }
        fn process<'a>(
            &'a self,
            event: EventEnvelope,
            _ctx: &'a mut PipelineContext<'_, '_>,
        ) -> LocalBoxFuture<'a, events_pipeline::Result<Option<EventEnvelope>>> {
            Box::pin(async move {
                if event.event == "test.doomed.entry" {
                    return Err(CartridgeError::failed("always-fails", "not yet"));
                }
                Ok(Some(event))
            })
        }
    }

    let harness = Harness::new(Kind::Redis).await?;
    let redis = harness
        .redis
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no redis"))?;
    let config = events_processor::ProcessorConfig {
        max_deliveries: 1_000,
        retry_base: std::time::Duration::from_millis(300),
        retry_max: std::time::Duration::from_millis(300),
        ..fast_config()
    };
    let running = spawn(
        &harness,
        harness.source("c1", Duration::from_secs(30)),
        config,
        standard_pipeline(vec![Arc::new(AlwaysFails)]),
        vec![],
        Arc::new(test_catalog()),
    );
    let doomed = harness
        .emit(&[EventEnvelope::new("test.doomed.entry", "it")])
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while harness.redis_pending() == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the failing entry never became pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.command(&["XDEL", STREAM, &doomed[0]]);
    let events = workload(200, 9);
    harness.emit(&events).await?;
    harness.wait_processed(200, Duration::from_secs(60)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while harness.redis_pending() != 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "trimmed pending entry was never acked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await?;
    assert!(harness.db.list_dead_letters(0, 10).await?.is_empty());
    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await
}
