//! Storage benchmark (brief §13): batch insert rates of the event log and of notifications,
//! then the time of event-log queries (type filters, a time window) on the log just written.
//!
//! `cargo run -p events-storage --release --bin storage-bench [-- ROWS]`
//!
//! Writes `ROWS` (default 200,000) event-log rows and `ROWS / 2` notifications to a fresh
//! database file in a temporary directory, in 1,000-row batches, each batch one
//! [`EventDb::write`] transaction — the way the processor commits. Envelopes are built before
//! the clock starts, so the figures are storage cost only (JSON encoding included). The log
//! holds five event types (two thirds of the rows one type, one row in a thousand a rare one);
//! each query is a page of 100 as `GET /api/events` and SSE resume ask for it (type filters,
//! and time windows: `since` the newest 1,000th or the newest quarter's first row, and a
//! closed window from there to the newest eighth).
//!
//! Besides wall-clock rates it prints rates per CPU-second of this process (from
//! `/proc/self/stat`): on a shared 2-core machine other processes steal the CPU, and the
//! CPU-time figure shows what the storage code itself costs.

use std::time::Instant;

use events_envelope::{EventEnvelope, EventLevel};
use events_storage::{EventDb, NewNotification};

/// The daemon's allocator, so the rates here are the ones its writer sees.
#[cfg(feature = "bench-alloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1_000;

/// User + system CPU time of this process (all threads) in seconds; `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux configuration Rust supports.
    Some((utime + stime) / 100.0)
}

fn report(what: &str, rows: usize, wall: f64, cpu: Option<f64>) {
    let cpu_rate = cpu.map_or_else(
        || "n/a".to_owned(),
        |c| format!("{:.0}", rows as f64 / c.max(0.01)),
    );
    println!(
        "{what:<14} {rows:>7} rows in {wall:.2} s wall = {:>7.0} rows/s; per CPU-second: {cpu_rate} rows/s ({BATCH}-row batches)",
        rows as f64 / wall
    );
}

/// The event log's types: by row number, see [`event_type`].
const COMPLETED: &str = "domain.software-development.build.completed";
const FAILED: &str = "domain.software-development.build.failed";
const CREATED: &str = "domain.software-development.planning.todo_created";
const DEPLOYED: &str = "ops.deploy.finished";
const RARE: &str = "ops.pager.escalated";

fn event_type(i: usize) -> &'static str {
    match i % 1000 {
        0 => RARE,
        n if n % 3 != 0 => COMPLETED,
        n if n % 2 == 0 => FAILED,
        n if n % 5 == 0 => DEPLOYED,
        _ => CREATED,
    }
}

fn envelope(i: usize) -> EventEnvelope {
    EventEnvelope::new(event_type(i), "bench")
        .with_level(EventLevel::Workflow)
        .with_domain("software-development")
        .with_description(format!("build {i} passed"))
        .with_idempotency_key(format!("build:{i}"))
        .with_correlation_id(format!("run-{}", i / 10))
        .with_field("build", i)
        .with_field("status", "passed")
        .with_field("branch", "main")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let db = EventDb::open(dir.path().join("bench.db")).await?;

        let batches: Vec<Vec<EventEnvelope>> = (0..rows)
            .map(envelope)
            .collect::<Vec<_>>()
            .chunks(BATCH)
            .map(<[_]>::to_vec)
            .collect();
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        for batch in batches {
            db.write(move |tx| {
                for (i, event) in batch.iter().enumerate() {
                    tx.append_event(event, Some(&format!("{i}-0")))?;
                }
                Ok(())
            })
            .await?;
        }
        let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
        report("event log:", rows, start.elapsed().as_secs_f64(), cpu);

        let count = rows / 2;
        let batches: Vec<Vec<NewNotification>> = (0..count)
            .map(|i| {
                let e = envelope(i);
                NewNotification {
                    actionable: true,
                    group_field: Some("build".into()),
                    group_value: Some(i.to_string()),
                    ..NewNotification::from_envelope(&e)
                }
            })
            .collect::<Vec<_>>()
            .chunks(BATCH)
            .map(<[_]>::to_vec)
            .collect();
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        for batch in batches {
            db.write(move |tx| {
                for n in &batch {
                    tx.insert_notification(n)?;
                }
                Ok(())
            })
            .await?;
        }
        let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
        report("notifications:", count, start.elapsed().as_secs_f64(), cpu);

        let newest = db.max_seq().await?;
        let tail = Some(newest.saturating_sub(1_000));
        // The timestamp of the newest `back`th event: `since` it, about the newest `back` rows.
        let newest_but = |back: i64| {
            let db = &db;
            async move {
                let first = db
                    .query_events(events_storage::EventQuery {
                        after_seq: Some(newest.saturating_sub(back)),
                        limit: Some(1),
                        ..events_storage::EventQuery::default()
                    })
                    .await?;
                Ok::<_, events_storage::Error>(first.first().map(|stored| stored.event.timestamp))
            }
        };
        let (recent, wide, wide_end) = (
            newest_but(1_000).await?,
            newest_but(rows as i64 / 4).await?,
            newest_but(rows as i64 / 8).await?,
        );
        let wide_what = format!("since the newest {}th's timestamp", rows / 4);
        let closed_what = format!("the newest {}th to {}th", rows / 4, rows / 8);
        for (what, pattern, after_seq, since, until) in [
            ("exact type, first page", Some(COMPLETED), None, None, None),
            (
                "exact type, after the newest 1,000",
                Some(COMPLETED),
                tail,
                None,
                None,
            ),
            ("rare type, first page", Some(RARE), None, None, None),
            ("`domain.*`, first page", Some("domain.*"), None, None, None),
            (
                "`domain.*`, after the newest 1,000",
                Some("domain.*"),
                tail,
                None,
                None,
            ),
            (
                "`*.finished`, after the newest 1,000",
                Some("*.finished"),
                tail,
                None,
                None,
            ),
            (
                "since the newest 1,000th's timestamp",
                None,
                None,
                recent,
                None,
            ),
            (wide_what.as_str(), None, None, wide, None),
            (closed_what.as_str(), None, None, wide, wide_end),
        ] {
            const RUNS: u32 = 20;
            let start = Instant::now();
            let mut rows = 0;
            for _ in 0..RUNS {
                let query = events_storage::EventQuery {
                    event_type: pattern.map(str::to_owned),
                    since,
                    until,
                    after_seq,
                    limit: Some(100),
                    ..events_storage::EventQuery::default()
                };
                rows = db.query_events(query).await?.len();
            }
            let per_query = start.elapsed().as_secs_f64() * 1_000.0 / f64::from(RUNS);
            println!("query {what:<38} {rows:>3} rows in {per_query:>8.3} ms (mean of {RUNS})");
        }
        Ok(())
    })
}
