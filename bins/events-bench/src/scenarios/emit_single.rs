//! `emit-single` and `emit-concurrent`: `RedisProducer::emit`, one event per call, from a
//! separate process — the producer rate for applications that emit as things happen rather
//! than in batches (brief §13: "producer emit rate (single and batched)"). One caller
//! awaiting each call measures the round trip; many callers sharing one producer measure
//! what its connection carries when fred pipelines their calls. The ceiling is the same
//! pattern with plain fred `XADD`s of fields encoded before the clock starts.

use serde_json::json;

use super::{Ctx, xlen};
use crate::report::Report;
use crate::worker::{Mode, WorkerArgs, run_child};

const RAW_STREAM: &str = "bench:raw-single";
const EMIT_STREAM: &str = "bench:emit-single";

/// `emit-single`: one caller, each call awaited before the next.
pub(crate) async fn run_single(ctx: &Ctx) -> anyhow::Result<Report> {
    run(ctx, 1, "emit-single", "XADD, one at a time").await
}

/// `emit-concurrent`: 64 calls in flight, as many request handlers of a busy service
/// emitting at once through one shared producer.
pub(crate) async fn run_concurrent(ctx: &Ctx) -> anyhow::Result<Report> {
    run(ctx, 64, "emit-concurrent", "XADD, 64 in flight").await
}

async fn run(
    ctx: &Ctx,
    callers: usize,
    scenario: &'static str,
    ceiling_what: &'static str,
) -> anyhow::Result<Report> {
    let n = ctx.sizes.single_events;
    let args = |mode, stream: &str| WorkerArgs {
        redis_url: ctx.redis.url(),
        stream: stream.to_owned(),
        count: n,
        seed: ctx.seed,
        shard: 0,
        mode,
        chunk: 1,
        callers,
    };
    let mut best_raw: f64 = 0.0;
    let mut best_emit: f64 = 0.0;
    let mut rounds = Vec::new();
    let mut state_problems = Vec::new();
    for round in 0..ctx.sizes.emit_rounds {
        let raw = run_child(&args(Mode::RawSingle, RAW_STREAM)).await?;
        let raw_len = xlen(&ctx.redis, RAW_STREAM);
        ctx.redis.command(&["DEL", RAW_STREAM]);
        let emit = run_child(&args(Mode::ProducerSingle, EMIT_STREAM)).await?;
        let emit_len = xlen(&ctx.redis, EMIT_STREAM);
        ctx.redis.command(&["DEL", EMIT_STREAM]);
        for (what, len) in [("raw", raw_len), ("producer", emit_len)] {
            if len != n {
                state_problems.push(format!(
                    "round {round}: {what} stream holds {len} entries, expected {n}"
                ));
            }
        }
        let raw_rate = raw.events as f64 / raw.send_s;
        let emit_rate = emit.events as f64 / emit.send_s;
        best_raw = best_raw.max(raw_rate);
        best_emit = best_emit.max(emit_rate);
        rounds.push(json!({
            "raw_per_s": raw_rate.round(), "emit_per_s": emit_rate.round(),
            "emit_cpu_s": emit.cpu_s, "raw_cpu_s": raw.cpu_s,
        }));
    }
    let state_ok = state_problems.is_empty();
    Ok(Report {
        scenario,
        quick: ctx.quick,
        value: best_emit,
        unit: "events/s",
        ceiling: Some(best_raw),
        ceiling_what,
        ratio: Some(best_emit / best_raw),
        // the issue sets no target for single emits; the brief asks for the rate
        targets: Vec::new(),
        state_ok,
        state: if state_ok {
            format!("{n} entries in the stream per run")
        } else {
            state_problems.join("; ")
        },
        details: json!({ "events": n, "callers": callers, "rounds": rounds,
            "note": "rates count send time only (emit calls vs XADD of pre-encoded fields)" }),
    })
}
