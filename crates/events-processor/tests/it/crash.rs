//! Exactly-once effect under crashes: a child processor (this test binary re-executed with
//! `crash::crash_child`) is SIGKILLed at random points and restarted; at the end every
//! event is in the log exactly once and the notifications are right. Plus a second
//! consumer taking over a dead one's pending entries with XAUTOCLAIM.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events_processor::{
    EmbeddedConfig, EmbeddedSource, Processor, RedisSourceConfig, RedisStreamSource,
};
use events_storage::EventDb;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::common::*;

const ENV_DB: &str = "EVENTS_CRASH_CHILD_DB";
const ENV_REDIS: &str = "EVENTS_CRASH_CHILD_REDIS";
const ENV_CONSUMER: &str = "EVENTS_CRASH_CHILD_CONSUMER";

/// Entry point of the child process. A no-op in a normal test run (the variables are
/// unset); with them set it runs a processor until it is killed.
#[test]
fn crash_child() {
    let Ok(db_path) = std::env::var(ENV_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        let db = EventDb::open(&db_path)
            .await
            .expect("child opens the database");
        let catalog = Arc::new(test_catalog());
        let cancel = CancellationToken::new();
        let result = match std::env::var(ENV_REDIS) {
            Ok(url) => {
                let mut config = RedisSourceConfig::new(url);
                config.consumer = std::env::var(ENV_CONSUMER).unwrap_or_else(|_| "child".into());
                config.block = Duration::from_millis(200);
                let source = RedisStreamSource::new(config);
                Processor::new(
                    fast_config(),
                    source,
                    db,
                    catalog,
                    standard_pipeline(vec![]),
                    vec![],
                )
                .run(cancel)
                .await
            }
            Err(_) => {
                let source = EmbeddedSource::new(db.clone(), EmbeddedConfig::default());
                Processor::new(
                    fast_config(),
                    source,
                    db,
                    catalog,
                    standard_pipeline(vec![]),
                    vec![],
                )
                .run(cancel)
                .await
            }
        };
        result.expect("child processor runs until killed");
    });
}

fn spawn_child(harness: &Harness, consumer: &str) -> anyhow::Result<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "crash::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV_DB, harness.db_path())
        .env(ENV_CONSUMER, consumer)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = harness.redis_url() {
        command.env(ENV_REDIS, url);
    }
    Ok(command.spawn()?)
}

fn kill(child: &mut Child) -> anyhow::Result<()> {
    child.kill()?; // SIGKILL on Unix
    child.wait()?;
    Ok(())
}

async fn exactly_once_under_crashes(kind: Kind) -> anyhow::Result<()> {
    const N: usize = 50_000;
    const KILLS: usize = 12;
    let harness = Harness::new(kind).await?;
    let events = workload(N, 1234);
    harness.emit(&events).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut progress = Vec::new();
    for _ in 0..KILLS {
        let mut child = spawn_child(&harness, "crashy")?;
        // wait for the child to make some progress (bounded), then kill it at a random moment
        let before = harness.processed_count().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while harness.processed_count().await? == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        kill(&mut child)?;
        progress.push(harness.processed_count().await?);
    }
    eprintln!("{kind:?}: entries processed at each of the {KILLS} kills: {progress:?}");
    // At least 10 of the kills must land mid-run (a fast machine may finish before the last).
    let mid_run = progress.iter().filter(|&&done| done < N as i64).count();
    assert!(
        mid_run >= 10,
        "only {mid_run} kills landed mid-run (progress {progress:?}); raise N"
    );
    // a last, undisturbed run finishes the stream
    let running = spawn_standard(&harness, "crashy");
    harness
        .wait_processed(N as i64, Duration::from_secs(300))
        .await?;
    running.stop().await?;

    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await?;
    assert_eq!(harness.redis_pending(), 0, "nothing pending");
    assert!(
        harness.db.list_dead_letters(0, 10).await?.is_empty(),
        "nothing dead-lettered"
    );
    let distinct = count(
        &harness.db,
        "SELECT COUNT(DISTINCT stream_entry_id) FROM events",
    )
    .await?;
    assert_eq!(
        distinct,
        model.logged.len() as i64,
        "every event logged exactly once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_exactly_once_under_crashes() -> anyhow::Result<()> {
    exactly_once_under_crashes(Kind::Embedded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_exactly_once_under_crashes() -> anyhow::Result<()> {
    exactly_once_under_crashes(Kind::Redis).await
}

fn pending_ids(harness: &Harness, consumer: &str) -> Vec<String> {
    let Some(redis) = &harness.redis else {
        return Vec::new();
    };
    match redis.query(&["XPENDING", STREAM, GROUP, "-", "+", "100000", consumer]) {
        events_testkit::Reply::Array(rows) => rows
            .iter()
            .filter_map(|row| match row {
                events_testkit::Reply::Array(cols) => cols.first().and_then(|c| c.as_text()),
                _ => None,
            })
            .collect(),
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_second_consumer_takes_over_dead_ones_entries() -> anyhow::Result<()> {
    const N: usize = 10_000;
    let harness = Harness::new(Kind::Redis).await?;
    let events = workload(N, 77);
    harness.emit(&events).await?;
    // kill consumer "a" until it dies holding pending entries
    let mut orphaned = Vec::new();
    for _ in 0..10 {
        let mut child = spawn_child(&harness, "a")?;
        let before = harness.processed_count().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while harness.processed_count().await? < before + 300 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        kill(&mut child)?;
        orphaned = pending_ids(&harness, "a");
        if !orphaned.is_empty() {
            break;
        }
    }
    assert!(
        !orphaned.is_empty(),
        "consumer a never died with entries pending"
    );
    let claim_idle = Duration::from_millis(800);
    tokio::time::sleep(claim_idle + Duration::from_millis(200)).await;

    let running = spawn(
        &harness,
        harness.source("b", claim_idle),
        fast_config(),
        standard_pipeline(vec![]),
        vec![],
        Arc::new(test_catalog()),
    );
    harness
        .wait_processed(N as i64, Duration::from_secs(300))
        .await?;
    running.stop().await?;

    assert!(
        pending_ids(&harness, "a").is_empty(),
        "a's entries were claimed and acked"
    );
    assert_eq!(harness.redis_pending(), 0);
    let mut model = Model::default();
    model.apply_all(&events);
    assert_matches_model(&harness.db, &model, true).await?;
    assert!(harness.db.list_dead_letters(0, 10).await?.is_empty());
    Ok(())
}
