//! `emit-single` and `emit-concurrent`: `RedisProducer::emit`, one event per call, from a
//! separate process — the producer rate for applications that emit as things happen rather
//! than in batches (brief §13: "producer emit rate (single and batched)"). One caller
//! awaiting each call measures the round trip; many callers sharing one producer measure
//! what its connection carries when fred pipelines their calls. The ceiling is the same
//! pattern with plain fred `XADD`s of fields encoded before the clock starts.

use serde_json::json;

use super::Ctx;
use super::emit::alternate;
use crate::report::Report;
use crate::worker::Mode;

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
    let measured = alternate(
        ctx,
        n,
        (1, callers),
        (Mode::RawSingle, RAW_STREAM),
        (Mode::ProducerSingle, EMIT_STREAM),
    )
    .await?;
    let (state_ok, state) = measured.verdict(n);
    Ok(Report {
        scenario,
        quick: ctx.quick,
        value: measured.best_emit,
        unit: "events/s",
        ceiling: Some(measured.best_raw),
        ceiling_what,
        ratio: Some(measured.best_emit / measured.best_raw),
        // the issue sets no target for single emits; the brief asks for the rate
        targets: Vec::new(),
        state_ok,
        state,
        details: json!({ "events": n, "callers": callers, "rounds": measured.rounds,
            "note": "rates count send time only (emit calls vs XADD of pre-encoded fields)" }),
    })
}
