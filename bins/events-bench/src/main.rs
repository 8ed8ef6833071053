//! `events-bench`: the benchmark harness of issue 8 (brief §13).
//!
//! Starts its own `redis-server` (through `events-testkit`) and the release `events-daemon`,
//! runs each scenario, and measures **in the same run** the raw ceiling the scenario competes
//! with (plain pipelined `XADD`, plain `XREADGROUP` + `XACK`, plain SQLite batch inserts, the
//! daemon's own `/health` under the same HTTP load). Every scenario verifies the final state
//! against an expectation computed independently from the generated mix ([`mix`]) and the
//! process exits non-zero when a state is wrong. `--quick` shrinks every size so that CI can
//! check correctness in a few minutes; it never judges timings.
//!
//! Output: one JSON line per scenario on stdout (`{"scenario":...}`), then a human table.
//!
//! This is not a micro-benchmark suite (no criterion): it measures whole processes over
//! loopback on the machine at hand, which is how users will judge the platform.

mod daemon;
mod mix;
mod raw;
mod report;
mod scenarios;
mod verify;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::report::Report;

/// mimalloc, as in the daemon: the emitting workers, load clients and raw-ceiling clients
/// share the two cores with the daemon under test, and glibc's malloc/free were 18 % of an
/// emitting worker's instructions (~20 allocations per event, most in the bench's own envelope
/// building and in fred). Both sides of every ratio run in this binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every scenario, in the order they run by default.
const ALL: [&str; 8] = [
    "emit",
    "emit-single",
    "emit-concurrent",
    "e2e",
    "embedded",
    "latency",
    "api",
    "fanout",
];

/// Benchmark harness: scenario results against raw ceilings measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "events-bench", about)]
struct Cli {
    /// Reduced sizes (CI): check that every scenario completes with a correct final state.
    #[arg(long)]
    quick: bool,
    /// The events-daemon binary (default: beside this executable).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Seed of the generated mix.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Override the event count of emit, e2e and embedded.
    #[arg(long)]
    events: Option<u64>,
    /// Override the number of WebSocket clients of fanout.
    #[arg(long)]
    clients: Option<u64>,
    /// Override the emit rate (events/s) of latency.
    #[arg(long)]
    latency_rate: Option<u64>,
    /// Override the duration (s) of latency.
    #[arg(long)]
    latency_secs: Option<u64>,
    /// Scenarios to run (default: all): emit emit-single emit-concurrent e2e embedded latency
    /// api fanout.
    scenarios: Vec<String>,
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__emit-worker") {
        args.remove(1);
        let worker_args = worker::WorkerArgs::parse_from(args);
        return block_on(async move {
            let output = worker::run(worker_args).await?;
            println!("{}", serde_json::to_string(&output)?);
            Ok(ExitCode::SUCCESS)
        });
    }
    let cli = Cli::parse();
    block_on(run(cli))
}

fn block_on(future: impl Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("events-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("events-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let selected: Vec<String> = if cli.scenarios.is_empty() {
        ALL.iter().map(|s| (*s).to_owned()).collect()
    } else {
        cli.scenarios.clone()
    };
    if let Some(unknown) = selected.iter().find(|s| !ALL.contains(&s.as_str())) {
        eprintln!(
            "events-bench: unknown scenario {unknown:?}; choose from {}",
            ALL.join(" ")
        );
        return Ok(ExitCode::from(2));
    }
    let daemon = match cli.daemon.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("events-daemon"),
    };
    if !daemon.exists() {
        eprintln!(
            "events-bench: {} not found; build it with `cargo build --release -p events-daemon` or pass --daemon",
            daemon.display()
        );
        return Ok(ExitCode::from(2));
    }
    let mut sizes = if cli.quick {
        scenarios::Sizes::quick()
    } else {
        scenarios::Sizes::full()
    };
    if let Some(n) = cli.events {
        sizes.events = n.max(10);
        sizes.embedded_events = n.max(10);
    }
    if let Some(n) = cli.latency_rate {
        sizes.latency_rate = n.max(1);
    }
    if let Some(n) = cli.latency_secs {
        sizes.latency_secs = n.max(1);
    }
    if let Some(n) = cli.clients {
        sizes.fanout_clients = n.max(1);
    }
    let redis = tokio::task::spawn_blocking(events_testkit::RedisServer::start).await?;
    let ctx = scenarios::Ctx {
        quick: cli.quick,
        sizes,
        seed: cli.seed,
        daemon,
        redis,
    };
    eprintln!(
        "events-bench: redis on {}, daemon {}, {} mode",
        ctx.redis.url(),
        ctx.daemon.display(),
        if cli.quick { "quick" } else { "full" }
    );

    let mut reports: Vec<Report> = Vec::new();
    let mut failed = Vec::new();
    for name in &selected {
        eprintln!("events-bench: running {name} ...");
        ctx.redis.command(&["FLUSHALL"]);
        match scenarios::run(name, &ctx).await {
            Ok(report) => {
                println!("{}", report.json_line());
                if !report.state_ok {
                    failed.push(format!("{name}: {}", report.state));
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("events-bench: scenario {name} failed: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    println!();
    print!("{}", report::table(&reports));
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("events-bench: {} scenario(s) failed:", failed.len());
        for f in &failed {
            eprintln!("  {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
