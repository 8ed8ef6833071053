//! `api`: `GET /api/notifications?limit=50` and `GET /api/notifications/{id}` under concurrent
//! load with many stored notifications, against `GET /health` of the same daemon under the
//! same load (the HTTP stack with no storage behind it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use events_envelope::EventEnvelope;
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use rand::Rng;
use serde_json::json;

use super::Ctx;
use crate::daemon::{Daemon, DaemonOptions};
use crate::mix::{SOURCE, TODO_CREATED};
use crate::report::{Report, Target, percentile};
use crate::verify;

struct Load {
    requests: u64,
    errors: u64,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    list_p99_ms: f64,
    get_p99_ms: f64,
}

/// `concurrency` tasks, each issuing requests back to back for `secs`; `path(i, rng)` picks
/// the path of request `i` and whether it is a list (true) or a get.
async fn load(
    base: &str,
    concurrency: usize,
    secs: u64,
    ids: Arc<Vec<i64>>,
    health_only: bool,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let client = client.clone();
        let base = base.to_owned();
        let ids = Arc::clone(&ids);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let mut list = Vec::new();
            let mut get = Vec::new();
            let mut i = t;
            while Instant::now() < deadline {
                let is_list = i % 2 == 0;
                i += 1;
                let url = if health_only {
                    format!("{base}/health")
                } else if is_list {
                    format!("{base}/api/notifications?limit=50")
                } else {
                    let id = ids[rand::rng().random_range(0..ids.len())];
                    format!("{base}/api/notifications/{id}")
                };
                let t0 = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if is_list { list.push(ms) } else { get.push(ms) }
            }
            (list, get)
        }));
    }
    let mut list = Vec::new();
    let mut get = Vec::new();
    for task in tasks {
        let (l, g) = task.await?;
        list.extend(l);
        get.extend(g);
    }
    let elapsed = started.elapsed();
    list.sort_by(f64::total_cmp);
    get.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = list.iter().chain(get.iter()).copied().collect();
    all.sort_by(f64::total_cmp);
    let requests = all.len() as u64;
    Ok(Load {
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_s: requests as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
        list_p99_ms: percentile(&list, 99.0),
        get_p99_ms: percentile(&get, 99.0),
    })
}

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.sizes.api_notifications;
    let daemon = Daemon::start(
        &ctx.daemon,
        &DaemonOptions {
            redis_url: Some(ctx.redis.url()),
        },
    )
    .await?;
    let mut config = RedisProducerConfig::new(ctx.redis.url());
    config.maxlen = None;
    let producer = RedisProducer::connect(config).await?;
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..(i + 10_000).min(n))
            .map(|k| {
                EventEnvelope::new(TODO_CREATED, SOURCE)
                    .with_description(format!("api todo {k}"))
                    .with_field("slug", format!("api-{k}"))
                    .with_field("title", "a stored notification for the api scenario")
            })
            .collect();
        i += batch.len() as u64;
        producer.emit_batch(batch).await?;
    }
    let db = daemon.db_path();
    let deadline = Instant::now() + ctx.sizes.settle_timeout;
    let conn = verify::open(&db)?;
    let stored = loop {
        let stored: i64 = conn.query_row(
            "SELECT count(*) FROM notifications WHERE source = ?1",
            [SOURCE],
            |r| r.get(0),
        )?;
        if stored as u64 >= n || Instant::now() > deadline {
            break stored as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut statement = conn.prepare("SELECT id FROM notifications WHERE source = ?1")?;
    let ids: Vec<i64> = statement
        .query_map([SOURCE], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    drop(statement);
    drop(conn);
    anyhow::ensure!(
        !ids.is_empty(),
        "no notifications stored; daemon log:\n{}",
        daemon.log_tail()
    );
    let ids = Arc::new(ids);

    let c = ctx.sizes.api_concurrency;
    let secs = ctx.sizes.api_secs;
    let health = load(&daemon.base, c, secs, Arc::clone(&ids), true).await?;
    let api = load(&daemon.base, c, secs, ids, false).await?;
    let state_ok = stored == n && api.errors == 0 && health.errors == 0;
    let state = format!(
        "{stored}/{n} notifications stored, {} of {} api requests failed",
        api.errors, api.requests
    );
    Ok(Report {
        scenario: "api",
        quick: ctx.quick,
        value: api.per_s,
        unit: "req/s",
        ceiling: Some(health.per_s),
        ceiling_what: "GET /health",
        ratio: Some(api.per_s / health.per_s),
        targets: vec![
            Target::at_least("req/s", api.per_s, 20_000.0),
            Target::at_most("p99 ms", api.p99_ms, 10.0),
        ],
        state_ok,
        state,
        details: json!({
            "stored": n, "concurrency": c, "secs": secs,
            "p50_ms": api.p50_ms, "p99_ms": api.p99_ms,
            "list_p99_ms": api.list_p99_ms, "get_p99_ms": api.get_p99_ms,
            "health_p99_ms": health.p99_ms,
            "client": "reqwest, one keep-alive connection per task, half list / half get",
        }),
    })
}
