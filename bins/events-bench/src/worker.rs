//! The emitting process: `events-bench __emit-worker ...`, spawned by the harness so that the
//! producer runs in its own process as an application would. Prints one JSON object.

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use events_envelope::{EventEnvelope, to_stream_fields};
use events_producer::{Producer, RedisProducer, RedisProducerConfig};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::mix::{MixGen, Planned};

/// What sends the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// `RedisProducer::emit_batch` (validation, encoding, pipelined XADD).
    Producer,
    /// fred pipelined XADD of fields encoded before the clock starts: the ceiling.
    Raw,
    /// `RedisProducer::emit`, one event per call, `--callers` calls in flight.
    ProducerSingle,
    /// fred `XADD`, one per call, fields encoded before the clock starts, `--callers` calls in
    /// flight: the ceiling of `ProducerSingle`.
    RawSingle,
}

#[derive(Debug, Parser)]
#[command(name = "events-bench __emit-worker")]
pub(crate) struct WorkerArgs {
    #[arg(long)]
    pub(crate) redis_url: String,
    #[arg(long)]
    pub(crate) stream: String,
    #[arg(long)]
    pub(crate) count: u64,
    #[arg(long)]
    pub(crate) seed: u64,
    #[arg(long, default_value_t = 0)]
    pub(crate) shard: u32,
    #[arg(long, value_enum)]
    pub(crate) mode: Mode,
    /// Events per pipelined round trip.
    #[arg(long, default_value_t = 500)]
    pub(crate) chunk: usize,
    /// Single-event calls in flight at once (the `*-single` modes).
    #[arg(long, default_value_t = 1)]
    pub(crate) callers: usize,
}

/// What the worker prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerOutput {
    pub(crate) events: u64,
    /// Time spent in the send calls only.
    pub(crate) send_s: f64,
    /// Wall time including building the envelopes.
    pub(crate) wall_s: f64,
    /// The worker's own CPU time (user + system, all threads) when it finished: what the
    /// emitting side took from the cores the daemon and Redis share with it.
    pub(crate) cpu_s: f64,
}

/// Envelopes are built per slice of this many, so memory stays flat for a million events.
const SLICE: usize = 10_000;

pub(crate) async fn run(args: WorkerArgs) -> anyhow::Result<WorkerOutput> {
    let mut plan = MixGen::new(args.seed, args.shard, args.count);
    let started = Instant::now();
    let callers = args.callers.max(1);
    let (events, send) = match args.mode {
        Mode::Producer => {
            let producer = connect_producer(&args, Some(args.chunk)).await?;
            let send = async |batch| producer.emit_batch(batch).await.map(drop);
            send_in_slices(&mut plan, |p| p.envelope(), send).await?
        }
        Mode::ProducerSingle => {
            let producer = connect_producer(&args, None).await?;
            // concurrent calls of one producer: fred pipelines them on its connection
            let send = async |batch: Vec<EventEnvelope>| {
                stream::iter(batch)
                    .map(|event| producer.emit(event))
                    .buffer_unordered(callers)
                    .try_for_each(|_| async { Ok(()) })
                    .await
            };
            send_in_slices(&mut plan, |p| p.envelope(), send).await?
        }
        Mode::Raw => {
            let client = crate::raw::connect(&args.redis_url).await?;
            let send = async |batch: Vec<_>| {
                crate::raw::pipelined_xadd(&client, &args.stream, &batch, args.chunk).await
            };
            send_in_slices(&mut plan, |p| to_stream_fields(&p.envelope()), send).await?
        }
        Mode::RawSingle => {
            let client = crate::raw::connect(&args.redis_url).await?;
            let send = async |batch: Vec<_>| {
                stream::iter(batch)
                    .map(|fields| crate::raw::xadd(&client, &args.stream, fields))
                    .buffer_unordered(callers)
                    .try_for_each(|()| async { Ok(()) })
                    .await
            };
            send_in_slices(&mut plan, |p| to_stream_fields(&p.envelope()), send).await?
        }
    };
    Ok(WorkerOutput {
        events,
        send_s: send.as_secs_f64(),
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s: crate::daemon::cpu_s(std::process::id()).unwrap_or(0.0),
    })
}

/// A producer on the worker's stream, no trimming; `chunk` = events per pipelined round
/// trip of `emit_batch` (the default when `None`).
async fn connect_producer(
    args: &WorkerArgs,
    chunk: Option<usize>,
) -> anyhow::Result<RedisProducer> {
    let mut config = RedisProducerConfig::new(args.redis_url.clone());
    config.stream = args.stream.clone();
    config.maxlen = None;
    if let Some(chunk) = chunk {
        config.batch_chunk_size = chunk;
    }
    Ok(RedisProducer::connect(config).await?)
}

/// Builds the plan's items [`SLICE`] at a time with `build` (off the clock) and hands each
/// slice to `send`, timing only the sends: the events sent and the time spent sending.
async fn send_in_slices<T, E>(
    plan: &mut MixGen,
    build: impl Fn(Planned) -> T,
    mut send: impl AsyncFnMut(Vec<T>) -> Result<(), E>,
) -> anyhow::Result<(u64, Duration)>
where
    anyhow::Error: From<E>,
{
    let (mut events, mut spent) = (0u64, Duration::ZERO);
    loop {
        let slice: Vec<T> = plan.by_ref().take(SLICE).map(&build).collect();
        if slice.is_empty() {
            return Ok((events, spent));
        }
        events += slice.len() as u64;
        let t = Instant::now();
        send(slice).await?;
        spent += t.elapsed();
    }
}

/// Spawns the worker as a child process of this same binary.
pub(crate) fn spawn(args: &WorkerArgs) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    // the name clap parses back on the other side
    let mode = args
        .mode
        .to_possible_value()
        .ok_or_else(|| anyhow::anyhow!("mode {:?} has no command-line name", args.mode))?;
    let child = tokio::process::Command::new(exe)
        .arg("__emit-worker")
        .args(["--redis-url", &args.redis_url, "--stream", &args.stream])
        .args([
            "--count",
            &args.count.to_string(),
            "--seed",
            &args.seed.to_string(),
        ])
        .args([
            "--shard",
            &args.shard.to_string(),
            "--mode",
            mode.get_name(),
        ])
        .args(["--chunk", &args.chunk.to_string()])
        .args(["--callers", &args.callers.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

/// Waits for a spawned worker and parses its output.
pub(crate) async fn finish(child: tokio::process::Child) -> anyhow::Result<WorkerOutput> {
    let output = child.wait_with_output().await?;
    anyhow::ensure!(
        output.status.success(),
        "emit worker failed with {}",
        output.status
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| anyhow::anyhow!("emit worker printed {line:?}: {e}"))
}

/// Spawns and waits.
pub(crate) async fn run_child(args: &WorkerArgs) -> anyhow::Result<WorkerOutput> {
    finish(spawn(args)?).await
}
