//! `events-chaos`: the chaos and soak driver of issue 9 (run through `scripts/chaos`).
//!
//! It starts a private Redis (AOF with `appendfsync always`), two `events-daemon`s in Redis
//! mode in the same consumer group and on one shared data directory (SQLite in WAL mode lets
//! two processes share it; each batch is one `BEGIN IMMEDIATE` transaction that checks
//! `processed_entries`, so the two never apply an entry twice), and two producers
//! ([`RedisProducer`]) that emit continuously and record every event whose `XADD` was
//! acknowledged. Meanwhile, at random intervals, it
//!
//! - SIGKILLs one daemon and starts it again (its pending entries are re-read or claimed),
//! - SIGKILLs Redis and restarts it on the same port from its append-only file,
//! - SIGSTOPs one daemon for twice `claim_idle` so that the other one claims its pending
//!   entries with `XAUTOCLAIM`, then SIGCONTs it.
//!
//! At the end it waits for the processors to drain and compares the event log and the
//! notifications (read over the HTTP API) with the acknowledged ids, printing
//! `acknowledged=N stored=N lost=0 duplicated=0 kills=K ...`; the exit code is 1 if anything
//! was lost or applied twice.
//!
//! Why `appendfsync always`: with the default `everysec`, Redis acknowledges an `XADD` before
//! it reaches the disk, so a SIGKILL can lose up to a second of acknowledged writes — a real
//! loss, but Redis's, not the platform's. With `always`, "acknowledged" means durable and any
//! loss the driver finds is ours.
//!
//! It is not a benchmark (the load is paced, and debug builds are fine) and not a unit test:
//! it needs `redis-server` and a built `events-daemon`.

mod daemon;
mod ledger;

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use events_envelope::{EventEnvelope, EventLevel};
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use events_testkit::RedisServer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::daemon::Daemon;
use crate::ledger::{Comparison, DOMAIN, EVENT_TYPE, EventLog};

/// Chaos and soak test of the daemon in Redis mode: kills, pauses, restarts under load,
/// then checks that nothing acknowledged was lost or applied twice.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Seconds of load and faults (the drain afterwards is extra).
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// CI budget: 35 s of faults with shorter gaps (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// `claim_idle_ms` of both daemons; a pause lasts twice this plus a second.
    #[arg(long, default_value_t = 1500)]
    claim_idle_ms: u64,
    /// Emits per second of each of the two producers.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seed of the fault schedule (printed; pass it back to replay a schedule).
    #[arg(long)]
    seed: Option<u64>,
    /// The daemon binary; default: `events-daemon` next to this executable.
    #[arg(long, env = "EVENTS_DAEMON_BIN")]
    daemon_bin: Option<PathBuf>,
    /// Keep the work directory (database, daemon and Redis logs) and print where it is.
    #[arg(long)]
    keep: bool,
}

/// The three kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillDaemon,
    KillRedis,
    PauseDaemon,
}

/// What happened during the run.
#[derive(Debug, Default)]
struct Faults {
    daemon_kills: u32,
    redis_kills: u32,
    pauses: u32,
    /// Pauses during which the other daemon stored events (it took over the work).
    pauses_with_progress: u32,
}

