//! The scenarios of issue 8. Each returns a [`Report`] holding its own ceiling and verdict.

mod api;
mod e2e;
mod embedded;
mod emit;
mod emit_single;
mod fanout;
mod latency;

use std::path::PathBuf;
use std::time::Duration;

use events_testkit::{RedisServer, Reply};

use crate::report::Report;

/// Sizes of one run.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    /// Events of `emit` and `e2e`.
    pub(crate) events: u64,
    /// Events of `emit-single` and `emit-concurrent` (one call each).
    pub(crate) single_events: u64,
    /// Events of `embedded`.
    pub(crate) embedded_events: u64,
    /// Concurrent HTTP posters of `embedded` (each its own shard of the mix, in order).
    pub(crate) embedded_posters: u32,
    /// Alternating ceiling/measurement rounds of `emit`; the best of each counts.
    pub(crate) emit_rounds: u32,
    pub(crate) latency_rate: u64,
    pub(crate) latency_secs: u64,
    pub(crate) api_notifications: u64,
    pub(crate) api_secs: u64,
    pub(crate) api_concurrency: usize,
    pub(crate) fanout_clients: u64,
    /// Bound on waiting for the daemon to commit everything.
    pub(crate) settle_timeout: Duration,
}

impl Sizes {
    pub(crate) fn full() -> Self {
        Self {
            events: 1_000_000,
            single_events: 100_000,
            embedded_events: 200_000,
            embedded_posters: 4,
            emit_rounds: 2,
            latency_rate: 5_000,
            latency_secs: 60,
            api_notifications: 100_000,
            api_secs: 20,
            api_concurrency: 64,
            // The container's hard RLIMIT_NOFILE is 20,000 per process: the daemon cannot
            // hold 20,000 client sockets plus its own files (see docs/benchmarks.md).
            fanout_clients: 19_800,
            settle_timeout: Duration::from_secs(900),
        }
    }

    pub(crate) fn quick() -> Self {
        Self {
            events: 20_000,
            single_events: 2_000,
            embedded_events: 10_000,
            embedded_posters: 4,
            emit_rounds: 1,
            latency_rate: 200,
            latency_secs: 3,
            api_notifications: 2_000,
            api_secs: 2,
            api_concurrency: 16,
            fanout_clients: 200,
            settle_timeout: Duration::from_secs(120),
        }
    }
}

/// What every scenario gets.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) quick: bool,
    pub(crate) sizes: Sizes,
    pub(crate) seed: u64,
    pub(crate) daemon: PathBuf,
    pub(crate) redis: RedisServer,
}

pub(crate) async fn run(name: &str, ctx: &Ctx) -> anyhow::Result<Report> {
    match name {
        "emit" => emit::run(ctx).await,
        "emit-single" => emit_single::run_single(ctx).await,
        "emit-concurrent" => emit_single::run_concurrent(ctx).await,
        "e2e" => e2e::run(ctx).await,
        "embedded" => embedded::run(ctx).await,
        "latency" => latency::run(ctx).await,
        "api" => api::run(ctx).await,
        "fanout" => fanout::run(ctx).await,
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

/// `XLEN stream`.
pub(crate) fn xlen(redis: &RedisServer, stream: &str) -> u64 {
    redis
        .query(&["XLEN", stream])
        .as_integer()
        .unwrap_or(0)
        .max(0) as u64
}

/// `(lag, pending)` of a consumer group from `XINFO GROUPS` (Redis ≥ 7 reports `lag`).
pub(crate) fn group_lag(redis: &RedisServer, stream: &str, group: &str) -> Option<(i64, i64)> {
    let Reply::Array(groups) = redis.query(&["XINFO", "GROUPS", stream]) else {
        return None;
    };
    for g in groups {
        let Reply::Array(fields) = g else { continue };
        let mut name = None;
        let mut lag = None;
        let mut pending = None;
        for pair in fields.chunks(2) {
            let [key, value] = pair else { continue };
            match key.as_text().as_deref() {
                Some("name") => name = value.as_text(),
                Some("lag") => lag = value.as_integer(),
                Some("pending") => pending = value.as_integer(),
                _ => {}
            }
        }
        if name.as_deref() == Some(group) {
            return Some((lag.unwrap_or(-1), pending.unwrap_or(-1)));
        }
    }
    None
}

pub(crate) fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}
