//! `emit`: `RedisProducer::emit_batch` from a separate process against plain pipelined XADD.

use serde_json::json;

use super::{Ctx, xlen};
use crate::report::{Report, Target};
use crate::worker::{Mode, WorkerArgs, run_child};

const RAW_STREAM: &str = "bench:raw";
const EMIT_STREAM: &str = "bench:emit";

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.sizes.events;
    let args = |mode, stream: &str| WorkerArgs {
        redis_url: ctx.redis.url(),
        stream: stream.to_owned(),
        count: n,
        seed: ctx.seed,
        shard: 0,
        mode,
        chunk: 500,
        callers: 1,
    };
    let mut best_raw: f64 = 0.0;
    let mut best_emit: f64 = 0.0;
    let mut rounds = Vec::new();
    let mut state_problems = Vec::new();
    for round in 0..ctx.sizes.emit_rounds {
        let raw = run_child(&args(Mode::Raw, RAW_STREAM)).await?;
        let raw_len = xlen(&ctx.redis, RAW_STREAM);
        ctx.redis.command(&["DEL", RAW_STREAM]);
        let emit = run_child(&args(Mode::Producer, EMIT_STREAM)).await?;
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
            "emit_wall_per_s": (emit.events as f64 / emit.wall_s).round(),
        }));
    }
    let ratio = best_emit / best_raw;
    let state_ok = state_problems.is_empty();
    Ok(Report {
        scenario: "emit",
        quick: ctx.quick,
        value: best_emit,
        unit: "events/s",
        ceiling: Some(best_raw),
        ceiling_what: "pipelined XADD",
        ratio: Some(ratio),
        targets: vec![
            Target::at_least("events/s", best_emit, 100_000.0),
            Target::at_least("ratio", ratio, 0.9),
        ],
        state_ok,
        state: if state_ok {
            format!("{n} entries in the stream per run")
        } else {
            state_problems.join("; ")
        },
        details: json!({ "events": n, "chunk": 500, "rounds": rounds,
            "note": "rates count send time only (emit_batch calls vs pipelined XADD of pre-encoded fields); emit_wall includes building the envelopes" }),
    })
}