/// What one producer was told.
#[derive(Debug, Default)]
struct ProducerReport {
    acknowledged: Vec<String>,
    /// Failed emits (each retried with the same envelope until acknowledged).
    errors: u64,
    /// The envelope in flight when the run stopped, never acknowledged.
    unacknowledged: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("events-chaos: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("events-chaos: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn daemon_binary(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(path) = &cli.daemon_bin {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("locating events-chaos")?;
    let path = exe
        .parent()
        .context("events-chaos has no parent directory")?
        .join(format!("events-daemon{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `cargo build -p events-daemon` or pass --daemon-bin",
        path.display()
    );
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}

fn log(start: Instant, message: impl std::fmt::Display) {
    eprintln!("[{:>6.1}s] {message}", start.elapsed().as_secs_f64());
}

/// Writes the catalog and config files into `work` and returns the daemon arguments.
fn daemon_args(work: &Path, redis_url: &str, claim_idle_ms: u64) -> anyhow::Result<Vec<OsString>> {
    let catalog = work.join("catalog");
    std::fs::create_dir_all(&catalog).context("creating the catalog dir")?;
    std::fs::write(
        catalog.join("chaos.toml"),
        format!(
            r#"[[schema]]
event_type = "{EVENT_TYPE}"
description = "An event of the chaos driver; each one creates exactly one notification"
default_level = 1
domain = "{DOMAIN}"
default_visibility = "local"
idempotency_fields = []
actionable = false
[schema.lifecycle]
creates = true
"#
        ),
    )
    .context("writing the chaos catalog")?;
    let config = work.join("events.toml");
    std::fs::write(
        &config,
        format!("[redis]\nurl = \"{redis_url}\"\nclaim_idle_ms = {claim_idle_ms}\nmaxlen = 0\n"),
    )
    .context("writing the daemon config")?;
    Ok(vec![
        "--config".into(),
        config.into(),
        "--data-dir".into(),
        work.join("data").into(),
        "--catalog-dir".into(),
        catalog.into(),
    ])
}

async fn produce(
    index: usize,
    producer: RedisProducer,
    rate: u32,
    stop: Arc<AtomicBool>,
) -> ProducerReport {
    let mut report = ProducerReport::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let source = format!("chaos-producer-{index}");
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let event = EventEnvelope::new(EVENT_TYPE, source.as_str())
            .with_level(EventLevel::Operational)
            .with_domain(DOMAIN)
            .with_field("producer", index)
            .with_field("n", n);
        let id = event.id.clone();
        // Retry the same envelope (same id) until acknowledged, as a careful producer does:
        // an XADD whose reply was lost may have been written, and the event id makes the
        // second copy harmless downstream.
        loop {
            match producer.emit(event.clone()).await {
                Ok(_) => {
                    report.acknowledged.push(id);
                    break;
                }
                Err(_) => {
                    report.errors += 1;
                    if stop.load(Ordering::Relaxed) {
                        report.unacknowledged = Some(id);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = producer.close().await;
    report
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let start = Instant::now();
    let duration = Duration::from_secs(if cli.quick { 35 } else { cli.duration });
    let (gap_min, gap_max) = if cli.quick { (300, 900) } else { (1000, 3000) };
    let drain_timeout = Duration::from_secs(if cli.quick { 60 } else { 120 });
    let seed = cli.seed.unwrap_or_else(|| rand::rng().random());
    let mut rng = StdRng::seed_from_u64(seed);
    let claim_idle = Duration::from_millis(cli.claim_idle_ms);
    let bin = daemon_binary(&cli)?;

    let work = tempfile::Builder::new()
        .prefix("events-chaos-")
        .tempdir()
        .context("creating the work dir")?;
    // `appendfsync always` after the builder's `everysec`: the later flag wins.
    let redis = RedisServer::builder()
        .aof(true)
        .extra_arg("--appendfsync")
        .extra_arg("always")
        .start();
    log(
        start,
        format!(
            "seed={seed} redis={} (aof, appendfsync always) work={}",
            redis.url(),
            work.path().display()
        ),
    );
    let args = daemon_args(work.path(), &redis.url(), cli.claim_idle_ms)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the http client")?;
    let mut daemons = [
        Daemon::new(
            "a",
            &bin,
            free_port()?,
            args.clone(),
            work.path(),
            http.clone(),
        ),
        Daemon::new("b", &bin, free_port()?, args, work.path(), http.clone()),
    ];
    // One after the other: the first creates the database and runs its migrations.
    for daemon in &mut daemons {
        daemon.start().await?;
    }
    log(start, "two daemons up; starting two producers");

    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for index in 1..=2 {
        let mut config = RedisProducerConfig::new(redis.url());
        config.maxlen = None;
        config.command_timeout = Duration::from_secs(5);
        let producer = RedisProducer::connect(config)
            .await
            .context("connecting a producer")?;
        producers.push(tokio::spawn(produce(
            index,
            producer,
            cli.rate,
            Arc::clone(&stop),
        )));
    }

    let mut faults = Faults::default();
    let mut deck: Vec<Fault> = Vec::new();
    let mut log_progress = EventLog::default();
    let deadline = start + duration;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(gap_min..gap_max))).await;
        if deck.is_empty() {
            deck = vec![Fault::KillDaemon, Fault::KillRedis, Fault::PauseDaemon];
            deck.shuffle(&mut rng);
        }
        let Some(fault) = deck.pop() else { continue };
        let victim = rng.random_range(0..daemons.len());
        match fault {
            Fault::KillDaemon => {
                let daemon = &mut daemons[victim];
                daemon.kill();
                faults.daemon_kills += 1;
                log(start, format!("SIGKILL daemon {}", daemon.name));
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
                daemon.start().await?;
                log(start, format!("daemon {} restarted", daemon.name));
            }
            Fault::KillRedis => {
                redis.kill();
                faults.redis_kills += 1;
                log(start, "SIGKILL redis");
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
                tokio::task::block_in_place(|| redis.restart());
                log(start, "redis restarted from its AOF");
            }
            Fault::PauseDaemon => {
                let other = daemons[1 - victim].url();
                // The reads below only measure progress; a failure there is not a verdict.
                let _ = log_progress.catch_up(&http, &other).await;
                let before = log_progress.after_seq;
                daemons[victim].signal("STOP")?;
                faults.pauses += 1;
                log(start, format!("SIGSTOP daemon {}", daemons[victim].name));
                tokio::time::sleep(claim_idle * 2 + Duration::from_secs(1)).await;
                let _ = log_progress.catch_up(&http, &other).await;
                let progressed = log_progress.after_seq > before;
                faults.pauses_with_progress += u32::from(progressed);
                daemons[victim].signal("CONT")?;
                log(
                    start,
                    format!(
                        "SIGCONT daemon {} (the other stored {} meanwhile)",
                        daemons[victim].name,
                        if progressed { "events" } else { "nothing" }
                    ),
                );
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    let mut emit_errors = 0;
    let mut in_flight = 0;
    for producer in producers {
        let report = producer.await.context("a producer task failed")?;
        emit_errors += report.errors;
        in_flight += u64::from(report.unacknowledged.is_some());
        acknowledged.extend(report.acknowledged);
    }
    log(
        start,
        format!(
            "load stopped: {} acknowledged, {emit_errors} failed emits retried; draining",
            acknowledged.len()
        ),
    );

    // Drain: until every acknowledged id is in the log and has its notification (both
    // daemons are running again, so pending entries are re-read or claimed).
    let reader = daemons[0].url();
    let mut event_log = EventLog::default();
    let drain_deadline = Instant::now() + drain_timeout;
    let mut notifications;
    loop {
        event_log.catch_up(&http, &reader).await?;
        let missing = acknowledged
            .iter()
            .filter(|id| !event_log.rows.contains_key(*id))
            .count();
        if missing == 0 {
            notifications = ledger::notifications(&http, &reader).await?;
            if acknowledged.iter().all(|id| notifications.contains_key(id)) {
                break;
            }
        }
        if Instant::now() >= drain_deadline {
            log(
                start,
                format!("drain timed out with {missing} acknowledged events not logged"),
            );
            notifications = ledger::notifications(&http, &reader).await?;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A last read after a settle period, so a late duplicate would still be seen.
    tokio::time::sleep(claim_idle * 2).await;
    event_log.catch_up(&http, &reader).await?;
    let notifications_final = ledger::notifications(&http, &reader).await?;
    if notifications_final.len() >= notifications.len() {
        notifications = notifications_final;
    }

    let dead_letters: serde_json::Value = http
        .get(format!("{reader}/api/dead-letters"))
        .send()
        .await
        .context("GET /api/dead-letters")?
        .json()
        .await
        .context("GET /api/dead-letters: body")?;
    let dead = dead_letters["dead_letters"].as_array().map_or(0, Vec::len);

    let verdict = Comparison::new(&acknowledged, &event_log.rows, &notifications);
    for daemon in &mut daemons {
        if !daemon.terminate() {
            log(
                start,
                format!("daemon {} did not stop cleanly on SIGTERM", daemon.name),
            );
        }
    }
    let kills = faults.daemon_kills + faults.redis_kills + faults.pauses;
    println!(
        "acknowledged={} stored={} lost={} duplicated={} kills={kills} daemon_sigkill={} redis_sigkill={} daemon_sigstop={}",
        verdict.acknowledged,
        verdict.stored,
        verdict.lost,
        verdict.duplicated,
        faults.daemon_kills,
        faults.redis_kills,
        faults.pauses,
    );
    println!(
        "notifications={} unacknowledged_stored={} in_flight_at_stop={in_flight} emit_errors={emit_errors} \
         pauses_with_takeover={}/{} dead_letters={dead} seed={seed} elapsed={:.0}s",
        verdict.notifications,
        verdict.unacknowledged_stored,
        faults.pauses_with_progress,
        faults.pauses,
        start.elapsed().as_secs_f64(),
    );
    if cli.keep || !verdict.clean() {
        let kept = work.keep();
        eprintln!(
            "work dir kept: {} (daemon-*.log, data/events.db)",
            kept.display()
        );
    }
    Ok(verdict.clean())
}
