//! `e2e`: the mix emitted into Redis by a separate process and consumed by the daemon until
//! every event is committed, against plain XADD + XREADGROUP/XACK with no processing.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Ctx, group_lag, rate, xlen};
use crate::daemon::{Daemon, DaemonOptions, cpu_s, cpu_split, rss_kib, thread_cpu};
use crate::mix::Expectation;
use crate::raw;
use crate::report::{Report, Target};
use crate::verify;
use crate::worker::{self, Mode, WorkerArgs};

const STREAM: &str = "events:stream";
const GROUP: &str = "event-processor";
const CEILING_STREAM: &str = "bench:ceiling";

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.sizes.events;
    let url = ctx.redis.url();
    let args = |mode, stream: &str| WorkerArgs {
        redis_url: url.clone(),
        stream: stream.to_owned(),
        count: n,
        seed: ctx.seed,
        shard: 0,
        mode,
        chunk: 500,
        callers: 1,
    };

    // Ceiling: the same emitter (raw), one consumer that only reads and acks.
    let reader = raw::connect(&url).await?;
    let acker = raw::connect(&url).await?;
    raw::create_group(&acker, CEILING_STREAM, "raw").await?;
    let redis_pid = ctx.redis.pid().unwrap_or(0);
    let self_pid = std::process::id();
    let (redis_cpu0, self_cpu0) = (
        cpu_s(redis_pid).unwrap_or(0.0),
        cpu_s(self_pid).unwrap_or(0.0),
    );
    let started = Instant::now();
    let child = worker::spawn(&args(Mode::Raw, CEILING_STREAM))?;
    let done = raw::consume_and_ack(
        &reader,
        &acker,
        CEILING_STREAM,
        "raw",
        n,
        ctx.sizes.settle_timeout,
    )
    .await?;
    worker::finish(child).await?;
    let ceiling = rate(n, done - started);
    let ceiling_redis_cpu = cpu_s(redis_pid).unwrap_or(0.0) - redis_cpu0;
    let ceiling_consumer_cpu = cpu_s(self_pid).unwrap_or(0.0) - self_cpu0;
    ctx.redis.command(&["DEL", CEILING_STREAM]);
    drop((reader, acker));

    // The platform: RedisProducer in a separate process → daemon → SQLite.
    let expect = Expectation::of(ctx.seed, 1, n);
    let mut daemon = Daemon::start(
        &ctx.daemon,
        &DaemonOptions {
            redis_url: Some(url.clone()),
        },
    )
    .await?;
    let redis_cpu0 = cpu_s(redis_pid).unwrap_or(0.0);
    let (daemon_user0, daemon_sys0) = cpu_split(daemon.pid()).unwrap_or_default();
    let started = Instant::now();
    let child = worker::spawn(&args(Mode::Producer, STREAM))?;
    let mut lag_samples = Vec::new();
    let mut next_sample = Instant::now();
    let mut peak_rss = 0u64;
    let mut peak_wal = 0u64;
    let pid = daemon.pid();
    let wal = daemon.wal_path();
    let done = verify::wait_for_sentinels(&daemon.db_path(), 1, ctx.sizes.settle_timeout, || {
        if Instant::now() >= next_sample {
            next_sample += Duration::from_millis(500);
            if let Some((lag, pending)) = group_lag(&ctx.redis, STREAM, GROUP) {
                lag_samples.push(json!({
                    "t_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    // lag = not yet delivered to the daemon, pending = delivered, not yet
                    // committed and acked: together the consumer's backlog.
                    "lag": lag, "pending": pending, "backlog": lag.max(0) + pending.max(0),
                }));
            }
            if let Some((rss, _)) = rss_kib(pid) {
                peak_rss = peak_rss.max(rss);
            }
            // How far the WAL grows is what checkpointing trades for its cost.
            if let Ok(meta) = std::fs::metadata(&wal) {
                peak_wal = peak_wal.max(meta.len());
            }
        }
    })
    .await;
    let done = match done {
        Ok(done) => done,
        Err(e) => anyhow::bail!("{e:#}\ndaemon log:\n{}", daemon.log_tail()),
    };
    let (daemon_user, daemon_sys) = cpu_split(daemon.pid()).unwrap_or_default();
    let daemon_sys_cpu = daemon_sys - daemon_sys0;
    let daemon_cpu = daemon_user - daemon_user0 + daemon_sys_cpu;
    // Since the daemon started (its start-up is a few milliseconds): the busiest threads.
    let daemon_threads: Vec<_> = thread_cpu(daemon.pid())
        .into_iter()
        .take(6)
        .map(|(name, user, sys)| json!({"thread": name, "user_s": user, "sys_s": sys}))
        .collect();
    let redis_cpu = cpu_s(redis_pid).unwrap_or(0.0) - redis_cpu0;
    let emitted = worker::finish(child).await?;
    let elapsed = done - started;
    let measured = rate(n, elapsed);
    daemon.check_alive()?;
    let mut verdict = verify::check(&daemon.db_path(), &expect)?;
    let dead = xlen(&ctx.redis, "events:dead");
    if dead > 0 {
        verdict.ok = false;
        verdict
            .summary
            .push_str(&format!("; {dead} dead letters in events:dead"));
    }
    let max_backlog = lag_samples
        .iter()
        .filter_map(|s| s["backlog"].as_i64())
        .max()
        .unwrap_or(-1);
    // Keep the JSON line short: at most ~40 samples.
    let step = lag_samples.len().div_ceil(40).max(1);
    let lag_series: Vec<_> = lag_samples.iter().step_by(step).cloned().collect();
    let ratio = measured / ceiling;
    Ok(Report {
        scenario: "e2e",
        quick: ctx.quick,
        value: measured,
        unit: "events/s",
        ceiling: Some(ceiling),
        ceiling_what: "XADD + XREADGROUP/XACK",
        ratio: Some(ratio),
        targets: vec![
            Target::at_least("events/s", measured, 50_000.0),
            Target::at_least("ratio", ratio, 0.5),
        ],
        state_ok: verdict.ok,
        state: verdict.summary,
        details: json!({
            "events": n,
            "elapsed_s": elapsed.as_secs_f64(),
            "emit_per_s": (emitted.events as f64 / emitted.wall_s).round(),
            "max_backlog": max_backlog,
            "lag_over_time": lag_series,
            "daemon_peak_rss_mib": peak_rss / 1024,
            "wal_peak_mib": peak_wal / (1024 * 1024),
            "daemon_cpu_s": daemon_cpu,
            "daemon_sys_cpu_s": daemon_sys_cpu,
            "daemon_threads": daemon_threads,
            "events_per_daemon_cpu_s": (n as f64 / daemon_cpu.max(0.01)).round(),
            "redis_cpu_s": redis_cpu,
            "emitter_cpu_s": emitted.cpu_s,
            // Everything the run needed against what the cores offered over its wall time:
            // near 1 means the cores, not a wait, set the pace (docs/benchmarks.md).
            "cpu_budget": cpu_budget(daemon_cpu + redis_cpu + emitted.cpu_s, elapsed),
            "ceiling_consumer_cpu_s": ceiling_consumer_cpu,
            "ceiling_redis_cpu_s": ceiling_redis_cpu,
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
            "expect": expect,
        }),
    })
}

/// CPU used by daemon, Redis and emitter together, as a share of what the machine's cores
/// offered over `elapsed`.
fn cpu_budget(cpu_s: f64, elapsed: Duration) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let offered = cores as f64 * elapsed.as_secs_f64();
    if offered > 0.0 {
        (cpu_s / offered * 100.0).round() / 100.0
    } else {
        0.0
    }
}
