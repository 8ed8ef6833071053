//! 20,000 mixed events end to end, compared with an independently computed model.

use std::sync::Arc;
use std::time::Duration;

use events_processor::{Processor, RedisStreamSource, Source};
use events_storage::NotificationFilter;
use tokio_util::sync::CancellationToken;

use crate::common::*;

async fn mixed_workload_matches_model(kind: Kind) -> anyhow::Result<()> {
    let harness = Harness::new(kind).await?;
    let catalog = Arc::new(test_catalog());
    let sink = Arc::new(RecordingSink::default());
    let running = spawn(
        &harness,
        harness.source("c1", Duration::from_secs(30)),
        fast_config(),
        standard_pipeline(vec![]),
        vec![
            sink.clone(),
            Arc::new(RecordingSink {
                panic: true,
                ..RecordingSink::default()
            }),
        ],
        catalog,
    );
    let events = workload(20_000, 7);
    let (first, second) = events.split_at(10_000);
    let mut model = Model::default();

    harness.emit(first).await?;
    harness
        .wait_processed(10_000, Duration::from_secs(240))
        .await?;
    model.apply_all(first);
    // everything seen, so the second half shows which updates make a notification unseen again
    harness
        .db
        .mark_all_seen(NotificationFilter::default())
        .await?;
    model.mark_all_seen();

    harness.emit(second).await?;
    harness
        .wait_processed(20_000, Duration::from_secs(240))
        .await?;
    model.apply_all(second);
    running.stop().await?;

    assert_matches_model(&harness.db, &model, true).await?;
    let duplicates = 20_000 - model.logged.len();
    assert!(
        duplicates > 500,
        "workload should hold ~5 % duplicates, has {duplicates}"
    );
    assert!(
        model.notifications.iter().any(|n| n.unseen)
            && model.notifications.iter().any(|n| !n.unseen)
    );
    assert!(model.notifications.iter().any(|n| n.resolved));
    assert_eq!(harness.db.list_dead_letters(0, 10).await?.len(), 0);
    assert_eq!(harness.redis_pending(), 0);
    // pushes: one event push per logged event, even though another sink panicked every time
    let pushed = sink.events.lock().map(|e| e.len()).unwrap_or(0);
    assert_eq!(pushed, model.logged.len());
    let pushed_notifications = sink.notifications.lock().map(|n| n.len()).unwrap_or(0);
    assert!(pushed_notifications >= model.notifications.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mixed_workload_matches_model() -> anyhow::Result<()> {
    mixed_workload_matches_model(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mixed_workload_matches_model() -> anyhow::Result<()> {
    mixed_workload_matches_model(Kind::Redis).await
}

/// A sink that asks for rows gets, with every notification push, the row as its batch
/// committed it: the last row pushed for each notification is the stored one (several
/// changes to one notification in a batch all carry its final state), and each row's commit
/// number is a real commit, increasing along the pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_carry_the_rows_their_batch_committed() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Embedded).await?;
    let sink = Arc::new(RowSink::default());
    let running = spawn(
        &harness,
        harness.source("c1", Duration::from_secs(30)),
        fast_config(),
        standard_pipeline(vec![]),
        vec![sink.clone()],
        Arc::new(test_catalog()),
    );
    let events = workload(3_000, 5);
    harness.emit(&events).await?;
    harness
        .wait_processed(3_000, Duration::from_secs(120))
        .await?;
    running.stop().await?;

    let rows = std::mem::take(&mut *sink.rows.lock().unwrap_or_else(|p| p.into_inner()));
    assert!(!rows.is_empty(), "the workload changes notifications");
    let mut last = std::collections::BTreeMap::new();
    let mut previous_commit = 0;
    for (id, row) in rows {
        let row = row.unwrap_or_else(|| panic!("push of notification {id} came without its row"));
        assert_eq!(row.notification.id, id);
        assert!(row.commit >= previous_commit && row.commit <= harness.db.commit_count());
        previous_commit = row.commit;
        last.insert(id, row.notification);
    }
    for (id, pushed) in last {
        let stored = harness
            .db
            .get_notification(id)
            .await?
            .expect("pushed row is stored");
        assert_eq!(
            *pushed, stored,
            "last push of notification {id} is its stored state"
        );
    }
    Ok(())
}

async fn graceful_shutdown_leaves_nothing_pending(kind: Kind) -> anyhow::Result<()> {
    let harness = Harness::new(kind).await?;
    let events = workload(3_000, 11);
    harness.emit(&events).await?;
    let running = spawn_standard(&harness, "c1");
    // stop while batches are in flight; whatever was read is committed and acked
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await?;
    let done = harness.processed_count().await?;
    assert_eq!(
        harness.redis_pending(),
        0,
        "a graceful stop acks the batch in flight"
    );
    // a second run finishes the rest, exactly once
    let running = spawn_standard(&harness, "c1");
    harness
        .wait_processed(3_000, Duration::from_secs(120))
        .await?;
    running.stop().await?;
    assert!(done <= 3_000);
    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_graceful_shutdown_leaves_nothing_pending() -> anyhow::Result<()> {
    graceful_shutdown_leaves_nothing_pending(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_graceful_shutdown_leaves_nothing_pending() -> anyhow::Result<()> {
    graceful_shutdown_leaves_nothing_pending(Kind::Redis).await
}

/// A batch's acknowledgement is paid while the next batch commits; when no next batch comes,
/// it must still be paid before the processor waits for new entries — not left pending
/// until the next emit or the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_last_batch_is_acked_while_the_stream_is_idle() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Redis).await?;
    let running = spawn_standard(&harness, "c1");
    for (round, size) in [(1, 1_500), (2, 7)] {
        let events = workload(size, 20 + round);
        harness.emit(&events).await?;
        let total = if round == 1 { 1_500 } else { 1_507 };
        harness
            .wait_processed(total, Duration::from_secs(120))
            .await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while harness.redis_pending() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: {} entries still pending on an idle stream",
                harness.redis_pending()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    running.stop().await?;
    Ok(())
}

/// `ack` does not wait for Redis's answer, but nothing is lost on that account: after
/// `flush_acks` every acked entry is off the pending list, also when more acks were sent
/// than may be in flight at once, and a re-read of own pending entries (after
/// `retry_later`) never returns an entry acked just before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acks_sent_ahead_are_all_answered_before_pending_entries_are_read_again()
-> anyhow::Result<()> {
    let harness = Harness::new(Kind::Redis).await?;
    let mut source = redis_source(&harness, Duration::from_millis(100));
    assert!(
        source.read_batch(10).await?.is_empty(),
        "connects, nothing yet"
    );
    let ids = xadd_in_one_write(&harness, 12, 41).await?;
    let mut read = Vec::new();
    while read.len() < ids.len() {
        read.extend(
            source
                .read_batch(100)
                .await?
                .into_iter()
                .map(|e| e.entry_id),
        );
    }
    assert_eq!(read, ids);
    assert_eq!(harness.redis_pending(), 12);
    // ten acks of one entry each: more than may be in flight at once
    for id in &ids[..10] {
        source.ack(std::slice::from_ref(id)).await?;
    }
    source.flush_acks().await;
    assert_eq!(harness.redis_pending(), 2, "flushed acks are answered");

    source.ack(&ids[10..11]).await?;
    source.retry_later(&ids[11..], Duration::ZERO);
    let again: Vec<String> = source
        .read_batch(100)
        .await?
        .into_iter()
        .map(|e| e.entry_id)
        .collect();
    assert_eq!(
        again,
        ids[11..].to_vec(),
        "only the entry not acked comes back"
    );
    Ok(())
}

/// Redis answers a blocked `XREADGROUP` after the first `XADD` of a producer's pipelined
/// batch; the rest of the batch must come in the same read, not a whole commit cycle later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_blocking_read_takes_the_whole_pipelined_batch() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Redis).await?;
    let mut source = redis_source(&harness, Duration::from_secs(10));
    // connects (creating the group at the stream's end) and blocks
    let reader = tokio::spawn(async move { source.read_batch(100).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Redis runs all five XADDs before the top-up read queued behind the blocked one, and
    // answers the blocked read after the first
    assert_eq!(xadd_in_one_write(&harness, 5, 31).await?.len(), 5);
    let entries = tokio::time::timeout(Duration::from_secs(30), reader).await???;
    assert_eq!(entries.len(), 5, "one read takes the whole pipelined batch");
    Ok(())
}

/// The blocking read is topped up in the same pipeline, so with entries already waiting
/// both reads answer in full; a batch never exceeds its size, and what the second read took
/// beyond it is handed out next — taken at shutdown, by a read ahead or by an ordinary
/// read — in stream order, each entry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reads_beyond_the_batch_size_are_handed_out_next_in_order() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Redis).await?;
    let mut source = redis_source(&harness, Duration::from_millis(200));
    // connects, creating the group at the stream's end; nothing to read yet
    assert!(source.read_batch(100).await?.is_empty());
    let added = xadd_in_one_write(&harness, 250, 47).await?;
    assert_eq!(added.len(), 250);

    let first = source.read_batch(100).await?;
    // what a graceful shutdown takes before it stops
    let buffered = source.take_buffered(60);
    let ahead = source
        .read_ahead(100)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the surplus is handed out by a read ahead"))?;
    let rest = source.read_batch(100).await?;
    assert_eq!(
        (first.len(), buffered.len(), ahead.len(), rest.len()),
        (100, 60, 40, 50),
        "every batch within its size"
    );
    assert!(
        source.take_buffered(100).is_empty(),
        "nothing held any more"
    );
    let read: Vec<String> = [first, buffered, ahead, rest]
        .into_iter()
        .flatten()
        .map(|entry| entry.entry_id)
        .collect();
    assert_eq!(read, added, "each entry once, in stream order");
    assert!(source.read_batch(100).await?.is_empty(), "nothing left");
    Ok(())
}

/// A graceful shutdown also finishes the entries the source holds beyond its last batch
/// (`Source::take_buffered`), so nothing it was handed stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_graceful_shutdown_finishes_the_entries_the_source_holds() -> anyhow::Result<()> {
    let harness = Harness::new(Kind::Redis).await?;
    let mut source = redis_source(&harness, Duration::from_millis(200));
    assert!(source.read_batch(100).await?.is_empty());
    xadd_in_one_write(&harness, 250, 53).await?;
    // 100 handed out (to the test, which never acks them), 100 held by the source
    assert_eq!(source.read_batch(100).await?.len(), 100);

    let cancel = CancellationToken::new();
    cancel.cancel();
    Processor::new(
        fast_config(),
        source,
        harness.db.clone(),
        Arc::new(test_catalog()),
        standard_pipeline(vec![]),
        vec![],
    )
    .run(cancel)
    .await?;
    assert_eq!(
        harness.processed_count().await?,
        100,
        "the held entries are processed, and nothing is read after the cancel"
    );
    assert_eq!(harness.redis_pending(), 100, "the held entries are acked");
    Ok(())
}

/// A Redis source of consumer "c1" that blocks up to `block` for new entries.
fn redis_source(harness: &Harness, block: Duration) -> RedisStreamSource {
    let mut config = harness.redis_config("c1");
    config.block = block;
    RedisStreamSource::new(config)
}

/// XADDs `n` workload events to the stream in one write — a producer's pipeline at its
/// best — and returns their entry ids.
async fn xadd_in_one_write(harness: &Harness, n: usize, seed: u64) -> anyhow::Result<Vec<String>> {
    let redis = harness
        .redis
        .clone()
        .ok_or_else(|| anyhow::anyhow!("a Redis harness has a server"))?;
    let commands: Vec<Vec<String>> = workload(n, seed)
        .iter()
        .map(|event| {
            let mut args = vec!["XADD".to_owned(), STREAM.to_owned(), "*".to_owned()];
            args.extend(wire(event).into_iter().flat_map(|(k, v)| [k, v]));
            args
        })
        .collect();
    let replies = tokio::task::spawn_blocking(move || {
        let commands: Vec<Vec<&str>> = commands
            .iter()
            .map(|args| args.iter().map(String::as_str).collect())
            .collect();
        redis.query_in_one_write(&commands)
    })
    .await?;
    Ok(replies.iter().map(ToString::to_string).collect())
}
