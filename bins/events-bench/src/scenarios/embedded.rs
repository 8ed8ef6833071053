//! `embedded`: the mix posted over HTTP in batches of 500 to a daemon without Redis, against
//! plain SQLite batch inserts of the same envelopes.

use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::{Ctx, rate};
use crate::daemon::{Daemon, DaemonOptions, cpu_s, rss_kib};
use crate::mix::{Expectation, MixGen};
use crate::raw;
use crate::report::{Report, Target};
use crate::verify;

const BATCH: usize = 500;

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let posters = ctx.sizes.embedded_posters.max(1);
    let per_shard = ctx.sizes.embedded_events / u64::from(posters);
    let n = per_shard * u64::from(posters);

    // Ceiling: the same envelopes as JSON rows, plain batch inserts.
    let rows: Vec<String> = (0..posters)
        .flat_map(|shard| MixGen::new(ctx.seed, shard, per_shard))
        .map(|p| serde_json::to_string(&p.envelope()))
        .collect::<Result<_, _>>()?;
    let raw_elapsed =
        tokio::task::spawn_blocking(move || raw::sqlite_batch_inserts(&rows, BATCH)).await??;
    let ceiling = rate(n, raw_elapsed);

    let expect = Expectation::of(ctx.seed, posters, per_shard);
    let mut daemon = Daemon::start(&ctx.daemon, &DaemonOptions::default()).await?;
    let client = reqwest::Client::new();
    let url = format!("{}/api/events", daemon.base);
    let daemon_cpu0 = cpu_s(daemon.pid()).unwrap_or(0.0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..posters {
        let client = client.clone();
        let url = url.clone();
        let seed = ctx.seed;
        tasks.push(tokio::spawn(async move {
            let mut plan = MixGen::new(seed, shard, per_shard);
            loop {
                let batch: Vec<_> = plan.by_ref().take(BATCH).map(|p| p.envelope()).collect();
                if batch.is_empty() {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = serde_json::to_vec(&json!({ "events": batch }))?;
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                if status.as_u16() != 202 {
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!("POST /api/events answered {status}: {text}");
                }
            }
        }));
    }
    for task in tasks {
        task.await?.context("posting the mix")?;
    }
    let accepted = started.elapsed();
    let done = match verify::wait_for_sentinels(
        &daemon.db_path(),
        u64::from(posters),
        ctx.sizes.settle_timeout,
        || {},
    )
    .await
    {
        Ok(done) => done,
        Err(e) => anyhow::bail!("{e:#}\ndaemon log:\n{}", daemon.log_tail()),
    };
    let elapsed = done - started;
    let daemon_cpu = cpu_s(daemon.pid()).unwrap_or(0.0) - daemon_cpu0;
    let measured = rate(n, elapsed);
    daemon.check_alive()?;
    let rss = rss_kib(daemon.pid()).map(|(_, peak)| peak / 1024);
    let verdict = verify::check(&daemon.db_path(), &expect)?;
    let ratio = measured / ceiling;
    Ok(Report {
        scenario: "embedded",
        quick: ctx.quick,
        value: measured,
        unit: "events/s",
        ceiling: Some(ceiling),
        ceiling_what: "SQLite batch inserts",
        ratio: Some(ratio),
        targets: vec![Target::at_least("events/s", measured, 30_000.0)],
        state_ok: verdict.ok,
        state: verdict.summary,
        details: json!({
            "events": n, "posters": posters, "batch": BATCH,
            "accepted_per_s": rate(n, accepted).round(),
            "elapsed_s": elapsed.as_secs_f64(),
            "daemon_peak_rss_mib": rss,
            "daemon_cpu_s": daemon_cpu,
            "events_per_daemon_cpu_s": (n as f64 / daemon_cpu.max(0.01)).round(),
            "ceiling_s": raw_elapsed.as_secs_f64(),
            "loadavg_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
            "expect": expect,
        }),
    })
}
