//! `emit`: `RedisProducer::emit_batch` from a separate process against plain pipelined XADD.

use serde_json::json;

use super::{Ctx, xlen};
use crate::report::{Report, Target};
use crate::worker::{Mode, WorkerArgs, WorkerOutput, run_child};

const RAW_STREAM: &str = "bench:raw";
const EMIT_STREAM: &str = "bench:emit";

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.sizes.events;
    let measured = alternate(
        ctx,
        n,
        (500, 1),
        (Mode::Raw, RAW_STREAM),
        (Mode::Producer, EMIT_STREAM),
    )
    .await?;
    let (best_emit, best_raw) = (measured.best_emit, measured.best_raw);
    let ratio = best_emit / best_raw;
    let (state_ok, state) = measured.verdict(n);
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
        state,
        details: json!({ "events": n, "chunk": 500, "rounds": measured.rounds,
            "note": "rates count send time only (emit_batch calls vs pipelined XADD of pre-encoded fields); emit_wall includes building the envelopes" }),
    })
}

/// What [`alternate`] measured.
pub(super) struct Rounds {
    /// Best send rates (events/s) of the ceiling and of the producer over the rounds.
    pub(super) best_raw: f64,
    pub(super) best_emit: f64,
    /// Per round: the rates and the emitting processes' CPU.
    pub(super) rounds: Vec<serde_json::Value>,
    /// Streams that did not end with `n` entries.
    pub(super) state_problems: Vec<String>,
}

impl Rounds {
    /// The report's final-state verdict: every stream held its `n` entries, or what did not.
    pub(super) fn verdict(&self, n: u64) -> (bool, String) {
        if self.state_problems.is_empty() {
            (true, format!("{n} entries in the stream per run"))
        } else {
            (false, self.state_problems.join("; "))
        }
    }
}

/// Runs the ceiling's worker and the producer's worker in alternating rounds
/// (`emit_rounds`), each into its own stream, which must then hold exactly `n` entries and is
/// deleted for the next round.
///
/// `(chunk, callers)` are the workers' events per pipelined round trip and calls in flight;
/// `raw` and `emit` the ceiling's and the producer's mode and stream.
pub(super) async fn alternate(
    ctx: &Ctx,
    n: u64,
    (chunk, callers): (usize, usize),
    raw: (Mode, &str),
    emit: (Mode, &str),
) -> anyhow::Result<Rounds> {
    let args = |(mode, stream): (Mode, &str)| WorkerArgs {
        redis_url: ctx.redis.url(),
        stream: stream.to_owned(),
        count: n,
        seed: ctx.seed,
        shard: 0,
        mode,
        chunk,
        callers,
    };
    let (raw, emit) = (args(raw), args(emit));
    let mut measured = Rounds {
        best_raw: 0.0,
        best_emit: 0.0,
        rounds: Vec::new(),
        state_problems: Vec::new(),
    };
    for round in 0..ctx.sizes.emit_rounds {
        let mut run = async |args: &WorkerArgs, what: &str| -> anyhow::Result<WorkerOutput> {
            let out = run_child(args).await?;
            let len = xlen(&ctx.redis, &args.stream);
            ctx.redis.command(&["DEL", &args.stream]);
            if len != n {
                measured.state_problems.push(format!(
                    "round {round}: {what} stream holds {len} entries, expected {n}"
                ));
            }
            Ok(out)
        };
        let raw_out = run(&raw, "raw").await?;
        let emit_out = run(&emit, "producer").await?;
        let raw_rate = raw_out.events as f64 / raw_out.send_s;
        let emit_rate = emit_out.events as f64 / emit_out.send_s;
        measured.best_raw = measured.best_raw.max(raw_rate);
        measured.best_emit = measured.best_emit.max(emit_rate);
        measured.rounds.push(json!({
            "raw_per_s": raw_rate.round(), "emit_per_s": emit_rate.round(),
            "emit_wall_per_s": (emit_out.events as f64 / emit_out.wall_s).round(),
            "raw_cpu_s": raw_out.cpu_s, "emit_cpu_s": emit_out.cpu_s,
        }));
    }
    Ok(measured)
}
